r"""Blocked exact cosine top-k over users, without ever forming an N x N matrix.

For every query user :math:`u` return the k warm users :math:`v \ne u` with the largest

.. math::
    \operatorname{sim}(u, v) = \frac{\mathbf{e}_u^\top \mathbf{e}_v}{\|\mathbf{e}_u\|\,\|\mathbf{e}_v\|}
    = \hat{\mathbf{e}}_u^\top \hat{\mathbf{e}}_v, \qquad
    \hat{\mathbf{e}} = \mathbf{e} / \|\mathbf{e}\| \ (\text{a zero vector stays } 0),

ordered by **higher similarity first, then lower user index** (a total order, so the
result does not depend on block sizes, thread counts or ``torch.topk``'s tie handling).

Algorithm. Rows are normalised once (float32); cold users (too few training edges) are
dropped from the candidate matrix, so they can never be returned, and are never queried
(the caller flags them instead). For a block of B query rows and each block of C
candidate rows, ``S = Q C^T`` (B x C, float32 BLAS) is reduced to its k best entries and
merged into a running B x k top-k. Peak extra memory is about ``4 * B * C`` bytes, up
to ``20 * B * C`` on rows that need the exact path below, independent of the number of
users.

Exactness. BLAS rounds the same float32 dot product differently for different matrix
shapes (and so block sizes), so float32 ``S`` alone would make ties, and the order of
users with equal cosines, depend on the block sizes. Therefore:

* the similarity of every *returned* pair is recomputed with float64 accumulation and
  rounded to float32: ``sim = fl32(clamp(sum_t fl64(q_t c_t), -1, 1))`` (unit rows in
  float32 can give a hair above 1); it is the same whatever the block shapes (the
  float64 error, ~1e-16, only matters at a float32 rounding midpoint);
* where the float32 k-th and (k+1)-th values of a row are closer than the float32 error
  bound (:func:`tie_tolerance`, ``4 * d * 2^-24``), the float32 cut is not trusted and
  the whole row of the block is redone in float64 (rare for real-valued embeddings;
  every row for duplicate-heavy or integer data, which is exactly where ties live);
* a (similarity, index) pair is packed into one int64 key, high 32 bits an
  order-preserving integer image of the float32 similarity, low 32 bits
  ``2^32 - 1 - index``; keys are unique and their integer order is exactly "higher
  similarity first, then lower index", so ``topk`` on keys is exact and the running
  top-k is kept as keys.

So the result equals a brute-force sort by (-sim, index) over all pairs (tested with
massive ties), for any block sizes and thread counts.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

_LOW = 1 << 32
_INT64_MIN = torch.iinfo(torch.int64).min


def normalize_rows(x: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Row-wise L2 normalisation into a new float32 array; all-zero rows stay zero.

    Norms are accumulated in float64, ``chunk`` rows at a time, so the temporaries stay
    bounded (a float64 copy of a 1M x 64 matrix would be 0.5 GB).
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-d embedding matrix, got shape {x.shape}")
    out = np.empty(x.shape, dtype=np.float32)
    for s in range(0, x.shape[0], chunk):
        part = x[s:s + chunk].astype(np.float64)
        if not np.isfinite(part).all():
            raise ValueError("embeddings contain NaN or inf")
        norms = np.sqrt(np.einsum("ij,ij->i", part, part))[:, None]
        np.divide(part, norms, out=part, where=norms > 0)  # zero rows are left as zeros
        out[s:s + chunk] = part
    return out


def pack_keys(sim: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """(float32 similarity, int64 index < 2^32) -> int64 key; larger key = better."""
    bits = (sim.to(torch.float32) + 0.0).contiguous().view(torch.int32)  # +0.0: -0.0 -> +0.0
    # IEEE floats compare like sign-magnitude ints: flip the magnitude bits of negatives
    bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    return bits.to(torch.int64) * _LOW + (_LOW - 1 - idx)


def unpack_keys(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`pack_keys`: (similarity float32, index int64)."""
    hi = torch.div(keys, _LOW, rounding_mode="floor")
    idx = (_LOW - 1) - (keys - hi * _LOW)
    bits = hi.to(torch.int32)
    bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    return bits.view(torch.float32), idx


def tie_tolerance(dim: int) -> float:
    """Bound on how far apart two float32 dot products of unit vectors can come out.

    A float32 dot product of length d is off by at most ~d * 2^-24 for unit vectors;
    two of them compared need twice that; 4 * d * 2^-24 leaves a factor 2 of margin.
    """
    return 4.0 * dim * 2.0**-24


def _exact_scores(q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """[..., d] x [..., d] -> float32 of the float64 dot, clamped to [-1, 1] (module doc)."""
    return (q.double() * c.double()).sum(-1).clamp(-1.0, 1.0).to(torch.float32)


def _block_best(s: torch.Tensor, q: torch.Tensor, c: torch.Tensor, col_ids: torch.Tensor,
                k: int, tol: float) -> torch.Tensor:
    """Packed keys of the best min(k, C) entries of each row of s = q c^T (B x C).

    s is the fast float32 product with masked entries at -inf. The returned keys carry
    the float64-accumulated similarities and are exact in the (similarity, index) order.
    """
    C = s.shape[1]
    kk = min(k, C)
    # one extra entry shows whether the cut between k-th and (k+1)-th is clear
    vals, pos = torch.topk(s, min(kk + 1, C), dim=1, sorted=True)
    sel = pos[:, :kk]
    exact = _exact_scores(q.unsqueeze(1), c[sel])
    exact = torch.where(torch.isneginf(vals[:, :kk]), float("-inf"), exact)  # keep masks
    keys = pack_keys(exact, col_ids[sel])
    if kk < C:
        # closer than the float32 error bound: the float32 cut may be wrong or a tie may
        # hide beyond it; redo the whole row in float64 on unique keys
        near = ((vals[:, kk - 1] - vals[:, kk]) <= tol) & torch.isfinite(vals[:, kk])
        if bool(near.any()):
            rows = near.nonzero()[:, 0]
            full = (q[rows].double() @ c.double().T).clamp(-1.0, 1.0).to(torch.float32)
            full = torch.where(torch.isneginf(s[rows]), float("-inf"), full)
            full_keys = pack_keys(full, col_ids.expand(rows.shape[0], -1))
            keys[rows] = torch.topk(full_keys, kk, dim=1, sorted=False).values
    return keys


def search_block(
    cand: torch.Tensor | np.ndarray,
    cand_idx: torch.Tensor | np.ndarray,
    query_pos: np.ndarray,
    k: int,
    candidate_block_size: int = 4096,
    query: np.ndarray | torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k neighbours of one block of queries against all candidates.

    cand: [C, d] normalised candidate rows; cand_idx: [C] their global user indices,
    strictly increasing (so "lower position" = "lower user index").
    query_pos: [B] position of each query in ``cand`` (excluded as its own neighbour),
    or -1 for a query that is not a candidate (then ``query`` must give its vector).
    Returns (neighbour global index [B, k] int64, -1 padded; similarity [B, k] float32,
    NaN padded), rows sorted best first.
    """
    cand_t = torch.as_tensor(cand)
    ids_t = torch.as_tensor(np.asarray(cand_idx), dtype=torch.int64)
    qpos = np.asarray(query_pos, dtype=np.int64)
    if query is None:
        if (qpos < 0).any():
            raise ValueError("query vectors needed for queries that are not candidates")
        q = cand_t[torch.from_numpy(qpos)]
    else:
        q = torch.as_tensor(query, dtype=torch.float32)
    B, C = q.shape[0], cand_t.shape[0]
    best = torch.full((B, k), _INT64_MIN, dtype=torch.int64)
    positions = torch.arange(C, dtype=torch.int64)
    tol = tie_tolerance(q.shape[1])
    for c0 in range(0, C, candidate_block_size):
        c1 = min(C, c0 + candidate_block_size)
        cb = cand_t[c0:c1]
        s = q @ cb.T
        # a query is never its own neighbour
        own = np.nonzero((qpos >= c0) & (qpos < c1))[0]
        if own.size:
            s[torch.from_numpy(own), torch.from_numpy(qpos[own] - c0)] = float("-inf")
        # keys carry candidate *positions*; positions are in user-index order
        block = _block_best(s, q, cb, positions[c0:c1], k, tol)
        best = torch.topk(torch.cat([best, block], dim=1), k, dim=1, sorted=True).values
    if C == 0:
        return np.full((B, k), -1, dtype=np.int64), np.full((B, k), np.nan, dtype=np.float32)
    sim, pos = unpack_keys(best)
    valid = torch.isfinite(sim) & (best != _INT64_MIN)
    neigh = torch.where(valid, ids_t[pos.clamp(0, C - 1)], -1)
    sim = torch.where(valid, sim, float("nan"))
    return neigh.numpy().astype(np.int64), sim.numpy().astype(np.float32)


@dataclass
class Candidates:
    """Normalised warm-user rows and their global indices (the search's shared input)."""

    emb: np.ndarray  # float32 [C, d], normalised
    idx: np.ndarray  # int64 [C], strictly increasing global user index


def prepare_candidates(emb: np.ndarray, warm: np.ndarray | None = None) -> Candidates:
    """Normalise and keep only warm users (cold ones are never returned as neighbours)."""
    emb = np.asarray(emb)
    warm = np.ones(emb.shape[0], dtype=bool) if warm is None else np.asarray(warm, dtype=bool)
    if warm.shape != (emb.shape[0],):
        raise ValueError("warm mask must have one entry per embedding row")
    idx = np.nonzero(warm)[0].astype(np.int64)
    # all warm: normalise straight from emb, no intermediate gathered copy
    return Candidates(normalize_rows(emb if idx.size == emb.shape[0] else emb[idx]), idx)


def query_blocks(query_idx: np.ndarray, cands: Candidates, block_size: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Map warm query indices to candidate positions and cut them into blocks.

    Returns (is_cold [Q] bool, list of position arrays for the warm queries in order).
    """
    q = np.asarray(query_idx, dtype=np.int64)
    pos = np.searchsorted(cands.idx, q)
    inside = pos < cands.idx.shape[0]
    is_warm = np.zeros(q.shape[0], dtype=bool)
    is_warm[inside] = cands.idx[pos[inside]] == q[inside]
    warm_pos = pos[is_warm]
    blocks = [warm_pos[s:s + block_size] for s in range(0, warm_pos.shape[0], block_size)]
    return ~is_warm, blocks


def assemble(is_cold: np.ndarray, parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Scatter per-block results back to query order; cold rows get -1 / NaN."""
    Q = is_cold.shape[0]
    neigh = np.full((Q, k), -1, dtype=np.int64)
    sim = np.full((Q, k), np.nan, dtype=np.float32)
    if parts:
        neigh[~is_cold] = np.concatenate([p[0] for p in parts])
        sim[~is_cold] = np.concatenate([p[1] for p in parts])
    return neigh, sim


def cosine_topk(
    emb: np.ndarray,
    k: int,
    query_idx: np.ndarray | None = None,
    warm: np.ndarray | None = None,
    block_size: int = 1024,
    candidate_block_size: int = 4096,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local (single-process) blocked search.

    emb: [N, d] raw user embeddings; warm: [N] bool (False = cold); query_idx: users to
    query (default: every user). Returns (neighbours [Q, k] int64 with -1 padding,
    similarities [Q, k] float32 with NaN padding, is_cold [Q] bool). Cold queries get
    no neighbours; a warm query gets fewer than k only if fewer than k other warm users
    exist.
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    cands = prepare_candidates(emb, warm)
    if query_idx is None:
        query_idx = np.arange(np.asarray(emb).shape[0])
    is_cold, blocks = query_blocks(query_idx, cands, block_size)
    parts = [search_block(cands.emb, cands.idx, b, k, candidate_block_size) for b in blocks]
    neigh, sim = assemble(is_cold, parts, k)
    return neigh, sim, is_cold
