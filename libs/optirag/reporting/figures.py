"""PNG figures (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

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


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
