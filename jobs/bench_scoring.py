"""Benchmark of the nightly scorer: shared prefix x early exit, actors, memory, roofline.

python -m jobs.bench_scoring --dataset bookcrossing --lake /tmp/lake
Needs the lake's candidates for --date (built if missing), and a scorer + exit heads of
scoring.variant (see docs/benchmarks.md). Writes reports/bench/scoring.json and scoring.png.
With --device-bundle DIR it only exports what jobs.bench_device times on a GPU worker.
"""
import argparse
import json

from optirag.cli import run_job
from optirag.config import add_common_args, config_from_args


def add_row_args(parser: argparse.ArgumentParser) -> None:
    """The bench rows: the first --users users with --candidates-per-user candidates on --date
    (shared with jobs.bench_peers, which times its scorers on the same rows)."""
    parser.add_argument("--date", default="2026-01-01", help="candidate date used by the bench")
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--candidates-per-user", type=int, default=50)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    add_row_args(parser)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--job-rows", type=int, default=400, help="rows per Ray-job actor run (0: no Ray-job runs)")
    parser.add_argument("--memory-rows", default="10000,100000")
    parser.add_argument("--memory-model", default="tiny", help="model recipe for the memory runs")
    parser.add_argument("--out", default="reports/bench/scoring.json")
    parser.add_argument("--device-bundle", default=None, metavar="DIR",
                        help="only export the rows + scorer delta + heads a GPU worker times "
                             "with jobs.bench_device, then stop")
    args = parser.parse_args()
    cfg = config_from_args(args)
    from optirag_bench.scoring_job import export_device_bundle, run_bench

    if args.device_bundle:
        print(json.dumps(export_device_bundle(cfg, args)))
        return 0

    result = run_bench(cfg, args)
    print(json.dumps({k: v for k, v in result.items() if k not in ("variants",)}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    run_job("bench_scoring", main)
