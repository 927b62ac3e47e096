"""Build reports/REPORT.md (Tables 2-4, Figures 2-5, environment, ours vs the paper).

python -m jobs.report --lake /tmp/lake [--datasets bookcrossing,movielens100k] [--train all|baselines|none] [--seeds 1] [--dry-run]
Reads the JSON files the stages wrote under --reports; with --train (default all) it first
runs the jobs whose outputs are missing (ingest from --data when a lake is empty), each
logged with its wall time to <reports>/report_jobs.json (the report's "time to regenerate").
"""
import argparse
import os
from pathlib import Path

from optirag.cli import run_job
from optirag.config import default_env

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lake", required=True)
    parser.add_argument("--datasets", default="bookcrossing,movielens100k,amazon")
    parser.add_argument("--reports", default="reports", help="folder of the stage JSON files and REPORT.md")
    parser.add_argument("--train", choices=["all", "baselines", "none"], default="all",
                        help="which missing inputs to produce first")
    parser.add_argument("--data", default=os.environ.get("OPTIRAG_DATA", str(REPO.parent / "shared" / "data")),
                        help="root of the raw datasets (for an empty lake)")
    parser.add_argument("--raw", action="append", default=[], metavar="DATASET=PATH",
                        help="raw folder of one dataset (default: <data>/<shared folder name>)")
    parser.add_argument("--env", default=default_env())
    parser.add_argument("--seeds", type=int, default=1,
                        help="tuning seeds per LLM run (the config's seed + replicas) for mean ± std")
    parser.add_argument("--dry-run", action="store_true", help="print the jobs it would run, run nothing")
    args = parser.parse_args()
    from optirag.reporting.build import build_report
    from optirag.environment import environment
    from optirag.reporting.inputs import read_inputs
    from optirag.reporting.manifest import read_manifests
    from optirag.reporting.jobs_log import JobsLog, read_jobs
    from optirag.reporting.missing import RAW_FOLDERS, plan, run_missing

    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    raw = {d: str(Path(args.data) / f) for d, f in RAW_FOLDERS.items() if (Path(args.data) / f).is_dir()}
    raw.update(dict(item.split("=", 1) for item in args.raw))
    reports = Path(args.reports)
    if args.dry_run:
        for chain in plan(reports, args.lake, datasets, raw, args.train, args.seeds):
            print("\n".join(" ".join(["python", *cmd[1:]]) for cmd in chain), end="\n\n")
        return 0
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    jobs_log = JobsLog(reports, args.lake, datasets)
    _, problems, skipped = run_missing(reports, args.lake, datasets, raw, args.train, n_seeds=args.seeds,
                                       on_job=jobs_log.record)
    inputs = read_inputs(reports, datasets)
    inputs.llm_skipped = skipped
    inputs.manifest, manifest_problems = read_manifests(args.lake, datasets, args.env)
    inputs.problems = problems + manifest_problems
    build_report(inputs, environment(), reports, read_jobs(reports))
    print(f"report: {reports / 'REPORT.md'}")
    return 0


if __name__ == "__main__":
    run_job("report", main)
