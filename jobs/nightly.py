"""The nightly chain, each step through the launchers of --env (no Airflow needed).

python -m jobs.nightly --dataset bookcrossing --raw ../shared/data/bookcrossing --lake /tmp/lake \
    --env demo+localcluster --date 2026-11-23     # the demo sizes on `make cluster-up`'s clusters
Same steps and commands as the optirag_nightly DAG (+ scorer training while the model store has
none, as in `make demo`); prints every step's wall time. See optirag.orchestration.nightly.
"""
import argparse
import datetime as dt
import json
from pathlib import Path

from optirag.cli import register_user_error, run_job
from optirag.config import add_common_args, config_from_args, parse_date

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--raw", required=True, help="the dataset's raw files")
    parser.add_argument("--date", default=dt.date.today().isoformat(), type=parse_date, help="score date")
    parser.add_argument("--variant", default="gcn", choices=["none", "llm", "gcn"])
    args = parser.parse_args()
    from optirag.orchestration.launch import LaunchError, absolute
    from optirag.orchestration.nightly import StepFailed, run_nightly

    register_user_error(LaunchError)
    register_user_error(StepFailed)
    args.lake = absolute(args.lake)   # a Ray job runs in a copy of the repo, elsewhere
    cfg = config_from_args(args)
    settings = {"dataset": args.dataset, "lake": args.lake, "env": args.env, "model": args.model,
                "overrides": args.overrides}
    result = run_nightly(cfg, settings, absolute(args.raw), args.date, args.variant, REPO)
    print("\n=== nightly summary\n" + json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    run_job("nightly", main)
