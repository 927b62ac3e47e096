"""Train the GCN retriever on Ray (or run the LLM-retriever baseline) and write `neighbours`.

python -m jobs.train_retriever --dataset bookcrossing --lake /tmp/lake [--retriever gcn|gcn_last|llm]
    [--set retriever.k=4 ...]
gcn: LightGCN trained in a Ray task, neighbour search as parallel Ray tasks over user
blocks (ray: config section: local ray.init here, address=auto on a cluster). llm: users
embedded with the model: recipe's LLM. Either way the model folder goes to the registry
(<model_store>/retriever/<name>/<version>/) and the Delta table neighbours gets its
partition retriever=<name> replaced. gcn_last (paper Table 3, "Last Layer") retrieves with
the last LightGCN layer instead of the layer average; it reuses the gcn model's layers when
their data and training settings match (else trains). Prints progress and a JSON summary.
"""
import argparse
import json

from optirag.cli import run_job
from optirag.config import add_common_args, config_from_args
from optirag.retrieval.config import GCN_PRESETS, RETRIEVERS


def _load_torch_first() -> None:
    """Load torch and run its BLAS once before the JVM and Ray start their threads.

    As a `ray job submit` driver on the local clusters, the first BLAS call after a Spark
    session and a Ray connection sometimes aborted the process ("Intel oneMKL FATAL ERROR:
    Cannot load .../libtorch_cpu.so"): 3 of 3 cluster-test runs on 2026-12-01, 1 of ~10
    bare repros later. The cause inside MKL is not isolated; with torch loaded first it has
    not recurred (docs/operations.md, reports/notes/runs.md)."""
    import torch

    torch.ones(8, 8) @ torch.ones(8, 8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--retriever", choices=RETRIEVERS, default="gcn")
    args = parser.parse_args()
    cfg = config_from_args(args)
    if args.retriever in GCN_PRESETS:   # the preset wins over --set for the keys it names
        cfg.retriever = {**cfg.retriever, **GCN_PRESETS[args.retriever]}
    # Heavy imports after argument parsing: --help and bad arguments answer at once.
    if args.retriever in GCN_PRESETS:
        _load_torch_first()
    from optirag.retrieval import job
    from optirag.spark import get_spark

    spark = get_spark(cfg)
    echo = lambda msg: print(f"[train_retriever {args.retriever}] {msg}", flush=True)  # noqa: E731
    if args.retriever in GCN_PRESETS:
        from optirag.ray_session import init_ray

        summary = job.train_gcn(spark, cfg, init_ray(cfg.ray), echo,
                                layers_from="gcn" if args.retriever != "gcn" else None)
    else:
        summary = job.train_llm(spark, cfg, echo)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    run_job("train_retriever", main)
