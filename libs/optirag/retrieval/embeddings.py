r"""User retrieval embeddings from LightGCN layers, and the model folder they live in.

Retrieval embedding (paper Sec. 4, Table 3):

.. math::
    \bar{\mathbf{e}}_u = \frac{1}{K}\sum_{k=1}^{K}\mathbf{e}^{(k)}_u
    \quad(\texttt{layer\_average}=\text{true},\ \texttt{include\_layer0}=\text{false}),

    \bar{\mathbf{e}}_u = \frac{1}{K+1}\sum_{k=0}^{K}\mathbf{e}^{(k)}_u
    \quad(\texttt{include\_layer0}=\text{true}, \text{LightGCN's own combination}),

    \bar{\mathbf{e}}_u = \mathbf{e}^{(K)}_u
    \quad(\texttt{layer\_average}=\text{false}, \text{"Last Layer" of Table 3}).

Cosine similarity is scale-invariant, so a mean and a sum give the same neighbours; the
mean is kept for readability of the stored vectors.

Model folder ``<models_dir>/<retriever>/<model_version>/``:

* ``embeddings.safetensors``: ``user_layers`` [K+1, n_users, d], ``item_layers``
  [K+1, n_items, d], ``user_embedding`` [n_users, d] (the retrieval embedding),
  ``user_degree`` [n_users] (training-graph degree; below ``cold_min_edges`` = cold).
* ``meta.json``: ``model_version``, ``data_version``, ``created_at`` (ISO UTC, the
  registry's order), ``retriever``, the validated
  retriever ``config``, sizes, per-epoch ``losses``, and the id maps ``user_ids`` /
  ``item_ids`` (position = idx), so the folder alone maps vectors back to ids.

Writes go to a temporary sibling folder renamed into place, so a reader never sees a
half-written model and a re-run of the same version replaces it whole.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from optirag.artifacts import atomic_folder
from optirag.retrieval.config import EMBEDDINGS_FILE, RetrieverConfig  # noqa: F401 (re-exported)

META_FILE = "meta.json"


def utc_now() -> str:
    """ISO-8601 UTC timestamp (microseconds, so two saves in a second still order)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def retrieval_embedding(user_layers: np.ndarray, layer_average: bool = True,
                        include_layer0: bool = False) -> np.ndarray:
    """[K+1, n, d] layers -> [n, d] retrieval embedding (see module doc), float32."""
    layers = np.asarray(user_layers)
    if layers.ndim != 3 or layers.shape[0] < 1:
        raise ValueError(f"expected layers of shape [K+1, n, d], got {layers.shape}")
    K = layers.shape[0] - 1
    if not layer_average:
        return np.ascontiguousarray(layers[K], dtype=np.float32)
    if include_layer0:
        picked = layers
    else:
        if K < 1:
            raise ValueError("averaging layers 1..K needs K >= 1")
        picked = layers[1:]
    # accumulate in float64: the mean of float32 layers does not depend on summation order
    return picked.astype(np.float64).mean(axis=0).astype(np.float32)


def embedding_for(cfg: RetrieverConfig, user_layers: np.ndarray) -> np.ndarray:
    """The retrieval embedding the config asks for."""
    return retrieval_embedding(user_layers, cfg.layer_average, cfg.include_layer0)


@dataclass
class RetrieverModel:
    """Everything the neighbour search and the quality report need from a trained model."""

    model_version: str
    data_version: str
    config: dict[str, Any]
    user_ids: list[str]
    item_ids: list[str]
    user_layers: np.ndarray
    item_layers: np.ndarray
    user_embedding: np.ndarray
    user_degree: np.ndarray
    retriever: str = "gcn"
    losses: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def _tensor(a: np.ndarray, dtype: type) -> torch.Tensor:
    arr = np.ascontiguousarray(a, dtype=dtype)
    # arrays coming back from Ray's object store are read-only; torch wants writable ones
    return torch.from_numpy(arr if arr.flags.writeable else arr.copy())


def save_model(model: RetrieverModel, folder: str | os.PathLike) -> Path:
    """Write the model folder atomically; return its path."""
    folder = Path(folder)
    n_users = model.user_embedding.shape[0]
    if len(model.user_ids) != n_users or model.user_degree.shape[0] != n_users:
        raise ValueError("user_ids / user_degree / user_embedding disagree on the user count")
    if len(model.item_ids) != model.item_layers.shape[1]:
        raise ValueError("item_ids and item_layers disagree on the item count")
    with atomic_folder(folder) as tmp:  # readers never see a half-written model
        tensors = {
            "user_layers": _tensor(model.user_layers, np.float32),
            "item_layers": _tensor(model.item_layers, np.float32),
            "user_embedding": _tensor(model.user_embedding, np.float32),
            "user_degree": _tensor(model.user_degree, np.int64),
        }
        save_file(tensors, str(tmp / EMBEDDINGS_FILE),
                  metadata={"model_version": model.model_version, "data_version": model.data_version})
        meta = {
            "model_version": model.model_version,
            "data_version": model.data_version,
            "created_at": utc_now(),  # optirag.registry.versions() orders by it
            "retriever": model.retriever,
            "config": model.config,
            "n_users": n_users,
            "n_items": len(model.item_ids),
            "num_layers": int(model.user_layers.shape[0] - 1),
            "embedding_dim": int(model.user_embedding.shape[1]),
            "losses": [float(x) for x in model.losses],
            "extra": model.extra,
            "user_ids": [str(x) for x in model.user_ids],
            "item_ids": [str(x) for x in model.item_ids],
        }
        with open(tmp / META_FILE, "w", encoding="utf-8") as f:
            json.dump(meta, f)
    return folder


def load_model(folder: str | os.PathLike) -> RetrieverModel:
    folder = Path(folder)
    with open(folder / META_FILE, encoding="utf-8") as f:
        meta = json.load(f)
    t = load_file(str(folder / EMBEDDINGS_FILE))
    return RetrieverModel(
        model_version=meta["model_version"],
        data_version=meta["data_version"],
        config=meta["config"],
        user_ids=meta["user_ids"],
        item_ids=meta["item_ids"],
        user_layers=t["user_layers"].numpy(),
        item_layers=t["item_layers"].numpy(),
        user_embedding=t["user_embedding"].numpy(),
        user_degree=t["user_degree"].numpy(),
        retriever=meta["retriever"],
        losses=meta.get("losses", []),
        extra=meta.get("extra", {}),
    )


def model_folder(models_dir: str | os.PathLike, retriever: str, model_version: str) -> Path:
    return Path(models_dir) / retriever / model_version


def ids_by_index(ids: Sequence[Any], idx: Sequence[int], n: int, what: str) -> list[str]:
    """Position ``idx[r]`` -> ``ids[r]`` as a dense list of length n; gaps/duplicates fail."""
    out: list[str | None] = [None] * n
    for i, x in zip(np.asarray(idx).tolist(), list(ids)):
        if not 0 <= i < n:
            raise ValueError(f"{what}: index {i} outside [0, {n})")
        if out[i] is not None:
            raise ValueError(f"{what}: index {i} appears twice")
        out[i] = str(x)
    missing = [i for i, x in enumerate(out) if x is None]
    if missing:
        raise ValueError(f"{what}: indices not contiguous, e.g. {missing[:5]} missing")
    return out  # type: ignore[return-value]
