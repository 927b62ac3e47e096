"""Evaluate the tuned scorers with early exit on the evaluation's valid/test rows.

python -m jobs.evaluate_early_exit --dataset bookcrossing --lake /tmp/lake --variants gcn,none
Needs each variant's tuned scorer and its exit heads (jobs.train_scorer, train_exit_heads).
The exit rule (tau, m) is chosen on valid and applied to test; scores and exit layers go to
`eval_scores`, the metrics to reports/eval/<dataset>.json as run <variant>+ee. --seed N:
the seed replicas' scorers and heads (train_scorer / train_exit_heads --seed N), run
<variant>+ee/seed=N. The report's early-exit rows read these runs.
"""
import argparse
import json

from optirag.cli import run_job
from optirag.config import add_common_args, config_from_args


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--variants", default="gcn", help="comma-separated prompt variants")
    parser.add_argument("--seed", type=int, default=None,
                        help="evaluate the seed replicas tuned with this seed")
    args = parser.parse_args()
    cfg = config_from_args(args)
    from optirag.evaluation.early_exit_job import evaluate_early_exit
    from optirag.spark import get_spark

    report = evaluate_early_exit(get_spark(cfg), cfg, args.variants.split(","), args.seed)
    print(json.dumps({"runs": {k: {s: m["auc"] for s, m in r["metrics"].items()}
                               for k, r in report["runs"].items() if "+ee" in k},
                      "skipped": report["skipped"]}, indent=2))
    return 0


if __name__ == "__main__":
    run_job("evaluate_early_exit", main)
