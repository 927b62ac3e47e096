"""jobs.train_retriever's body on a tiny hand-made lake: real Spark + Delta + Ray.

The lake holds the ingest tables the job reads (edges, user_index, item_index, items,
samples, manifest) for a small community graph plus a cold user; half of the edges have
no timestamp, as in BookCrossing.
"""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from conftest import make_community_graph

RETRIEVER_SETTINGS = ["retriever.embedding_dim=16", "retriever.epochs=6", "retriever.batch_size=512",
                      "retriever.torch_threads=1", "retriever.search_block_size=32",
                      "retriever.candidate_block_size=50", "retriever.llm.max_items=4",
                      "retriever.llm.batch_size=8", "retriever.llm.torch_threads=1"]


@pytest.fixture(scope="module")
def tiny_lake(spark, tmp_path_factory):
    from optirag.tables import (
        EDGES, ITEM_INDEX, ITEMS, MANIFEST, SAMPLES, USER_INDEX, write_table,
    )
    from optirag.config import load_config

    g = make_community_graph(n_users=120, n_items=80, n_comm=4, n_in=5, n_noise=2, seed=3)
    lake = str(tmp_path_factory.mktemp("retriever_lake"))
    cfg = load_config("bookcrossing", lake=lake, overrides=RETRIEVER_SETTINGS)
    dl = cfg.dataset_lake()
    n_users = g.n_users + 1  # the last user is cold: in user_index with n_edges = 0
    uid = [f"u{i:03d}" for i in range(n_users)]
    iid = [f"i{i:03d}" for i in range(g.n_items)]
    ts = [None if j % 2 else 1_000_000_000 + j for j in range(g.user_idx.size)]
    edges = [(int(u), int(i), 4.0, 1, t) for u, i, t in zip(g.user_idx, g.item_idx, ts)]
    write_table(spark.createDataFrame(edges, EDGES.schema), EDGES, dl)
    deg = np.bincount(g.user_idx, minlength=n_users)
    write_table(spark.createDataFrame([(uid[u], u, int(deg[u])) for u in range(n_users)], USER_INDEX.schema),
                USER_INDEX, dl)
    ideg = np.bincount(g.item_idx, minlength=g.n_items)
    write_table(spark.createDataFrame([(iid[i], i, int(ideg[i])) for i in range(g.n_items)], ITEM_INDEX.schema),
                ITEM_INDEX, dl)
    items = [(iid[i], f"Book {i} of shelf {g.item_comm[i]}", None, None, None, None, True)
             for i in range(g.n_items)]
    write_table(spark.createDataFrame(items, ITEMS.schema), ITEMS, dl)
    # sample users: every 3rd user (train), held-out targets for 30 users, the cold
    # user and one user unknown to the graph
    samples = [(f"s{u}", uid[u], iid[int(g.heldout_item[u])], 1, 4.0, None, [],
                "valid" if u % 2 else "test") for u in range(0, 60, 2)]
    samples += [(f"t{u}", uid[u], iid[0], 0, 1.0, None, [], "train") for u in range(0, g.n_users, 3)]
    samples += [("cold", uid[-1], iid[0], 0, 1.0, None, [], "train"),
                ("ghost", "nobody", iid[0], 0, 1.0, None, [], "train")]
    write_table(spark.createDataFrame(samples, SAMPLES.schema), SAMPLES, dl)
    import datetime as dt
    manifest = [("raw.csv", "ratings", 1, 1, 0, "0" * 64, "dv-tiny", dt.datetime(2026, 1, 1))]
    write_table(spark.createDataFrame(manifest, MANIFEST.schema), MANIFEST, dl)
    return SimpleNamespace(lake=lake, graph=g, uid=uid, samples=sorted({s[1] for s in samples}),
                           cold={uid[-1], "nobody"}, edge_ts=ts)


def _cfg(tiny_lake, *extra, model=None):
    from optirag.config import load_config

    return load_config("bookcrossing", lake=tiny_lake.lake, model=model,
                       overrides=RETRIEVER_SETTINGS + list(extra))


def _spark_neighbours(spark, cfg, retriever):
    # read back exactly as downstream Spark jobs do
    path = f"{cfg.dataset_lake()}/neighbours"
    return (spark.read.format("delta").load(path).where(f"retriever = '{retriever}'").toPandas())


def _check_rows(df: pd.DataFrame, k: int, cold: set[str]) -> None:
    for user, grp in df.groupby("user_id"):
        if user in cold:
            assert len(grp) == 1 and bool(grp["is_cold"].iloc[0])
            assert grp["neighbour_user_id"].isna().all() and grp["rank"].isna().all()
            continue
        assert not grp["is_cold"].any()
        assert 1 <= len(grp) <= k
        assert (grp["neighbour_user_id"] != user).all()
        assert grp["neighbour_user_id"].is_unique
        assert grp["rank"].tolist() == list(range(1, len(grp) + 1))
        sims = grp.sort_values("rank")["similarity"]
        assert sims.is_monotonic_decreasing and sims.between(-1, 1).all()
    # a cold user is never anyone's neighbour
    assert not df["neighbour_user_id"].isin(cold).any()


def test_inputs_keep_integer_types(spark, tiny_lake):
    from optirag.retrieval.job import load_inputs

    inp = load_inputs(spark, _cfg(tiny_lake))
    ts = inp.edges["timestamp"]
    # nullable long stays an integer column (toPandas would give float64 with NaN)
    assert str(ts.dtype) == "Int64"
    expected = pd.array(tiny_lake.edge_ts, dtype="Int64")
    got = inp.edges.sort_values(["user_idx", "item_idx"])["timestamp"].array
    order = np.lexsort((tiny_lake.graph.item_idx, tiny_lake.graph.user_idx))
    assert got.isna().sum() == expected.isna().sum() > 0
    assert (got.dropna().to_numpy() == expected[order].dropna().to_numpy()).all()
    assert inp.sample_users == tiny_lake.samples and inp.data_version == "dv-tiny"
    assert str(inp.user_index["n_edges"].dtype) == "Int64"


def test_gcn_job_round_trip_and_rerun_replaces(spark, ray_runtime, tiny_lake):
    from optirag import registry
    from optirag.retrieval.job import train_gcn

    cfg = _cfg(tiny_lake)
    lines: list[str] = []
    summary = train_gcn(spark, cfg, ray_runtime, lines.append)
    assert any(line.startswith("epoch 6/6 loss") for line in lines)
    assert any(line.startswith("search blocks") for line in lines)
    df = _spark_neighbours(spark, cfg, "gcn")
    assert sorted(df["user_id"].unique()) == tiny_lake.samples  # nobody dropped
    _check_rows(df, 4, tiny_lake.cold)
    assert summary["cold_users"] == 2 and summary["users"] == len(tiny_lake.samples)
    assert set(df["model_version"]) == {summary["model_version"]}
    # users of one community are each other's neighbours (ids mapped back correctly)
    comm = dict(zip(tiny_lake.uid, tiny_lake.graph.user_comm))
    warm = df[~df["is_cold"]]
    same = np.mean([comm[a] == comm[b] for a, b in zip(warm["user_id"], warm["neighbour_user_id"])])
    assert same > 0.8

    # the model folder is a registry version
    assert registry.versions(cfg, "retriever/gcn") == [summary["model_version"]]
    meta = registry.read_meta(registry.resolve(cfg, "retriever/gcn"))
    assert meta["data_version"] == "dv-tiny" and meta["created_at"].endswith("+00:00")

    # same inputs again: same version, partition replaced (not appended)
    again = train_gcn(spark, cfg, ray_runtime, lambda _: None)
    assert again["model_version"] == summary["model_version"]
    assert len(_spark_neighbours(spark, cfg, "gcn")) == len(df)
    # another k: the partition holds only the new version's rows
    cfg2 = _cfg(tiny_lake, "retriever.k=2")
    other = train_gcn(spark, cfg2, ray_runtime, lambda _: None)
    df2 = _spark_neighbours(spark, cfg2, "gcn")
    assert set(df2["model_version"]) == {other["model_version"]} != {summary["model_version"]}
    _check_rows(df2, 2, tiny_lake.cold)
    assert len(registry.versions(cfg, "retriever/gcn")) == 2


def test_llm_job_on_a_tiny_model_leaves_the_gcn_partition_alone(spark, ray_runtime, tiny_lake):
    from optirag import registry
    from optirag.retrieval.job import train_gcn, train_llm

    cfg = _cfg(tiny_lake, model="tiny")
    gcn = train_gcn(spark, cfg, ray_runtime, lambda _: None)
    lines: list[str] = []
    summary = train_llm(spark, cfg, lines.append)
    assert any("embedded batches" in line for line in lines)
    df = _spark_neighbours(spark, cfg, "llm")
    assert sorted(df["user_id"].unique()) == tiny_lake.samples
    _check_rows(df, 4, tiny_lake.cold)
    assert summary["embedded_users"] == tiny_lake.graph.n_users  # pool: every user with edges
    assert summary["model_version"].startswith("tiny-llama-")
    folder = registry.resolve(cfg, "retriever/llm")
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["data_version"] == "dv-tiny" and len(meta["user_ids"]) == summary["embedded_users"]
    assert (folder / "embeddings.safetensors").is_file()
    # the gcn partition is untouched by the llm write
    assert set(_spark_neighbours(spark, cfg, "gcn")["model_version"]) == {gcn["model_version"]}

    # a capped pool of sample users: users outside it get no row, and are counted
    capped = _cfg(tiny_lake, "retriever.llm.pool=samples", "retriever.llm.max_users=10", model="tiny")
    s2 = train_llm(spark, capped, lambda _: None)
    df2 = _spark_neighbours(spark, capped, "llm")
    warm_users = set(df2.loc[~df2["is_cold"], "user_id"])
    assert s2["embedded_users"] == 10 == len(warm_users)
    assert s2["not_embedded"] == len(tiny_lake.samples) - 2 - 10
    assert set(df2["neighbour_user_id"].dropna()) <= warm_users  # the pool is the capped set
    _check_rows(df2, 4, tiny_lake.cold)


def test_rejects_a_name_that_would_break_the_partition_predicate(spark, tiny_lake):
    from optirag.retrieval.job import write_neighbours
    from optirag.retrieval.neighbours import neighbours_frame

    df = neighbours_frame("x' or '1'='1", "v", ["a"], np.array([[-1]]), np.array([[np.nan]]),
                          np.array([True]), ["a"])
    with pytest.raises(ValueError):
        write_neighbours(spark, df, _cfg(tiny_lake))


def test_evaluation_report_agrees_with_the_written_table(spark, ray_runtime, tiny_lake):
    from optirag.retrieval.evaluation import evaluate_dataset
    from optirag.retrieval.job import train_gcn

    cfg = _cfg(tiny_lake)
    gcn = train_gcn(spark, cfg, ray_runtime, lambda _: None)
    rep = evaluate_dataset(spark, cfg, retrievers=("gcn", "nothing"))
    assert rep["heldout_users"] == rep["heldout_targets"] == 30
    assert rep["gcn_model_version"] == gcn["model_version"] and rep["gcn_model_is_current"]
    assert set(rep["layers"]) == {"average", "average_with_layer0", "last_layer", "random"}
    table = rep["tables"]["gcn"]
    assert table["covered_heldout_users"] == 30
    # the table was searched with the same embedding (layer average): same neighbours
    assert table["metrics"] == rep["layers"]["average"]
    assert table["metrics"]["hit_rate"] > table["random_same_users"]["hit_rate"]
    assert rep["tables"]["nothing"] == {"missing": True}


def test_retrieval_bench_writes_its_report(spark, tiny_lake, tmp_path):
    from optirag_bench.retrieval import run_retrieval_bench

    cfg = _cfg(tiny_lake, model="tiny")
    res = run_retrieval_bench(spark, cfg, str(tmp_path), n_users=20, threads=1, sizes=(300, 1200),
                              n_queries=100, echo=lambda _: None)
    saved = json.loads((tmp_path / f"retrieval_{cfg.dataset.name}.json").read_text())
    assert saved["users"] == res["users"] == 20 and saved["k"] == 4
    for key in ("gcn_seconds", "llm_seconds", "speedup", "search_users_per_s", "peak_rss_mb"):
        assert saved[key] > 0, key
    # rounded to 3 decimals in the report: under load the tiny ratio can be ~0.03
    assert saved["speedup"] == pytest.approx(saved["llm_seconds"] / saved["gcn_seconds"], rel=1e-2, abs=6e-4)
    assert saved["gcn_seconds"] >= saved["gcn_seconds_excluding_training"]
    assert [s["users"] for s in saved["scaling"]] == [300, 1200]
    assert all(s["queries"] == 100 and s["peak_rss_mb"] > 0 for s in saved["scaling"])
    assert saved["search_users"] == len(tiny_lake.samples) - 2  # cold and unknown are not searched
    assert 0 <= saved["neighbour_overlap_gcn_llm"] <= 1
    assert (tmp_path / f"retrieval_{cfg.dataset.name}.png").stat().st_size > 0
