"""Table-free body of the ``train_retriever`` job: edges in, NEIGHBOURS rows + model out.

``jobs/train_retriever.py`` reads ``edges``, ``user_index``, ``item_index`` and the
sample users from Delta, calls :func:`run_retriever`, and writes the returned frame to
``neighbours`` (partition ``retriever = <name>``). Everything here is pandas / numpy, so
it is testable without Spark.

Cold users. A user is cold when ``user_index.n_edges == 0`` or when it has fewer than
``cold_min_edges`` edges in the graph actually trained on (with
``train_edges: positive`` a user whose ratings are all negative is cold too). Cold users
are not queried (one NEIGHBOURS row, is_cold = true) and never returned as neighbours.
A sample user missing from ``user_index`` is cold, or an error with
``unknown_user: error``.

Model version. ``model_version(cfg, data_version)`` = first 12 hex digits of the
SHA-256 of the canonical JSON of the validated retriever config (seed included) and the
data version: the same inputs give the same version, so a re-run overwrites its own
model folder and NEIGHBOURS partition instead of adding a new one.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from optirag.retrieval.config import RetrieverConfig, retriever_config, training_key
from optirag.retrieval.embeddings import (
    RetrieverModel, embedding_for, ids_by_index, model_folder, save_model,
)
from optirag.retrieval.lightgcn import EpochCallback, LightGCNResult, torch_threads, train_lightgcn
from optirag.retrieval.neighbours import neighbours_frame
from optirag.retrieval.ray_search import Progress, search_ray, train_on_ray
from optirag.retrieval.topk import cosine_topk

log = logging.getLogger(__name__)


def model_version(cfg: RetrieverConfig, data_version: str) -> str:
    """Short, stable id of (retriever config incl. seed, data version).

    The ``llm`` sub-section configures the baseline, not this model: left out.
    """
    payload = json.dumps({"retriever": cfg.model_dump(mode="json", exclude={"llm"}),
                          "data_version": data_version},
                         sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:12]


def training_edges(edges_df: pd.DataFrame, cfg: RetrieverConfig) -> tuple[np.ndarray, np.ndarray]:
    """(user_idx, item_idx) of the edges the config trains on."""
    df = edges_df
    if cfg.train_edges == "positive":
        df = df[df["label"] == 1]
    return df["user_idx"].to_numpy(np.int64), df["item_idx"].to_numpy(np.int64)


def sample_user_index(sample_users: Iterable[str], user_index_df: pd.DataFrame,
                      unknown_user: str) -> tuple[list[str], np.ndarray]:
    """Unique sample user ids (first-seen order) and their idx, -1 for unknown users."""
    ids = list(dict.fromkeys(str(u) for u in sample_users))
    lookup = pd.Series(user_index_df["user_idx"].to_numpy(np.int64),
                       index=user_index_df["user_id"].astype(str).to_numpy())
    idx = lookup.reindex(ids).fillna(-1).to_numpy(np.int64)
    unknown = [u for u, i in zip(ids, idx) if i < 0]
    if unknown:
        if unknown_user == "error":
            raise ValueError(f"{len(unknown)} sample users are not in user_index, e.g. {unknown[:5]}")
        log.warning("%d sample users not in user_index: treated as cold", len(unknown))
    return ids, idx


def run_retriever(
    edges_df: pd.DataFrame,
    user_index_df: pd.DataFrame,
    sample_users: Iterable[str],
    cfg: Any,
    ray: Any = None,
    *,
    data_version: str,
    models_dir: str | Path,
    item_index_df: pd.DataFrame | None = None,
    on_epoch: EpochCallback | None = None,
    progress: Progress | None = None,
    trained: LightGCNResult | None = None,
) -> tuple[pd.DataFrame, Path]:
    """Train the GCN retriever, save the model folder, return (NEIGHBOURS rows, folder).

    cfg: the platform :class:`optirag.config.Config`, its ``retriever`` dict, or a
    :class:`RetrieverConfig`. ray: an initialised ``ray`` module (training and search run
    as Ray tasks) or None (both run in this process). The model folder is
    ``<models_dir>/<name>/<model_version>/`` (the job passes the registry's
    ``<cfg.model_store()>/retriever``). item_index_df gives item ids for the model folder;
    without it items are named by their idx. on_epoch(epoch, loss, seconds) reports
    training progress; on Ray the task prints it live and on_epoch is replayed with the
    losses once the task returns (seconds = NaN). progress(done, total) reports search
    blocks (Ray path). trained: layers of an already trained model with the same
    training config (see :func:`reuse_layers`); training is skipped.
    """
    rcfg = retriever_config(cfg)
    trained_from = getattr(trained, "source", None)
    user_ids = ids_by_index(user_index_df["user_id"], user_index_df["user_idx"], len(user_index_df), "user_index")
    n_users = len(user_ids)
    if item_index_df is not None:
        item_ids = ids_by_index(item_index_df["item_id"], item_index_df["item_idx"], len(item_index_df), "item_index")
    else:
        n_it = int(edges_df["item_idx"].max()) + 1 if len(edges_df) else 0
        item_ids = [str(i) for i in range(n_it)]
    n_items = len(item_ids)

    u, i = training_edges(edges_df, rcfg)
    log.info("retriever %s: %d users, %d items, %d training edges (%s)", rcfg.name, n_users,
             n_items, u.shape[0], rcfg.train_edges)
    if trained is not None:
        result = trained
    elif ray is not None:
        result: LightGCNResult = train_on_ray(ray, u, i, n_users, n_items, rcfg)
        if on_epoch is not None:
            for e, loss in enumerate(result.losses, 1):
                on_epoch(e, loss, float("nan"))
    else:
        result = train_lightgcn(u, i, n_users, n_items, rcfg, on_epoch=on_epoch)

    emb = embedding_for(rcfg, result.user_layers)
    index_edges = np.zeros(n_users, dtype=np.int64)
    index_edges[user_index_df["user_idx"].to_numpy(np.int64)] = user_index_df["n_edges"].to_numpy(np.int64)
    warm = (result.user_degree >= rcfg.cold_min_edges) & (index_edges > 0)
    mismatch = int(((index_edges == 0) & (result.user_degree > 0)).sum())
    if mismatch:
        log.warning("%d users have n_edges = 0 in user_index but edges in the graph; kept cold", mismatch)

    version = model_version(rcfg, data_version)
    folder = model_folder(models_dir, rcfg.name, version)
    save_model(RetrieverModel(
        model_version=version, data_version=data_version, config=rcfg.model_dump(mode="json"),
        user_ids=user_ids, item_ids=item_ids, user_layers=result.user_layers,
        item_layers=result.item_layers, user_embedding=emb,
        user_degree=np.where(warm, result.user_degree, 0), retriever=rcfg.name,
        losses=result.losses,
        extra={"n_edges": result.n_edges, "train_seconds": result.seconds,
               "n_warm_users": int(warm.sum()), **({"layers_from": trained_from} if trained_from else {})},
    ), folder)

    q_ids, q_idx = sample_user_index(sample_users, user_index_df, rcfg.unknown_user)
    known = q_idx >= 0
    neigh = np.full((len(q_ids), rcfg.k), -1, dtype=np.int64)
    sim = np.full((len(q_ids), rcfg.k), np.nan, dtype=np.float32)
    is_cold = np.ones(len(q_ids), dtype=bool)
    if known.any():
        if ray is not None:
            n, s, c = search_ray(ray, emb, rcfg.k, q_idx[known], warm, rcfg, progress=progress)
        else:
            with torch_threads(rcfg.torch_threads):
                n, s, c = cosine_topk(emb, rcfg.k, q_idx[known], warm, rcfg.search_block_size,
                                      rcfg.candidate_block_size)
        neigh[known], sim[known], is_cold[known] = n, s, c
    df = neighbours_frame(rcfg.name, version, q_ids, neigh, sim, is_cold, user_ids)
    log.info("neighbours: %d sample users (%d cold), %d rows, model %s", len(q_ids),
             int(is_cold.sum()), len(df), folder)
    return df, folder


@dataclass
class ReusedLayers(LightGCNResult):
    source: str = ""   # "<retriever>/<model_version>" the layers come from


def reuse_layers(model: RetrieverModel, cfg: RetrieverConfig, data_version: str) -> ReusedLayers | None:
    """The layers of a saved model as a training result, or None when that model was
    trained on other data or with another training config (then the caller trains)."""
    if model.data_version != data_version or training_key(model.config) != training_key(cfg):
        return None
    if model.config.get("cold_min_edges") != cfg.cold_min_edges:
        return None   # the saved degrees are zeroed for the model's own cold users
    return ReusedLayers(
        user_layers=model.user_layers, item_layers=model.item_layers,
        user_degree=np.asarray(model.user_degree, dtype=np.int64),
        item_degree=np.zeros(model.item_layers.shape[1], dtype=np.int64),
        losses=list(model.losses), seconds=float(model.extra.get("train_seconds", 0.0)),
        n_edges=int(model.extra.get("n_edges", 0)),
        source=f"{model.retriever}/{model.model_version}")
