"""The ``evaluation:`` section of the platform config, validated by its owner."""
from __future__ import annotations

from typing import Any

from pydantic import Field

from optirag.config import Config, Section, section


class EvaluationConfig(Section):
    variants: list[str] = Field(default_factory=lambda: ["none", "llm", "gcn"])
    # Variants whose prompts the untuned base model also scores (the zero-shot floor).
    zero_shot_variants: list[str] = Field(default_factory=lambda: ["none"])
    splits: list[str] = Field(default_factory=lambda: ["valid", "test"])
    # Cap per split (a seeded subset by hash of sample_id, the same for every variant);
    # null: every sample. Keeps CPU evaluation tractable.
    max_per_split: int | None = Field(None, ge=1)
    # Few-shot tuning set: this many of the variant's training prompts (seeded, the same
    # samples for every variant); null: every training prompt built (see prompts.train_max).
    train_examples: int | None = Field(None, ge=1)
    seed: int = 42
    # torch intra-op threads for tuning/scoring; null: torch's default.
    torch_threads: int | None = Field(2, ge=1)
    reports_dir: str = "reports/eval"
    # Paired AUC differences written to the eval file (optirag.evaluation.compare): run keys,
    # or baseline:<model> for a full-shot baseline's seeds.
    comparisons: list[list[str]] = Field(default_factory=lambda: [
        ["gcn", "none"], ["gcn", "llm"], ["gcn", "baseline:din"], ["none", "baseline:din"],
        ["gcn+ee", "gcn"], ["none+ee", "none"], ["none", "zero_shot/none"]])
    # Clip for log loss so one confident miss does not make it infinite.
    eps: float = Field(1e-7, gt=0, lt=0.5)


def evaluation_config(cfg: Config | dict[str, Any]) -> EvaluationConfig:
    return section(EvaluationConfig, cfg, "evaluation")
