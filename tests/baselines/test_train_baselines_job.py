"""jobs.train_baselines end to end on a tiny hand-made lake (real Spark + Delta)."""
import json
import sys

import pytest
from baseline_toy import toy_frames
from pyspark.sql import functions as F

from optirag import tables


@pytest.fixture(scope="module")
def tiny_lake(spark, tmp_path_factory):
    lake = tmp_path_factory.mktemp("baseline_lake")
    samples, items = toy_frames(n_users=40, per_user=4, seed=1)
    samples["rating"] = samples["label"] * 5.0
    samples["timestamp"] = 0
    samples["history"] = [
        [{"item_id": i, "rating": 5.0 * l, "label": l, "timestamp": 0} for i, l in zip(hi, hl)]
        for hi, hl in zip(samples.hist_items, samples.hist_labels)]
    items["title"] = items["item_id"]
    items["has_metadata"] = True
    items["year"] = items["year"].astype(int)
    ds = f"{lake}/bookcrossing"
    for table, frame in ((tables.SAMPLES, samples), (tables.ITEMS, items)):
        cols = [f.name for f in table.schema.fields]
        tables.write_table(spark.createDataFrame(frame[cols].to_dict("records"), schema=table.schema), table, ds)
    return str(lake)


def _run(monkeypatch, lake, reports, *extra):
    from jobs.train_baselines import main

    monkeypatch.setattr(sys, "argv", [
        "train_baselines", "--dataset", "bookcrossing", "--lake", lake, "--set", "baselines.epochs=2",
        "--set", f"baselines.reports_dir={reports}", "--set", "baselines.emb_dim=4", *extra])
    assert main() == 0


def test_job_writes_scores_and_report(spark, tiny_lake, tmp_path, monkeypatch):
    _run(monkeypatch, tiny_lake, tmp_path, "--seeds", "0,1")
    report = json.loads((tmp_path / "baselines_bookcrossing.json").read_text())
    n_eval = report["split_sizes"]["valid"] + report["split_sizes"]["test"]
    assert set(report["models"]) == {"deepfm", "din", "gru4rec", "sim"} and report["seeds"] == [0, 1]
    for r in report["models"].values():
        aucs = [s["auc"] for s in r["seeds"].values()]
        assert len(aucs) == 2 and all(0 <= a <= 1 for a in aucs)
        assert r["auc_mean"] == pytest.approx(sum(aucs) / 2)
    scores = tables.read_table(spark, tables.EVAL_SCORES, f"{tiny_lake}/bookcrossing")
    per_run = {r["run_id"]: r["count"] for r in scores.groupBy("run_id").count().collect()}
    assert per_run == {f"baseline/{m}/seed{s}": n_eval for m in report["models"] for s in (0, 1)}
    assert scores.filter((F.col("score") < 0) | (F.col("score") > 1) | F.col("exit_layer").isNotNull()).count() == 0

    # a re-run of one model and seed replaces its own rows only
    before = scores.filter("run_id = 'baseline/din/seed0'").select("sample_id", "score").collect()
    _run(monkeypatch, tiny_lake, tmp_path, "--models", "din", "--seeds", "0")
    scores = tables.read_table(spark, tables.EVAL_SCORES, f"{tiny_lake}/bookcrossing")
    assert scores.count() == 8 * n_eval
    after = scores.filter("run_id = 'baseline/din/seed0'").select("sample_id", "score").collect()
    assert sorted(before) == sorted(after)   # same seed, same data: same scores


def test_unknown_model_is_a_config_error(tiny_lake, tmp_path, monkeypatch):
    from optirag.config import ConfigError

    with pytest.raises(ConfigError, match="baselines.models"):
        _run(monkeypatch, tiny_lake, tmp_path, "--models", "xgboost")
