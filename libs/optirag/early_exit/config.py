"""Typed `early_exit:` section of the platform config (`Config.early_exit` is a plain dict)."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from optirag.config import Section
from optirag.llm.config import read_recipe


class HeadTrainingConfig(Section):
    """Training of the exit heads on the frozen, tuned model (paper 5.2)."""
    # Per-head learning rate lambda_n = lr0 * exp(-beta * d_n): shallower heads learn faster.
    lr0: float = 1e-3
    beta: float = 1.0
    # d_n: "normalized" = layer / num_layers in (0, 1], so beta means the same for a 30- and a
    # 32-layer model; "layer" = the raw 1-based layer index (the paper's literal d_l).
    depth: Literal["normalized", "layer"] = "normalized"
    weight_decay: float = 0.0
    # Weight of self-distillation from the model's own final answer in each head's loss
    # (0: the paper's label CE only; 1: the heads only learn to agree with the full model).
    distill: float = Field(0.0, ge=0.0, le=1.0)
    epochs: int = Field(3, ge=1)
    batch_size: int = 32
    # Batch size of the single frozen forward pass that collects the exit hidden states.
    feature_batch_size: int = 8
    # Training prompts the heads see (a sample_id-ordered subset; null: all). Each head is
    # a few thousand parameters: a few thousand examples fit it, and the collecting forward
    # pass over a whole training split would cost as much as a tuning epoch.
    max_examples: int | None = Field(None, ge=1)
    seed: int = 42
    progress: bool = True


class CalibrationConfig(Section):
    """The (tau, m) grid an exit rule is chosen on, on the valid split: the cheapest setting
    (lowest layer-FLOPs ratio) within max_auc_loss of the full-depth valid AUC whose scores
    keep a Spearman correlation >= min_agreement with the full-depth scores."""
    taus: list[float] = [0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2]
    windows: list[int] = [1, 2, 3]
    max_auc_loss: float = 0.003
    # Why a label-free guard too: an AUC difference on ~1,000 valid rows is only known to
    # +-2 points, so the cheapest of 27 rules "within 0.3 points" is often one that was lucky
    # on valid (-2.4 on test once). Rank agreement with the full model is measured far more
    # precisely (docs/models.md, reports/notes/early-exit.md). None: the AUC budget alone.
    min_agreement: float | None = Field(0.97, ge=0.0, le=1.0)
    # Fit each head's Platt rescaling on the valid rows before choosing the rule, so rows
    # leaving at different layers are scored on one scale (early_exit.platt).
    platt: bool = False


class EarlyExitConfig(Section):
    """Where heads sit, what they predict, and when a sample may leave the network."""
    # Explicit exit layers (1-based decoder-layer outputs, each < num_layers); when None,
    # every `exit_stride`-th layer. The model's own head at the last layer always follows.
    exit_layers: list[int] | None = None
    exit_stride: int = 5
    # binary: norm + the two answer rows of the LM head (all the 2-way softmax needs);
    # full_vocab: norm + a full LM-head copy, trained with CE over the whole vocabulary.
    head_type: Literal["binary", "full_vocab"] = "binary"
    # probability: paper 5.3; confidence: max(P, 1-P) >= confidence; none: never exit early.
    rule: Literal["probability", "confidence", "none"] = "probability"
    tau: float = 0.02
    window: int = 2          # m: previous discrepancies averaged by the probability rule
    # Exits are allowed once this many previous discrepancies exist (None: = window).
    min_previous: int | None = None
    confidence: float = 0.9
    training: HeadTrainingConfig = Field(default_factory=HeadTrainingConfig)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)

    @model_validator(mode="after")
    def _check(self) -> "EarlyExitConfig":
        if self.exit_stride < 1:
            raise ValueError("exit_stride must be >= 1")
        if self.window < 1:
            raise ValueError("window must be >= 1")
        if self.min_previous is not None and not 1 <= self.min_previous <= self.window:
            raise ValueError("min_previous must be in [1, window]")
        if not 0.5 <= self.confidence <= 1.0:
            raise ValueError("confidence must be in [0.5, 1]")
        if self.tau < 0:
            raise ValueError("tau must be >= 0")
        return self

    @property
    def required_previous(self) -> int:
        return self.window if self.min_previous is None else self.min_previous


def early_exit_config_from_recipe(recipe: str, conf_dir: Path | None = None) -> EarlyExitConfig:
    return EarlyExitConfig.model_validate(read_recipe(recipe, conf_dir).get("early_exit", {}))
