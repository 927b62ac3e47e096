"""train_scorer + evaluate end to end on the hand-made lake with the tiny random Llama."""
import json

import pytest

from optirag import registry
from optirag.evaluation.run import evaluate, report_path
from optirag.evaluation.config import evaluation_config
from optirag.evaluation.tuning_run import train_scorer
from optirag.llm.tuning import read_meta
from optirag.prompts.builder import build_prompts
from optirag.tables import EVAL_SCORES, read_table


@pytest.fixture(scope="module")
def trained(spark, rag_lake):
    import torch

    torch.set_num_threads(1)
    cfg, lake = rag_lake
    build_prompts(spark, cfg, "none")
    summary = train_scorer(spark, cfg, "none")
    return cfg, summary


def test_train_scorer_writes_a_model_version(trained):
    cfg, summary = trained
    folder = registry.resolve(cfg, "scorer/none")
    meta = read_meta(folder)
    assert folder.name == meta["model_version"] == summary["model_version"]
    assert meta["data_version"] == "tinyv1" and meta["variant"] == "none"
    assert meta["train_examples"] == summary["train_examples"] == 9  # every train prompt
    assert meta["prompts_config"]["token_budget"] == 1000 and meta["retriever_version"] is None
    assert len(meta["losses"]) == summary["steps"] > 0
    assert list(folder.glob("*.safetensors"))
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".staging")]


def test_train_scorer_is_seeded(spark, trained):
    cfg, summary = trained
    again = train_scorer(spark, cfg, "none")  # same weights -> same version, folder kept
    assert again["model_version"] == summary["model_version"]
    assert registry.versions(cfg, "scorer/none") == [summary["model_version"]]


def test_evaluate_scores_reports_and_skips_untuned(spark, trained):
    cfg, summary = trained
    report = evaluate(spark, cfg, ["none", "gcn"], zero_shot=True)
    assert set(report["runs"]) == {"none", "zero_shot/none"}
    assert "gcn" in report["skipped"]  # no prompts and no tuned scorer: skipped, no crash
    tuned = report["runs"]["none"]
    assert tuned["model_version"] == summary["model_version"] and tuned["train_examples"] == 9
    assert tuned["metrics"]["valid"]["n"] == 2 and tuned["metrics"]["test"]["n"] == 3
    on_disk = json.loads(report_path(cfg, evaluation_config(cfg)).read_text())
    assert on_disk["runs"].keys() == report["runs"].keys()

    scores = read_table(spark, EVAL_SCORES, cfg.dataset_lake()).toPandas()
    assert sorted(scores["run_id"].unique()) == sorted(
        [f"none/{summary['model_version']}", "zero_shot/none/tiny-llama"])
    assert scores["score"].between(0, 1, inclusive="neither").all()
    assert len(scores) == 2 * 5
    # tuned and untuned models give different scores on the same samples
    pivot = scores.pivot(index="sample_id", columns="run_id", values="score")
    assert (pivot.iloc[:, 0] != pivot.iloc[:, 1]).any()
    # metrics are recomputed from the kept scores
    from optirag.evaluation.metrics import ctr_metrics
    test = scores[(scores.run_id.str.startswith("none/")) & (scores.split == "test")]
    assert ctr_metrics(test.label, test.score) == tuned["metrics"]["test"]

    # re-evaluating replaces the run's rows instead of appending
    evaluate(spark, cfg, ["none"], zero_shot=False)
    assert read_table(spark, EVAL_SCORES, cfg.dataset_lake()).count() == 2 * 5
    assert set(json.loads(report_path(cfg, evaluation_config(cfg)).read_text())["runs"]) == \
        {"none", "zero_shot/none"}  # the merged report keeps the other run


def test_train_without_prompts_is_a_clear_error(spark, trained):
    cfg, _ = trained
    with pytest.raises(FileNotFoundError, match="jobs.build_prompts"):
        train_scorer(spark, cfg, "llm")


def test_a_seed_replica_is_kept_apart_and_evaluated_under_its_own_key(spark, trained):
    from optirag.llm.config import ModelConfig

    cfg, summary = trained
    own_seed = ModelConfig.model_validate(cfg.model).tuning.seed
    replica = train_scorer(spark, cfg, "none", seed=own_seed + 1)
    assert replica["tuning_seed"] == own_seed + 1
    assert replica["model_version"] != summary["model_version"]   # another LoRA init and order
    # scoring, exit heads and promotion resolve scorer/none: the replica is not there
    assert registry.versions(cfg, "scorer/none") == [summary["model_version"]]
    assert registry.versions(cfg, f"scorer_seeds/none/seed={own_seed + 1}") == [replica["model_version"]]
    # the config's own seed is the production scorer itself
    assert train_scorer(spark, cfg, "none", seed=own_seed)["model_version"] == summary["model_version"]

    report = evaluate(spark, cfg, ["none"], zero_shot=True, seed=own_seed + 1)
    key = f"none/seed={own_seed + 1}"
    assert key in report["runs"] and {"none", "zero_shot/none"} <= set(report["runs"])  # merged, kept
    run = report["runs"][key]
    assert run["model_version"] == replica["model_version"] and run["tuning_seed"] == own_seed + 1
    assert run["metrics"]["test"]["n"] == 3
    scores = read_table(spark, EVAL_SCORES, cfg.dataset_lake()).toPandas()
    assert (scores["run_id"] == f"{key}/{replica['model_version']}").sum() == 5
    assert (scores["run_id"].str.startswith("zero_shot/")).sum() == 5   # no second zero-shot run
    # a seed without a replica is skipped under its own key, not scored with another model
    assert f"none/seed={own_seed + 2}" in evaluate(spark, cfg, ["none"], seed=own_seed + 2)["skipped"]
