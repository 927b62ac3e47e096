"""Which exit-head training recipe lets the exit rule leave early without losing AUC
(``jobs.bench_early_exit --head-recipes``; `reports/bench/exit_head_recipes.json`).

    scorer/<variant> (frozen) + its exit layers
      train prompts (early_exit.training.max_examples) and every valid prompt
        -> one forward each: last-token states at the exit layers + the model's final P(Yes)
      per recipe (lr0 x epochs x distill):
        fresh heads -> fit_heads on the cached train features (cheap: no model forward)
        -> valid P matrix -> each head's AUC alone + the rule chosen on valid (calibrate)

Only the valid split is read: a recipe picked from this sweep, and the rule then chosen on
valid by jobs.evaluate_early_exit, leave the test split untouched.
"""
from __future__ import annotations

import itertools
import time
from typing import Any

import torch

from optirag.early_exit.calibration import calibrate, head_aucs
from optirag.early_exit.heads import ExitHeads
from optirag.early_exit.job import early_exit_config, load_variant_scorer, prompt_features, prompt_rows
from optirag.early_exit.training import epoch_mean_losses, fit_heads, stack_exit_probabilities
from optirag.evaluation.metrics import auc_or_none

RECIPE_KEYS = ("lr0", "epochs", "distill")


def recipe_grid(values: dict[str, list]) -> list[dict[str, Any]]:
    """{lr0: [...], epochs: [...], distill: [...]} -> every combination, in that order."""
    unknown = set(values) - set(RECIPE_KEYS)
    if unknown:
        raise ValueError(f"unknown head-recipe keys {sorted(unknown)}; known: {list(RECIPE_KEYS)}")
    empty = sorted(k for k, listed in values.items() if not listed)
    if not values or empty:
        raise ValueError(f"head recipes need at least one value per key (KEY=V1,V2); none for {empty or 'any key'}")
    keys = [k for k in RECIPE_KEYS if k in values]
    return [dict(zip(keys, combo)) for combo in itertools.product(*(values[k] for k in keys))]


def sweep_head_recipes(spark, cfg, variant: str, recipes: list[dict[str, Any]],
                       max_auc_loss: float | None = None) -> dict[str, Any]:
    """Each recipe (overrides of early_exit.training) on the variant's scorer: head AUCs and
    the calibrated rule's AUC / FLOPs ratio on valid."""
    ee = early_exit_config(cfg)
    model, tokenizer, answer, version = load_variant_scorer(cfg, variant)
    model.requires_grad_(False).eval()
    layers = ExitHeads.from_model(model, answer, ee).exit_layers
    train = prompt_rows(spark, cfg, variant, ["train"])
    if ee.training.max_examples:
        train = train.iloc[:ee.training.max_examples]   # the rows jobs.train_exit_heads uses
    valid = prompt_rows(spark, cfg, variant, ["valid"])
    started = time.time()
    x_train, p_train, y_train = prompt_features(model, tokenizer, answer, train, layers[:-1], ee)
    x_valid, p_valid, y_valid = prompt_features(model, tokenizer, answer, valid, layers[:-1], ee)
    out = {"dataset": cfg.dataset.name, "variant": variant, "model_version": version,
           "exit_layers": layers, "train_rows": len(train), "valid_rows": len(valid),
           "feature_seconds": round(time.time() - started, 1),
           "auc_full_valid": auc_or_none(y_valid.numpy(), p_valid.numpy()), "recipes": []}
    for recipe in recipes:
        training = ee.training.model_copy(update={**recipe, "progress": False})
        recipe_ee = ee.model_copy(update={"training": training})
        heads = ExitHeads.from_model(model, answer, recipe_ee)
        fit_started = time.time()
        losses = epoch_mean_losses(fit_heads(heads, x_train, y_train, p_train, training),
                                   training.epochs)
        with torch.no_grad():
            p = stack_exit_probabilities(heads, x_valid, p_valid)
        _, seen = calibrate(p, y_valid.numpy(), layers, heads.num_layers, recipe_ee,
                            max_auc_loss=max_auc_loss)
        best = seen["best"]
        out["recipes"].append({
            **recipe, "fit_seconds": round(time.time() - fit_started, 1),
            "train_loss_last_epoch": losses[-1] if losses else None,
            "head_auc_valid": head_aucs(p, y_valid.numpy(), layers),
            "rule": {"tau": best["tau"], "window": best["window"]},
            "valid_auc": best["auc"], "valid_flops_ratio": best["flops_ratio"],
            "valid_mean_exit_layer": best.get("mean_exit_layer")})
    return out
