"""Tuning as prompts vs with shared prefixes: all-in speed and test AUC on the same rows.

python -m jobs.bench_tuning_paths --dataset movielens100k --lake /tmp/lake --variant gcn --n 2000 --targets-per-prefix 8,16
Tunes the variant's scorer with the recipe's settings on the same n training rows (whole
runs of max-k consecutive samples of a user): once as prompts of their own, then with k
targets behind each shared prefix for each k; scores the whole test split with each and
merges every path, its all-in speedup and its paired AUC difference against the prompt path
into reports/bench/tuning_paths.json.
"""
import argparse
import json
from pathlib import Path

from optirag.cli import run_job
from optirag.config import add_common_args, config_from_args
from optirag.prompts.config import VARIANTS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--variant", default="gcn", choices=VARIANTS)
    parser.add_argument("--n", type=int, default=None, help="training rows (default: every prompt)")
    parser.add_argument("--targets-per-prefix", default="8,16", help="comma list of k >= 2")
    parser.add_argument("--out", default="reports/bench", help="folder of tuning_paths.json")
    parser.add_argument("--no-test", action="store_true",
                        help="speed only: skip scoring the test split (no AUC; runs[\"n<n>_speed\"])")
    args = parser.parse_args()
    if args.n is not None and args.n < 1:
        parser.error("--n must be a positive number of rows")
    try:
        ks = [int(k) for k in args.targets_per_prefix.split(",") if k.strip()]
    except ValueError:
        parser.error(f"--targets-per-prefix: {args.targets_per_prefix!r} is not a comma list of integers")
    cfg = config_from_args(args)
    from optirag.spark import get_spark
    from optirag_bench.tuning_paths import compare_paths

    record = compare_paths(get_spark(cfg), cfg, args.variant, args.n, ks,
                           Path(args.out) / "tuning_paths.json", score_test=not args.no_test)
    print(json.dumps({"n": record["n"], "paths": record["paths"]}, indent=2))
    return 0


if __name__ == "__main__":
    run_job("bench_tuning_paths", main)
