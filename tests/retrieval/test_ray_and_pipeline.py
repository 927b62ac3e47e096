"""The Ray paths (real local Ray runtime) against the local ones, and the job body."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import make_community_graph
from optirag.retrieval.config import RetrieverConfig
from optirag.retrieval.embeddings import load_model
from optirag.retrieval.lightgcn import train_lightgcn
from optirag.retrieval.neighbours import NEIGHBOURS_SCHEMA, to_arrow
from optirag.retrieval.training import model_version, run_retriever
from optirag.retrieval.ray_search import search_ray, train_on_ray
from optirag.retrieval.topk import cosine_topk


def test_ray_search_equals_local_search(ray_runtime):
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((3000, 16)).astype(np.float32)
    emb[100:200] = emb[0]  # a hundred exact duplicates: ties must break the same way
    warm = rng.random(3000) > 0.05
    q = rng.choice(3000, 1200, replace=False)
    cfg = RetrieverConfig(k=5, search_block_size=128, candidate_block_size=700, ray_tasks=2)
    seen: list[tuple[int, int]] = []
    got = search_ray(ray_runtime, emb, 5, q, warm, cfg, progress=lambda d, t: seen.append((d, t)))
    ref = cosine_topk(emb, 5, q, warm, 128, 700)
    assert np.array_equal(got[0], ref[0]) and np.array_equal(got[2], ref[2])
    assert np.array_equal(got[1], ref[1], equal_nan=True)
    n_blocks = -(-int((~ref[2]).sum()) // 128)
    assert seen[-1] == (n_blocks, n_blocks) and [d for d, _ in seen] == list(range(1, n_blocks + 1))


def test_train_on_ray_equals_local_training(ray_runtime, community_graph):
    g = community_graph
    cfg = RetrieverConfig(embedding_dim=16, epochs=3, batch_size=1024, torch_threads=2, seed=11)
    remote = train_on_ray(ray_runtime, g.user_idx, g.item_idx, g.n_users, g.n_items, cfg)
    local = train_lightgcn(g.user_idx, g.item_idx, g.n_users, g.n_items, cfg)
    assert np.array_equal(remote.user_layers, local.user_layers)
    assert remote.losses == local.losses and len(remote.losses) == 3


def _tables(n_cold=5):
    """edges / user_index / item_index frames of the community graph plus cold users."""
    g = make_community_graph(n_users=200, n_items=120, n_comm=4, n_in=6, n_noise=2, seed=1)
    rng = np.random.default_rng(1)
    edges = pd.DataFrame({
        "user_idx": g.user_idx.astype(np.int32), "item_idx": g.item_idx.astype(np.int32),
        "rating": rng.integers(1, 6, g.user_idx.size).astype(float),
        "label": rng.integers(0, 2, g.user_idx.size).astype(np.int32),
        "timestamp": np.arange(g.user_idx.size, dtype=np.int64),
    })
    n_users = g.n_users + n_cold
    counts = np.bincount(g.user_idx, minlength=n_users)
    # user ids deliberately not in idx order
    user_index = pd.DataFrame({"user_id": [f"user{i:04d}" for i in range(n_users)][::-1],
                               "user_idx": np.arange(n_users, dtype=np.int32)[::-1],
                               "n_edges": counts[::-1].astype(np.int64)})
    item_index = pd.DataFrame({"item_id": [f"item{i}" for i in range(g.n_items)],
                               "item_idx": np.arange(g.n_items, dtype=np.int32),
                               "n_edges": np.bincount(g.item_idx, minlength=g.n_items)})
    return g, edges, user_index, item_index


CFG = {"embedding_dim": 16, "epochs": 12, "batch_size": 256, "torch_threads": 2, "k": 4,
       "search_block_size": 64, "candidate_block_size": 100}


def test_run_retriever_local_and_on_ray_agree(ray_runtime, tmp_path):
    g, edges, user_index, item_index = _tables()
    samples = ["user0000", "user0201", "user0003", "nobody", "user0003", "user0150"]
    local_df, local_dir = run_retriever(edges, user_index, samples, {**CFG}, None, data_version="dv",
                                        item_index_df=item_index, models_dir=tmp_path / "a")
    ray_df, ray_dir = run_retriever(edges, user_index, samples, {**CFG}, ray_runtime, data_version="dv",
                                    item_index_df=item_index, models_dir=tmp_path / "b")
    pd.testing.assert_frame_equal(local_df, ray_df)
    assert local_dir.name == ray_dir.name == model_version(RetrieverConfig(**CFG), "dv")
    assert np.array_equal(load_model(local_dir).user_embedding, load_model(ray_dir).user_embedding)

    df = local_df
    # unique sample users in first-seen order; cold ones flagged with one null row
    assert list(dict.fromkeys(df["user_id"])) == ["user0000", "user0201", "user0003", "nobody", "user0150"]
    cold = df[df["is_cold"]]
    assert sorted(cold["user_id"]) == ["nobody", "user0201"]
    assert cold["neighbour_user_id"].isna().all() and cold["rank"].isna().all()
    assert cold["similarity"].isna().all()
    warm = df[~df["is_cold"]]
    assert (warm.groupby("user_id").size() == 4).all()
    assert (warm["user_id"] != warm["neighbour_user_id"]).all()
    assert not warm["neighbour_user_id"].isin([f"user{i:04d}" for i in range(200, 205)]).any()
    for _, grp in warm.groupby("user_id"):
        assert grp["rank"].tolist() == [1, 2, 3, 4]
        assert grp["similarity"].is_monotonic_decreasing
        assert grp["similarity"].between(-1, 1).all()
    assert set(df["retriever"]) == {"gcn"} and set(df["model_version"]) == {local_dir.name}
    # a user's neighbours come from its community (the ids map back correctly)
    comm = {f"user{i:04d}": c for i, c in enumerate(g.user_comm)}
    assert np.mean([comm[a] == comm[b] for a, b in zip(warm["user_id"], warm["neighbour_user_id"])]) > 0.9
    assert to_arrow(df).schema == NEIGHBOURS_SCHEMA


def test_positive_edges_only_and_unknown_user_policy(tmp_path):
    g, edges, user_index, item_index = _tables(n_cold=0)
    # user 0 keeps only negative edges: cold when training on label == 1 edges
    edges.loc[edges["user_idx"] == 0, "label"] = 0
    cfg = {**CFG, "epochs": 2, "train_edges": "positive"}
    df, _ = run_retriever(edges, user_index, ["user0000", "user0001"], cfg, None,
                          data_version="dv", models_dir=tmp_path)
    assert df.set_index("user_id").loc["user0000", "is_cold"]
    assert "user0000" not in set(df["neighbour_user_id"].dropna())
    with pytest.raises(ValueError, match="not in user_index"):
        run_retriever(edges, user_index, ["ghost"], {**cfg, "unknown_user": "error"}, None,
                      data_version="dv", models_dir=tmp_path)


def test_neighbours_schema_matches_the_lake_table():
    pytest.importorskip("pyspark")
    from optirag.tables import NEIGHBOURS, arrow_schema

    assert arrow_schema(NEIGHBOURS) == NEIGHBOURS_SCHEMA


def test_last_layer_variant_reuses_the_trained_layers(tmp_path):
    """Table 3's gcn_last: the gcn model's layers, retrieved with e^(K); no second training."""
    from optirag.retrieval.config import GCN_PRESETS
    from optirag.retrieval.training import reuse_layers

    g, edges, user_index, item_index = _tables()
    samples = [f"user{i:04d}" for i in range(0, 205, 3)]
    cfg = {**CFG, "epochs": 3}
    _, gcn_dir = run_retriever(edges, user_index, samples, cfg, None, data_version="dv",
                               models_dir=tmp_path, item_index_df=item_index)
    gcn = load_model(gcn_dir)
    last_cfg = RetrieverConfig(**{**cfg, **GCN_PRESETS["gcn_last"]})
    trained = reuse_layers(gcn, last_cfg, "dv")
    assert trained is not None and trained.source == f"gcn/{gcn_dir.name}"
    df, last_dir = run_retriever(edges, user_index, samples, last_cfg, None, data_version="dv",
                                 models_dir=tmp_path, item_index_df=item_index, trained=trained)
    last = load_model(last_dir)
    assert last_dir.parent.name == "gcn_last" and last_dir.name != gcn_dir.name
    assert np.array_equal(last.user_layers, gcn.user_layers)
    assert np.array_equal(last.user_embedding, gcn.user_layers[-1])       # e^(K), not the mean
    assert not np.allclose(gcn.user_embedding, gcn.user_layers[-1])
    assert last.extra["layers_from"] == trained.source and last.losses == gcn.losses
    assert set(df["retriever"]) == {"gcn_last"} and np.array_equal(last.user_degree, gcn.user_degree)
    # other data or another training setting: the caller must train
    assert reuse_layers(gcn, last_cfg, "other-data") is None
    assert reuse_layers(gcn, last_cfg.model_copy(update={"cold_min_edges": 3}), "dv") is None
    assert reuse_layers(gcn, RetrieverConfig(**{**cfg, "epochs": 4, "layer_average": False}), "dv") is None


def test_the_job_takes_layers_from_the_registry_gcn_model(tmp_path):
    """jobs.train_retriever --retriever gcn_last: the registry's gcn model, or training."""
    from optirag.config import load_config
    from optirag.registry import kind_dir
    from optirag.retrieval.config import GCN_PRESETS, retriever_config
    from optirag.retrieval.job import reusable_layers

    cfg = load_config("bookcrossing", lake=str(tmp_path),
                      overrides=[f"retriever.{k}={v}" for k, v in {**CFG, "epochs": 2}.items()])
    said = []
    last = retriever_config({**cfg.retriever, **GCN_PRESETS["gcn_last"]})
    assert reusable_layers(cfg, last, "gcn", "dv", said.append) is None        # nothing trained yet
    g, edges, user_index, item_index = _tables()
    _, gcn_dir = run_retriever(edges, user_index, ["user0001"], retriever_config(cfg), None,
                               data_version="dv", models_dir=kind_dir(cfg, "retriever"))
    trained = reusable_layers(cfg, last, "gcn", "dv", said.append)
    assert trained.source == f"gcn/{gcn_dir.name}"
    assert reusable_layers(cfg, last, "gcn", "dv2", said.append) is None        # other data
    assert said[0] == "no gcn model to take layers from: training"
    assert said[1].endswith("training skipped") and said[2].endswith("other data or settings: training")
