"""Binary CTR metrics over (label, score) pairs; AUC and log loss from scikit-learn."""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score


def ctr_metrics(labels: Sequence[int], scores: Sequence[float], eps: float = 1e-7) -> dict[str, Any]:
    """n, positive rate, mean score, AUC (None when one class only), clipped log loss."""
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(scores, dtype=np.float64)
    if y.shape != p.shape:
        raise ValueError(f"labels {y.shape} and scores {p.shape} differ in shape")
    if y.size == 0:
        return {"n": 0, "positive_rate": None, "mean_score": None, "auc": None, "logloss": None}
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError("scores must be probabilities in [0, 1]")
    both = np.unique(y).size == 2
    return {
        "n": int(y.size),
        "positive_rate": float(y.mean()),
        "mean_score": float(p.mean()),
        "auc": float(roc_auc_score(y, p)) if both else None,
        "logloss": float(log_loss(y, np.clip(p, eps, 1 - eps), labels=[0, 1])),
    }


def write_report(path: str | Path, report: dict[str, Any]) -> Path:
    """JSON report written atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path
