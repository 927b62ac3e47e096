"""The ``orchestration:`` section of the platform config (conf/base.yaml).

The Airflow DAGs read the same block with ``yaml.safe_load`` (they must not import optirag
at parse time); the jobs validate it here, so a typo in a key fails loudly on both sides.
"""
from __future__ import annotations

from typing import Any

from pydantic import Field

from optirag.config import Config, Section, section


class ScoresGateConfig(Section):
    # Valid exit layers of a scores partition; null: read from the exit heads the nightly
    # run uses (registry `exit_heads/<variant>` meta.json `exit_layers`, last = full depth).
    exit_layers: list[int] | None = None


class OrchestrationConfig(Section):
    owner: str = "optirag"
    # Job interpreter; relative paths are relative to the repo; $OPTIRAG_JOB_PYTHON wins.
    job_python: str = ".venv/bin/python"
    # Defaults of the DAG params (a trigger's conf, then Airflow Variables optirag_<key>, win).
    dataset: str = "bookcrossing"
    lake: str = "lake"
    raw_dir: str = "../shared/data/bookcrossing"   # may hold {ds}: the day's raw drop
    env: str = "local"
    model: str = "cpu-small"
    variant: str = "gcn"               # prompt/scorer variant the nightly run scores with
    nightly_schedule: str = "0 2 * * *"
    retrain_schedule: str = "0 4 * * 0"
    retries: int = Field(2, ge=0)
    retry_delay_minutes: float = Field(5, gt=0)
    timeout_minutes: dict[str, float] = Field(default_factory=dict)  # per job; "default" key
    # The nightly run retrains the retriever when its newest version is this many days old,
    # or when the ingest changed at least this share of the graph's edges since it trained
    # (0: on any data_version change); optirag.orchestration.freshness.
    retriever_refresh_days: int = Field(7, ge=1)
    retriever_refresh_edges_share: float = Field(0.05, ge=0, le=1)
    # Retraining promotes a new scorer only if valid AUC >= promoted AUC - tolerance.
    promote_tolerance: float = Field(0.005, ge=0)
    backfill_max_active: int = Field(2, ge=1)
    # How a task starts a job, per env and engine ({python} {module} {script} {repo}).
    launchers: dict[str, dict[str, str]] = Field(default_factory=dict)
    engines: dict[str, str] = Field(default_factory=dict)   # job name -> engine
    scores_gate: ScoresGateConfig = Field(default_factory=ScoresGateConfig)


def orchestration_config(cfg: Config | dict[str, Any]) -> OrchestrationConfig:
    return section(OrchestrationConfig, cfg, "orchestration")
