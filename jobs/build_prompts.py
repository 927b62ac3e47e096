"""Build the scorer prompts (instruction + retrieved users + history + target) into `prompts`.

python -m jobs.build_prompts --dataset bookcrossing --lake /tmp/lake --variant all
`all`: `none` plus each retriever (llm, gcn, gcn_last) whose neighbours exist. A variant's partition
is replaced whole; prints one JSON summary per variant (tokens, cold users, wall time).
"""
import argparse
import json

from optirag.cli import run_job
from optirag.config import add_common_args, config_from_args
from optirag.prompts.config import VARIANTS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--variant", choices=[*VARIANTS, "all"], default="all")
    parser.add_argument("--splits", default="train,valid,test", help="comma-separated")
    args = parser.parse_args()
    cfg = config_from_args(args)
    from optirag.prompts.builder import available_variants, build_prompts
    from optirag.spark import get_spark

    spark = get_spark(cfg)
    variants = available_variants(spark, cfg) if args.variant == "all" else [args.variant]
    for variant in variants:
        print(json.dumps(build_prompts(spark, cfg, variant, args.splits.split(",")), indent=2))
    return 0


if __name__ == "__main__":
    run_job("build_prompts", main)
