"""Benchmark of multi-head early exit on the valid/test prompts of each dataset.

python -m jobs.bench_early_exit --lake /tmp/lake [--datasets bookcrossing,movielens100k] [--variants gcn,none]
Needs, per dataset, the variant's prompts, tuned scorer and exit heads (jobs.build_prompts,
train_scorer, train_exit_heads). Updates reports/bench/early_exit.json (results of other
datasets and variants already there are kept) and draws the gcn sweeps as PNGs.

--head-recipes lr0=1e-3,1e-2 epochs=3,30 distill=0,0.5: instead, which exit-head training
recipe (every combination, on the scorer's cached features) lets the rule chosen on valid
exit early: head AUCs, AUC and FLOPs ratio on valid only -> reports/bench/exit_head_recipes.json.
"""
import argparse
import json
import time
from pathlib import Path

from optirag.cli import run_job
from optirag.config import config_from_args, default_env, default_model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lake", required=True)
    parser.add_argument("--datasets", default="bookcrossing,movielens100k")
    parser.add_argument("--env", default=default_env())
    parser.add_argument("--model", default=default_model())
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
    parser.add_argument("--head-recipes", nargs="+", default=None, metavar="KEY=V1,V2",
                        help="sweep exit-head recipes (keys lr0, epochs, distill) instead")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default="reports/bench")
    args = parser.parse_args()
    import torch

    from optirag_bench import early_exit as bench
    from optirag.spark import get_spark

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.head_recipes:   # no timing here: every core collects the features
        return sweep_recipes(args, out)
    torch.set_num_threads(1)
    path = out / "early_exit.json"
    # results of other datasets / variants already in the file are kept (merge_result)
    doc = json.loads(path.read_text()) if path.is_file() else {}
    for name, variant, cfg in _runs(args):
        print(f"== {name} / {variant}", flush=True)
        result = bench.bench_dataset(
            get_spark(cfg), cfg, variant, args.max_rows, args.timing_rows, args.repeats,
            args.taus and [float(t) for t in args.taus.split(",")],
            args.windows and [int(m) for m in args.windows.split(",")],
            args.max_auc_loss, [int(k) for k in args.ks.split(",") if k], args.k_rows)
        print(json.dumps({k: result[k] for k in ("auc_full", "auc_exit", "mean_exit_layer",
                          "flops_ratio", "throughput_ratio", "compaction_efficiency")}), flush=True)
        _save(path, bench.merge_result(doc, result))
    primary = {n: r for n, r in doc.get("datasets", {}).items() if r.get("variant") == bench.PRIMARY}
    print("plots:", bench.plot(primary, out))
    print(f"report: {path}")
    return 0


def _runs(args):
    """(dataset, variant, config) for every dataset x variant asked for."""
    for name in args.datasets.split(","):
        cfg = config_from_args(args, dataset=name)
        for variant in args.variants.split(","):
            yield name, variant, cfg


def _save(path: Path, doc: dict) -> None:
    """Written after each run: nothing measured is lost to a later failure."""
    doc["created_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    path.write_text(json.dumps(doc, indent=2, default=float) + "\n")


def sweep_recipes(args, out: Path) -> int:
    from optirag_bench.exit_recipes import recipe_grid, sweep_head_recipes
    from optirag.spark import get_spark

    values = {}
    for item in args.head_recipes:
        key, _, listed = item.partition("=")
        cast = int if key == "epochs" else float
        values[key] = [cast(v) for v in listed.split(",") if v]
    recipes = recipe_grid(values)
    path = out / "exit_head_recipes.json"
    doc = json.loads(path.read_text()) if path.is_file() else {}
    for name, variant, cfg in _runs(args):
        print(f"== {name} / {variant}: {len(recipes)} head recipes", flush=True)
        result = sweep_head_recipes(get_spark(cfg), cfg, variant, recipes, args.max_auc_loss)
        for r in result["recipes"]:
            print(json.dumps({k: r[k] for k in (*values, "valid_auc", "valid_flops_ratio")}), flush=True)
        doc.setdefault("datasets", {}).setdefault(name, {})[variant] = result
        _save(path, doc)
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    run_job("bench_early_exit", main)
