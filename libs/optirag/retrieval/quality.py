r"""Offline retrieval quality: do a user's neighbours know the user's held-out items?

The retriever exists to put *useful* users in the prompt: ones whose interactions tell
the LLM something about the target item. For every evaluated user :math:`u` with
retrieved neighbours :math:`\mathcal{V}_u` and held-out (valid/test) targets
:math:`T_u`, let

.. math::
    U_u = \bigcup_{v \in \mathcal{V}_u} \mathcal{I}^{train}_v

be the union of the neighbours' training-graph items. Then

* ``hit_rate`` = share of users with :math:`T_u \cap U_u \neq \emptyset` (for one
  target per user: the share whose target is in the union);
* ``recall`` = mean over users of :math:`|T_u \cap U_u| / |T_u|` (recall@k-style: the
  union is what k neighbours can show);
* ``mean_union_size`` = mean :math:`|U_u|`: more items trivially hit more often, so
  compare retrievers at the same k and read hit rate together with this;
* ``hits_per_1k_items`` = hits per 1000 union items (a precision-like view).

Users with no neighbours (cold) count as misses; the share is reported as
``cold_share``. Floors: the same metrics for seeded uniformly random warm neighbours.
:func:`layer_report` evaluates the paper's Table 3 question (layer average vs last
layer, plus LightGCN's average including layer 0) next to the random floor.
Everything is numpy/pandas; membership uses sorted ``user * n_items + item`` keys.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from optirag.retrieval.embeddings import retrieval_embedding
from optirag.retrieval.topk import cosine_topk


def _edge_keys(user_idx: np.ndarray, item_idx: np.ndarray, n_items: int) -> np.ndarray:
    return np.unique(np.asarray(user_idx, np.int64) * n_items + np.asarray(item_idx, np.int64))


def _has(keys: np.ndarray, q: np.ndarray) -> np.ndarray:
    if keys.size == 0:
        return np.zeros(q.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(keys, q), keys.size - 1)
    return keys[pos] == q


def evaluate_neighbours(
    query_user_idx: np.ndarray,
    neigh: np.ndarray,
    train_user_idx: np.ndarray,
    train_item_idx: np.ndarray,
    n_items: int,
    heldout_user_idx: np.ndarray,
    heldout_item_idx: np.ndarray,
) -> dict[str, float]:
    """Metrics above for the users in ``query_user_idx`` (neigh: [Q, k], -1 = none).

    Held-out pairs of users not in ``query_user_idx`` are ignored; an item idx < 0
    (target item unknown to the graph) is a miss.
    """
    q = np.asarray(query_user_idx, np.int64)
    neigh = np.asarray(neigh, np.int64)
    if neigh.shape[0] != q.shape[0]:
        raise ValueError("one neighbour row per query user expected")
    order = np.argsort(q, kind="stable")
    qs = q[order]
    hu = np.asarray(heldout_user_idx, np.int64)
    hi = np.asarray(heldout_item_idx, np.int64)
    if qs.size:
        pos = np.minimum(np.searchsorted(qs, hu), qs.size - 1)
        inq = qs[pos] == hu
    else:
        pos, inq = np.zeros(hu.shape, np.int64), np.zeros(hu.shape, bool)
    rows = order[pos[inq]]
    hu, hi = hu[inq], hi[inq]
    keys = _edge_keys(train_user_idx, train_item_idx, n_items)

    # pair (held-out target, neighbour slot): hit if that neighbour has the item
    nb = neigh[rows]  # [P, k]
    lookup = np.where(nb >= 0, nb * n_items + hi[:, None], -1)
    pair_hit = (_has(keys, lookup) & (nb >= 0) & (hi[:, None] >= 0)).any(axis=1)

    # per user aggregation (users = rows of the query table that have held-out pairs)
    users, inv = np.unique(rows, return_inverse=True)
    n_targets = np.bincount(inv, minlength=users.size)
    n_hits = np.bincount(inv, weights=pair_hit, minlength=users.size)

    # union sizes of the neighbours' items for those users
    indptr = np.zeros(1, np.int64)
    if keys.size:
        tu = keys // n_items
        counts = np.bincount(tu, minlength=int(max(tu.max(), neigh.max(initial=0))) + 1)
        indptr = np.concatenate([[0], np.cumsum(counts)])
    items = keys % n_items if keys.size else keys
    union = np.zeros(users.size, dtype=np.int64)
    for r_i, r in enumerate(users):
        vs = neigh[r][neigh[r] >= 0]
        vs = vs[vs < indptr.size - 1]
        if vs.size:
            union[r_i] = np.unique(np.concatenate([items[indptr[v]:indptr[v + 1]] for v in vs])).size
    n_users = int(users.size)
    if n_users == 0:
        return {"n_users": 0, "n_targets": 0, "hit_rate": float("nan"), "recall": float("nan"),
                "mean_union_size": float("nan"), "hits_per_1k_items": float("nan"),
                "cold_share": float("nan")}
    no_neigh = (neigh[users] < 0).all(axis=1)
    return {
        "n_users": n_users,
        "n_targets": int(n_targets.sum()),
        "hit_rate": float((n_hits > 0).mean()),
        "recall": float((n_hits / n_targets).mean()),
        "mean_union_size": float(union.mean()),
        "hits_per_1k_items": float(1000.0 * n_hits.sum() / max(union.sum(), 1)),
        "cold_share": float(no_neigh.mean()),
    }


def random_neighbours(query_user_idx: np.ndarray, warm: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k distinct uniformly random warm users per warm query (never itself); cold -> -1."""
    q = np.asarray(query_user_idx, np.int64)
    pool = np.nonzero(np.asarray(warm, bool))[0]
    rng = np.random.default_rng(seed)
    out = np.full((q.shape[0], k), -1, dtype=np.int64)
    for r, u in enumerate(q):
        if not warm[u]:
            continue
        want = min(k, pool.size - 1)
        got: list[int] = []
        while len(got) < want:
            for v in pool[rng.integers(0, pool.size, size=2 * k + 2)]:
                if v != u and v not in got:
                    got.append(int(v))
                    if len(got) == want:
                        break
        out[r, :want] = got
    return out


def layer_report(
    user_layers: np.ndarray,
    warm: np.ndarray,
    query_user_idx: np.ndarray,
    train_user_idx: np.ndarray,
    train_item_idx: np.ndarray,
    n_items: int,
    heldout_user_idx: np.ndarray,
    heldout_item_idx: np.ndarray,
    k: int = 4,
    seed: int = 0,
    block_size: int = 1024,
    candidate_block_size: int = 4096,
) -> dict[str, dict[str, Any]]:
    """Quality of: layer average (1..K), average incl. layer 0, last layer, random floor."""
    variants = {
        "average": dict(layer_average=True, include_layer0=False),
        "average_with_layer0": dict(layer_average=True, include_layer0=True),
        "last_layer": dict(layer_average=False, include_layer0=False),
    }
    args = (train_user_idx, train_item_idx, n_items, heldout_user_idx, heldout_item_idx)
    report: dict[str, dict[str, Any]] = {}
    for name, kw in variants.items():
        emb = retrieval_embedding(user_layers, **kw)
        neigh, _, _ = cosine_topk(emb, k, query_user_idx, warm, block_size, candidate_block_size)
        report[name] = evaluate_neighbours(query_user_idx, neigh, *args)
    report["random"] = evaluate_neighbours(
        query_user_idx, random_neighbours(query_user_idx, warm, k, seed), *args)
    return report
