"""The scorer's learning curve: test AUC and wall time against the training set size.

python -m jobs.bench_tuning --dataset bookcrossing --lake /tmp/lake --variant gcn --sizes 256,1000,4000,all
Tunes the variant's scorer with the recipe's settings on the first n of its seeded training
prompts for each n (nothing is saved), scores the whole test split, and merges the points
into reports/bench/tuning.json. `all` is the production scorer's training set (every prompt,
or the recipe's evaluation.train_examples); a size the eval file's production run (jobs.evaluate)
was tuned on is read from there instead of tuned again.
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
    parser.add_argument("--sizes", default="256,1000,4000,all", help="comma list of ints and/or 'all'")
    parser.add_argument("--out", default="reports/bench", help="folder of tuning.json")
    parser.add_argument("--scores", type=Path, default=None,
                        help="folder for each point's test scores per sample (paired comparisons)")
    args = parser.parse_args()
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    bad = [s for s in sizes if s != "all" and not (s.isdigit() and int(s) > 0)]
    if bad:
        parser.error(f"--sizes: {bad} are neither positive integers nor 'all'")
    cfg = config_from_args(args)
    from optirag_bench.learning_curve import learning_curve
    from optirag.spark import get_spark

    record = learning_curve(get_spark(cfg), cfg, args.variant, sizes, Path(args.out) / "tuning.json",
                            args.scores)
    print(json.dumps({"training_examples_per_s": record["training_examples_per_s"],
                      "curve": [{k: p[k] for k in ("n", "test_auc", "test_auc_ci95", "train_seconds")}
                                for p in record["curve"]]}, indent=2))
    return 0


if __name__ == "__main__":
    run_job("bench_tuning", main)
