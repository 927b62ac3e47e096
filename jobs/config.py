"""Print a run's effective configuration: every layer merged, validated, every default filled in.

python -m jobs.config --dataset movielens100k --env demo --model cpu-small+demo
python -m jobs.config --dataset bookcrossing --set scoring.batch_size=8 --explain
The output is YAML; --explain ends each key with a comment naming the layer that set it
(base.yaml, datasets/<d>.yaml, env/<e>.yaml, models/<m>.yaml [per_dataset.<d>], --set, or
default (code)). Exits 2 with a one-line reason when the config does not validate.
"""
import argparse

from optirag.cli import run_job
from optirag.config import add_common_args
from optirag.effective_config import show_config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, need_lake=False)
    parser.add_argument("--explain", action="store_true", help="name the layer that set each key")
    args = parser.parse_args()
    print(show_config(args.dataset, args.env, args.model, args.overrides, args.lake, args.explain), end="")
    return 0


if __name__ == "__main__":
    run_job("config", main)
