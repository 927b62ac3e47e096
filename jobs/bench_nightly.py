"""The nightly job against its engine on the same scorer and machine (reports/bench/nightly_scale.json).

python -m jobs.bench_nightly --dataset bookcrossing --lake /tmp/lake --model cpu-small+demo \
    --date 2026-12-01 --users 100 --candidates-per-user 50
Builds the date's candidates when it has none (--users x --candidates-per-user), times the
scoring bench's shared-prefix + exit-rule variant on the first --engine-users users, runs
jobs.score over the whole date (full re-score, the env's pool) and, with --again, once more
incrementally; writes rows/s of each, their ratio, the job's stages and peak memory.

python -m jobs.bench_nightly --dataset bookcrossing --lake /tmp/lake --model cpu-small+demo --env demo \
    --date 2026-12-08 --users 100 --drop ../shared/data/bookcrossing --drop-users-share 0.05
Instead: two nightly chains (optirag.orchestration.nightly, the DAG's steps), the first on the
raw files less one rating of a seeded share of the users, the second, next date, on all of
them: the share of rows the incremental night re-scores (optirag_bench.raw_drop).
"""
import argparse
import json
from pathlib import Path

from optirag.cli import run_job
from optirag.config import add_common_args, config_from_args


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, date=True)
    parser.add_argument("--users", type=int, default=100, help="users of the date's candidates, if built here")
    parser.add_argument("--candidates-per-user", type=int, default=50)
    parser.add_argument("--engine-users", type=int, default=4, help="users the engine is timed on")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--again", action="store_true", help="score the date again, incrementally")
    parser.add_argument("--out", default="reports/bench/nightly_scale.json")
    parser.add_argument("--drop", metavar="RAW", help="raw files: measure a night after a small drop instead")
    parser.add_argument("--drop-users-share", type=float, default=0.05, help="users who rate one more item")
    parser.add_argument("--seed", type=int, default=0, help="which users and ratings the drop holds")
    parser.add_argument("--drop-reverse", action="store_true",
                        help="--date is scored on all of RAW: one night, the next date, without the drop")
    parser.add_argument("--variant", default="gcn", choices=["none", "llm", "gcn"])
    parser.add_argument("--sizing", action="store_true",
                        help="only (re)write the sizing block from the runs and incremental nights in --out")
    args = parser.parse_args()
    if not 0 < args.drop_users_share < 1:
        parser.error("--drop-users-share must be in (0, 1)")
    for name in ("users", "candidates_per_user", "engine_users", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    cfg = config_from_args(args)
    if args.sizing:
        from optirag_bench.raw_drop import write_sizing

        print(json.dumps(write_sizing(args, Path(args.out)), indent=1))
        return 0
    if args.drop:
        from optirag_bench.raw_drop import run_drop_bench

        record = run_drop_bench(args, Path(args.out))
        print(json.dumps({k: v for k, v in record.items() if k != "environment"}, indent=1))
        return 0
    from optirag_bench.nightly import run_nightly_bench

    record = run_nightly_bench(cfg, args, Path(args.out))
    print(json.dumps({k: record[k] for k in ("rows", "job_rows_per_s", "scoring_rows_per_s",
                                             "engine_rows_per_s", "ratio", "scoring_ratio")}, indent=1))
    return 0


if __name__ == "__main__":
    run_job("bench_nightly", main)
