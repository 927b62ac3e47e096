"""Binary CTR metrics over (label, score) pairs; AUC and log loss from scikit-learn, and
bootstrap intervals: each AUC's 95% interval, and the paired interval of a difference
between scorers on the same rows (the rows are resampled together, so what the two
scorers share cancels out). Seeded: the same inputs give the same interval."""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import log_loss, roc_auc_score

BOOTSTRAP = 2000      # resamples per interval
BOOTSTRAP_SEED = 0


def auc_or_none(labels: Sequence[int], scores: Sequence[float]) -> float | None:
    """ROC AUC, or None when only one class is present (AUC undefined)."""
    return float(roc_auc_score(labels, scores)) if np.unique(labels).size == 2 else None


def ctr_metrics(labels: Sequence[int], scores: Sequence[float], eps: float = 1e-7) -> dict[str, Any]:
    """n, positive rate, mean score, AUC with its 95% bootstrap interval (None when one
    class only), clipped log loss."""
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(scores, dtype=np.float64)
    if y.shape != p.shape:
        raise ValueError(f"labels {y.shape} and scores {p.shape} differ in shape")
    if y.size == 0:
        return {"n": 0, "positive_rate": None, "mean_score": None, "auc": None, "auc_ci95": None,
                "logloss": None}
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError("scores must be probabilities in [0, 1]")
    auc = auc_or_none(y, p)
    return {
        "n": int(y.size),
        "positive_rate": float(y.mean()),
        "mean_score": float(p.mean()),
        "auc": auc,
        "auc_ci95": auc_interval(y, p) if auc is not None else None,
        "logloss": float(log_loss(y, np.clip(p, eps, 1 - eps), labels=[0, 1])),
    }


def _resamples(n: int, seed: int = BOOTSTRAP_SEED, times: int = BOOTSTRAP) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(times, n))


def _aucs(y: np.ndarray, scores: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """AUC (Mann-Whitney, ties counted half) of `scores` on each resample in `rows` (B, n);
    NaN where a resample holds one class only."""
    ys, ss = y[rows], scores[rows]
    ranks = rankdata(ss, axis=1)
    pos = ys.sum(axis=1)
    neg = ys.shape[1] - pos
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((ranks * ys).sum(axis=1) - pos * (pos + 1) / 2) / (pos * neg)


def _interval(values: np.ndarray) -> list[float] | None:
    values = values[np.isfinite(values)]
    return [float(v) for v in np.percentile(values, [2.5, 97.5])] if values.size else None


def auc_interval(labels: Sequence[int], scores: Sequence[float]) -> list[float] | None:
    """95% percentile bootstrap interval of the AUC (rows resampled with replacement)."""
    y = np.asarray(labels, dtype=np.int64)
    return _interval(_aucs(y, np.asarray(scores, dtype=np.float64), _resamples(len(y))))


def paired_auc_difference(labels: Sequence[int], scores: Sequence[float] | Sequence[Sequence[float]],
                          others: Sequence[float] | Sequence[Sequence[float]]) -> dict[str, Any]:
    """AUC(scores) - AUC(others) on the same rows, with its paired 95% bootstrap interval.
    Either side may be several scorers (e.g. a baseline's seeds): that side's AUC is then
    their mean AUC, as a table reports it."""
    y = np.asarray(labels, dtype=np.int64)
    a = np.asarray(scores, dtype=np.float64).reshape(-1, len(y))
    b = np.asarray(others, dtype=np.float64).reshape(-1, len(y))
    if np.unique(y).size < 2:
        return {"n": int(y.size), "diff": None, "ci95": None, "excludes_zero": None}
    diff = float(np.mean([roc_auc_score(y, s) for s in a]) - np.mean([roc_auc_score(y, s) for s in b]))
    rows = _resamples(len(y))
    boot = (np.mean([_aucs(y, s, rows) for s in a], axis=0)
            - np.mean([_aucs(y, s, rows) for s in b], axis=0))
    ci = _interval(boot)
    return {"n": int(y.size), "diff": diff, "ci95": ci,
            "excludes_zero": None if ci is None else bool(ci[0] > 0 or ci[1] < 0)}


def write_report(path: str | Path, report: dict[str, Any]) -> Path:
    """JSON report written atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path
