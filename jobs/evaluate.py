"""Evaluate the tuned scorers (and the zero-shot base model) on the valid and test prompts.

python -m jobs.evaluate --dataset bookcrossing --lake /tmp/lake --variants none,gcn
Writes every score to `eval_scores` and the metrics to reports/eval/<dataset>.json; a
variant with no tuned scorer or no prompts is skipped with a message. --seed N evaluates
the variants' seed replicas (jobs.train_scorer --seed N), run keys <variant>/seed=N.
"""
import argparse
import json

from optirag.cli import run_job
from optirag.config import add_common_args, config_from_args


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--variants", default=None, help="comma-separated; default evaluation.variants")
    parser.add_argument("--zero-shot", action=argparse.BooleanOptionalAction, default=True,
                        help="also score evaluation.zero_shot_variants with the untuned model")
    parser.add_argument("--scorer-version", default=None,
                        help="evaluate this scorer version (one variant); default: promoted, else newest")
    parser.add_argument("--seed", type=int, default=None,
                        help="evaluate the seed replicas tuned with this seed (no zero-shot run)")
    args = parser.parse_args()
    cfg = config_from_args(args)
    from optirag.evaluation.job import evaluate
    from optirag.spark import get_spark

    variants = args.variants.split(",") if args.variants else None
    report = evaluate(get_spark(cfg), cfg, variants, args.zero_shot, args.scorer_version, args.seed)
    print(json.dumps({"runs": {k: {s: m["auc"] for s, m in r["metrics"].items()}
                               for k, r in report["runs"].items()},
                      "skipped": report["skipped"]}, indent=2))
    return 0


if __name__ == "__main__":
    run_job("evaluate", main)
