"""Platt rescaling of the exit heads' P(Yes): one scale for scores from different depths.

An early-exit run ranks rows that left at different layers against each other (one AUC,
one CTR column). Each head is trained on its own, so a P(Yes) of 0.6 at layer 10 need not
mean what 0.6 means at layer 30, and the mix can rank worse than every head in it. A Platt
fit per head, P' = sigmoid(a * logit(P) + b) fitted by logistic regression on the valid
rows, maps every head onto the label frequency; it never changes one head's own order.

    raw (n, K) P(Yes) on valid ── fit_platt per column ──> (a_k, b_k) ── rescale ──> (n, K)
"""
from __future__ import annotations

import numpy as np
import torch

IDENTITY = torch.tensor([1.0, 0.0])
_EPS = 1e-6   # P(Yes) is clamped away from 0 and 1 before its logit


def _logit(p: torch.Tensor) -> torch.Tensor:
    return torch.logit(p.float(), eps=_EPS)


def rescale(p_yes: torch.Tensor, platt: torch.Tensor) -> torch.Tensor:
    """sigmoid(a * logit(p) + b) for platt = (a, b); p unchanged (bit for bit) by the identity."""
    if torch.equal(platt, IDENTITY.to(platt.device)):
        return p_yes
    return torch.sigmoid(platt[0] * _logit(p_yes) + platt[1])


def fit_platt(p_yes: torch.Tensor, labels: np.ndarray) -> torch.Tensor:
    """(a, b) of the logistic regression of the labels on logit(p), unregularised."""
    from sklearn.linear_model import LogisticRegression

    x = _logit(p_yes).double().numpy()[:, None]
    fit = LogisticRegression(C=1e6, max_iter=1000).fit(x, labels)
    return torch.tensor([float(fit.coef_[0, 0]), float(fit.intercept_[0])])


def fit_columns(p: torch.Tensor, labels: np.ndarray, exit_layers: list[int]) -> dict[int, torch.Tensor]:
    """A Platt fit per exit layer from an (n, K) P(Yes) matrix; {} with one label value."""
    if len(set(np.asarray(labels).tolist())) < 2:
        return {}
    return {layer: fit_platt(p[:, j], labels) for j, layer in enumerate(exit_layers)}


def rescale_columns(p: torch.Tensor, fits: dict[int, torch.Tensor], exit_layers: list[int]) -> torch.Tensor:
    """The (n, K) matrix with each column through its layer's fit (identity where none)."""
    return torch.stack([rescale(p[:, j], fits.get(layer, IDENTITY)) for j, layer in enumerate(exit_layers)],
                       dim=1)
