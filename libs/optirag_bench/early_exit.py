"""`make bench-early-exit`: accuracy and speed of multi-head early exit (paper Table 4,
Figures 3-5) on a dataset's valid/test prompts.

1. One full forward per batch gives every exit head's P(Yes) (``exit_probabilities``) on
   valid and test; rules are then replayed offline (``simulate_exits``), which is exact:
   the engine's score for a row is its head's score at its exit layer (parity-tested).
   From that: AUC at full depth and with exit, mean exit layer, layer-FLOPs ratio, and the
   tau / window sweeps; (tau, m) is chosen on valid and applied to test, the way
   jobs.train_exit_heads chooses the served rule (optirag.early_exit.calibration).
2. Wall clock: the engine with exits off vs on, same rows, same batch size, interleaved
   repeats, medians -> throughput ratio and the compaction efficiency (measured speedup /
   the ideal speedup 1 / layer-FLOPs ratio).
   Both scales of the heads' P(Yes) are compared on the same rows: raw, and Platt-rescaled
   on valid (``scales``: the rule chosen on valid and its test AUC / FLOPs ratio for each).
3. k sweep (number of retrieved users): prompts rebuilt with prompts.k = 0..k_max for the
   test rows, scored with exits on.
"""
from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import torch
from pyspark.sql import functions as F

from optirag import registry
from optirag.early_exit.calibration import calibrate_scaled, head_aucs, p_matrix, replay
from optirag.early_exit.config import EarlyExitConfig
from optirag.early_exit.engine import score_prompts_early_exit
from optirag.early_exit.heads import load_exit_heads
from optirag.early_exit.job import early_exit_config, load_variant_scorer, prompt_rows
from optirag.early_exit.platt import rescale_columns
from optirag.early_exit.rules import build_rule, never_exit
from optirag.evaluation.metrics import auc_or_none
from optirag.prompts.builder import prompt_frame


def sweep(p: torch.Tensor, labels: np.ndarray, exit_layers: list[int], num_layers: int,
          base: EarlyExitConfig, taus: list[float], windows: list[int]) -> dict[str, list]:
    out: dict[str, list] = {"tau": [], "window": []}
    for tau in taus:
        cfg = base.model_copy(update={"tau": tau})
        out["tau"].append({"tau": tau, **replay(p, labels, exit_layers, num_layers, cfg)})
    for m in windows:
        cfg = base.model_copy(update={"window": m, "min_previous": min(base.required_previous, m)})
        out["window"].append({"window": m, **replay(p, labels, exit_layers, num_layers, cfg)})
    return out


def on_scale(pv: torch.Tensor, yv: np.ndarray, pt: torch.Tensor, yt: np.ndarray, exit_layers: list[int],
             num_layers: int, base: EarlyExitConfig, platt: bool, taus=None, windows=None,
             max_auc_loss=None) -> dict[str, Any]:
    """The rule chosen on valid and its replay on test, on the raw P(Yes) matrices or on
    their Platt rescaling fitted on valid: fits, rescaled test matrix, rule, calibration, test."""
    fits, rule, seen = calibrate_scaled(pv, yv, exit_layers, num_layers, base, platt, taus, windows,
                                        max_auc_loss)
    pt = rescale_columns(pt, fits, exit_layers)
    return {"fits": fits, "pt": pt, "rule": rule, "seen": seen,
            "test": replay(pt, yt, exit_layers, num_layers, rule)}


def time_engine(model, tokenizer, heads, rule, prompts: list[str], batch_size: int,
                max_length: int | None, repeats: int) -> dict[str, Any]:
    """Median seconds of the engine with exits off vs with `rule`, interleaved."""
    runs = {"full": (never_exit, []), "exit": (rule, [])}
    outs = {}
    for _ in range(repeats):
        for name, (r, times) in runs.items():
            t = time.perf_counter()
            outs[name] = score_prompts_early_exit(model, tokenizer, heads, r, prompts, batch_size, max_length)
            times.append(time.perf_counter() - t)
    full, exit_ = statistics.median(runs["full"][1]), statistics.median(runs["exit"][1])
    ratio = outs["exit"].layer_flops_ratio
    return {"rows": len(prompts), "batch_size": batch_size, "repeats": repeats,
            "seconds_full": runs["full"][1], "seconds_exit": runs["exit"][1],
            "samples_per_s_full": len(prompts) / full, "samples_per_s_exit": len(prompts) / exit_,
            "throughput_ratio": full / exit_, "engine_flops_ratio": ratio,
            "compaction_efficiency": (full / exit_) / (1 / ratio) if ratio else None,
            "engine_mean_exit_layer": float(outs["exit"].exit_layer.float().mean())}


def bench_dataset(spark, cfg, variant: str, max_rows: int, timing_rows: int, repeats: int,
                  taus: list[float] | None = None, windows: list[int] | None = None,
                  max_auc_loss: float | None = None, ks: list[int] = (), k_rows: int = 0) -> dict[str, Any]:
    """taus / windows / max_auc_loss: the calibration grid, default early_exit.calibration."""
    ee = early_exit_config(cfg)
    cal = ee.calibration
    taus, windows = cal.taus if taus is None else taus, cal.windows if windows is None else windows
    model, tokenizer, answer, version = load_variant_scorer(cfg, variant)
    heads_dir = registry.resolve(cfg, f"exit_heads/{variant}")
    heads = load_exit_heads(heads_dir, model, answer, version)
    num_layers, layers = heads.num_layers, heads.exit_layers
    batch = 8
    out: dict[str, Any] = {"dataset": cfg.dataset.name, "variant": variant, "model_version": version,
                           "heads_version": heads_dir.name, "n_layers": num_layers,
                           "exit_layers": layers}
    heads.set_platt({})   # raw P(Yes): the Platt fits are refitted on valid below, both ways
    data = {}
    for split in ("valid", "test"):
        rows = prompt_rows(spark, cfg, variant, [split])
        if max_rows and len(rows) > max_rows:  # a fixed, seeded subset (sorted by sample_id)
            rows = rows.sample(n=max_rows, random_state=0).sort_values("sample_id")
        started = time.perf_counter()
        p = p_matrix(model, tokenizer, heads, rows["text"].tolist(), batch, None)
        data[split] = (p, rows["label"].to_numpy(), rows)
        out[f"{split}_rows"] = len(rows)
        out[f"{split}_forward_seconds"] = time.perf_counter() - started
        out[f"{split}_auc_per_exit_layer"] = head_aucs(p, rows["label"].to_numpy(), layers)
    (pv, yv, _), (pt, yt, test_rows) = data["valid"], data["test"]
    # Both scales on the same rows (raw heads vs Platt-rescaled, early_exit.platt); the
    # config's calibration.platt picks the one the rest of the bench (sweeps, timing) uses.
    scales = {name: on_scale(pv, yv, pt, yt, layers, num_layers, ee, name == "platt", taus, windows,
                             max_auc_loss) for name in ("raw", "platt")}
    out["scales"] = {name: {"tau": r["rule"].tau, "window": r["rule"].window,
                            "valid_auc": r["seen"]["best"]["auc"],
                            "valid_flops_ratio": r["seen"]["best"]["flops_ratio"],
                            "test_auc": r["test"]["auc"], "test_flops_ratio": r["test"]["flops_ratio"],
                            "test_head_auc": head_aucs(r["pt"], yt, layers)}
                     for name, r in scales.items()}
    out["scale"] = "platt" if cal.platt else "raw"
    served = scales[out["scale"]]
    heads.set_platt(served["fits"])
    pt, best_cfg, seen, test = (served[k] for k in ("pt", "rule", "seen", "test"))
    best, valid_grid, full_valid = seen["best"], seen["grid"], seen["auc_full"]
    out.update({
        "auc_full": auc_or_none(yt, pt[:, -1].numpy()), "auc_exit": test["auc"],
        "auc_full_valid": full_valid, "best_on_valid": {"tau": best["tau"], "window": best["window"],
                                                        "valid_auc": best["auc"],
                                                        "valid_flops_ratio": best["flops_ratio"]},
        "mean_exit_layer": test["mean_exit_layer"], "flops_ratio": test["flops_ratio"],
        "exit_share": test["exit_share"],
        "configured_rule": {"tau": ee.tau, "window": ee.window,
                            **replay(pt, yt, layers, num_layers, ee)},
        # test-split sweeps around the chosen setting; the (tau, m) grid it was chosen on
        "sweeps": {**sweep(pt, yt, layers, num_layers, best_cfg, taus, windows),
                   "valid_grid": valid_grid},
    })
    timing = time_engine(model, tokenizer, heads, build_rule(best_cfg),
                         test_rows["text"].tolist()[:timing_rows], batch, None, repeats)
    out.update({"timing": timing, "throughput_ratio": timing["throughput_ratio"],
                "compaction_efficiency": timing["compaction_efficiency"],
                "samples_per_s_full": timing["samples_per_s_full"],
                "samples_per_s_exit": timing["samples_per_s_exit"]})
    if ks and variant != "none":
        ids = test_rows["sample_id"].tolist()[:k_rows] if k_rows else test_rows["sample_id"].tolist()
        out["sweeps"]["k"] = k_sweep(spark, cfg, variant, list(ks), ids, model, tokenizer,
                                             heads, build_rule(best_cfg), batch)
    # samples/s along the sweeps: the measured full-depth rate / (FLOPs ratio / efficiency)
    eff = timing["compaction_efficiency"] or 1.0
    for kind in ("tau", "window"):
        for point in out["sweeps"][kind]:
            point["samples_per_s_estimated"] = timing["samples_per_s_full"] * eff / point["flops_ratio"]
    return out


PRIMARY = "gcn"   # the variant whose sweeps and figures the report shows (paper: GCN retriever)


def merge_result(doc: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """Put one (dataset, variant) result into an early_exit.json document, keeping the rest.

    datasets.<d> is the primary variant's result (sweeps, figures); other variants (Table
    4's "w/o retriever, w/ early exit") live under datasets.<d>.variants.<v>, so a run of
    one variant never drops another's numbers.
    """
    datasets = doc.setdefault("datasets", {})
    name, variant = result["dataset"], result["variant"]
    entry = datasets.get(name) or {}
    others = dict(entry.get("variants") or {})
    if variant == PRIMARY:
        entry = dict(result)
    else:
        others[variant] = result
    if others:
        entry["variants"] = others
    datasets[name] = entry
    primary = {n: r for n, r in datasets.items() if r.get("variant") == PRIMARY}
    doc["sweeps"] = {n: r["sweeps"] for n, r in primary.items()}
    if primary:
        first_name, first = next(iter(primary.items()))
        doc.update({k: first[k] for k in ("auc_full", "auc_exit", "mean_exit_layer", "n_layers",
                                          "flops_ratio", "throughput_ratio", "compaction_efficiency")})
        doc["summary_dataset"] = first_name
    return doc


def plot(results: dict[str, Any], folder) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for kind, xlabel in (("tau", "tau"), ("window", "window m"), ("k", "retrieved users k")):
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
        drawn = False
        for name, res in results.items():
            points = res.get("sweeps", {}).get(kind) or []
            if not points:
                continue
            drawn = True
            xs = [p[kind] for p in points]
            axes[0].plot(xs, [p["auc"] for p in points], marker="o", label=name)
            axes[1].plot(xs, [p.get("samples_per_s_estimated", p.get("samples_per_s", 0))
                              for p in points], marker="o", label=name)
        if not drawn:
            plt.close(fig)
            continue
        axes[0].set_xlabel(xlabel); axes[0].set_ylabel("test AUC")
        axes[1].set_xlabel(xlabel); axes[1].set_ylabel("samples / s")
        if kind == "tau":
            axes[0].set_xscale("symlog", linthresh=1e-3); axes[1].set_xscale("symlog", linthresh=1e-3)
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        path = f"{folder}/early_exit_{kind}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def k_sweep(spark, cfg, variant: str, ks: list[int], sample_ids: list[str], model, tokenizer,
            heads, rule, batch_size: int = 8) -> list[dict[str, Any]]:
    """Test AUC, mean exit layer and samples/s with prompts rebuilt for k retrieved users."""
    points = []
    wanted = spark.createDataFrame([(s,) for s in sample_ids], "sample_id string")
    for k in ks:
        cfg_k = cfg.model_copy(update={"prompts": {**cfg.prompts, "k": k}})
        frame, _ = prompt_frame(spark, cfg_k, variant, ["test"], tokenizer.name_or_path)
        rows = (frame.join(wanted, "sample_id").select("sample_id", "label", "text", "n_tokens")
                .orderBy(F.col("sample_id")).toPandas())
        started = time.perf_counter()
        out = score_prompts_early_exit(model, tokenizer, heads, rule, rows["text"].tolist(), batch_size)
        seconds = time.perf_counter() - started
        points.append({"k": k, "rows": len(rows), "auc": auc_or_none(rows["label"].to_numpy(), out.p_yes.numpy()),
                       "mean_exit_layer": float(out.exit_layer.float().mean()),
                       "flops_ratio": out.layer_flops_ratio, "samples_per_s": len(rows) / seconds,
                       "mean_prompt_tokens": float(rows["n_tokens"].mean())})
    return points
