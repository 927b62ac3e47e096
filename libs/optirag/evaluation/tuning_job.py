"""LoRA tuning of the scorer on a variant's training prompts (the body of
``jobs.train_scorer``); the result is a model version under ``scorer/<variant>``.

With ``model.tuning.patience`` the variant's valid prompts (a seeded subset of
``tuning.valid_examples``) pick the epoch that is kept (early stopping on the valid AUC)."""
from __future__ import annotations

import logging
import os
import time
import uuid

import torch
from pyspark.sql import SparkSession

from optirag import registry
from optirag.config import Config
from optirag.evaluation.config import evaluation_config
from optirag.evaluation.data import (
    data_version, early_stopping_pairs, labelled_pairs, read_prompts, tuning_set,
)
from optirag.evaluation.replicas import replica_seed, scorer_kind, with_seed
from optirag.llm.config import ModelConfig
from optirag.llm.loading import load_model
from optirag.llm.scoring import answer_tokens
from optirag.llm.tuning import save_tuned, tune_lora
from optirag.prompts.config import prompts_config
from optirag.prompts.text import check_answer_boundary

log = logging.getLogger(__name__)


def train_scorer(spark: SparkSession, cfg: Config, variant: str, seed: int | None = None) -> dict:
    """Tune the variant's scorer; a `seed` other than model.tuning.seed makes a seed
    replica (optirag.evaluation.replicas), stored apart from the production scorers."""
    mcfg = ModelConfig.model_validate(cfg.model)
    seed = replica_seed(mcfg, seed)
    mcfg = with_seed(mcfg, seed)
    ecfg = evaluation_config(cfg)
    if ecfg.torch_threads:
        torch.set_num_threads(ecfg.torch_threads)
    train = read_prompts(spark, cfg, variant, ["train"])
    if train.empty:
        raise FileNotFoundError(f"no training prompts for variant {variant!r} in "
                                f"{cfg.dataset_lake()}/prompts: run jobs.build_prompts first")
    train, blocks = tuning_set(spark, cfg, train, ecfg.train_examples, ecfg.seed,
                               mcfg.tuning.targets_per_prefix)
    valid = early_stopping_pairs(spark, cfg, variant, mcfg.tuning, ecfg.seed)
    model, tokenizer = load_model(mcfg)
    answer = answer_tokens(tokenizer, mcfg.answer)
    check_answer_boundary(tokenizer, train["text"].iloc[0], mcfg.answer)
    examples = labelled_pairs(train)
    log.info("tuning %s (%s) on %d %s prompts (mean %.0f tokens)%s%s", mcfg.name,
             next(model.parameters()).dtype, len(examples), variant, train["n_tokens"].mean(),
             f" packed into {len(blocks)} shared prefixes" if blocks else "",
             f", early stopping on {len(valid)} valid prompts" if valid else "")
    started = time.time()
    result = tune_lora(model, tokenizer, examples, mcfg.tuning, answer, valid, blocks=blocks)
    train_seconds = time.time() - started
    retriever_versions = sorted({v for v in train["retriever_version"] if isinstance(v, str)})
    info = {
        "variant": variant,
        "retriever_version": ",".join(retriever_versions) or None,
        "prompts_config": prompts_config(cfg).model_dump(),
        "train_examples": len(examples),
        "train_prefixes": len(blocks) if blocks else len(examples),
        "train_positive_rate": round(float(train["label"].mean()), 4),
        "train_mean_prompt_tokens": round(float(train["n_tokens"].mean()), 1),
        "train_seconds": round(train_seconds, 1),
        "cache_seconds": result.cache_seconds,
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "valid_examples": len(valid) if valid else 0,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "losses": [round(x, 5) for x in result.losses],
        "torch_threads": torch.get_num_threads(),
    }
    kind_dir = registry.kind_dir(cfg, scorer_kind(variant, seed))
    # The version name is the weights' digest, known only after saving: save beside it
    # under a dot name (ignored by the registry), then rename into place atomically.
    staging = kind_dir / f".staging-{uuid.uuid4().hex[:8]}"
    _, meta = save_tuned(result, tokenizer, staging, mcfg, answer,
                         data_version(spark, cfg), extra_meta=info)
    final = kind_dir / meta["model_version"]
    if final.exists():  # the same weights again (a seeded re-run): keep the one there
        import shutil
        shutil.rmtree(staging)
    else:
        os.rename(staging, final)
    n = max(1, len(result.losses) // 10)
    return {"dataset": cfg.dataset.name, "model_version": meta["model_version"], "path": str(final),
            "tuning_seed": mcfg.tuning.seed,
            **{k: v for k, v in info.items() if k not in ("prompts_config", "losses")},
            "steps": len(result.losses),
            "loss_first_10pct": round(sum(result.losses[:n]) / n, 4),
            "loss_last_10pct": round(sum(result.losses[-n:]) / n, 4)}
