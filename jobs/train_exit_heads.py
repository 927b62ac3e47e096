"""Train the multi-head early-exit heads of a tuned scorer (paper 5.2).

python -m jobs.train_exit_heads --dataset bookcrossing --lake /tmp/lake --variant gcn
The scorer `scorer/<variant>` (promoted, else newest; --scorer-version base = untuned) is
frozen; one head per exit layer (early_exit.exit_layers) is trained on the variant's
training prompts with lr = lr0 * exp(-beta * depth) per head, and saved as safetensors
under the model store (`exit_heads/<variant>/<version>`). --seed N: the same for the seed
replica tuned with N (jobs.train_scorer --seed N), under exit_heads_seeds/<variant>/seed=N.
"""
import argparse
import json

from optirag.cli import run_job
from optirag.config import add_common_args, config_from_args
from optirag.prompts.config import VARIANTS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--variant", default="gcn", choices=VARIANTS)
    parser.add_argument("--scorer-version", default=None)
    parser.add_argument("--max-examples", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None,
                        help="heads for the scorer's seed replica tuned with this seed")
    args = parser.parse_args()
    cfg = config_from_args(args)
    from optirag.early_exit.job import train_heads
    from optirag.spark import get_spark

    summary = train_heads(get_spark(cfg), cfg, args.variant, args.scorer_version, args.max_examples,
                          args.seed)
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    run_job("train_exit_heads", main)
