"""Score the valid/test prompts of each variant with its tuned scorer, and with the untuned
base model as a floor (the body of ``jobs.evaluate``).

Every score goes to ``eval_scores`` (one ``run_id`` per evaluated model and variant,
replaced whole on a re-run); the metrics go to ``<reports_dir>/<dataset>.json``, merged
per run so evaluating one variant keeps the others' entries.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pyspark.sql import SparkSession

from optirag import registry
from optirag.config import Config, ConfigError
from optirag.evaluation.config import EvaluationConfig, evaluation_config
from optirag.evaluation.data import (
    data_version, in_length_order, read_prompts, retriever_version, seeded_subset,
)
from optirag.evaluation.metrics import ctr_metrics, write_report
from optirag.evaluation.replicas import replica_seed, run_key, scorer_kind, tuning_seed
from optirag.llm.config import ModelConfig
from optirag.llm.loading import load_model
from optirag.llm.scoring import answer_tokens, score_prompts
from optirag.llm.tuning import load_tuned
from optirag.tables import EVAL_SCORES, write_table

log = logging.getLogger(__name__)


def eval_prompts(spark: SparkSession, cfg: Config, variant: str, ecfg: EvaluationConfig) -> pd.DataFrame:
    """The variant's evaluation prompts, capped per split by the shared seeded subset."""
    df = read_prompts(spark, cfg, variant, ecfg.splits)
    parts = [seeded_subset(df[df["split"] == s], ecfg.max_per_split, ecfg.seed) for s in ecfg.splits]
    return pd.concat(parts, ignore_index=True) if parts else df


def score_frame(model, tokenizer, mcfg: ModelConfig, prompts: pd.DataFrame,
                progress: str | None = None) -> np.ndarray:
    """P(Yes) per prompt; batches of similar length (less padding), original order back."""
    answer = answer_tokens(tokenizer, mcfg.answer)
    return in_length_order(prompts, lambda texts: score_prompts(
        model, tokenizer, texts, mcfg.batch_size, answer, mcfg.max_length, progress))


def save_run(spark: SparkSession, cfg: Config, ecfg: EvaluationConfig, run_id: str, variant: str,
             model_version: str, prompts: pd.DataFrame, scores: np.ndarray, seconds: float,
             exit_layers: np.ndarray | None = None) -> dict:
    """Write a run's scores to eval_scores (replacing that run_id's rows) and return its
    record: metrics per split, speed, and what the prompts were (length, neighbours)."""
    rows = prompts[["sample_id", "user_id", "item_id", "split", "label"]].assign(
        run_id=run_id, variant=variant, model_version=model_version, score=scores,
        exit_layer=None if exit_layers is None else exit_layers.astype("int32"),
        scored_at=dt.datetime.now(dt.timezone.utc))
    frame = spark.createDataFrame(rows[EVAL_SCORES.schema.fieldNames()], EVAL_SCORES.schema)
    write_table(frame, EVAL_SCORES, cfg.dataset_lake(), replace_where=f"run_id = '{run_id}'")
    metrics = {s: ctr_metrics(prompts.loc[prompts["split"] == s, "label"],
                              scores[(prompts["split"] == s).to_numpy()], ecfg.eps)
               for s in ecfg.splits}
    log.info("%s: %s", run_id, {s: m["auc"] for s, m in metrics.items()})
    return {"variant": variant, "model_version": model_version, "run_id": run_id, "metrics": metrics,
            "scoring_seconds": round(seconds, 1),
            "prompts_per_second": round(len(prompts) / seconds, 2) if seconds else None,
            "mean_prompt_tokens": round(float(prompts["n_tokens"].mean()), 1),
            "retriever_version": retriever_version(prompts)}


def _run(spark: SparkSession, cfg: Config, run_id: str, variant: str, model_version: str,
         model, tokenizer, mcfg: ModelConfig, prompts: pd.DataFrame, ecfg: EvaluationConfig) -> dict:
    started = time.time()
    scores = score_frame(model, tokenizer, mcfg, prompts, progress=f"scoring {run_id}")
    return save_run(spark, cfg, ecfg, run_id, variant, model_version, prompts, scores,
                    time.time() - started)


def evaluate(spark: SparkSession, cfg: Config, variants: Sequence[str] | None = None,
             zero_shot: bool = True, scorer_version: str | None = None, seed: int | None = None) -> dict:
    """Score the valid/test prompts of each variant with its scorer: `scorer_version` (one
    variant only, e.g. the retraining DAG's new version), else the promoted, else the newest.
    `seed` (not model.tuning.seed): the variants' seed replicas instead, run keys
    ``<variant>/seed=<n>``; the untuned model has no seed, so no zero-shot run then."""
    mcfg = ModelConfig.model_validate(cfg.model)
    seed = replica_seed(mcfg, seed)
    zero_shot = zero_shot and seed is None
    ecfg = evaluation_config(cfg)
    if ecfg.torch_threads:
        torch.set_num_threads(ecfg.torch_threads)
    variants = list(variants or ecfg.variants)
    if scorer_version and len(variants) != 1:
        raise ConfigError("--scorer-version needs exactly one variant")
    runs: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    prompts = {}
    for v in variants:
        key = run_key(v, seed)
        prompts[v] = eval_prompts(spark, cfg, v, ecfg)
        if prompts[v].empty:
            skipped[key] = f"no {'/'.join(ecfg.splits)} prompts for variant {v!r}: run jobs.build_prompts"
            continue
        try:
            folder = registry.resolve(cfg, scorer_kind(v, seed), scorer_version)
        except registry.ModelNotFoundError as e:
            skipped[key] = f"no tuned scorer: {e}"
            continue
        model, tokenizer, meta = load_tuned(folder, mcfg)
        run = _run(spark, cfg, f"{key}/{meta['model_version']}", v, meta["model_version"], model,
                   tokenizer, mcfg, prompts[v], ecfg)
        runs[key] = {**run, "tuned": True, "tuning_seed": tuning_seed(meta),
                     "train_examples": meta.get("train_examples"),
                     "train_seconds": meta.get("train_seconds"), "data_version": meta.get("data_version")}
        del model
    for key, reason in skipped.items():
        log.warning("variant %s skipped: %s", key, reason)
    if zero_shot:
        base = None
        for v in ecfg.zero_shot_variants:
            if v not in prompts:
                prompts[v] = eval_prompts(spark, cfg, v, ecfg)
            if prompts[v].empty:
                skipped[f"zero_shot/{v}"] = f"no prompts for variant {v!r}"
                continue
            base = base or load_model(mcfg)
            run = _run(spark, cfg, f"zero_shot/{v}/{mcfg.name}", v, mcfg.name, *base, mcfg,
                       prompts[v], ecfg)
            runs[f"zero_shot/{v}"] = {**run, "tuned": False, "train_examples": 0}
    return merge_report(spark, cfg, ecfg, runs, skipped, data_version(spark, cfg), mcfg)


def report_path(cfg: Config, ecfg: EvaluationConfig) -> Path:
    return Path(ecfg.reports_dir) / f"{cfg.dataset.name}.json"


def merge_report(spark: SparkSession, cfg: Config, ecfg: EvaluationConfig, runs: dict,
                 skipped: dict, version: str, mcfg: ModelConfig) -> dict:
    """Merge `runs` into the dataset's eval file (other runs of the same data kept) and
    recompute the paired comparisons over every run it now holds."""
    from optirag.evaluation.compare import compare_runs

    path = report_path(cfg, ecfg)
    old = json.loads(path.read_text()) if path.is_file() else {}
    kept = {k: v for k, v in old.get("runs", {}).items()
            if k not in runs and v.get("data_version", version) == version}
    merged = dict(sorted({**kept, **{k: {**v, "data_version": version} for k, v in runs.items()}}.items()))
    report = {
        "dataset": cfg.dataset.name,
        "data_version": version,
        "base_model": mcfg.name,
        "updated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "evaluation": ecfg.model_dump(),
        "runs": merged,
        "comparisons": compare_runs(spark, cfg, merged, ecfg.comparisons, ecfg.splits),
        "skipped": {k: v for k, v in skipped.items() if k not in runs},
    }
    write_report(path, report)
    return report
