"""Exit rules: pure functions of the P(Yes) history of a batch of rows.

A rule sees `p_history`, shape (B, k): column j is P(Yes) from the head at the j-th exit
layer reached so far (all rows of a batch reach the same exit layers, so k is shared), the
last column being the current layer. It returns a bool tensor (B,): exit now. Rules never
see the final layer's decision: the engine always answers with the model's own head at the
last layer for every row still running.

Probability-based rule (paper 5.3), with exit layers l_1 < l_2 < ... < l_K = N:

    D_j = |P_j - P_{j-1}|                    discrepancy at exit layer l_j, j >= 2
    exit at l_k  iff  |D_k - mean(D_{k-w} .. D_{k-1})| < tau,  w = min(window, k - 2)

i.e. the current discrepancy is compared with the mean of (up to) `window` = m previous
discrepancies. Before any exit is possible, `min_previous` previous discrepancies must exist
(default: m, the paper's full window). So the first two exit layers never exit (no D, then
a D with nothing to compare to), and with m = min_previous = 2 the earliest exit is at the
4th exit layer (l_4; layer 20 for exits 5, 10, 15, ...). With min_previous = 1 it is l_3,
averaging over the discrepancies available until m exist.

Confidence baseline: exit at l_k iff max(P_k, 1 - P_k) >= confidence.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch

from optirag.early_exit.config import EarlyExitConfig

Rule = Callable[[torch.Tensor], torch.Tensor]


def discrepancies(p_history: torch.Tensor) -> torch.Tensor:
    """(B, k) P(Yes) history -> (B, k - 1) discrepancies D between consecutive exit layers."""
    return (p_history[:, 1:] - p_history[:, :-1]).abs()


def probability_rule(
    p_history: torch.Tensor, tau: float, window: int, min_previous: int
) -> torch.Tensor:
    """Paper 5.3: exit when |D_current - mean(previous <= window discrepancies)| < tau."""
    d = discrepancies(p_history)
    if d.shape[1] < 1 + min_previous:  # not enough previous discrepancies yet
        return torch.zeros(p_history.shape[0], dtype=torch.bool, device=p_history.device)
    current, previous = d[:, -1], d[:, :-1][:, -window:]
    return (current - previous.mean(dim=1)).abs() < tau


def confidence_rule(p_history: torch.Tensor, confidence: float) -> torch.Tensor:
    """Baseline: exit when the current head is confident, max(P, 1 - P) >= confidence."""
    p = p_history[:, -1]
    return torch.maximum(p, 1 - p) >= confidence


def never_exit(p_history: torch.Tensor) -> torch.Tensor:
    """Exits disabled: every row runs to the model's own head."""
    return torch.zeros(p_history.shape[0], dtype=torch.bool, device=p_history.device)


def build_rule(cfg: EarlyExitConfig) -> Rule:
    if cfg.rule == "probability":
        return partial(probability_rule, tau=cfg.tau, window=cfg.window,
                       min_previous=cfg.required_previous)
    if cfg.rule == "confidence":
        return partial(confidence_rule, confidence=cfg.confidence)
    return never_exit


def simulate_exits(p_matrix: torch.Tensor, rule: Rule) -> torch.Tensor:
    """Offline replay of a rule on a full (B, K) P(Yes) matrix (all exit layers, last = the
    model's own head): the index into the exit layers where each row exits. Used to
    calibrate tau / confidence on validation data without re-running the model."""
    num_rows, num_exits = p_matrix.shape
    exit_at = torch.full((num_rows,), num_exits - 1, dtype=torch.long, device=p_matrix.device)
    running = torch.ones(num_rows, dtype=torch.bool, device=p_matrix.device)
    for k in range(1, num_exits):  # the last exit layer always answers
        leave = running & rule(p_matrix[:, :k])
        exit_at[leave] = k - 1
        running &= ~leave
    return exit_at
