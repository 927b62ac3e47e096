"""The scorer's learning curve (the body of ``jobs.bench_tuning``): test AUC and wall time
against the number of training examples, under the recipe's own tuning settings.

    for n in sizes:  the first n of the variant's seeded training prompts (the same
                     samples for every n: each set contains the smaller ones; `all`: the
                     production scorer's set)
        tune_lora    the recipe as configured (layers, epochs, early stopping on valid)
        score        the whole test split, with the adapters in place -> AUC [95% CI]
    -> reports/bench/tuning.json: datasets.<d>.variants.<v>.curve, training rates
       (--scores DIR: each point's test scores per sample, for paired comparisons)

The frozen bottom layers are the same base weights at every size: one BottomCache serves
all the tunings and the test scoring, so each train/valid/test row runs them once in the
whole curve (a point's `cache_seconds` is what it added to the cache).

Nothing is saved to the model store: the curve measures the recipe, the production scorer
is ``jobs.train_scorer``'s. The size ``all`` is the production training set (the first
``evaluation.train_examples`` of the seeded prompts, or every one: MovieLens' recipe tunes
on 12,000 of 76,718). A size the eval file's production run was tuned on (same data and
retriever version) is that run (its numbers taken from there, marked ``source: eval``; the
epochs from the model's meta when this lake's store still has it), so the bench does not
tune it twice.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from pyspark.sql import SparkSession

from optirag import registry
from optirag.config import Config
from optirag.evaluation.config import evaluation_config
from optirag.evaluation.data import (
    data_version, early_stopping_pairs, labelled_pairs, read_prompts, retriever_version,
    seeded_subset,
)
from optirag.evaluation.metrics import ctr_metrics, write_report
from optirag.evaluation.replicas import scorer_kind
from optirag.evaluation.job import report_path, score_frame
from optirag.llm.config import ModelConfig
from optirag.llm.loading import load_model, resolve_dtype
from optirag.llm.scoring import answer_tokens
from optirag.llm.layerwise import BottomCache
from optirag.llm.tuning import frozen_batches, top_probabilities, tune_lora

log = logging.getLogger(__name__)


def _from_eval(cfg: Config, variant: str, n_train: int, version: str,
               retriever: str | None = None, tuning: dict | None = None) -> dict | None:
    """The production run's point, if it was tuned on these same `n_train` prompts: the
    first n of the seeded order (jobs.train_scorer's `evaluation.train_examples`, or all),
    the same data and retriever version and, where its meta is in this lake's store, the
    same tuning settings (`recipe_checked` says whether they could be compared)."""
    ecfg = evaluation_config(cfg)
    path = report_path(cfg, ecfg)
    run = (json.loads(path.read_text()) if path.is_file() else {}).get("runs", {}).get(variant)
    if not run or run.get("train_examples") != n_train or run.get("data_version") != version:
        return None
    if retriever is not None and run.get("retriever_version") != retriever:
        log.info("learning curve: the eval file's %s run read retriever %s, these prompts %s: "
                 "tuning n=%d here", variant, run.get("retriever_version"), retriever, n_train)
        return None
    try:  # the tuning details (epochs, rates) are in the model's meta, when the store has it
        meta = registry.read_meta(registry.resolve(cfg, scorer_kind(variant), run["model_version"]))
    except registry.ModelNotFoundError:
        log.warning("learning curve: %s is not in this lake's model store: the n=%d point "
                    "has the eval file's AUC and train time, no per-epoch record and an "
                    "unchecked recipe", run["model_version"], n_train)
        meta = {}
    recipe = meta.get("model_config", {}).get("tuning")
    if recipe is not None and tuning is not None and _recipe(recipe) != _recipe(tuning):
        log.info("learning curve: the eval file's %s run was tuned otherwise: tuning n=%d here",
                 variant, n_train)
        return None
    test = run["metrics"]["test"]
    return {"n": n_train, "source": "eval", "model_version": run["model_version"],
            "test_auc": test["auc"], "test_auc_ci95": test.get("auc_ci95"),
            "recipe_checked": recipe is not None and tuning is not None,
            "best_epoch": meta.get("best_epoch"), "epochs": meta.get("epochs"),
            "cache_seconds": meta.get("cache_seconds"),
            "train_seconds": meta.get("train_seconds", run.get("train_seconds")),
            "eval_seconds": run.get("scoring_seconds")}


def _recipe(tuning: dict) -> dict:
    """Tuning settings that change the model (not its progress bar)."""
    return {k: v for k, v in tuning.items() if k != "progress"}


def curve_point(cfg: Config, mcfg: ModelConfig, train, valid, test, n: int,
                cache: BottomCache | None = None) -> tuple[dict[str, Any], list[float]]:
    """Tune on the first `n` training prompts, score the test split: (times and AUC, the
    test scores). With a `cache`, the test rows go through the top layers only."""
    examples = labelled_pairs(train.iloc[:n])
    model, tokenizer = load_model(mcfg)
    answer = answer_tokens(tokenizer, mcfg.answer)
    started = time.time()
    result = tune_lora(model, tokenizer, examples, mcfg.tuning, answer, valid, cache=cache)
    train_seconds = time.time() - started
    started = time.time()
    tuned = result.model.get_base_model()
    if cache is None:
        scores = score_frame(tuned, tokenizer, mcfg, test, progress=f"test n={n}")
    else:
        batches = frozen_batches(tuned, tokenizer, test["text"].tolist(), mcfg.tuning, cache.frozen,
                                 mcfg.max_length, cache, f"test n={n}")
        scores = top_probabilities(tuned, batches, cache.frozen, answer)
    eval_seconds = time.time() - started
    metrics = ctr_metrics(test["label"], scores)
    return {"n": len(examples), "source": "bench", "test_auc": metrics["auc"],
            "test_auc_ci95": metrics["auc_ci95"], "best_epoch": result.best_epoch,
            "epochs": result.epochs, "cache_seconds": result.cache_seconds,
            "train_seconds": round(train_seconds, 1), "eval_seconds": round(eval_seconds, 1)}, list(scores)


def learning_curve(spark: SparkSession, cfg: Config, variant: str, sizes: list[str],
                   out: Path, scores_dir: Path | None = None) -> dict[str, Any]:
    """Points for `sizes` (ints or "all") of one dataset/variant, merged into `out`; with
    `scores_dir`, each tuned point's test scores to <dataset>_<variant>_n<n>.parquet."""
    mcfg = ModelConfig.model_validate(cfg.model)
    ecfg = evaluation_config(cfg)
    if ecfg.torch_threads:
        torch.set_num_threads(ecfg.torch_threads)
    built = read_prompts(spark, cfg, variant, ["train"])
    train = seeded_subset(built, ecfg.train_examples, ecfg.seed)   # `all`: the production set
    if train.empty:
        raise FileNotFoundError(f"no training prompts for variant {variant!r}: run jobs.build_prompts")
    valid = early_stopping_pairs(spark, cfg, variant, mcfg.tuning, ecfg.seed)
    test = read_prompts(spark, cfg, variant, ["test"])
    version = data_version(spark, cfg)
    retriever, tuning = retriever_version(train), mcfg.tuning.model_dump()
    frozen = (mcfg.tuning.trainable_from or 1) - 1
    cache = BottomCache(frozen) if frozen and mcfg.tuning.cache_frozen else None
    points = []
    for size in sizes:
        n = len(train) if size == "all" else min(int(size), len(train))
        point = _from_eval(cfg, variant, n, version, retriever, tuning)
        if point is None:
            log.info("learning curve %s/%s: tuning on %d examples", cfg.dataset.name, variant, n)
            point, scores = curve_point(cfg, mcfg, train, valid, test, n, cache)
            if scores_dir is not None:
                scores_dir.mkdir(parents=True, exist_ok=True)
                test[["sample_id", "label"]].assign(score=scores).to_parquet(
                    scores_dir / f"{cfg.dataset.name}_{variant}_n{n}.parquet", index=False)
        log.info("learning curve %s/%s n=%d: test AUC %s", cfg.dataset.name, variant, n, point["test_auc"])
        points.append(point)
    tuned = [p for p in points if p.get("epochs")]
    rate = {str(p["n"]): round(sum(e["examples_per_s"] for e in p["epochs"]) / len(p["epochs"]), 2)
            for p in tuned}
    record = {"data_version": version, "dtype": resolve_dtype(mcfg.dtype, mcfg.device),
              "torch_threads": torch.get_num_threads(), "tuning": tuning,
              "train_prompts": len(train), "train_prompts_built": len(built),
              "mean_prompt_tokens": round(float(train["n_tokens"].mean()), 1),
              "test_rows": len(test), "curve": points,
              "training_examples_per_s": rate,
              "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    doc = json.loads(out.read_text()) if out.is_file() else {}
    doc.setdefault("datasets", {}).setdefault(cfg.dataset.name, {}).setdefault("variants", {})[variant] = record
    write_report(out, doc)
    return record
