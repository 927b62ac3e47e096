"""The scorer's throughput on a GPU worker, measured from a bundle the CPU bench exports.

A GPU worker need not reach the lake, Spark or Ray to measure the nightly scorer on the
same rows. The bundle (`jobs.bench_scoring --device-bundle DIR`) holds:
  inputs.json       token ids of the bench rows (user prefixes, candidate suffixes, groups),
                    the model and early-exit config, and CPU fp32 reference scores
  delta.safetensors the tuned scorer as a low-rank delta on its base model: a merged LoRA
                    adapter changes each adapted matrix by rank <= r, so U·S and Vh of its
                    SVD rebuild it (checked on export) at a few MB instead of the whole model
  heads/            the exit heads, as saved by train_exit_heads
The worker prepares the base model from its own source (the package's GGUF, or a local
folder via --source), adds the delta in fp32, casts to --dtype, checks its fp32 scores
against the CPU's, and times the four variants of `optirag_bench.scoring.time_variants` per
batch size.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from optirag.early_exit.config import EarlyExitConfig
from optirag.early_exit.heads import ExitHeads, load_exit_heads
from optirag.early_exit.rules import build_rule, never_exit
from optirag.llm.config import ModelConfig
from optirag.llm.loading import load_model_from, prepare_model, torch_dtype
from optirag.llm.scoring import answer_tokens
from optirag.scoring.prefix import score_shared_prefix
from optirag_bench.scoring import rows_flops, summarize, time_variants

INPUTS, DELTA, HEADS = "inputs.json", "delta.safetensors", "heads"


def delta_names(tensors: dict[str, torch.Tensor]) -> set[str]:
    """The model tensors a delta changes (keys are `<name>.u/.v/.full`)."""
    return {k.rsplit(".", 1)[0] for k in tensors}


def _max_diff(ours: dict[str, list[float]], ref: dict[str, list[float]]) -> dict[str, float]:
    return {k: max(abs(a - b) for a, b in zip(ours[k], ref[k])) for k in ours}


def lowrank_delta(tuned: torch.nn.Module, base: torch.nn.Module, rel_tol: float = 1e-4
                  ) -> tuple[dict[str, torch.Tensor], float]:
    """{name.u, name.v} (or name.full for non-matrices) per changed tensor, and the largest
    absolute reconstruction error over all of them."""
    base_state = base.state_dict()
    out, worst = {}, 0.0
    for name, t in tuned.state_dict().items():
        delta = (t.float() - base_state[name].float())
        if not delta.abs().max() > 0:
            continue
        if delta.ndim != 2:
            out[f"{name}.full"] = delta.contiguous()
            continue
        u, s, vh = torch.linalg.svd(delta, full_matrices=False)
        rank = max(1, int((s > rel_tol * s[0]).sum()))
        us, v = (u[:, :rank] * s[:rank]).contiguous(), vh[:rank].contiguous()
        worst = max(worst, float((us @ v - delta).abs().max()))
        out[f"{name}.u"], out[f"{name}.v"] = us, v
    return out, worst


@torch.no_grad()
def apply_delta(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> int:
    """Add the delta in place (fp32 model); returns the number of tensors changed."""
    params = dict(model.named_parameters())
    params.update(dict(model.named_buffers()))
    names = delta_names(tensors)
    for name in names:
        if f"{name}.full" in tensors:
            params[name].add_(tensors[f"{name}.full"].to(params[name]))
        else:
            params[name].add_((tensors[f"{name}.u"] @ tensors[f"{name}.v"]).to(params[name]))
    return len(names)


def export_bundle(out: Path, spec: dict[str, Any], model, prefix_ids, suffix_ids, group,
                  batch_size: int, pad_id: int, reference: dict[str, list[float]],
                  reference_rows: int) -> dict[str, Any]:
    """Write the bundle for `run_bundle`; `model` is the tuned scorer spec resolves to."""
    out.mkdir(parents=True, exist_ok=True)
    model_cfg = ModelConfig.model_validate(spec["model_cfg"])
    base, _ = load_model_from(prepare_model(model_cfg), model_cfg)
    tensors, error = lowrank_delta(model, base)
    if error > 1e-4:
        raise ValueError(f"the scorer is not a low-rank update of its base (error {error:.2e})")
    save_file(tensors, str(out / DELTA))
    shutil.rmtree(out / HEADS, ignore_errors=True)
    if spec["heads_dir"]:
        shutil.copytree(spec["heads_dir"], out / HEADS)
    doc = {"model_version": spec["model_version"], "model_cfg": spec["model_cfg"],
           "early_exit_cfg": spec["early_exit_cfg"], "batch_size": batch_size, "pad_id": pad_id,
           "prefix_ids": prefix_ids, "suffix_ids": suffix_ids, "group": list(map(int, group)),
           "reference_rows": reference_rows, "reference": reference, "delta_max_error": error}
    (out / INPUTS).write_text(json.dumps(doc))
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return {"bundle": str(out), "bytes": size, "delta_tensors": len(delta_names(tensors)),
            "delta_max_error": error, "rows": len(group)}


def reference_scores(model, heads, rule, prefix_ids, suffix_ids, group, batch_size, pad_id,
                     rows: int) -> dict[str, list[float]]:
    """CPU fp32 P(Yes) of the first `rows` rows, full depth and with exit (shared prefix)."""
    full = ExitHeads.final_only(model, heads.answer)
    sub = list(group[:rows])
    return {"full": score_shared_prefix(model, full, never_exit, prefix_ids, suffix_ids[:rows], sub,
                                        batch_size, pad_id).p_yes.tolist(),
            "exit": score_shared_prefix(model, heads, rule, prefix_ids, suffix_ids[:rows], sub,
                                        batch_size, pad_id).p_yes.tolist()}


def _gemm_peak(device: str, dtype: torch.dtype, n: int = 8192, repeats: int = 10) -> float:
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * n ** 3 * repeats / (time.perf_counter() - t)


def run_bundle(bundle: Path, device: str, dtype: str, batch_sizes: list[int], repeats: int,
               source: str | None = None) -> dict[str, Any]:
    """Parity (fp32 on `device` vs the CPU reference) and timings in `dtype` per batch size."""
    doc = json.loads((bundle / INPUTS).read_text())
    cfg = dict(doc["model_cfg"], device="cpu", dtype="float32", **({"source": source} if source else {}))
    model_cfg = ModelConfig.model_validate(cfg)
    model, tokenizer = load_model_from(prepare_model(model_cfg), model_cfg)
    changed = apply_delta(model, load_file(str(bundle / DELTA)))
    answer = answer_tokens(tokenizer, model_cfg.answer)
    heads = load_exit_heads(bundle / HEADS, model, answer, doc["model_version"])
    rule = build_rule(EarlyExitConfig.model_validate(doc["early_exit_cfg"]))
    model.to(device)
    heads.to(device)
    prefix_ids, suffix_ids, group, pad_id = doc["prefix_ids"], doc["suffix_ids"], doc["group"], doc["pad_id"]

    rows = doc["reference_rows"]
    ours = reference_scores(model, heads, rule, prefix_ids, suffix_ids, group, doc["batch_size"], pad_id, rows)
    parity = _max_diff(ours, doc["reference"])

    model.to(torch_dtype(dtype))
    heads.to(torch_dtype(dtype))
    low = reference_scores(model, heads, rule, prefix_ids, suffix_ids, group, doc["batch_size"], pad_id, rows)
    drift = _max_diff(low, doc["reference"])

    flops, prefix_len, suffix_len = rows_flops(model, prefix_ids, suffix_ids, group)
    peak = _gemm_peak(device, torch_dtype(dtype)) if device.startswith("cuda") else None
    by_batch = {}
    for bs in batch_sizes:
        time_variants(model, heads, rule, prefix_ids, suffix_ids[:bs * 2], group[:bs * 2], bs, pad_id, 1)  # warm-up
        variants = time_variants(model, heads, rule, prefix_ids, suffix_ids, group, bs, pad_id, repeats)
        achieved = flops / variants["full_independent"]["seconds_median"]
        by_batch[str(bs)] = {
            "throughput": {k: v["rows_per_s"] for k, v in variants.items() if "rows_per_s" in v},
            **summarize(variants), "variants": variants,
            "model_flops_per_s": achieved, "roofline_ratio": achieved / peak if peak else None}
        print(json.dumps({"batch_size": bs, **by_batch[str(bs)]["throughput"]}), flush=True)
    return {"device": torch.cuda.get_device_name() if device.startswith("cuda") else device,
            "dtype": dtype, "model_version": doc["model_version"], "rows": len(group),
            "users": len(set(group)), "mean_prefix_tokens": prefix_len, "mean_suffix_tokens": suffix_len,
            "delta_tensors": changed, "parity_fp32_vs_cpu": parity, f"drift_{dtype}_vs_cpu_fp32": drift,
            "gemm_peak_flops_per_s": peak, "by_batch_size": by_batch, "repeats": repeats,
            "torch": torch.__version__, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
