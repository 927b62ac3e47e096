"""PNG figures (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def retrieval_speedup(speedups: dict[str, float], path: Path) -> Path:
    """Figure 2: GCN retrieval speed-up over the LLM retriever (LLM = 1x), per dataset."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    names = list(speedups)
    ax.bar([f"{n}\nLLM" for n in names], [1.0] * len(names), color="#999999", label="LLM retriever")
    ax.bar([f"{n}\nGCN" for n in names], [speedups[n] for n in names], color="#1f77b4", label="GCN retriever")
    ax.set_ylabel("speed-up (LLM retriever = 1x)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    return _save(fig, path)


def auc_and_speed(points: list[dict], xlabel: str, speed_label: str, title: str, path: Path) -> Path:
    """Figures 3-5: AUC (left axis) and throughput (right axis) against one setting."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    xs = [p["x"] for p in points]
    ax.plot(xs, [p["auc"] for p in points], "o-", color="#1f77b4", label="AUC")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("AUC (points)", color="#1f77b4")
    if any(p["speed"] is not None for p in points):
        ax2 = ax.twinx()
        ax2.plot(xs, [p["speed"] for p in points], "s--", color="#d62728")
        ax2.set_ylabel(speed_label, color="#d62728")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def exit_layer_histogram(counts: dict[int, int], path: Path) -> Path:
    """The night's page: scored rows per exit layer."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    layers = sorted(counts)
    ax.bar(layers, [counts[k] for k in layers], color="#1f77b4")
    ax.set_xticks(layers)
    ax.set_xlabel("exit layer")
    ax.set_ylabel("rows")
    return _save(fig, path)


def score_distributions(scores: dict[str, np.ndarray], path: Path) -> Path:
    """The night's page: score histograms of several dates, overlaid (density, so dates of
    different sizes compare)."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    bins = np.linspace(0.0, 1.0, 41)
    for (label, values), color in zip(scores.items(), ("#1f77b4", "#d62728", "#2ca02c")):
        ax.hist(values, bins=bins, density=True, histtype="step", linewidth=1.6, color=color,
                label=f"{label} (n={len(values):,})")
    ax.set_xlabel("score (P(click))")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
