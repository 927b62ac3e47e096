"""Candidate items to score for one date (Spark -> Delta `candidates[score_date]`).

python -m jobs.build_candidates --dataset bookcrossing --lake /tmp/lake --date 2026-11-23
Re-running a date replaces exactly that date's partition. What is chosen: see
optirag.scoring.candidates (neighbours' liked items, then popular items, + eval samples).
"""
import argparse
import json

from optirag.cli import run_job
from optirag.config import add_common_args, config_from_args


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, date=True)
    args = parser.parse_args()
    cfg = config_from_args(args)
    from optirag.scoring.candidates import write_candidates
    from optirag.spark import get_spark

    summary = write_candidates(get_spark(cfg), cfg, args.date)
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    run_job("build_candidates", main)
