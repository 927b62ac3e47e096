"""Data-quality gate: run a great-expectations suite over a dataset's tables.

python -m jobs.check --dataset bookcrossing --lake /tmp/lake                  # ingest tables
python -m jobs.check --dataset bookcrossing --lake /tmp/lake --suite scores --date 2026-11-23
Prints one line per expectation and exits 1 when any fails (the JSON report is written
under quality.reports_dir).
"""
import argparse

from optirag.cli import run_job
from optirag.config import ConfigError, add_common_args, config_from_args


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--suite", choices=["ingest", "scores"], default="ingest")
    parser.add_argument("--date", help="score date, YYYY-MM-DD (--suite scores)")
    args = parser.parse_args()
    cfg = config_from_args(args)
    if args.suite == "scores" and not args.date:
        raise ConfigError("--suite scores needs --date YYYY-MM-DD")
    from optirag.quality import gate_report_path
    from optirag.quality.runner import run_checks
    from optirag.spark import get_spark

    spark = get_spark(cfg)
    if args.suite == "scores":
        from optirag.config import parse_date
        from optirag.quality.scores import scores_checks

        checks, name = scores_checks(spark, cfg, parse_date(args.date)), f"scores-{args.date}"
    else:
        from optirag.quality.suites import ingest_checks

        checks, name = ingest_checks(spark, cfg), "ingest"
    report = run_checks(checks)
    print(report.render())
    path = gate_report_path(cfg, name)
    report.to_json(path)
    print(f"report: {path}")
    if not report.success:
        print(f"check: {args.suite} gate FAILED: " + "; ".join(
            f"{o.check}.{o.expectation}" for o in report.failures))
    return 0 if report.success else 1


if __name__ == "__main__":
    run_job("check", main)
