"""This engine against llama.cpp on the same scoring rows (``jobs.bench_peers``,
``make bench-peers`` -> reports/bench/peers.json + peers.png).

    rows        speed: the scoring bench's users x C candidates of a lake (a user's rows
                share one prefix); agreement + AUC: the date's labelled eval candidates
    tokens      our tokenizer's ids feed both engines (the GGUF keeps the HF vocabulary),
                so every scorer sees exactly the same token sequences
    scorers     ours_fp32_independent   fp32 twin of the scorer, full prompts, batched
                ours_best               the nightly path: serving dtype (bf16 where the CPU
                                        has it), shared user prefix, early exit with the rule
                                        saved with the heads
                ours_full_depth         the same without exits (what the exits buy)
                llama_cpp_independent   the scorer converted to GGUF (convert_hf_to_gguf.py,
                                        Q8_0 by default), one prompt at a time, last-row
                                        logits only
                llama_cpp_prefix        the user's prefix decoded once, its KV cache kept and
                                        only each candidate's suffix decoded after it
    per scorer  rows/s on the speed rows (median of interleaved repeats), max |dp| and
                Spearman against ours_fp32_independent on the eval rows, AUC [95% CI] there
    verdicts    ours_best and ours_full_depth against the faster llama.cpp path: the speed
                ratio and the AUC difference with its paired 95% bootstrap interval
    threads     every scorer runs on --threads (ours sets torch's count at each call)

llama-cpp-python is a bench-only install (built from its PyPI sdist, whose vendored
llama.cpp also carries the converter); nothing else in the platform imports it.
"""
from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

Rows = tuple[Sequence[Sequence[int]], Sequence[Sequence[int]], Sequence[int]]   # prefix ids, suffix ids, group


def convert_to_gguf(hf_dir: str | Path, out: str | Path, llama_cpp_src: str | Path,
                    outtype: str = "q8_0") -> Path:
    """The HF model folder as a GGUF file, with llama.cpp's own converter (reused when
    `out` exists: the name carries the scorer version and the type)."""
    out, src = Path(out), Path(llama_cpp_src)
    if out.is_file():
        return out
    script = src / "convert_hf_to_gguf.py"
    if not script.is_file():
        raise FileNotFoundError(f"{script} not found: --llama-cpp-src must be a llama.cpp source tree "
                                "(make bench-peers unpacks the llama-cpp-python sdist's vendor/llama.cpp)")
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [str(src / "gguf-py"), str(src), os.environ.get("PYTHONPATH", "")]   # + the bench site
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), "HF_HUB_OFFLINE": "1"}
    tmp = out.with_suffix(".partial")
    subprocess.run([sys.executable, str(script), str(hf_dir), "--outfile", str(tmp), "--outtype", outtype],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    tmp.rename(out)
    return out


class LlamaCppScorer:
    """P(Yes) from llama.cpp: the two answer logits of the last decoded token."""

    def __init__(self, gguf: str | Path, yes_id: int, no_id: int, threads: int, n_ctx: int = 1024):
        from llama_cpp import Llama

        self.llm = Llama(model_path=str(gguf), n_ctx=n_ctx, n_batch=n_ctx, n_threads=threads,
                         n_threads_batch=threads, logits_all=False, verbose=False)
        self.yes_id, self.no_id = yes_id, no_id

    def _p_yes(self) -> float:
        logits = self.llm._ctx.get_logits_ith(-1)   # only the last row is computed
        yes, no = float(logits[self.yes_id]), float(logits[self.no_id])
        return 1.0 / (1.0 + math.exp(no - yes))

    def independent(self, prefix_ids, suffix_ids, group) -> np.ndarray:
        out = np.empty(len(group))
        for r, g in enumerate(group):
            self.llm.reset()
            self.llm.eval(list(prefix_ids[g]) + list(suffix_ids[r]))
            out[r] = self._p_yes()
        return out

    def shared_prefix(self, prefix_ids, suffix_ids, group) -> np.ndarray:
        out = np.empty(len(group))
        current = None
        for r in np.argsort(np.asarray(group), kind="stable"):
            if group[r] != current:   # a new user: decode its prefix once
                current = group[r]
                self.llm.reset()
                self.llm.eval(list(prefix_ids[current]))
                n_prefix = self.llm.n_tokens
            self.llm.n_tokens = n_prefix   # eval drops the KV cells past n_tokens first
            self.llm.eval(list(suffix_ids[r]))
            out[r] = self._p_yes()
        return out


def ours(model, heads, rule, batch_size: int, pad_id: int, shared_prefix: bool,
         threads: int) -> Callable[..., np.ndarray]:
    """Our scorer on `threads` torch threads, set at every call: loading a scorer sets the
    nightly actor's count (scoring.torch_threads, 1), and until 12-04 that silently timed
    ours on 1 thread against llama.cpp on 2."""
    import torch

    from optirag.scoring.prefix import score_independent, score_shared_prefix

    fn = score_shared_prefix if shared_prefix else score_independent

    def score(prefix_ids, suffix_ids, group) -> np.ndarray:
        torch.set_num_threads(threads)
        return fn(model, heads, rule, prefix_ids, suffix_ids, group, batch_size, pad_id).p_yes.float().numpy()
    return score


def time_scorers(scorers: dict[str, Callable[..., np.ndarray]], rows: Rows, repeats: int) -> dict[str, dict]:
    """Median seconds per scorer on the same rows, interleaved (machine noise hits all alike),
    after one untimed pass each: oneDNN builds its bf16 kernels per new shape on first use,
    which a nightly run pays once over ~10^5 rows but 200 bench rows would pay every time
    (the first of three repeats ran up to 1.35x slower, 12-04)."""
    for score in scorers.values():
        score(*rows)
    times: dict[str, list[float]] = {name: [] for name in scorers}
    for _ in range(repeats):
        for name, score in scorers.items():
            started = time.perf_counter()
            score(*rows)
            times[name].append(time.perf_counter() - started)
    n = len(rows[2])
    return {name: {"seconds": ts, "rows_per_s": n / statistics.median(ts)} for name, ts in times.items()}


def agreement(scores: dict[str, np.ndarray], labels: np.ndarray, reference: str) -> dict[str, dict]:
    """Per scorer: max |dp| and Spearman against `reference`, AUC [95% CI] on the labels."""
    from scipy.stats import spearmanr

    from optirag.evaluation.metrics import auc_interval, auc_or_none

    ref = scores[reference]
    return {name: {"max_abs_dp": float(np.abs(s - ref).max()),
                   "spearman": float(spearmanr(s, ref).statistic),
                   "auc": auc_or_none(labels, s), "auc_ci95": auc_interval(labels, s)}
            for name, s in scores.items()}


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["scorers"])
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.barh(names, [result["scorers"][n]["rows_per_s"] for n in names], color="tab:blue")
    a.set_xlabel(f"rows/s (same rows, {result['threads']} threads)")
    b.barh(names, [result["scorers"][n]["auc"] for n in names], color="tab:green")
    b.set_xlim(min(result["scorers"][n]["auc"] for n in names) - 0.05, None)
    b.set_xlabel(f"AUC on {result['eval_rows']} eval rows")
    fig.suptitle(f"{result['dataset']}: this engine vs llama.cpp ({result['gguf_type']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

