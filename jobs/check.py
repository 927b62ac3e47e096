"""Data-quality gate: run the great-expectations suites over a dataset's tables.

python -m jobs.check --dataset bookcrossing --lake /tmp/lake
Prints one line per expectation and exits 1 when any fails (the JSON report is written
under quality.reports_dir).
"""
import argparse
import os

from optirag.cli import run_job
from optirag.config import add_common_args, config_from_args


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--suite", choices=["ingest"], default="ingest")
    args = parser.parse_args()
    cfg = config_from_args(args)
    from optirag.quality.runner import run_checks
    from optirag.quality.suites import ingest_checks
    from optirag.spark import get_spark

    report = run_checks(ingest_checks(get_spark(cfg), cfg))
    print(report.render())
    path = os.path.join(cfg.quality.reports_dir, f"{cfg.dataset.name}-{args.suite}.json")
    report.to_json(path)
    print(f"report: {path}")
    return 0 if report.success else 1


if __name__ == "__main__":
    run_job("check", main)
