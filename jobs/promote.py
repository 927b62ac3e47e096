"""Promote the newest scorer (and its exit heads) if its valid AUC is not worse than the
promoted version's beyond orchestration.promote_tolerance; otherwise say why not.

python -m jobs.promote --dataset bookcrossing --lake /tmp/lake [--variant gcn]
Exits 0 either way (not promoting is a decision, not an error); 2 when a version lacks
valid scores (run jobs.evaluate).
"""
import argparse
import json

from optirag.cli import run_job
from optirag.config import add_common_args, config_from_args


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--variant", help="scorer variant (default: orchestration.variant)")
    args = parser.parse_args()
    cfg = config_from_args(args)
    from optirag.orchestration.promote import promote_if_better

    decision = promote_if_better(cfg, args.variant)
    print(json.dumps(decision, sort_keys=True, default=str))
    print(f"promote: {'PROMOTED' if decision['promoted'] else 'kept'} {decision['candidate']}: {decision['reason']}")
    return 0


if __name__ == "__main__":
    run_job("promote", main)
