"""`make demo`: the whole nightly pipeline, end to end, on one dataset, without Airflow.

Each step runs the same job entry point the DAGs run (`python -m jobs.<name> ...`, a child
process, so a step's memory is returned when it ends): ingest -> data checks -> retriever
-> (prompts, scorer tuning, exit heads: only when no model version exists yet) ->
candidates -> scoring -> score checks -> publish; then a summary read from the tables.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from optirag import registry
from optirag.config import Config

REPO = Path(__file__).resolve().parents[2]


def _step(name: str, module: str, common: list[str], *extra: str) -> float:
    print(f"\n=== {name}: python -m jobs.{module} {' '.join(extra)}", flush=True)
    started = time.time()
    proc = subprocess.run([sys.executable, "-m", f"jobs.{module}", *common, *extra], cwd=REPO)
    seconds = time.time() - started
    if proc.returncode != 0:
        raise SystemExit(f"demo stopped: step {name!r} failed with exit code {proc.returncode}")
    print(f"=== {name} done in {seconds:.0f} s", flush=True)
    return seconds


def run_demo(cfg: Config, common: list[str], raw: str, score_date: str, variant: str) -> dict[str, Any]:
    started = time.time()
    times = {}
    times["ingest"] = _step("ingest", "ingest", common, "--raw", raw)
    times["check_ingest"] = _step("data checks", "check", common, "--suite", "ingest")
    times["retriever"] = _step("retriever", "train_retriever", common, "--retriever", "gcn")
    if not registry.versions(cfg, f"scorer/{variant}"):
        times["prompts"] = _step("prompts", "build_prompts", common, "--variant", variant)
        times["train_scorer"] = _step("scorer tuning", "train_scorer", common, "--variant", variant)
    else:
        print(f"\n=== scorer/{variant} exists: tuning skipped", flush=True)
    if not registry.versions(cfg, f"exit_heads/{variant}"):
        times["train_exit_heads"] = _step("exit heads", "train_exit_heads", common, "--variant", variant)
    times["candidates"] = _step("candidates", "build_candidates", common, "--date", score_date)
    times["score"] = _step("scoring", "score", common, "--date", score_date)
    times["check_scores"] = _step("score checks", "check", common, "--suite", "scores", "--date", score_date)
    times["publish"] = _step("publish", "publish", common, "--date", score_date)
    return {"seconds": times, "wall_seconds": time.time() - started}


def summary(spark, cfg: Config, score_date: str) -> dict[str, Any]:
    from pyspark.sql import functions as F
    from sklearn.metrics import roc_auc_score

    from optirag.tables import TABLES, read_table

    lake = cfg.dataset_lake()
    rows = {}
    for name, table in TABLES.items():
        if Path(table.path(lake), "_delta_log").is_dir():
            rows[name] = read_table(spark, table, lake).count()
    scores = read_table(spark, "scores", lake).where(F.col("score_date") == score_date)
    evals = scores.where("source = 'eval' AND label IS NOT NULL").select("label", "score").toPandas()
    stats = scores.agg(F.count("*").alias("n"), F.avg("exit_layer").alias("mean_exit_layer"),
                       F.max("model_version").alias("model_version")).first()
    auc = (float(roc_auc_score(evals["label"], evals["score"]))
           if evals["label"].nunique() == 2 else None)
    return {"rows_per_table": rows, "scored_rows": stats["n"], "eval_samples": len(evals),
            "test_auc": auc, "mean_exit_layer": stats["mean_exit_layer"],
            "model_version": stats["model_version"], "lake": lake}
