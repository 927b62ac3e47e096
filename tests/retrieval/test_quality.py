from __future__ import annotations

import numpy as np
import pytest

from optirag.retrieval.quality import evaluate_neighbours, layer_report, random_neighbours

# train graph: user 0: items {0, 1}; user 1: {1, 2}; user 2: {3}; user 3: {} (cold)
TU = np.array([0, 0, 1, 1, 2])
TI = np.array([0, 1, 1, 2, 3])


def test_metrics_by_hand():
    queries = np.array([0, 2, 3])
    neigh = np.array([[1, 2], [0, -1], [-1, -1]])
    # user 0: union of users 1, 2 = {1, 2, 3}; targets {2, 4} -> 1 of 2 found
    # user 2: union of user 0 = {0, 1};       targets {1}    -> found
    # user 3: cold, no neighbours;            targets {0}    -> miss
    # user 1: not queried -> its held-out pair is ignored
    hu = np.array([0, 0, 2, 3, 1])
    hi = np.array([2, 4, 1, 0, 0])
    m = evaluate_neighbours(queries, neigh, TU, TI, 5, hu, hi)
    assert m["n_users"] == 3 and m["n_targets"] == 4
    assert m["hit_rate"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert m["mean_union_size"] == pytest.approx((3 + 2 + 0) / 3)
    assert m["hits_per_1k_items"] == pytest.approx(1000 * 2 / 5)
    assert m["cold_share"] == pytest.approx(1 / 3)


def test_unknown_target_item_is_a_miss():
    m = evaluate_neighbours(np.array([0]), np.array([[1]]), TU, TI, 5, np.array([0]), np.array([-1]))
    assert m["hit_rate"] == 0.0


def test_random_neighbours_are_seeded_distinct_warm_and_not_self():
    warm = np.ones(50, bool)
    warm[[3, 4]] = False
    q = np.arange(50)
    a = random_neighbours(q, warm, 4, seed=1)
    assert np.array_equal(a, random_neighbours(q, warm, 4, seed=1))
    assert not np.array_equal(a, random_neighbours(q, warm, 4, seed=2))
    assert (a[[3, 4]] == -1).all()
    ok = np.delete(a, [3, 4], axis=0)
    assert not np.isin(ok, [3, 4]).any() and (ok != np.delete(q, [3, 4])[:, None]).all()
    assert all(len(set(r)) == 4 for r in ok.tolist())


def test_gcn_neighbours_beat_the_random_floor(trained_community, community_graph):
    cfg, res, _ = trained_community
    g = community_graph
    rep = layer_report(res.user_layers, res.user_degree > 0, np.arange(g.n_users), g.user_idx,
                       g.item_idx, g.n_items, g.heldout_user, g.heldout_item, k=4, seed=0)
    assert set(rep) == {"average", "average_with_layer0", "last_layer", "random"}
    for name in ("average", "average_with_layer0", "last_layer"):
        assert rep[name]["n_users"] == g.n_users
        # same-size unions (4 neighbours x 12 items), but from the right community
        assert rep[name]["hit_rate"] > rep["random"]["hit_rate"] + 0.1, (name, rep)
    assert abs(rep["average"]["mean_union_size"] - rep["random"]["mean_union_size"]) < 10
