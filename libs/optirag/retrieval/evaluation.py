"""Retrieval quality of a dataset's retrievers on held-out targets (``jobs.evaluate_retriever``).

Evaluated users: every user with a valid/test sample (their targets are never in
``edges``, see the ingest). Two views, both with :func:`optirag.retrieval.quality.evaluate_neighbours`
against the training graph the GCN was trained on:

* ``layers``: the paper's Table 3 question, recomputed from the registry's GCN model
  folder: layer average (1..K) vs average incl. layer 0 vs last layer vs seeded random
  warm neighbours (:func:`optirag.retrieval.quality.layer_report`);
* ``tables``: what the jobs actually wrote to ``neighbours``, per retriever partition
  (gcn, llm). An LLM run capped by ``max_users`` covers only some users, so each table
  is also compared with the GCN table and the random floor on *the same* users.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from optirag import registry
from optirag.config import Config
from optirag.retrieval.config import retriever_config
from optirag.retrieval.embeddings import load_model
from optirag.retrieval.job import load_inputs, read_neighbours, to_pandas
from optirag.retrieval.training import model_version, training_edges
from optirag.retrieval.quality import evaluate_neighbours, layer_report, random_neighbours
from optirag.tables import SAMPLES, read_table


def heldout_pairs(spark: SparkSession, cfg: Config, user_index: pd.DataFrame, item_index: pd.DataFrame,
                  splits: tuple[str, ...] = ("valid", "test")) -> tuple[np.ndarray, np.ndarray]:
    """(user_idx, item_idx) of the held-out targets; an item unknown to the graph is -1.

    Users missing from user_index cannot be queried and are left out.
    """
    s = to_pandas(read_table(spark, SAMPLES, cfg.dataset_lake()).where(F.col("split").isin(list(splits)))
                  .select("user_id", "item_id"))
    u = pd.Series(user_index["user_idx"].to_numpy(np.int64), index=user_index["user_id"].astype(str))
    i = pd.Series(item_index["item_idx"].to_numpy(np.int64), index=item_index["item_id"].astype(str))
    hu = u.reindex(s["user_id"].astype(str)).to_numpy()
    hi = i.reindex(s["item_id"].astype(str)).fillna(-1).to_numpy(np.int64)
    keep = ~np.isnan(hu)
    return hu[keep].astype(np.int64), hi[keep]


def table_neighbours(df: pd.DataFrame, user_index: pd.DataFrame, k: int) -> tuple[np.ndarray, np.ndarray]:
    """NEIGHBOURS rows -> (query user_idx [Q], neighbour idx [Q, k], -1 = none)."""
    pos = pd.Series(user_index["user_idx"].to_numpy(np.int64), index=user_index["user_id"].astype(str))
    users = df["user_id"].astype(str).drop_duplicates()
    users = users[users.isin(pos.index)]
    q = pos.reindex(users).to_numpy(np.int64)
    row = pd.Series(np.arange(q.size), index=users.to_numpy())
    neigh = np.full((q.size, k), -1, dtype=np.int64)
    got = df[df["rank"].notna() & df["user_id"].isin(row.index) & (df["rank"] <= k)]
    nb = pos.reindex(got["neighbour_user_id"].astype(str)).fillna(-1).to_numpy(np.int64)
    neigh[row.reindex(got["user_id"]).to_numpy(), got["rank"].to_numpy(np.int64) - 1] = nb
    return q, neigh


def _round(d: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 5) if isinstance(v, float) else v for k, v in d.items()}


def evaluate_dataset(spark: SparkSession, cfg: Config, retrievers: tuple[str, ...] = ("gcn", "llm"),
                     seed: int = 0) -> dict[str, Any]:
    """The quality report of one dataset (see module doc); JSON-ready."""
    rcfg = retriever_config(cfg)
    inp = load_inputs(spark, cfg)
    hu, hi = heldout_pairs(spark, cfg, inp.user_index, inp.item_index)
    tu, ti = training_edges(inp.edges, rcfg)
    n_items = len(inp.item_index)
    queries = np.unique(hu)
    # the version this config trains (the one its neighbours partition holds), else the
    # registry's promoted / newest one
    folder = registry.version_dir(cfg, f"retriever/{rcfg.name}", model_version(rcfg, inp.data_version))
    if not (folder / registry.META_FILE).is_file():
        folder = registry.resolve(cfg, f"retriever/{rcfg.name}")
    model = load_model(folder)
    warm = model.user_degree > 0  # saved degrees are zeroed for cold users
    args = (tu, ti, n_items, hu, hi)
    report: dict[str, Any] = {
        "dataset": cfg.dataset.name, "data_version": inp.data_version, "k": rcfg.k,
        "heldout_splits": ["valid", "test"], "heldout_users": int(queries.size),
        "heldout_targets": int(hu.size), "warm_users": int(warm.sum()),
        "gcn_model_version": model.model_version,
        "gcn_model_is_current": model.data_version == inp.data_version,
        "layers": {name: _round(m) for name, m in layer_report(
            model.user_layers, warm, queries, *args, k=rcfg.k, seed=seed,
            block_size=rcfg.search_block_size, candidate_block_size=rcfg.candidate_block_size).items()},
        "tables": {},
    }
    gcn_q, gcn_n = None, None
    for name in retrievers:
        df = read_neighbours(spark, cfg, name)
        if df.empty:
            report["tables"][name] = {"missing": True}
            continue
        q, neigh = table_neighbours(df, inp.user_index, rcfg.k)
        keep = np.isin(q, queries)
        q, neigh = q[keep], neigh[keep]
        entry: dict[str, Any] = {
            "model_version": sorted(set(df["model_version"].astype(str))),
            "covered_heldout_users": int(q.size),
            "metrics": _round(evaluate_neighbours(q, neigh, *args)),
            "random_same_users": _round(evaluate_neighbours(q, random_neighbours(q, warm, rcfg.k, seed), *args)),
        }
        if name == rcfg.name:
            gcn_q, gcn_n = q, neigh
        elif gcn_q is not None:
            rows = pd.Series(np.arange(gcn_q.size), index=gcn_q).reindex(q)
            ok = rows.notna().to_numpy()
            entry["gcn_same_users"] = _round(evaluate_neighbours(
                q[ok], gcn_n[rows[ok].to_numpy(np.int64)], *args))
        report["tables"][name] = entry
    return report
