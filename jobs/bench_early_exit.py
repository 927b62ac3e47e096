"""Benchmark of multi-head early exit on the valid/test prompts of each dataset.

python -m jobs.bench_early_exit --lake /tmp/lake [--datasets bookcrossing,movielens100k] [--variants gcn,none]
Needs, per dataset, the variant's prompts, tuned scorer and exit heads (jobs.build_prompts,
train_scorer, train_exit_heads). Updates reports/bench/early_exit.json (results of other
datasets and variants already there are kept) and draws the gcn sweeps as PNGs.
"""
import argparse
import json
import os
import time
from pathlib import Path

from optirag.cli import run_job
from optirag.config import load_config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lake", required=True)
    parser.add_argument("--datasets", default="bookcrossing,movielens100k")
    parser.add_argument("--env", default=os.environ.get("OPTIRAG_ENV", "local"))
    parser.add_argument("--model", default=os.environ.get("OPTIRAG_MODEL", "cpu-small"))
    parser.add_argument("--variants", default="gcn", help="comma list; gcn is the one swept and plotted")
    parser.add_argument("--max-rows", type=int, default=300, help="valid/test rows per dataset")
    parser.add_argument("--timing-rows", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--taus", default=None, help="comma list; default early_exit.calibration.taus")
    parser.add_argument("--windows", default=None, help="comma list; default early_exit.calibration.windows")
    parser.add_argument("--ks", default="0,2,4", help="retrieved users for the k sweep")
    parser.add_argument("--k-rows", type=int, default=120, help="test rows of the k sweep")
    parser.add_argument("--max-auc-loss", type=float, default=None,
                        help="AUC/100 the chosen rule may lose on valid; default early_exit.calibration")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default="reports/bench")
    args = parser.parse_args()
    import torch

    from optirag.early_exit import bench
    from optirag.spark import get_spark

    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "early_exit.json"
    # results of other datasets / variants already in the file are kept (merge_result)
    doc = json.loads(path.read_text()) if path.is_file() else {}
    for name in args.datasets.split(","):
        cfg = load_config(name, env=args.env, model=args.model, lake=args.lake, overrides=args.overrides)
        for variant in args.variants.split(","):
            print(f"== {name} / {variant}", flush=True)
            result = bench.bench_dataset(
                get_spark(cfg), cfg, variant, args.max_rows, args.timing_rows, args.repeats,
                args.taus and [float(t) for t in args.taus.split(",")],
                args.windows and [int(m) for m in args.windows.split(",")],
                args.max_auc_loss, [int(k) for k in args.ks.split(",") if k], args.k_rows)
            print(json.dumps({k: result[k] for k in ("auc_full", "auc_exit", "mean_exit_layer",
                              "flops_ratio", "throughput_ratio", "compaction_efficiency")}), flush=True)
            bench.merge_result(doc, result)
            doc["created_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            path.write_text(json.dumps(doc, indent=2, default=float) + "\n")   # after each run: nothing lost
    primary = {n: r for n, r in doc.get("datasets", {}).items() if r.get("variant") == bench.PRIMARY}
    print("plots:", bench.plot(primary, out))
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    run_job("bench_early_exit", main)
