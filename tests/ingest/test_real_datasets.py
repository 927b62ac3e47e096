"""Ingest the three real shared datasets with real Spark + Delta and check the figures."""
from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from optirag.config import load_config
from optirag.ingest.job import run_ingest
from optirag.quality.runner import run_checks
from optirag.quality.suites import ingest_checks
from optirag.tables import INGEST_TABLES, read_table

RAW = {"bookcrossing": "bookcrossing", "movielens100k": "movielens-100k", "amazon": "amazon-beauty"}


@pytest.fixture(scope="module")
def ingested(spark, shared_data, session_lake):
    out = {}
    for name, folder in RAW.items():
        cfg = load_config(name, lake=session_lake)
        out[name] = (cfg, run_ingest(spark, cfg, str(shared_data / folder)))
    return out


def _table(spark, cfg, name):
    return read_table(spark, name, cfg.dataset_lake())


@pytest.mark.parametrize("name, raw_records", [
    ("bookcrossing", 171_274 + 26_267), ("movielens100k", 100_000 + 1_682), ("amazon", 5_269),
])
def test_every_raw_record_is_accounted_for(spark, ingested, name, raw_records):
    cfg, summary = ingested[name]
    assert summary["raw_records"] == raw_records
    assert summary["accepted"] + summary["quarantined"] == raw_records
    assert _table(spark, cfg, "quarantine").count() == summary["quarantined"]
    assert _table(spark, cfg, "interactions").count() == summary["interactions"]


def test_bookcrossing_figures(ingested):
    _, s = ingested["bookcrossing"]
    assert s["quarantined"] == 0 and s["users"] == 17_217 and s["items"] == 26_267
    # 9,684 users have >= 2 ratings (min_history=1): one sample each, split 8:1:1 exactly
    assert sum(s["samples"].values()) == 9_684
    assert s["samples"] == {"train": 7_747, "valid": 968, "test": 969}
    assert s["interaction_positive_rate"] == pytest.approx(105_058 / 171_274, abs=1e-4)


def test_amazon_duplicates_are_quarantined_and_items_get_placeholders(spark, ingested):
    cfg, s = ingested["amazon"]
    assert s["quarantined_by_reason"] == {"duplicate_rating": s["quarantined"]}
    assert s["items_without_metadata"] == s["items"] == 85  # no meta_*.json shipped
    titles = _table(spark, cfg, "items").select("title").distinct().collect()
    assert all(r.title.startswith("Amazon product ") for r in titles)


@pytest.mark.parametrize("name", list(RAW))
def test_splits_are_by_user_and_8_1_1(spark, ingested, name):
    cfg, _ = ingested[name]
    samples = _table(spark, cfg, "samples")
    per_user = samples.groupBy("user_id").agg(F.countDistinct("split").alias("n")).where("n > 1")
    assert per_user.count() == 0
    shares = {r.split: r["count"] for r in samples.select("user_id", "split").distinct().groupBy("split").count().collect()}
    total = sum(shares.values())
    for split, ratio in (("train", 0.8), ("valid", 0.1), ("test", 0.1)):
        assert abs(shares[split] / total - ratio) < 0.002


@pytest.mark.parametrize("name", list(RAW))
def test_no_heldout_target_reaches_the_graph(spark, ingested, name):
    cfg, _ = ingested[name]
    lake = cfg.dataset_lake()
    edges = (read_table(spark, "edges", lake).join(read_table(spark, "user_index", lake), "user_idx")
             .join(read_table(spark, "item_index", lake), "item_idx"))
    heldout = read_table(spark, "samples", lake).where("split != 'train'")
    assert heldout.count() > 0
    assert heldout.join(edges, ["user_id", "item_id"]).count() == 0
    if cfg.dataset.protocol == "chronological":
        # nothing at or after a valid/test user's first target is in the graph
        first = heldout.groupBy("user_id").agg(F.min("timestamp").alias("t0"))
        later = edges.join(first, "user_id").where(F.col("timestamp") > F.col("t0"))
        assert later.count() == 0


@pytest.mark.parametrize("name", ["movielens100k", "amazon"])
def test_chronological_history_is_earlier_ordered_and_bounded(spark, ingested, name):
    cfg, _ = ingested[name]
    rows = _table(spark, cfg, "samples").select("timestamp", "item_id", "history").collect()
    assert rows
    for r in rows:
        ts = [h.timestamp for h in r.history]
        assert 3 <= len(ts) <= 15
        assert ts == sorted(ts) and ts[-1] <= r.timestamp
        assert r.item_id not in {h.item_id for h in r.history}


def test_random_target_history_excludes_target_and_is_bounded(spark, ingested):
    cfg, _ = ingested["bookcrossing"]
    samples = _table(spark, cfg, "samples")
    assert samples.where(F.size("history") > 15).count() == 0
    assert samples.where(F.array_contains(F.transform("history", lambda h: h.item_id), F.col("item_id"))).count() == 0
    # a user with more than 16 ratings gets exactly 15 history items
    counts = _table(spark, cfg, "interactions").groupBy("user_id").count().where("count > 16")
    sizes = samples.join(counts, "user_id").select(F.size("history").alias("n")).distinct().collect()
    assert [r.n for r in sizes] == [15]


def test_labels_follow_the_dataset_threshold(spark, ingested):
    for name, (cfg, _) in ingested.items():
        wrong = _table(spark, cfg, "interactions").where(
            (F.col("rating") >= cfg.dataset.positive_threshold).cast("int") != F.col("label"))
        assert wrong.count() == 0, name


@pytest.mark.parametrize("name", list(RAW))
def test_quality_suites_pass_on_real_data(spark, ingested, name):
    cfg, _ = ingested[name]
    report = run_checks(ingest_checks(spark, cfg))
    assert report.success, report.render()
    assert len(report.outcomes) >= 30


def test_rerun_rewrites_the_same_tables(spark, ingested, shared_data):
    cfg, first = ingested["amazon"]
    before = {t: _table(spark, cfg, t).drop("ingested_at") for t in INGEST_TABLES}
    before = {t: (df.count(), sorted(map(tuple, df.collect()))) for t, df in before.items() if t != "manifest"}
    second = run_ingest(spark, cfg, str(shared_data / RAW["amazon"]))
    assert {k: v for k, v in second.items() if k != "wall_seconds"} == \
        {k: v for k, v in first.items() if k != "wall_seconds"}
    for table, (count, rows) in before.items():
        df = _table(spark, cfg, table)
        assert df.count() == count, table
        assert sorted(map(tuple, df.collect())) == rows, table
