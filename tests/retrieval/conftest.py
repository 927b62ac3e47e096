"""Shared fixtures: one real local Ray runtime per session, and a graph with communities."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pytest

warnings.filterwarnings("ignore", message=".*[Ss]parse.*")


@pytest.fixture(scope="session")
def ray_runtime():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@dataclass
class CommunityGraph:
    n_users: int
    n_items: int
    user_idx: np.ndarray  # training edges
    item_idx: np.ndarray
    user_comm: np.ndarray
    item_comm: np.ndarray
    heldout_user: np.ndarray  # one held-out in-community item per user
    heldout_item: np.ndarray


def make_community_graph(n_users=600, n_items=400, n_comm=4, n_in=8, n_noise=4, seed=0) -> CommunityGraph:
    """Users and items in n_comm communities; each user has n_in in-community items plus
    n_noise uniformly random ones (noise), and one more in-community item held out."""
    rng = np.random.default_rng(seed)
    uc = np.arange(n_users) % n_comm
    ic = np.arange(n_items) % n_comm
    U, I, HU, HI = [], [], [], []
    for u in range(n_users):
        own = np.nonzero(ic == uc[u])[0]
        pick = rng.choice(own, n_in + 1, replace=False)
        noise = rng.choice(np.setdiff1d(np.arange(n_items), pick), n_noise, replace=False)
        items = np.concatenate([pick[:n_in], noise])
        U += [u] * items.size
        I += items.tolist()
        HU.append(u)
        HI.append(int(pick[n_in]))
    return CommunityGraph(n_users, n_items, np.array(U), np.array(I), uc, ic, np.array(HU), np.array(HI))


@pytest.fixture(scope="session")
def community_graph() -> CommunityGraph:
    return make_community_graph()


@pytest.fixture(scope="session")
def trained_community(community_graph):
    """LightGCN trained once on the community graph (several tests read it)."""
    from optirag.retrieval.config import RetrieverConfig
    from optirag.retrieval.lightgcn import train_lightgcn

    g = community_graph
    cfg = RetrieverConfig(embedding_dim=32, epochs=25, batch_size=1024, lr=0.01, torch_threads=2, seed=7)
    epochs: list[tuple[int, float]] = []
    res = train_lightgcn(g.user_idx, g.item_idx, g.n_users, g.n_items, cfg,
                         on_epoch=lambda e, loss, s: epochs.append((e, loss)))
    return cfg, res, epochs
