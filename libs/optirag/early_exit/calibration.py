"""Choosing the exit rule the heads serve with, on valid rows (production: jobs.train_exit_heads
saves the choice in the heads' meta; jobs.evaluate_early_exit replays it; the early-exit bench,
optirag_bench.early_exit, sweeps around it).

    prompts ── p_matrix: one full forward, every exit head's P(Yes) ──> (n, K) matrix P
    P on valid ── (calibration.platt: a Platt fit per head, early_exit.platt) ──> one scale
      ── calibrate: replay every (tau, m) of early_exit.calibration's grid (`replay`, exact:
         the engine's score for a row is its head's score at its exit layer, parity-tested)
         ── choose: the cheapest (lowest FLOPs ratio) within calibration.max_auc_loss of
            the full-depth AUC, ranking rows as the full depth does (Spearman >=
            calibration.min_agreement)
      ──> the rule (EarlyExitConfig) and what was seen (full-depth AUC, the chosen point, the grid)
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr
from tqdm.auto import tqdm

from optirag.early_exit.config import EarlyExitConfig
from optirag.early_exit.platt import fit_columns, rescale_columns
from optirag.early_exit.rules import build_rule, simulate_exits
from optirag.early_exit.training import exit_probabilities
from optirag.evaluation.metrics import auc_or_none
from optirag.llm.scoring import encode_prompts


def head_aucs(p: torch.Tensor, labels: np.ndarray, exit_layers: list[int]) -> dict[str, float | None]:
    """AUC of each exit layer's head alone (every row leaving there), keyed by layer."""
    return {str(layer): auc_or_none(labels, p[:, j].numpy()) for j, layer in enumerate(exit_layers)}


def agreement(scores: np.ndarray, full: np.ndarray) -> float:
    """Spearman rank correlation of served scores with the full-depth ones (1.0: same order)."""
    if len(scores) < 2 or np.array_equal(scores, full):
        return 1.0
    if np.ptp(scores) == 0 or np.ptp(full) == 0:   # a constant side has no order to agree with
        return 0.0
    return float(spearmanr(scores, full)[0])


def replay(p: torch.Tensor, labels: np.ndarray, exit_layers: list[int], num_layers: int,
           cfg: EarlyExitConfig) -> dict[str, Any]:
    """AUC / mean exit layer / FLOPs ratio of a rule, replayed on the (n, K) P matrix."""
    at = simulate_exits(p, build_rule(cfg))
    scores = p[torch.arange(len(at)), at].numpy()
    layers = np.asarray(exit_layers)[at.numpy()]
    return {"auc": auc_or_none(labels, scores), "mean_exit_layer": float(layers.mean()),
            "flops_ratio": float(layers.mean() / num_layers),
            "agreement": agreement(scores, p[:, -1].numpy()),
            "exit_share": {int(layer): float((layers == layer).mean()) for layer in exit_layers}}


def choose(valid_sweep: list[dict], full_auc: float, max_auc_loss: float,
           min_agreement: float | None = None) -> dict:
    """The cheapest (lowest FLOPs ratio) setting within max_auc_loss of full-depth AUC and,
    with min_agreement, ranking the rows as the full depth does (Spearman >= min_agreement)."""
    ok = [s for s in valid_sweep if s["auc"] is not None and s["auc"] >= full_auc - max_auc_loss
          and (min_agreement is None or s["agreement"] >= min_agreement)]
    return min(ok, key=lambda s: (s["flops_ratio"], -s["auc"])) if ok else max(
        valid_sweep, key=lambda s: s["auc"] or 0)


def with_rule(base: EarlyExitConfig, tau: float, window: int) -> EarlyExitConfig:
    return base.model_copy(update={"tau": tau, "window": window,
                                   "min_previous": min(base.required_previous, window)})


def calibrate(p: torch.Tensor, labels: np.ndarray, exit_layers: list[int], num_layers: int,
              base: EarlyExitConfig, taus: list[float] | None = None, windows: list[int] | None = None,
              max_auc_loss: float | None = None) -> tuple[EarlyExitConfig, dict[str, Any]]:
    """The rule chosen on valid rows (p, labels) over the (tau, m) grid (default
    early_exit.calibration), and what was seen: full-depth AUC, the chosen point, the grid."""
    cal = base.calibration
    grid = [{"tau": t, "window": m, **replay(p, labels, exit_layers, num_layers, with_rule(base, t, m))}
            for t in (cal.taus if taus is None else taus) for m in (cal.windows if windows is None else windows)]
    full = auc_or_none(labels, p[:, -1].numpy())
    if full is None:   # one class on valid: nothing to choose by, the configured rule stays
        return base, {"auc_full": None, "best": {"tau": base.tau, "window": base.window, "auc": None,
                                                 "flops_ratio": None}, "grid": grid}
    best = choose(grid, full, cal.max_auc_loss if max_auc_loss is None else max_auc_loss,
                  cal.min_agreement)
    return with_rule(base, best["tau"], best["window"]), {"auc_full": full, "best": best, "grid": grid}


def calibrate_scaled(p: torch.Tensor, labels: np.ndarray, exit_layers: list[int], num_layers: int,
                     base: EarlyExitConfig, platt: bool, taus=None, windows=None, max_auc_loss=None
                     ) -> tuple[dict[int, torch.Tensor], EarlyExitConfig, dict[str, Any]]:
    """`calibrate` on valid rows, first putting the heads on one scale when `platt`
    (early_exit.platt): (Platt fits by layer, {} when raw; the rule; what was seen)."""
    fits = fit_columns(p, labels, exit_layers) if platt else {}
    rule, seen = calibrate(rescale_columns(p, fits, exit_layers), labels, exit_layers, num_layers, base,
                           taus, windows, max_auc_loss)
    return fits, rule, seen


def p_matrix(model, tokenizer, heads, prompts: list[str], batch_size: int, max_length: int | None,
             progress: str | None = None) -> torch.Tensor:
    """(n, K) P(Yes) of every exit head for each prompt, in the prompts' order."""
    chunks = []
    for start in tqdm(range(0, len(prompts), batch_size), desc=progress, disable=progress is None):
        ids, mask = encode_prompts(tokenizer, prompts[start: start + batch_size], max_length)
        chunks.append(exit_probabilities(model, heads, ids, mask).float().cpu())
    return torch.cat(chunks)
