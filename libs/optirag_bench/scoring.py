"""`make bench-scoring`: what prefix sharing and early exit buy, measured in one run.

Variants on the same rows (users x candidates_per_user, prompts from the nightly context,
the scorer and heads the nightly job would load), one untimed pass each, then interleaved
repeats, medians:
  (a) full depth, independent prompts   (b) early exit, independent prompts
  (c) full depth, shared user prefix    (d) early exit + shared prefix
The prefix speedup is set against its token ideal: (P + S) / (S' + P' / C) for P prefix and
S suffix tokens, C candidates per user, P' and S' after the suffixes' common lead is folded
into the prefix (what the scorer runs).
Then the whole Ray job at 1 and 2 scorer actors, and its peak memory (driver + Ray
workers, sampled) at two candidate-set sizes, which must stay flat (streaming). The
roofline ratio compares the model FLOP/s achieved by (a) with a matmul peak measured in
the serving dtype at the same thread count. When that dtype is not fp32 (bf16 where the CPU
has it), (a) and (c) are also timed with an fp32 copy of the scorer: the dtype's speedup.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch

from optirag.early_exit.heads import ExitHeads
from optirag.early_exit.rules import never_exit
from optirag.scoring.prefix import fold_shared_lead, score_independent, score_shared_prefix
from optirag_bench.peers import time_scorers


def matmul_peak_flops(threads: int, n: int = 1024, repeats: int = 5,
                      dtype: torch.dtype = torch.float32) -> float:
    """Best GEMM FLOP/s in `dtype` at `threads` threads (the roofline's compute ceiling)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n ** 3 / (time.perf_counter() - t))
    return best


def forward_flops(model, tokens: int, context: float) -> float:
    """~2 x non-embedding params per token + attention (4 x layers x hidden x context)."""
    cfg = model.config
    params = sum(p.numel() for n, p in model.named_parameters() if "embed" not in n and "lm_head" not in n)
    return tokens * (2 * params + 4 * cfg.num_hidden_layers * cfg.hidden_size * context)


def rows_flops(model, prefix_ids, suffix_ids, group) -> tuple[float, float, float]:
    """(forward FLOPs of the rows as independent prompts, mean prefix and suffix tokens)."""
    prefix_len = sum(len(prefix_ids[g]) for g in group) / len(group)
    suffix_len = sum(len(s) for s in suffix_ids) / len(suffix_ids)
    flops = forward_flops(model, len(group) * (prefix_len + suffix_len), (prefix_len + suffix_len) / 2)
    return flops, prefix_len, suffix_len


def ideal_speedup_prefix(prefix_ids, suffix_ids, group) -> float:
    """Tokens through the layers, independent prompts / shared prefix (see the docstring)."""
    users = sorted(set(group))
    folded_p, folded_s = fold_shared_lead(prefix_ids, suffix_ids, np.asarray(group))
    independent = sum(len(prefix_ids[g]) + len(s) for g, s in zip(group, suffix_ids))
    return independent / (sum(len(folded_p[u]) for u in users) + sum(len(s) for s in folded_s))


def time_variants(model, heads, rule, prefix_ids, suffix_ids, group, batch_size, pad_id,
                  repeats: int, fp32_model=None) -> dict[str, Any]:
    """(a)-(d) with `model` in its serving dtype; with `fp32_model` (when that dtype is not
    fp32) also (a) and (c) in fp32, interleaved with the others: the dtype's speedup."""
    full_heads = ExitHeads.final_only(model, heads.answer)
    variants = {
        "full_independent": (model, score_independent, full_heads, never_exit),
        "exit_independent": (model, score_independent, heads, rule),
        "full_prefix": (model, score_shared_prefix, full_heads, never_exit),
        "exit_prefix": (model, score_shared_prefix, heads, rule),
    }
    if fp32_model is not None:
        fp32_heads = ExitHeads.final_only(fp32_model, heads.answer)
        variants["full_independent_fp32"] = (fp32_model, score_independent, fp32_heads, never_exit)
        variants["full_prefix_fp32"] = (fp32_model, score_shared_prefix, fp32_heads, never_exit)
    outputs = {}

    def keeping_output(name, m, fn, h, r):
        def score(*rows):
            outputs[name] = fn(m, h, r, *rows, batch_size, pad_id)
        return score

    # the peer bench's timing: one untimed pass each, then interleaved repeats
    times = time_scorers({name: keeping_output(name, *v) for name, v in variants.items()},
                         (prefix_ids, suffix_ids, group), repeats)
    result = {name: {"seconds_median": statistics.median(t["seconds"]), **t,
                     "mean_exit_layer": float(outputs[name].exit_layer.float().mean()),
                     "layer_flops_ratio": outputs[name].layer_flops_ratio}
              for name, t in times.items()}
    full = outputs["full_independent"].p_yes
    result["parity_max_abs_diff"] = {
        "full_prefix_vs_full_independent": float((outputs["full_prefix"].p_yes - full).abs().max()),
        "exit_prefix_vs_exit_independent": float(
            (outputs["exit_prefix"].p_yes - outputs["exit_independent"].p_yes).abs().max()),
    }
    if fp32_model is not None:
        result["parity_max_abs_diff"]["full_independent_vs_fp32"] = float(
            (full - outputs["full_independent_fp32"].p_yes).abs().max())
    return result


class TreeRss:
    """Peak summed RSS of a process and all its descendants (sampled)."""

    def __init__(self, pid: int, every: float = 0.25):
        self.proc, self.every, self.peak = psutil.Process(pid), every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            total = 0
            try:
                for p in [self.proc] + self.proc.children(recursive=True):
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                break
            self.peak = max(self.peak, total)
            time.sleep(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run_job_measured(args: list[str], repo: Path, full: bool = True) -> dict[str, Any]:
    """Run `python -m jobs.score [--full] ...` as a child; its summary + the tree's peak RSS
    (--full: every row through the model, never copied from an earlier date's scores)."""
    command = [sys.executable, "-m", "jobs.score", *(["--full"] if full else []), *args]
    with tempfile.TemporaryFile("w+") as log:   # its progress and, if it fails, why
        proc = subprocess.Popen(command, cwd=repo, stdout=subprocess.PIPE, stderr=log, text=True)
        with TreeRss(proc.pid) as rss:
            out, _ = proc.communicate()
        if proc.returncode != 0:
            log.seek(0)
            raise RuntimeError(f"jobs.score {' '.join(args)} failed (exit {proc.returncode}):\n"
                               + log.read()[-4000:])
    summary = json.loads(out.strip().splitlines()[-1])
    summary["peak_rss_mb"] = rss.peak / 2 ** 20
    return summary


def summarize(variants: dict[str, Any]) -> dict[str, float]:
    base = variants["full_independent"]["seconds_median"]
    out = {"speedup_exit": base / variants["exit_independent"]["seconds_median"],
           "speedup_prefix": base / variants["full_prefix"]["seconds_median"],
           "speedup_both": base / variants["exit_prefix"]["seconds_median"]}
    if "full_independent_fp32" in variants:   # the serving dtype vs fp32, same rows
        out["speedup_dtype"] = variants["full_independent_fp32"]["seconds_median"] / base
        out["speedup_dtype_prefix"] = (variants["full_prefix_fp32"]["seconds_median"]
                                       / variants["full_prefix"]["seconds_median"])
    return out


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["throughput"])   # (a)-(d), then the fp32 twins when timed
    fig, ax = plt.subplots(figsize=(1.5 * len(names), 3.2))
    ax.bar(names, [result["throughput"][n] for n in names],
           color=["#888", "#4a8", "#48c", "#c84", "#bbb", "#9bd"][:len(names)])
    ax.set_ylabel("rows / s")
    ax.set_title(f"Scoring throughput, {result['candidates_per_user']} candidates/user")
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def rng_rows(n_users: int, per_user: int, users: list[str], items: list[str], seed: int = 0):
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(users), size=min(n_users, len(users)), replace=False)
    rows = []
    for g, u in enumerate(picked):
        for it in rng.choice(len(items), size=per_user, replace=False):
            rows.append((g, users[u], items[it]))
    return rows
