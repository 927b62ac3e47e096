"""Tuning as prompts vs with shared prefixes: all-in speed and test AUC on the same rows.

python -m jobs.bench_tuning_paths --dataset movielens100k --lake /tmp/lake --variant gcn --n 4000 --targets-per-prefix 8
Tunes the variant's scorer twice with the recipe's settings on the same n training rows
(whole runs of k consecutive samples of a user): once as prompts of their own, once with
k targets behind each shared prefix; scores the whole test split with each and merges both,
the all-in speedup and the paired AUC difference into reports/bench/tuning_paths.json.
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
    parser.add_argument("--targets-per-prefix", type=int, default=8)
    parser.add_argument("--out", default="reports/bench", help="folder of tuning_paths.json")
    args = parser.parse_args()
    if args.n is not None and args.n < 1:
        parser.error("--n must be a positive number of rows")
    cfg = config_from_args(args)
    from optirag.spark import get_spark
    from optirag_bench.tuning_paths import compare_paths

    record = compare_paths(get_spark(cfg), cfg, args.variant, args.n, args.targets_per_prefix,
                           Path(args.out) / "tuning_paths.json")
    print(json.dumps({k: record[k] for k in ("n", "targets_per_prefix", "prefixes", "prompt", "packed",
                                             "all_in_speedup", "packed_minus_prompt")}, indent=2))
    return 0


if __name__ == "__main__":
    run_job("bench_tuning_paths", main)
