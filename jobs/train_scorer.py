"""Few-shot LoRA tuning of the LLM CTR scorer on a prompt variant's training prompts.

python -m jobs.train_scorer --dataset bookcrossing --lake /tmp/lake --variant gcn
Saves a model version under <models>/scorer/<variant>/<model_version>/ (safetensors +
meta.json with the data version, the prompts config and the retriever version).
--seed N (other than model.tuning.seed) tunes a seed replica instead, under
<models>/scorer_seeds/<variant>/seed=N/ (never scored or promoted; the report's spread).
"""
import argparse
import json

from optirag.cli import run_job
from optirag.config import add_common_args, config_from_args
from optirag.prompts.config import VARIANTS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    parser.add_argument("--seed", type=int, default=None, help="tuning seed (default model.tuning.seed)")
    args = parser.parse_args()
    cfg = config_from_args(args)
    from optirag.evaluation.tuning_job import train_scorer
    from optirag.spark import get_spark

    print(json.dumps(train_scorer(get_spark(cfg), cfg, args.variant, args.seed), indent=2))
    return 0


if __name__ == "__main__":
    run_job("train_scorer", main)
