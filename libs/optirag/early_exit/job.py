"""Body of ``jobs.train_exit_heads``: the tuned scorer of a prompt variant, frozen, gets
exit heads trained on that variant's training prompts; they are saved as a model version
``exit_heads/<variant>/<version>`` whose meta names the scorer version they belong to. With a
tuning seed (the report's seed replicas) the scorer and the heads are the replica's
(``scorer_seeds`` / ``exit_heads_seeds``, see ``optirag.evaluation.replicas``).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import time
from typing import Any

import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from optirag import registry
from optirag.config import Config
from optirag.early_exit.config import EarlyExitConfig
from optirag.tables import MANIFEST, PROMPTS, read_table


def early_exit_config(cfg: Config) -> EarlyExitConfig:
    return EarlyExitConfig.model_validate(cfg.early_exit)


def prompt_rows(spark: SparkSession, cfg: Config, variant: str, splits: list[str]) -> pd.DataFrame:
    """The variant's prompts of `splits`, in a stable order (sample_id)."""
    rows = (read_table(spark, PROMPTS, cfg.dataset_lake())
            .where((F.col("variant") == variant) & F.col("split").isin(splits))
            .select("sample_id", "user_id", "item_id", "label", "split", "text", "n_tokens")
            .toPandas())
    if rows.empty:
        raise FileNotFoundError(f"no {variant!r} prompts for splits {splits} in "
                                f"{cfg.dataset_lake()}: run jobs.build_prompts --variant {variant}")
    return rows.sort_values("sample_id", kind="stable").reset_index(drop=True)


def data_version(spark: SparkSession, cfg: Config) -> str:
    return read_table(spark, MANIFEST, cfg.dataset_lake()).select("data_version").first()[0]


def load_variant_scorer(cfg: Config, variant: str, version: str | None = None, seed: int | None = None):
    """(model, tokenizer, answer, scorer model_version) of `scorer/<variant>` (or its replica
    tuned with `seed`); version "base" is the untuned model (zero-shot)."""
    from optirag.evaluation.replicas import scorer_kind
    from optirag.llm.config import ModelConfig
    from optirag.llm.loading import load_model
    from optirag.llm.scoring import answer_tokens
    from optirag.llm.tuning import load_tuned

    model_cfg = ModelConfig.model_validate(cfg.model)
    if version == "base":
        model, tokenizer = load_model(model_cfg)
        model_version = f"{model_cfg.name}-base"
    else:
        folder = registry.resolve(cfg, scorer_kind(variant, seed), version)
        model, tokenizer, meta = load_tuned(folder, model_cfg)
        model_version = meta["model_version"]
    return model, tokenizer, answer_tokens(tokenizer, model_cfg.answer), model_version


def train_heads(spark: SparkSession, cfg: Config, variant: str, scorer_version: str | None = None,
                max_examples: int | None = None, seed: int | None = None) -> dict[str, Any]:
    """Heads for `scorer/<variant>`, or for its replica tuned with `seed` (not the config's
    own tuning seed). The heads' own init seed is early_exit.training.seed either way."""
    import torch

    from optirag.early_exit.heads import ExitHeads, save_exit_heads
    from optirag.early_exit.training import build_head_optimizer, epoch_mean_losses, train_exit_heads
    from optirag.evaluation.replicas import heads_kind, replica_seed
    from optirag.llm.config import ModelConfig

    started = time.time()
    seed = replica_seed(ModelConfig.model_validate(cfg.model), seed)
    ee = early_exit_config(cfg)
    rows = prompt_rows(spark, cfg, variant, ["train"])
    max_examples = max_examples or ee.training.max_examples
    if max_examples:
        rows = rows.iloc[:max_examples]
    model, tokenizer, answer, model_version = load_variant_scorer(cfg, variant, scorer_version, seed)
    torch.manual_seed(ee.training.seed)
    heads = ExitHeads.from_model(model, answer, ee)
    lrs = {g["layer"]: g["lr"] for g in build_head_optimizer(heads, ee.training).param_groups}
    losses = train_exit_heads(model, tokenizer, heads, list(zip(rows["text"], rows["label"])),
                              ee.training, max_length=model.config.max_position_embeddings)
    epoch_losses = epoch_mean_losses(losses, ee.training.epochs)
    dv = data_version(spark, cfg)
    digest = hashlib.sha256(f"{model_version}|{dv}|{ee.model_dump_json()}".encode()).hexdigest()[:12]
    version = f"heads-{digest}"
    meta = save_exit_heads(heads, registry.version_dir(cfg, heads_kind(variant, seed), version),
                           model_version, extra={
        "heads_version": version, "data_version": dv, "variant": variant, "tuning_seed": seed,
        "examples": len(rows), "learning_rates": {str(k): v for k, v in lrs.items()},
        "loss_first_epoch": epoch_losses[0], "loss_last_epoch": epoch_losses[-1],
        "early_exit": ee.model_dump(mode="json"),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    })
    return {**{k: meta[k] for k in ("heads_version", "model_version", "exit_layers", "examples",
                                    "learning_rates", "loss_first_epoch", "loss_last_epoch")},
            "wall_seconds": round(time.time() - started, 1)}
