"""The night's page: rows, speed, exit layers, score drift, gate and AUC of one score date.

python -m jobs.night_report --dataset bookcrossing --lake /tmp/lake --date 2026-11-23
Writes <lake>/<dataset>/_reports/nightly/<date>/report.md (+ PNGs) and prints its path and
first lines. Runs whatever the gate said: what is missing is said on the page. See
optirag.reporting.night.
"""
import argparse

from optirag.cli import run_job
from optirag.config import add_common_args, config_from_args

SHOWN_LINES = 30


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, date=True)
    args = parser.parse_args()
    cfg = config_from_args(args)
    from optirag.reporting.night import write_night_report

    page = write_night_report(cfg, args.date)
    print(f"night report: {page}")
    print("\n".join(page.read_text(encoding="utf-8").splitlines()[:SHOWN_LINES]))
    return 0


if __name__ == "__main__":
    run_job("night_report", main)
