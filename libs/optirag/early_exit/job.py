"""Body of ``jobs.train_exit_heads``: the tuned scorer of a prompt variant, frozen, gets
exit heads, and the exit rule they serve with is chosen on valid:

    train prompts (early_exit.training.max_examples), in length order
      -> one frozen forward: last-token states at the exit layers + the model's final P(Yes)
      -> fit_heads (lr0 * exp(-beta * d) per head; epochs over the cached states)
    valid prompts (the evaluation's valid rows)
      -> the same forward -> every head's P(Yes) -> (calibration.platt: each head's Platt
         fit, installed in the heads) -> calibrate (optirag.early_exit.calibration): the
         cheapest (tau, m) within early_exit.calibration.max_auc_loss of the full-depth
         valid AUC, ranking rows as the full depth does (Spearman >= calibration.min_agreement)
    -> exit_heads/<variant>/<version>: safetensors + meta (scorer version, the chosen rule)

The nightly scorer and jobs.evaluate_early_exit serve the rule in the heads' meta, so the
rule always belongs to the heads it was chosen for, in the dtype that serves. With a
tuning seed (the report's seed replicas) the scorer and the heads are the replica's
(``scorer_seeds`` / ``exit_heads_seeds``, see ``optirag.evaluation.replicas``).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import time
from typing import Any

import pandas as pd
import torch
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from optirag import registry
from optirag.config import Config
from optirag.early_exit.calibration import calibrate_scaled
from optirag.early_exit.config import EarlyExitConfig
from optirag.early_exit.heads import ExitHeads, save_exit_heads
from optirag.early_exit.training import (
    build_head_optimizer, collect_exit_features, epoch_mean_losses, fit_heads, stack_exit_probabilities,
)
from optirag.evaluation.config import evaluation_config
from optirag.evaluation.data import data_version, in_length_order
from optirag.evaluation.replicas import heads_kind, replica_seed, scorer_kind
from optirag.evaluation.job import eval_prompts
from optirag.llm.config import ModelConfig
from optirag.llm.loading import load_model
from optirag.llm.scoring import answer_tokens
from optirag.llm.tuning import load_tuned
from optirag.tables import PROMPTS, read_table


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


def prompt_features(model, tokenizer, answer, rows: pd.DataFrame, layers, ee: EarlyExitConfig):
    """(states at `layers`, the model's final P(Yes), labels) of prompt `rows`, in their order;
    collected in length order (less padding)."""
    states, p_final = in_length_order(rows, lambda texts: collect_exit_features(
        model, tokenizer, texts, layers, ee.training.feature_batch_size, None,
        ee.training.progress, answer=answer))
    return states, p_final, torch.tensor(rows["label"].to_numpy(), dtype=torch.long)


def calibrate_on_valid(model, tokenizer, heads, valid: pd.DataFrame, ee: EarlyExitConfig) -> dict[str, Any]:
    """The rule chosen for trained `heads` on the `valid` prompts: the meta record that
    `heads.calibrated_rule` reads back ({"rule": None, "reason"} when nothing can be chosen)."""
    if valid.empty or valid["label"].nunique() < 2:
        return {"rule": None, "reason": f"{len(valid)} valid rows with {valid['label'].nunique()} "
                                        "label value(s): no AUC to choose the rule by"}
    states, p_final, labels = prompt_features(model, tokenizer, heads.answer, valid,
                                              heads.trainable_layers, ee)
    heads.set_platt({})
    with torch.no_grad():
        p = stack_exit_probabilities(heads.eval(), states, p_final)
    # with calibration.platt the heads go on one scale first, and serve with it (saved fits)
    fits, rule, seen = calibrate_scaled(p, labels.numpy(), heads.exit_layers, heads.num_layers, ee,
                                        ee.calibration.platt)
    heads.set_platt(fits)
    best = seen["best"]
    return {"rule": {"rule": rule.rule, "tau": rule.tau, "window": rule.window,
                     "min_previous": rule.required_previous},
            "chosen_on": "valid", "valid_rows": len(valid), "max_auc_loss": ee.calibration.max_auc_loss,
            "min_agreement": ee.calibration.min_agreement, "valid_agreement": best["agreement"],
            "valid_auc_full_depth": seen["auc_full"], "valid_auc": best["auc"],
            "valid_flops_ratio": best["flops_ratio"], "dtype": str(next(model.parameters()).dtype),
            "platt": {str(k): v for k, v in heads.platt.items()} if ee.calibration.platt else None}


def load_variant_scorer(cfg: Config, variant: str, version: str | None = None, seed: int | None = None):
    """(model, tokenizer, answer, scorer model_version) of `scorer/<variant>` (or its replica
    tuned with `seed`); version "base" is the untuned model (zero-shot)."""
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
    started = time.time()
    seed = replica_seed(ModelConfig.model_validate(cfg.model), seed)
    ee = early_exit_config(cfg)
    rows = prompt_rows(spark, cfg, variant, ["train"])
    max_examples = max_examples or ee.training.max_examples
    if max_examples:
        rows = rows.iloc[:max_examples]
    valid = eval_prompts(spark, cfg, variant, evaluation_config(cfg).model_copy(update={"splits": ["valid"]}))
    model, tokenizer, answer, model_version = load_variant_scorer(cfg, variant, scorer_version, seed)
    model.requires_grad_(False).eval()
    torch.manual_seed(ee.training.seed)
    heads = ExitHeads.from_model(model, answer, ee)
    lrs = {g["layer"]: g["lr"] for g in build_head_optimizer(heads, ee.training).param_groups}
    states, p_final, labels = prompt_features(model, tokenizer, answer, rows, heads.trainable_layers, ee)
    epoch_losses = epoch_mean_losses(fit_heads(heads, states, labels, p_final, ee.training),
                                     ee.training.epochs)
    del states
    calibration = calibrate_on_valid(model, tokenizer, heads, valid, ee)
    dv = data_version(spark, cfg)
    digest = hashlib.sha256(f"{model_version}|{dv}|{ee.model_dump_json()}".encode()).hexdigest()[:12]
    version = f"heads-{digest}"
    meta = save_exit_heads(heads, registry.version_dir(cfg, heads_kind(variant, seed), version),
                           model_version, extra={
        "heads_version": version, "data_version": dv, "variant": variant, "tuning_seed": seed,
        "examples": len(rows), "learning_rates": {str(k): v for k, v in lrs.items()},
        "loss_first_epoch": epoch_losses[0], "loss_last_epoch": epoch_losses[-1],
        "early_exit": ee.model_dump(mode="json"), "calibration": calibration,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    })
    return {**{k: meta[k] for k in ("heads_version", "model_version", "exit_layers", "examples",
                                    "learning_rates", "loss_first_epoch", "loss_last_epoch",
                                    "calibration")},
            "wall_seconds": round(time.time() - started, 1)}
