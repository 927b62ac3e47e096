from __future__ import annotations

import numpy as np
import pytest
import torch

from optirag.retrieval.topk import cosine_topk, normalize_rows, pack_keys, unpack_keys


def brute_force(emb: np.ndarray, k: int, warm: np.ndarray, queries: np.ndarray):
    """Full N x N cosine (float32 unit rows, float64 products, rounded to float32 as the
    search specifies), then a plain sort by (-similarity, index)."""
    n = np.linalg.norm(emb.astype(np.float64), axis=1, keepdims=True)
    e = np.where(n > 0, emb / np.where(n > 0, n, 1), 0).astype(np.float32)
    S = np.clip(e.astype(np.float64) @ e.astype(np.float64).T, -1, 1).astype(np.float32)
    out = []
    for q in queries:
        if not warm[q]:
            out.append([])
            continue
        cands = sorted((-float(S[q, j]), j) for j in range(len(e)) if j != q and warm[j])
        out.append([j for _, j in cands[:k]])
    return out, S


def tie_heavy_embeddings(n: int, d: int, seed: int) -> np.ndarray:
    """Vectors with four +-1 entries: every norm is 2, every cosine a multiple of 1/4 and
    exactly representable, so massive exact ties whatever the summation order."""
    rng = np.random.default_rng(seed)
    emb = np.zeros((n, d), np.float32)
    for r in range(n):
        emb[r, rng.choice(d, 4, replace=False)] = rng.choice([-1.0, 1.0], 4)
    return emb


def _rows(neigh):
    return [[int(x) for x in row if x >= 0] for row in neigh]


@pytest.mark.parametrize("block,cand_block", [(1, 17), (37, 53), (64, 10_000)])
def test_exact_with_ties_against_brute_force(block, cand_block):
    emb = tie_heavy_embeddings(500, 12, seed=1)
    warm = np.random.default_rng(2).random(500) > 0.1
    q = np.arange(500)
    neigh, sim, cold = cosine_topk(emb, 5, q, warm, block, cand_block)
    expected, S = brute_force(emb, 5, warm, q)
    assert _rows(neigh) == expected
    assert cold.tolist() == (~warm).tolist()
    for r, row in enumerate(expected):  # similarities are the exact cosines
        np.testing.assert_array_equal(sim[r, :len(row)], S[r, row])


def test_ties_are_common_in_that_data():
    # guard for the test above: the data really exercises tie-breaking at the cut
    emb = tie_heavy_embeddings(500, 12, seed=1)
    _, S = brute_force(emb, 5, np.ones(500, bool), np.arange(0))
    np.fill_diagonal(S, -np.inf)
    top = -np.sort(-S, axis=1)
    assert (top[:, 4] == top[:, 5]).mean() > 0.5


def test_exact_on_random_float_data():
    rng = np.random.default_rng(3)
    emb = rng.standard_normal((800, 16)).astype(np.float32)
    warm = rng.random(800) > 0.2
    q = rng.choice(800, 300, replace=False)
    neigh, sim, cold = cosine_topk(emb, 4, q, warm, 64, 100)
    expected, S = brute_force(emb, 4, warm, q)
    assert _rows(neigh) == expected
    for r, (qq, row) in enumerate(zip(q, expected)):
        np.testing.assert_array_equal(sim[r, :len(row)], S[qq, row])


def test_result_invariants():
    rng = np.random.default_rng(4)
    n, k = 300, 6
    emb = rng.standard_normal((n, 8)).astype(np.float32)
    emb[5] = 0.0  # a zero vector: similarity 0 to everyone, still a valid user
    emb[7] = emb[8] * 2  # parallel: identical unit rows, cosine 1 (clamped, never above)
    warm = np.ones(n, bool)
    warm[[10, 11, 12]] = False
    neigh, sim, cold = cosine_topk(emb, k, None, warm, 32, 50)
    assert neigh.shape == (n, k) and sim.shape == (n, k)
    assert cold.tolist() == (~warm).tolist()
    assert (neigh[cold] == -1).all() and np.isnan(sim[cold]).all()    # flagged, not queried
    w = ~cold
    assert (neigh[w] != np.arange(n)[w, None]).all()                   # never self
    assert not np.isin(neigh, [10, 11, 12]).any()                       # cold never returned
    assert (np.diff(sim[w], axis=1) <= 0).all()                         # best first
    assert (sim[w] >= -1).all() and (sim[w] <= 1).all()
    assert neigh[7, 0] == 8 and sim[7, 0] == pytest.approx(1.0, abs=1e-7)
    assert (sim[w][neigh[w] == 5] == 0).all()


def test_fewer_warm_users_than_k():
    emb = np.eye(4, dtype=np.float32) + 0.1
    warm = np.array([True, True, True, False])
    neigh, sim, cold = cosine_topk(emb, 4, np.array([0, 3]), warm)
    assert neigh[0].tolist()[:2] in ([1, 2], [2, 1]) and neigh[0, 2:].tolist() == [-1, -1]
    assert np.isnan(sim[0, 2:]).all() and cold.tolist() == [False, True]


@pytest.mark.parametrize("seed", [5, 6])
def test_integer_data_any_block_sizes_match_brute_force(seed):
    # arbitrary small integer vectors: many exact duplicates / parallel rows (ties) and
    # near-ties that float32 BLAS would round differently per block shape
    rng = np.random.default_rng(seed)
    emb = rng.integers(-2, 3, size=(200, 6)).astype(np.float32)
    expected, S = brute_force(emb, 4, np.ones(200, bool), np.arange(200))
    for b, c in [(200, 200), (1, 3), (7, 13), (100, 199)]:
        neigh, sim, _ = cosine_topk(emb, 4, None, None, b, c)
        assert _rows(neigh) == expected, (b, c)
        np.testing.assert_array_equal(sim, np.take_along_axis(S, neigh, 1))


def test_key_packing_orders_like_similarity_then_index():
    sims = torch.tensor([0.5, -0.0, 0.0, -1.0, 1.0, 0.5, float("-inf"), 1e-30, -1e-30])
    idx = torch.arange(sims.numel())
    order = torch.argsort(pack_keys(sims, idx), descending=True).tolist()
    assert order == [4, 0, 5, 7, 1, 2, 8, 3, 6]
    s, i = unpack_keys(pack_keys(sims, idx))
    assert torch.equal(i, idx) and torch.equal(s[sims.isfinite()], (sims + 0.0)[sims.isfinite()])


def test_rejects_non_finite_embeddings():
    with pytest.raises(ValueError, match="NaN"):
        normalize_rows(np.array([[np.nan, 1.0]]))


def test_memory_is_bounded_by_the_blocks():
    """12k users all-pairs: an N x N float32 matrix would be 550 MB; the blocks ~1 MB."""
    from optirag_bench.retrieval import bench_search_subprocess

    r = bench_search_subprocess(timeout=300, n_users=12_000, dim=16, n_queries=None, block_size=128,
                                candidate_block_size=2048, threads=2)
    assert r["n_queries"] == 12_000 and r["block_mb_worst"] < 6
    # working memory = candidate copy (0.7 MB) + blocks + allocator/thread slack; far
    # below N x N, which a non-blocked search would need
    assert r["search_working_mb"] < 100, {k: r[k] for k in ("rss_before_search_mb", "peak_rss_mb", "search_working_mb", "seconds")}
