"""The ``candidates:`` and ``scoring:`` sections of the platform config, validated by their
owners (optirag.scoring.candidates and optirag.scoring.job). Kept apart from that code,
which needs Spark and Arrow, so that load_config can validate them anywhere."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from optirag.config import Config, Section, section


class CandidatesConfig(Section):
    per_user: int = Field(50, ge=1)
    users: Literal["graph", "samples"] = "graph"
    max_users: int | None = Field(None, ge=1)
    retriever: str = "gcn"           # which neighbours partition feeds the neighbour items
    include_eval: bool = True
    eval_splits: list[str] = Field(default_factory=lambda: ["valid", "test"])
    eval_max: int | None = Field(None, ge=1)  # a deterministic subset of the eval samples
    files: int = Field(4, ge=1)      # output files per date, each holding whole users


def candidates_config(cfg: Config) -> CandidatesConfig:
    return section(CandidatesConfig, cfg.candidates, "candidates")


class ScoringConfig(Section):
    variant: str = "gcn"                 # prompt variant = scorer/exit-heads variant
    scorer_version: str | None = None    # None: promoted, else newest; "base": untuned model
    heads_version: str | None = None     # None: promoted, else newest (must fit the scorer)
    early_exit: bool = True
    # heads: the exit rule chosen on valid with the heads (jobs.train_exit_heads), else the
    # config's early_exit.tau / window; config: always the config's
    rule_from: Literal["heads", "config"] = "heads"
    shared_prefix: bool = True
    batch_size: int = Field(32, ge=1)    # rows per model forward
    block_rows: int = Field(256, ge=1)   # rows per Ray Data batch
    # Ray Data merges a stage's output into blocks of up to this size (its default, 128 MiB,
    # held a whole 86k-row night, ~940 B a row, in ONE block: nothing reached staging for
    # 30 min and Ray's no-progress watchdog killed the run). ~1,100 rows a block: scores
    # stream to staging block by block on any hardware.
    max_block_mb: float = Field(1.0, gt=0)
    # null: sized from Ray's resources (optirag.scoring.sizing); a number fixes it
    actors: int | None = Field(None, ge=1)
    actor_num_cpus: float | None = Field(None, gt=0)
    max_threads_per_actor: int = Field(8, ge=1)
    prompt_num_cpus: float = Field(0.25, gt=0)
    read_num_cpus: float = Field(0.25, gt=0)
    num_gpus: float = Field(0.0, ge=0)   # per scorer actor (GPU workers on a cluster)
    torch_threads: int | None = Field(None, ge=1)
    max_rows: int | None = Field(None, ge=1)
    progress_seconds: float = Field(10.0, gt=0)
    # re-score only rows whose score_key the latest earlier date lacks (jobs.score --full: off)
    incremental: bool = True


def scoring_config(cfg: Config) -> ScoringConfig:
    return section(ScoringConfig, cfg.scoring, "scoring")
