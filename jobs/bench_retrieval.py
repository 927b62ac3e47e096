"""GCN retriever vs LLM retriever wall time, search throughput and search scaling (make bench-retrieval).

python -m jobs.bench_retrieval --dataset bookcrossing --lake /tmp/lake [--users 500] [--threads 1]
Needs an ingested lake (jobs.ingest). Writes <out>/retrieval_<dataset>.json and .png.
"""
import argparse
import json
import os

from optirag.cli import run_job
from optirag.config import add_common_args, config_from_args


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--users", type=int, default=500, help="users both retrievers embed and search")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both retrievers")
    parser.add_argument("--sizes", default="10000,100000,1000000", help="synthetic users for the scaling curve")
    parser.add_argument("--queries", type=int, default=10_000, help="queries per scaling point")
    parser.add_argument("--out", default="reports/bench")
    args = parser.parse_args()
    cfg = config_from_args(args)
    edges = f"{cfg.dataset_lake()}/edges"
    if "://" not in edges and not os.path.isdir(edges):
        raise FileNotFoundError(f"no ingested lake at {cfg.dataset_lake()}: run jobs.ingest "
                                f"(make ingest LAKE={cfg.lake}) first")
    from optirag_bench.retrieval import run_retrieval_bench
    from optirag.spark import get_spark

    result = run_retrieval_bench(get_spark(cfg), cfg, args.out, args.users, args.threads,
                                 tuple(int(s) for s in args.sizes.split(",")), args.queries,
                                 echo=lambda m: print(f"[bench_retrieval] {m}", flush=True))
    print(json.dumps({k: v for k, v in result.items() if k != "scaling_detail"}, indent=2))
    print(f"report: {os.path.join(args.out, f'retrieval_{cfg.dataset.name}.json')}")
    return 0


if __name__ == "__main__":
    run_job("bench_retrieval", main)
