"""Nightly batch scoring of one date's candidates (Ray Data actors -> Delta `scores`).

python -m jobs.score --dataset bookcrossing --lake /tmp/lake --date 2026-11-23
Uses the promoted (else newest) scorer and exit heads of `scoring.variant`; re-running a
date replaces exactly that date; a killed run leaves `scores` as it was. Rows whose inputs
the latest earlier scored date already scored keep that score (--full re-scores all). The
summary it prints is also <lake>/<dataset>/_reports/nightly/<date>/score_summary.json (for
jobs.night_report). See optirag.scoring.job and optirag.scoring.reuse.
"""
import argparse
import json

from optirag.cli import run_job
from optirag.config import add_common_args, config_from_args


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, date=True)
    parser.add_argument("--full", action="store_true",
                        help="re-score every row (= --set scoring.incremental=false)")
    args = parser.parse_args()
    if args.full:
        args.overrides.append("scoring.incremental=false")
    cfg = config_from_args(args)
    from optirag.reporting.night import write_score_summary
    from optirag.scoring.job import run_scoring

    summary = run_scoring(cfg, args.date)
    write_score_summary(cfg, summary)
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    run_job("score", main)
