"""samples + items (Delta) -> trained baselines -> eval_scores rows + a JSON summary."""
from __future__ import annotations

import hashlib
import os
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from optirag import tables
from optirag.baselines.config import BaselinesConfig, baselines_config
from optirag.baselines.features import build_vocabularies, encode
from optirag.baselines.training import logloss, predict, train
from optirag.config import Config
from optirag.environment import environment
from optirag.evaluation.metrics import auc_or_none, write_report


def run_id(model: str, seed: int) -> str:
    return f"baseline/{model}/seed{seed}"


def load_frames(spark: SparkSession, dataset_lake: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The samples (history flattened to two parallel arrays) and items, as pandas."""
    samples = tables.read_table(spark, tables.SAMPLES, dataset_lake).select(
        "sample_id", "user_id", "item_id", "label", "split",
        F.col("history.item_id").alias("hist_items"), F.col("history.label").alias("hist_labels"),
    ).orderBy("sample_id")
    items = tables.read_table(spark, tables.ITEMS, dataset_lake).select(
        "item_id", "author", "year", "publisher", "genres")
    return samples.toPandas(), items.toPandas()


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    v = [x for x in values if x is not None]
    return (float(np.mean(v)), float(np.std(v))) if v else (None, None)


def _model_version(model: str, seed: int, bcfg: BaselinesConfig) -> str:
    digest = hashlib.sha256(bcfg.model_dump_json().encode()).hexdigest()[:10]
    return f"{model}-{digest}-seed{seed}"


def run_baselines(spark: SparkSession, cfg: Config, models: list[str] | None = None,
                  seeds: list[int] | None = None) -> dict[str, Any]:
    """Train every (model, seed), score valid+test, write eval_scores and the JSON report."""
    bcfg = baselines_config(cfg)
    models, seeds = models or list(bcfg.models), seeds if seeds is not None else list(bcfg.seeds)
    lake = cfg.dataset_lake()
    samples, items = load_frames(spark, lake)
    vocab = build_vocabularies(samples, items, bcfg.max_genres)
    split = {s: encode(samples[samples["split"] == s].reset_index(drop=True), vocab, cfg.ingest.history_max)
             for s in ("train", "valid", "test")}
    if len(split["train"]) == 0 or len(split["valid"]) == 0:
        raise ValueError(f"{lake}: baselines need train and valid samples")
    scored_at = datetime.now(timezone.utc).replace(tzinfo=None)
    score_frames, results = [], {}
    for model in models:
        runs = {}
        for seed in seeds:
            res = train(model, vocab, split["train"], split["valid"], bcfg, seed)
            for name in ("valid", "test"):
                probs = predict(res.model, split[name], bcfg.eval_batch_size)
                frame = split[name].frame.assign(
                    score=probs, run_id=run_id(model, seed), variant=f"baseline-{model}",
                    model_version=_model_version(model, seed, bcfg), exit_layer=None, scored_at=scored_at)
                score_frames.append(frame)
                if name == "test":
                    y = split["test"].label.numpy()
                    runs[str(seed)] = {
                        "auc": auc_or_none(y, probs), "logloss": logloss(y, probs) if len(y) else None,
                        "valid_auc": res.valid_auc, "best_epoch": res.best_epoch,
                        "epochs_run": res.epochs_run, "train_loss": res.train_loss,
                        "wall_seconds": res.seconds,
                    }
            print(f"baseline {model} seed {seed}: test AUC {runs[str(seed)]['auc']} "
                  f"(valid {res.valid_auc}, best epoch {res.best_epoch}/{res.epochs_run}, "
                  f"{res.seconds:.1f}s)", flush=True)
        auc_mean, auc_std = _mean_std([r["auc"] for r in runs.values()])
        ll_mean, ll_std = _mean_std([r["logloss"] for r in runs.values()])
        results[model] = {"seeds": runs, "auc_mean": auc_mean, "auc_std": auc_std,
                          "logloss_mean": ll_mean, "logloss_std": ll_std,
                          "wall_seconds": float(sum(r["wall_seconds"] for r in runs.values()))}
    write_scores(spark, pd.concat(score_frames, ignore_index=True), lake)
    report = {
        "dataset": cfg.dataset.name, "lake": lake, "created_at": scored_at.isoformat() + "Z",
        "split_sizes": {s: len(e) for s, e in split.items()},
        "test_positive_rate": float(split["test"].label.mean()) if len(split["test"]) else None,
        "metric_note": "AUC/logloss on the test split; mean and population std over seeds",
        "config": bcfg.model_dump(), "seeds": seeds,
        "environment": environment(),
        "models": results,
    }
    write_report(os.path.join(bcfg.reports_dir, f"baselines_{cfg.dataset.name}.json"), report)
    return report


def write_scores(spark: SparkSession, scores: pd.DataFrame, dataset_lake: str) -> None:
    """Replace exactly the partitions of the runs just made (other runs are left alone)."""
    ids = sorted(scores["run_id"].unique())
    cols = [f.name for f in tables.EVAL_SCORES.schema.fields]
    df = spark.createDataFrame(scores[cols].astype({"label": "int32", "exit_layer": "object"}),
                               schema=tables.EVAL_SCORES.schema)
    where = "run_id IN (" + ", ".join(f"'{i}'" for i in ids) + ")"
    tables.write_table(df, tables.EVAL_SCORES, dataset_lake, replace_where=where)


