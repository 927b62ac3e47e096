"""The ``baselines:`` section of the platform config, validated by its owner.

Small-scale defaults: 16-dim embeddings, Adam 1e-3, at most 8 epochs with early stopping
on the validation AUC, so each model trains in about a minute per seed on one CPU thread.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from optirag.config import ConfigError, Section
from optirag.config import section as validate_section

MODEL_NAMES = ("deepfm", "din", "gru4rec", "sim")


class BaselinesConfig(Section):
    models: list[Literal["deepfm", "din", "gru4rec", "sim"]] = list(MODEL_NAMES)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    emb_dim: int = Field(16, ge=1)
    hidden: list[int] = Field(default_factory=lambda: [64, 32])   # MLP towers
    attention_hidden: int = Field(36, ge=1)     # DIN activation unit (paper: 36)
    gru_hidden: int = Field(32, ge=1)           # GRU4Rec
    sim_top_k: int = Field(5, ge=1)             # SIM general search unit: kept behaviours
    sim_heads: int = Field(2, ge=1)             # SIM exact search unit attention heads
    max_genres: int = Field(4, ge=1)            # genre slots per item (more are cut)
    epochs: int = Field(8, ge=1)
    patience: int = Field(2, ge=1)              # epochs without a better valid AUC
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(256, ge=1)
    eval_batch_size: int = Field(4096, ge=1)
    torch_threads: int = Field(1, ge=1)         # fixed: bitwise-reproducible CPU runs
    reports_dir: str = "reports/eval"           # baselines_<dataset>.json goes here

    @model_validator(mode="after")
    def _heads_divide(self) -> "BaselinesConfig":
        # SIM attends over item vectors of 5 fields x emb_dim
        if (5 * self.emb_dim) % self.sim_heads:
            raise ValueError("sim_heads must divide 5 * emb_dim")
        return self


class BaselinesConfigError(ConfigError):
    """The ``baselines:`` section does not validate."""


def baselines_config(section: dict[str, Any] | BaselinesConfig | Any | None) -> BaselinesConfig:
    """Validate ``cfg.baselines`` (or a whole Config), or pass a BaselinesConfig through."""
    return validate_section(BaselinesConfig, section, "baselines", BaselinesConfigError)
