"""Raw review files -> Delta tables (items, interactions, samples, edges, quarantine, ...).

python -m jobs.ingest --dataset bookcrossing --raw ../shared/data/bookcrossing --lake /tmp/lake
"""
import argparse
import json

from optirag.cli import run_job
from optirag.config import add_common_args, config_from_args


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--raw", required=True, help="folder holding the dataset's raw files")
    args = parser.parse_args()
    cfg = config_from_args(args)
    # Heavy imports after argument parsing: --help and bad arguments answer at once.
    from optirag.ingest.job import run_ingest
    from optirag.spark import get_spark

    summary = run_ingest(get_spark(cfg), cfg, args.raw)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    run_job("ingest", main)
