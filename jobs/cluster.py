"""The local Spark + Ray clusters of conf/env/localcluster.yaml, and what jobs ship to a cluster.

python -m jobs.cluster up     [--state-dir DIR]   # start what is not running; wait until all are alive
python -m jobs.cluster down   [--state-dir DIR]   # stop exactly what `up` started (pid files)
python -m jobs.cluster status [--state-dir DIR]
python -m jobs.cluster dist                       # dist/optirag.zip + dist/jars (spark-submit ships them)
python -m jobs.cluster site                       # `make setup`: Ray's dashboard deps for the cluster only
See optirag.localcluster and optirag.orchestration.dist.
"""
import argparse
import json
from pathlib import Path

from optirag.cli import run_job

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["up", "down", "status", "dist", "site"])
    parser.add_argument("--state-dir", help="pid files, logs, work dirs (default: localcluster.state_dir)")
    args = parser.parse_args()
    if args.action == "dist":
        from optirag.config import load_config
        from optirag.orchestration.dist import build_dist

        print(json.dumps(build_dist(REPO, load_config("bookcrossing").spark), indent=1))
        return 0
    from optirag import localcluster

    if args.action == "site":
        print(f"cluster site {localcluster.cluster_site()}: installed {localcluster.install_cluster_site() or 'nothing new'}")
        return 0
    ccfg = localcluster.load_cluster_config(args.state_dir)
    if args.action == "up":
        localcluster.up(ccfg)
    elif args.action == "down":
        localcluster.down(ccfg)
    print(json.dumps(localcluster.status(ccfg)))
    return 0


if __name__ == "__main__":
    run_job("cluster", main)
