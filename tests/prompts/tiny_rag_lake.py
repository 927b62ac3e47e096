"""A hand-made chronological lake for the prompt/scorer tests (shared by tests/prompts and
tests/evaluation): every row is written out here, so each leakage case is visible.

Users (movielens100k config: chronological, min_history 3, heldout_last_n 2):
* t1, t2, t3 train users, 6 items each, a sample at positions 3, 4, 5;
* v1 valid user: items A..E; targets D (pos 3) and E (pos 4); the graph holds A, B, C only;
* s1 test user: items F..J; targets I and J; graph holds F, G, H;
* c1 test user with no allowed interaction and no neighbour (cold); its only item is held out.
Neighbours (gcn): s1 -> [v1 (rank 1), t1 (rank 2)], v1 -> [t2], t* -> [t3]/[t1]; c1 -> cold row.
The gcn retriever's model folder holds 2-D user embeddings (s1's most similar users: v1, t1,
t2, then t3 pointing away; c1 cold). Besides their own sequences, t1, t2 and t3 rated s1's
first target I (graph edges only): its similar raters, for the evidence style.
Held-out targets ("SECRET ...") must never appear in any prompt's context.
"""
from __future__ import annotations

import pytest
from pyspark.sql import SparkSession

from optirag.tables import (
    EDGES, ITEM_INDEX, ITEMS, MANIFEST, NEIGHBOURS, SAMPLES, USER_INDEX, write_table,
)

TRAIN = {u: [f"{u}-i{p}" for p in range(6)] for u in ("t1", "t2", "t3")}
HELD = {"v1": ["vA", "vB", "vC", "SECRET-vD", "SECRET-vE"],
        "s1": ["sF", "sG", "sH", "SECRET-sI", "SECRET-sJ"],
        "c1": ["SECRET-cK"]}
NEIGHBOURS_GCN = {"s1": ["v1", "t1"], "v1": ["t2"], "t1": ["t3"], "t2": ["t1"], "t3": ["t1"]}
EMBEDDING = {"c1": (0.0, 0.0), "s1": (1.0, 0.0), "t1": (0.9, 0.2), "t2": (0.5, 0.5),
             "t3": (-1.0, 0.1), "v1": (0.95, 0.05)}
# other users' ratings of s1's held-out target I: in the graph, never in s1's own history
RATERS_OF_SI = {"t1": 5.0, "t2": 2.0, "t3": 4.0}


def _rating(user: str, pos: int) -> float:
    return float(1 + (len(user) * 7 + pos * 3) % 5)


def save_gcn_model(models_dir: str, users: list[str], items: list[str]) -> None:
    """retriever/gcn/gcn-v1: the EMBEDDING vectors (K = 1, both layers alike)."""
    import numpy as np

    from optirag.retrieval.embeddings import RetrieverModel, model_folder, save_model

    emb = np.array([EMBEDDING[u] for u in users], dtype=np.float32)
    save_model(RetrieverModel("gcn-v1", "tinyv1", {}, users, items, np.stack([emb, emb]),
                              np.zeros((2, len(items), 2), np.float32), emb,
                              np.array([0 if u == "c1" else 3 for u in users])),
               model_folder(f"{models_dir}/retriever", "gcn", "gcn-v1"))


def make_tiny_lake(spark: SparkSession, dataset_lake: str, models_dir: str,
                   neighbours: bool = True) -> None:
    all_items = sorted({i for items in [*TRAIN.values(), *HELD.values()] for i in items})
    items = [(i, f"Title of {i}", "Some Author" if i.startswith("t") else None, 1990 + len(i),
              None, ["Drama"] if i.startswith("s") else None, True) for i in all_items]
    write_table(spark.createDataFrame(items, ITEMS.schema), ITEMS, dataset_lake)

    seqs = {**TRAIN, **HELD}
    inter = {u: [(i, _rating(u, p), int(_rating(u, p) >= 4), 1000 + 10 * p) for p, i in enumerate(s)]
             for u, s in seqs.items()}
    samples = []
    for u, rows in inter.items():
        split = "train" if u.startswith("t") else ("valid" if u == "v1" else "test")
        positions = range(3, len(rows)) if split == "train" else (
            [p for p, r in enumerate(rows) if r[0].startswith("SECRET") and p >= 3])
        if u == "c1":
            positions = [0]  # cold: a target with no history at all
        for p in positions:
            item, rating, label, ts = rows[p]
            history = [(i, r, y, t) for i, r, y, t in rows[max(0, p - 15):p]]
            samples.append((f"{u}-{item}", u, item, label, rating, ts, history, split))
    write_table(spark.createDataFrame(samples, SAMPLES.schema), SAMPLES, dataset_lake)

    users = sorted(seqs)
    uidx = {u: k for k, u in enumerate(users)}
    iidx = {i: k for k, i in enumerate(all_items)}
    edges = [(uidx[u], iidx[i], r, y, t) for u, rows in inter.items() for i, r, y, t in rows
             if not i.startswith("SECRET")]
    edges += [(uidx[u], iidx["SECRET-sI"], r, int(r >= 4), 2000) for u, r in RATERS_OF_SI.items()]
    write_table(spark.createDataFrame(edges, EDGES.schema), EDGES, dataset_lake)
    degree = {u: sum(1 for e in edges if e[0] == uidx[u]) for u in users}
    write_table(spark.createDataFrame([(u, uidx[u], degree[u]) for u in users], USER_INDEX.schema),
                USER_INDEX, dataset_lake)
    write_table(spark.createDataFrame(
        [(i, iidx[i], sum(1 for e in edges if e[1] == iidx[i])) for i in all_items], ITEM_INDEX.schema),
        ITEM_INDEX, dataset_lake)
    import datetime as dt
    write_table(spark.createDataFrame(
        [("raw.inter", "inter", 1, 1, 0, "abc", "tinyv1", dt.datetime(2026, 1, 1))], MANIFEST.schema),
        MANIFEST, dataset_lake)
    if neighbours:
        save_gcn_model(models_dir, users, all_items)
        rows = [("gcn", "gcn-v1", u, n, r + 1, 0.9 - 0.1 * r, False)
                for u, ns in NEIGHBOURS_GCN.items() for r, n in enumerate(ns)]
        rows.append(("gcn", "gcn-v1", "c1", None, None, None, True))
        write_table(spark.createDataFrame(rows, NEIGHBOURS.schema), NEIGHBOURS, dataset_lake)


@pytest.fixture(scope="module")
def rag_lake(spark, tmp_path_factory):
    """(config, dataset_lake) of the hand-made lake, with the tiny model recipe and every
    output (models, reports) under a temp folder."""
    from optirag.config import load_config

    root = tmp_path_factory.mktemp("raglake")
    cfg = load_config("movielens100k", model="tiny", lake=str(root), overrides=[
        f"models_dir={root}/_models", f"evaluation.reports_dir={root}/reports",
        "prompts.train_max=100", "prompts.train_fraction=1.0", "prompts.token_budget=1000",
        "prompts.context_item=short",
        "evaluation.torch_threads=1",
        "evaluation.max_per_split=null", "evaluation.train_examples=null",
    ])
    make_tiny_lake(spark, cfg.dataset_lake(), str(cfg.model_store()))
    return cfg, cfg.dataset_lake()
