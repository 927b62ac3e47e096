"""The nightly pipeline end to end on one dataset (what `make demo` runs).

python -m jobs.demo --dataset bookcrossing --lake lake --raw ../shared/data/bookcrossing \
    --env demo --date 2026-11-23
See optirag.demo for the steps. Prints each step's wall time and a summary.
"""
import argparse
import datetime as dt
import json

from optirag.cli import run_job
from optirag.config import add_common_args, config_from_args


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--raw", required=True, help="the dataset's raw files")
    parser.add_argument("--date", default=dt.date.today().isoformat(), help="score date")
    parser.add_argument("--variant", default="gcn", choices=["none", "llm", "gcn"])
    args = parser.parse_args()
    cfg = config_from_args(args)
    from optirag.demo import run_demo, summary
    from optirag.config import parse_date
    from optirag.spark import get_spark

    date = parse_date(args.date)
    common = ["--dataset", args.dataset, "--lake", args.lake, "--env", args.env, "--model", args.model]
    for item in args.overrides:
        common += ["--set", item]
    timing = run_demo(cfg, common, args.raw, date, args.variant)
    result = {**timing, **summary(get_spark(cfg), cfg, date)}
    print("\n=== demo summary\n" + json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    run_job("demo", main)
