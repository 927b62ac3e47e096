"""train_scorer + evaluate end to end on the hand-made lake with the tiny random Llama."""
import json

import pandas as pd
import pytest

from optirag import registry
from optirag.config import ConfigError, load_config
from optirag.evaluation.job import evaluate, report_path
from optirag.evaluation.config import evaluation_config
from optirag.evaluation.metrics import ctr_metrics
from optirag.evaluation.tuning_job import train_scorer
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
    # the tiny recipe tunes layers 4-6 over two epochs, early stopping on the valid prompts
    assert meta["valid_examples"] == 2 and [e["epoch"] for e in meta["epochs"]] == [1, 2]
    assert meta["best_epoch"] in (1, 2) and all("valid_auc" in e for e in meta["epochs"])
    assert meta["dtype"] == "float32"
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
    lo, hi = tuned["metrics"]["test"]["auc_ci95"]
    assert 0 <= lo <= tuned["metrics"]["test"]["auc"] <= hi <= 1
    on_disk = json.loads(report_path(cfg, evaluation_config(cfg)).read_text())
    assert on_disk["runs"].keys() == report["runs"].keys()
    # the paired comparison that can be made (gcn and the baselines were not run)
    assert list(on_disk["comparisons"]) == ["none vs zero_shot/none"]
    test_diff = on_disk["comparisons"]["none vs zero_shot/none"]["test"]
    assert test_diff["n"] == 3 and test_diff["diff"] == pytest.approx(
        tuned["metrics"]["test"]["auc"] - report["runs"]["zero_shot/none"]["metrics"]["test"]["auc"])

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


def test_evaluate_early_exit_scores_the_eval_rows_with_the_chosen_rule(spark, trained):
    """The early-exit run of Tables 2/4: same rows as the full-depth run, rule chosen on
    valid, scores and exit layers kept in eval_scores; a seed replica gets its own heads."""
    from optirag.early_exit.config import EarlyExitConfig
    from optirag.early_exit.job import train_heads
    from optirag.evaluation.early_exit_job import evaluate_early_exit
    from optirag.evaluation.metrics import ctr_metrics
    from optirag.llm.config import ModelConfig

    cfg, summary = trained
    full = evaluate(spark, cfg, ["none"], zero_shot=False)["runs"]["none"]
    heads = train_heads(spark, cfg, "none")
    assert heads["model_version"] == summary["model_version"]
    # the rule is chosen on the valid rows when the heads are trained and saved with them
    chosen = heads["calibration"]
    assert chosen["chosen_on"] == "valid" and chosen["valid_rows"] == 2 and chosen["dtype"] == "torch.float32"
    assert chosen["rule"]["tau"] in EarlyExitConfig().calibration.taus
    assert chosen["valid_auc_full_depth"] == pytest.approx(full["metrics"]["valid"]["auc"])
    report = evaluate_early_exit(spark, cfg, ["none", "gcn"])
    assert "gcn+ee" in report["skipped"] and "none+ee" in report["runs"]
    run = report["runs"]["none+ee"]
    assert run["model_version"] == summary["model_version"] and run["heads_version"] == heads["heads_version"]
    assert run["metrics"]["valid"]["n"] == 2 and run["metrics"]["test"]["n"] == 3
    ee = run["early_exit"]
    assert ee["exit_layers"] == [2, 3, 4, 5, 6] and ee["n_layers"] == 6
    # ... and served from there: the run replays the heads' rule, not one of its own
    assert ee["calibration"]["rule_from"].startswith("heads meta")
    assert (ee["tau"], ee["window"]) == (chosen["rule"]["tau"], chosen["rule"]["window"])
    assert ee["valid"]["auc"] == pytest.approx(chosen["valid_auc"])
    assert 2 <= ee["test"]["mean_exit_layer"] <= 6 and 0 < ee["test"]["flops_ratio"] <= 1
    assert sum(ee["test"]["exit_share"].values()) == pytest.approx(1.0)

    scores = read_table(spark, EVAL_SCORES, cfg.dataset_lake()).toPandas()
    mine = scores[scores["run_id"] == f"none+ee/{summary['model_version']}"]
    assert len(mine) == 5 and mine["exit_layer"].isin([2, 3, 4, 5, 6]).all()
    test = mine[mine["split"] == "test"]
    assert ctr_metrics(test.label, test.score) == run["metrics"]["test"]
    assert test["exit_layer"].mean() == pytest.approx(ee["test"]["mean_exit_layer"])
    # the full-depth run is kept beside it, and the heads' last column is that run's score
    assert "none" in json.loads(report_path(cfg, evaluation_config(cfg)).read_text())["runs"]
    assert ee["test"]["auc_full_depth"] == pytest.approx(full["metrics"]["test"]["auc"])
    assert list(ee["test"]["head_auc"]) == ["2", "3", "4", "5", "6"]   # each head alone
    assert ee["test"]["head_auc"]["6"] == pytest.approx(ee["test"]["auc_full_depth"])
    # the bench (Figures 3-5) chooses its rule the same way, on its own rows
    from optirag_bench.early_exit import bench_dataset

    bench = bench_dataset(spark, cfg, "none", max_rows=0, timing_rows=3, repeats=1)
    assert bench["heads_version"] == heads["heads_version"] and bench["test_rows"] == 3
    assert bench["best_on_valid"]["tau"] == ee["tau"] and bench["auc_exit"] == pytest.approx(
        run["metrics"]["test"]["auc"])   # the same rows here (all of them): the same rule and AUC
    assert {p["tau"] for p in bench["sweeps"]["tau"]} == set(EarlyExitConfig().calibration.taus)
    # both scales of the heads' scores on the same rows; the config's (raw) is the one served
    assert bench["scale"] == "raw" and set(bench["scales"]) == {"raw", "platt"}
    assert bench["scales"]["raw"]["test_auc"] == pytest.approx(bench["auc_exit"])

    seed = ModelConfig.model_validate(cfg.model).tuning.seed + 1
    replica = train_scorer(spark, cfg, "none", seed=seed)
    assert f"none+ee/seed={seed}" in evaluate_early_exit(spark, cfg, ["none"], seed=seed)["skipped"]  # no heads yet
    replica_heads = train_heads(spark, cfg, "none", seed=seed)
    assert replica_heads["model_version"] == replica["model_version"]
    assert registry.versions(cfg, "exit_heads/none") == [heads["heads_version"]]   # production heads untouched
    assert registry.versions(cfg, f"exit_heads_seeds/none/seed={seed}") == [replica_heads["heads_version"]]
    runs = evaluate_early_exit(spark, cfg, ["none"], seed=seed)["runs"]
    assert runs[f"none+ee/seed={seed}"]["model_version"] == replica["model_version"]
    assert runs[f"none+ee/seed={seed}"]["tuning_seed"] == seed and runs["none+ee"]["tuning_seed"] == seed - 1


def test_head_recipe_sweep_fits_fresh_heads_per_recipe_on_valid(spark, trained):
    """jobs.bench_early_exit --head-recipes: every combination, each from fresh heads on the
    same cached features; the full-depth column is the scorer's own answer on valid."""
    from optirag_bench.exit_recipes import recipe_grid, sweep_head_recipes

    cfg, summary = trained
    recipes = recipe_grid({"lr0": [0.05], "epochs": [1, 20], "distill": [0.0, 1.0]})
    assert recipes[:2] == [{"lr0": 0.05, "epochs": 1, "distill": 0.0},
                           {"lr0": 0.05, "epochs": 1, "distill": 1.0}] and len(recipes) == 4
    with pytest.raises(ValueError, match="unknown head-recipe keys"):
        recipe_grid({"beta": [1.0]})
    with pytest.raises(ValueError, match="at least one value per key"):
        recipe_grid({"lr0": [0.05], "epochs": []})   # `epochs=` given without values
    out = sweep_head_recipes(spark, cfg, "none", recipes)
    assert out["model_version"] == summary["model_version"]
    assert out["valid_rows"] == 2 and out["train_rows"] == 9 and out["exit_layers"] == [2, 3, 4, 5, 6]
    by = {(r["epochs"], r["distill"]): r for r in out["recipes"]}
    for r in out["recipes"]:
        assert list(r["head_auc_valid"]) == ["2", "3", "4", "5", "6"]
        assert r["head_auc_valid"]["6"] == out["auc_full_valid"]   # the model's own head
        assert 0 < r["valid_flops_ratio"] <= 1
    for distill in (0.0, 1.0):   # fresh heads each time: more epochs, lower loss
        assert by[(20, distill)]["train_loss_last_epoch"] < by[(1, distill)]["train_loss_last_epoch"]


def test_learning_curve_tunes_nested_sizes_and_writes_rates(spark, trained, tmp_path):
    """jobs.bench_tuning's body on the tiny lake: one tuning per size, AUC with its interval,
    the training rate per size, merged into the JSON file (nothing saved to the model store)."""
    from optirag_bench.learning_curve import learning_curve

    cfg, _ = trained
    before = sorted(p.name for p in (cfg.model_store() / "scorer" / "none").iterdir())
    out = tmp_path / "tuning.json"
    # `all` is the production training set: the first evaluation.train_examples (8 of 9)
    capped = cfg.model_copy(update={"evaluation": {**cfg.evaluation, "train_examples": 8}})
    learning_curve(spark, capped, "none", ["4", "all"], out, tmp_path / "scores")
    record = json.loads(out.read_text())["datasets"][cfg.dataset.name]["variants"]["none"]
    curve = record["curve"]
    assert [p["n"] for p in curve] == [4, 8] and [p["source"] for p in curve] == ["bench", "bench"]
    assert record["train_prompts"] == 8 and record["train_prompts_built"] == 9
    assert set(record["training_examples_per_s"]) == {"4", "8"}
    assert all(r > 0 for r in record["training_examples_per_s"].values())
    for p in curve:
        lo, hi = p["test_auc_ci95"]
        assert lo <= p["test_auc"] <= hi and p["epochs"] and p["train_seconds"] >= 0
        # --scores: the point's test scores per sample, from which its AUC is recomputed
        scores = pd.read_parquet(tmp_path / "scores" / f"{cfg.dataset.name}_none_n{p['n']}.parquet")
        assert len(scores) == record["test_rows"] and scores.sample_id.is_unique
        assert ctr_metrics(scores.label, scores.score)["auc"] == pytest.approx(p["test_auc"])
    assert sorted(p.name for p in (cfg.model_store() / "scorer" / "none").iterdir()) == before


def test_learning_curve_takes_the_production_point_from_the_eval_file_even_without_the_model(tmp_path):
    """The size the production run was tuned on (all, or evaluation.train_examples) is that
    run of the eval file (same data and retriever version); a lake rebuilt without that
    scorer still gets its AUC and train time, its recipe marked unchecked."""
    from optirag_bench.learning_curve import _from_eval

    test = {"n": 969, "auc": 0.68, "auc_ci95": [0.65, 0.72]}
    run = {"model_version": "m-gone", "train_examples": 7747, "data_version": "dv1",
           "retriever_version": "r1",
           "train_seconds": 5928.6, "scoring_seconds": 260.8, "metrics": {"test": test}}
    (tmp_path / "bookcrossing.json").write_text(json.dumps({"runs": {"gcn": run}}))
    cfg = load_config("bookcrossing", model="tiny", lake=str(tmp_path / "lake"),
                      overrides=[f"evaluation.reports_dir={tmp_path}"])
    point = _from_eval(cfg, "gcn", 7747, "dv1", "r1", {"epochs": 1})
    assert point["source"] == "eval" and point["test_auc"] == 0.68 and point["train_seconds"] == 5928.6
    assert point["epochs"] is None and point["recipe_checked"] is False
    assert _from_eval(cfg, "gcn", 7747, "dv2", "r1") is None and _from_eval(cfg, "gcn", 4000, "dv1", "r1") is None
    assert _from_eval(cfg, "gcn", 7747, "dv1", "r2") is None   # other neighbours, other prompts


def test_a_packed_tuning_set_is_whole_runs_of_a_users_consecutive_samples(spark, trained):
    """Shared-prefix training's rows (optirag.llm.packing): each block is one user's
    consecutive samples behind its oldest sample's prefix, which shows none of the block's
    targets; each suffix is the sample's own; sizes are nested, as the seeded subset's are."""
    from optirag.evaluation.data import read_prompts, tuning_set

    cfg, _ = trained
    built = read_prompts(spark, cfg, "none", ["train"])
    assert built["prefix_chars"].notna().all()
    train, blocks = tuning_set(spark, cfg, built, 5, 42, 2)
    assert len(train) == 5 and sorted(i for b in blocks for i in b.examples) == list(range(5))
    for block in blocks:
        rows = train.iloc[list(block.examples)]
        assert rows["user_id"].nunique() == 1
        oldest = rows.iloc[0]
        assert block.prefix == oldest["text"][: oldest["prefix_chars"]]
        positions = [int(item.rsplit("-i", 1)[1]) for item in rows["item_id"]]   # t1-i3 -> 3
        assert positions == list(range(positions[0], positions[0] + len(positions)))
        assert not any(f"Title of {item}" in block.prefix for item in rows["item_id"])
        assert all(text.endswith(s) for text, s in zip(rows["text"], block.suffixes))
    bigger, _ = tuning_set(spark, cfg, built, None, 42, 2)
    assert len(bigger) == 9 and list(bigger["sample_id"][:5]) == list(train["sample_id"])
    plain, none = tuning_set(spark, cfg, built, 5, 42, 1)
    assert none is None and len(plain) == 5
    # random_target (no timestamps: runs by item): packed only where a user's prompts share
    # one prefix (dataset.train_targets_per_user > 1), refused where they do not (these)
    random_target = cfg.model_copy(update={"dataset": cfg.dataset.model_copy(update={"protocol": "random_target"})})
    with pytest.raises(ConfigError, match="share one prompt prefix"):
        tuning_set(spark, random_target, built, 5, 42, 2)
    first = built.sort_values("item_id").drop_duplicates("user_id")
    prefix = {r.user_id: r.text[: int(r.prefix_chars)] for r in first.itertuples()}
    shared = built.assign(   # each user's prompts behind one prefix, each with its own suffix
        text=[prefix[u] + t[int(c):] for u, t, c in zip(built["user_id"], built["text"], built["prefix_chars"])],
        prefix_chars=[len(prefix[u]) for u in built["user_id"]])
    rows, blocks = tuning_set(spark, random_target, shared, None, 42, 2)
    assert sorted(rows["sample_id"]) == sorted(shared["sample_id"]) and list(rows.columns) == list(shared.columns)
    assert {len(b.examples) for b in blocks} == {1, 2}
    for block in blocks:
        run = rows.iloc[list(block.examples)]
        assert run["user_id"].nunique() == 1 and list(run["item_id"]) == sorted(run["item_id"])
        assert all(text == block.prefix + s for text, s in zip(run["text"], block.suffixes))


def test_the_tuning_paths_bench_tunes_every_path_on_the_same_rows(spark, trained, tmp_path):
    """jobs.bench_tuning_paths' body: the prompt path and packed paths (k = 2, 3) on the same
    rows, each with its all-in rate and test AUC, the packed ones with their speedup and paired
    difference against the prompt path (nothing saved to the model store)."""
    from optirag_bench.tuning_paths import compare_paths

    cfg, _ = trained
    before = sorted(p.name for p in (cfg.model_store() / "scorer" / "none").iterdir())
    record = compare_paths(spark, cfg, "none", 6, [3, 2], tmp_path / "tuning_paths.json")
    saved = json.loads((tmp_path / "tuning_paths.json").read_text())
    assert saved["datasets"][cfg.dataset.name]["variants"]["none"]["runs"]["n6"] == record
    paths = record["paths"]
    assert record["n"] == 6 and list(paths) == ["prompt", "packed_k2", "packed_k3"]
    assert paths["packed_k3"]["prefixes"] == 2 and paths["packed_k2"]["prefixes"] == 4  # two users' runs of 3
    for name, path in paths.items():
        assert path["all_in_examples_per_s"] > 0 and path["steps"] > 0
        lo, hi = path["test_auc_ci95"]
        assert lo <= path["test_auc"] <= hi
        if name != "prompt":
            assert path["minus_prompt"]["diff"] == pytest.approx(path["test_auc"] - paths["prompt"]["test_auc"])
            assert path["all_in_speedup"] == pytest.approx(
                paths["prompt"]["all_in_seconds"] / path["all_in_seconds"], abs=0.01)
    assert sorted(p.name for p in (cfg.model_store() / "scorer" / "none").iterdir()) == before
    speed = compare_paths(spark, cfg, "none", 6, [3], tmp_path / "tuning_paths.json", score_test=False)
    assert speed["test_rows"] == 0 and "test_auc" not in speed["paths"]["packed_k3"]
    assert speed["paths"]["packed_k3"]["all_in_speedup"] > 0
    runs = json.loads((tmp_path / "tuning_paths.json").read_text())["datasets"][cfg.dataset.name]
    assert set(runs["variants"]["none"]["runs"]) == {"n6", "n6_speed"}     # merged, not replaced
    with pytest.raises(ValueError, match="targets-per-prefix must be >= 2"):
        compare_paths(spark, cfg, "none", 6, [1, 2], tmp_path / "x.json")


def test_train_scorer_packs_targets_behind_shared_prefixes(spark, trained):
    """model.tuning.targets_per_prefix > 1: the job tunes on packed blocks and says so."""
    cfg, _ = trained
    tuning = {**cfg.model.get("tuning", {}), "targets_per_prefix": 3}
    packed = cfg.model_copy(update={"model": {**cfg.model, "tuning": tuning}})
    summary = train_scorer(spark, packed, "none")
    assert summary["train_examples"] == 9 and summary["train_prefixes"] == 3   # 3 users x 3
    meta = read_meta(registry.resolve(packed, "scorer/none", summary["model_version"]))
    assert meta["model_config"]["tuning"]["targets_per_prefix"] == 3
