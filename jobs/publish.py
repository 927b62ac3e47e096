"""Publish one score date (after its quality gate): replace its row in `published`.

python -m jobs.publish --dataset bookcrossing --lake /tmp/lake --date 2026-11-23
Idempotent; exits 2 with a one-line reason when the date has no scores.
"""
import argparse
import json

from optirag.cli import run_job
from optirag.config import add_common_args, config_from_args


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, date=True)
    args = parser.parse_args()
    cfg = config_from_args(args)
    from optirag.orchestration.publish import publish

    print(json.dumps(publish(cfg, args.date), sort_keys=True))
    return 0


if __name__ == "__main__":
    run_job("publish", main)
