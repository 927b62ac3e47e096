"""Write reports/README.md: every file under reports/, the command that makes it, the scorer and
data versions it was measured on, and whether it is of record.

python -m jobs.reports_manifest [--reports reports] [--check]
The table is libs/optirag/reporting/reports_manifest.py (a new file: one line there). --check
writes nothing: exit 1 when README.md is not what this would write or reports/ and the table
disagree (reporting/reports_audit.py), each problem one line on stderr.
"""
import argparse
import sys
from pathlib import Path

from optirag.cli import run_job


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", default="reports")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 on any difference or problem")
    args = parser.parse_args()
    from optirag.reporting.reports_audit import problems
    from optirag.reporting.reports_readme import FILE, render, write

    reports = Path(args.reports)
    if not args.check:
        print(f"reports_manifest: wrote {write(reports)}")
    found = problems(reports)
    if args.check and (reports / FILE).read_text(encoding="utf-8") != render(reports):
        found.append(f"{reports / FILE} is not what `make reports-manifest` writes: run it")
    for p in found:
        print(f"reports_manifest: {p}", file=sys.stderr)
    return 1 if found and args.check else 0


if __name__ == "__main__":
    run_job("reports_manifest", main)
