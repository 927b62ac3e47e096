"""Read the JSON files the stages write; a missing or unreadable file is None ("not run").

Expected inputs (under --reports, default reports/):
- eval/baselines_<dataset>.json  (jobs.train_baselines): models.<m>.auc_mean/auc_std/seeds
- eval/<dataset>.json            (jobs.evaluate): runs.<none|llm|gcn|zero_shot/none>.metrics.test.auc,
                                  runs.<v>.prompts_per_second
- eval/<dataset>.json runs gcn / gcn_last: Table 3, AUC with average vs last-layer embeddings
- eval/retrieval_<dataset>.json  (jobs.evaluate_retriever): Table 3's held-out hit rates per layer choice
- bench/retrieval_<dataset>.json (jobs.bench_retrieval): Figure 2, GCN vs LLM retrieval seconds
- bench/early_exit.json          (early exit): auc_full, auc_exit, mean_exit_layer, n_layers,
                                  flops_ratio, throughput_ratio, sweeps.{tau,window,k}
- bench/tuning.json              (jobs.bench_tuning): the scorer's learning curve per dataset
Files written by other helpers are read through `pick` with a few accepted key spellings,
so the report degrades to "not run" instead of failing when a layout differs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def load_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def pick(data: Any, *paths: str) -> Any:
    """The value at the first dotted path that exists in `data` (None if none does)."""
    for path in paths:
        node = data
        for key in path.split("."):
            if isinstance(node, dict) and key in node:
                node = node[key]
            else:
                node = None
                break
        if node is not None:
            return node
    return None


def for_dataset(data: dict[str, Any] | None, dataset: str) -> dict[str, Any] | None:
    """A per-dataset view of a bench file: {dataset: {...}}, {datasets: {dataset: ...}},
    or a flat file whose `dataset` key names it."""
    if not data:
        return None
    if isinstance(data.get("datasets"), dict):
        return data["datasets"].get(dataset)
    if isinstance(data.get(dataset), dict):
        return data[dataset]
    return data if data.get("dataset") == dataset else None


@dataclass
class ReportInputs:
    datasets: list[str]
    baselines: dict[str, dict | None] = field(default_factory=dict)
    llm_eval: dict[str, dict | None] = field(default_factory=dict)
    retrieval: dict[str, dict | None] = field(default_factory=dict)
    bench_retrieval: dict[str, dict | None] = field(default_factory=dict)
    early_exit: dict | None = None
    tuning: dict | None = None
    manifest: dict[str, list[dict]] = field(default_factory=dict)   # dataset -> manifest rows
    problems: list[str] = field(default_factory=list)               # jobs that failed, etc.
    llm_skipped: dict[str, str] = field(default_factory=dict)       # dataset -> why no LLM rows


def input_paths(reports: Path, dataset: str) -> dict[str, Path]:
    return {
        "baselines": reports / "eval" / f"baselines_{dataset}.json",
        "llm_eval": reports / "eval" / f"{dataset}.json",
        "retrieval": reports / "eval" / f"retrieval_{dataset}.json",
        "bench_retrieval": reports / "bench" / f"retrieval_{dataset}.json",
    }


BENCH_PATHS = {"early_exit": Path("bench") / "early_exit.json", "tuning": Path("bench") / "tuning.json"}


def read_inputs(reports: Path, datasets: list[str]) -> ReportInputs:
    inputs = ReportInputs(datasets=list(datasets))
    for d in datasets:
        for kind, path in input_paths(reports, d).items():
            getattr(inputs, kind)[d] = load_json(path)
    for kind, rel in BENCH_PATHS.items():
        setattr(inputs, kind, load_json(reports / rel))
    return inputs
