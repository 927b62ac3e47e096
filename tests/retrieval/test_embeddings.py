from __future__ import annotations

import json

import numpy as np
import pytest

from optirag.retrieval.embeddings import (
    RetrieverModel, ids_by_index, load_model, retrieval_embedding, save_model,
)


def _model(version="abc123", n_users=5, n_items=3, K=2, d=4) -> RetrieverModel:
    rng = np.random.default_rng(0)
    ul = rng.standard_normal((K + 1, n_users, d)).astype(np.float32)
    return RetrieverModel(
        model_version=version, data_version="dv1", config={"k": 4, "seed": 1},
        user_ids=[f"u{i}" for i in range(n_users)], item_ids=[f"i{i}" for i in range(n_items)],
        user_layers=ul, item_layers=rng.standard_normal((K + 1, n_items, d)).astype(np.float32),
        user_embedding=retrieval_embedding(ul), user_degree=np.arange(n_users), losses=[0.7, 0.5],
    )


def test_save_load_roundtrip(tmp_path):
    m = _model()
    folder = save_model(m, tmp_path / "gcn" / m.model_version)
    assert sorted(p.name for p in folder.iterdir()) == ["embeddings.safetensors", "meta.json"]
    back = load_model(folder)
    for name in ("user_layers", "item_layers", "user_embedding", "user_degree"):
        assert np.array_equal(getattr(back, name), getattr(m, name))
    assert (back.model_version, back.data_version, back.config) == ("abc123", "dv1", {"k": 4, "seed": 1})
    assert back.user_ids == m.user_ids and back.item_ids == m.item_ids and back.losses == [0.7, 0.5]
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["num_layers"] == 2 and meta["embedding_dim"] == 4


def test_overwrite_replaces_whole_folder_and_leaves_no_temp(tmp_path):
    target = tmp_path / "gcn" / "v"
    save_model(_model("v", n_users=5), target)
    save_model(_model("v", n_users=7), target)
    assert load_model(target).user_embedding.shape[0] == 7
    assert [p.name for p in (tmp_path / "gcn").iterdir()] == ["v"]


def test_inconsistent_model_is_not_written(tmp_path):
    m = _model()
    m.user_ids = m.user_ids[:-1]
    with pytest.raises(ValueError, match="user count"):
        save_model(m, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_layer_choice_validation():
    with pytest.raises(ValueError, match="K >= 1"):
        retrieval_embedding(np.zeros((1, 2, 3)), layer_average=True, include_layer0=False)
    assert retrieval_embedding(np.ones((1, 2, 3)), layer_average=False).shape == (2, 3)


def test_ids_by_index():
    assert ids_by_index(["b", "a"], [1, 0], 2, "x") == ["a", "b"]
    with pytest.raises(ValueError, match="twice"):
        ids_by_index(["a", "b"], [0, 0], 2, "x")
    with pytest.raises(ValueError, match="not contiguous"):
        ids_by_index(["a"], [1], 2, "x")


def test_neighbours_frame_never_drops_a_user():
    from optirag.retrieval.neighbours import neighbours_frame

    neigh = np.array([[2, -1], [-1, -1], [-1, -1]])
    sim = np.array([[0.5, np.nan], [np.nan, np.nan], [np.nan, np.nan]], dtype=np.float32)
    df = neighbours_frame("gcn", "v", ["a", "b", "c"], neigh, sim, np.array([False, True, False]),
                          ["x", "y", "z"])
    assert df["user_id"].tolist() == ["a", "b", "c"]
    assert df["neighbour_user_id"].tolist()[0] == "z" and df["rank"].tolist()[0] == 1
    assert df["is_cold"].tolist() == [False, True, False]  # c: warm, but nobody to return
    assert df["neighbour_user_id"].isna().tolist() == [False, True, True]
    with pytest.raises(ValueError, match="cold user"):
        neighbours_frame("gcn", "v", ["a"], np.array([[1]]), np.array([[0.1]]), np.array([True]), ["x", "y"])
