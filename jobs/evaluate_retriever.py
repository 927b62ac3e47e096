"""Retrieval quality on held-out (valid/test) targets: hit rate / recall of the neighbours' items.

python -m jobs.evaluate_retriever --dataset movielens100k --lake /tmp/lake [--out reports/eval]
Compares the GCN layer choices (average of layers 1..K, with layer 0, last layer) with
random neighbours, and scores the neighbours tables the gcn and llm jobs wrote. Writes
<out>/retrieval_<dataset>.json and prints it.
"""
import argparse
import json
import os

from optirag.cli import run_job
from optirag.config import add_common_args, config_from_args


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--out", default="reports/eval", help="folder of the JSON report")
    parser.add_argument("--retrievers", default="gcn,llm", help="neighbours partitions to score")
    parser.add_argument("--seed", type=int, default=0, help="random-neighbour floor")
    args = parser.parse_args()
    cfg = config_from_args(args)
    from optirag.retrieval.evaluation import evaluate_dataset
    from optirag.spark import get_spark

    # no trained model: registry.ModelNotFoundError, a one-line error (cli.run_job)
    report = evaluate_dataset(get_spark(cfg), cfg, tuple(args.retrievers.split(",")), args.seed)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"retrieval_{cfg.dataset.name}.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    run_job("evaluate_retriever", main)
