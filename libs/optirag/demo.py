"""`make demo`: the whole nightly pipeline, end to end, on one dataset, without Airflow.

Each step runs the same job entry point the DAGs run (`python -m jobs.<name> ...`, a child
process, so a step's memory is returned when it ends): ingest -> data checks -> retriever,
prompts, scorer tuning, exit heads (each only when the lake has no such model yet) ->
candidates -> scoring -> score checks -> publish; then a summary read from the tables.

Models. The demo never replaces a model it did not train: on a lake that already holds a
retriever (with its neighbours), scorer or exit heads, it scores with those (the promoted
version, else the newest, as the nightly run does) and says so; on a lake without them (a
fresh `LAKE=`) it trains its own, with the demo's short recipe, into that lake.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

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


def lake_model(cfg: Config, kind: str) -> str | None:
    """The version of `kind` a nightly run would use ("<version> (promoted|newest)"), or None."""
    record = registry.promoted(cfg, kind)
    if record is not None:
        return f"{record['version']} (promoted)"
    found = registry.versions(cfg, kind)
    return f"{found[-1]} (newest)" if found else None


def _has_neighbours(cfg: Config, retriever: str) -> bool:
    from deltalake import DeltaTable

    from optirag.tables import NEIGHBOURS

    path = NEIGHBOURS.path(cfg.dataset_lake())
    return DeltaTable.is_deltatable(path) and bool(
        DeltaTable(path).file_uris(partition_filters=[("retriever", "=", retriever)]))


def _use_or_train(cfg: Config, kind: str, usable: bool, train: Callable[[], None]) -> str:
    """Use the lake's `kind` when it has one (and `usable`), else train the demo's own."""
    found = lake_model(cfg, kind) if usable else None
    if found:
        print(f"\n=== {kind}: using the lake's {found}; the demo does not retrain it", flush=True)
        return f"lake's {found}"
    print(f"\n=== {kind}: none in {cfg.model_store()}; the demo trains its own", flush=True)
    train()
    return f"trained by this demo: {registry.versions(cfg, kind)[-1]}"


def run_demo(cfg: Config, common: list[str], raw: str, score_date: str, variant: str) -> dict[str, Any]:
    started = time.time()
    times: dict[str, float] = {}

    def run(key: str, name: str, module: str, *extra: str) -> None:
        times[key] = _step(name, module, common, *extra)

    def tune() -> None:
        run("prompts", "prompts", "build_prompts", "--variant", variant)
        run("train_scorer", "scorer tuning", "train_scorer", "--variant", variant)

    run("ingest", "ingest", "ingest", "--raw", raw)
    run("check_ingest", "data checks", "check", "--suite", "ingest")
    models = {kind: _use_or_train(cfg, kind, usable, train) for kind, usable, train in (
        ("retriever/gcn", _has_neighbours(cfg, "gcn"),
         lambda: run("retriever", "retriever", "train_retriever", "--retriever", "gcn")),
        (f"scorer/{variant}", True, tune),
        (f"exit_heads/{variant}", True,
         lambda: run("train_exit_heads", "exit heads", "train_exit_heads", "--variant", variant)),
    )}
    run("candidates", "candidates", "build_candidates", "--date", score_date)
    run("score", "scoring", "score", "--date", score_date)
    run("check_scores", "score checks", "check", "--suite", "scores", "--date", score_date)
    run("publish", "publish", "publish", "--date", score_date)
    return {"models": models, "seconds": times, "wall_seconds": time.time() - started}


def summary(spark, cfg: Config, score_date: str) -> dict[str, Any]:
    from pyspark.sql import functions as F
    from optirag.evaluation.metrics import auc_or_none
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
    auc = auc_or_none(evals["label"], evals["score"])
    return {"rows_per_table": rows, "scored_rows": stats["n"], "eval_samples": len(evals),
            "test_auc": auc, "mean_exit_layer": stats["mean_exit_layer"],
            "model_version": stats["model_version"], "lake": lake}
