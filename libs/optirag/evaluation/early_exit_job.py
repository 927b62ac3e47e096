"""The scorer with early exit on the evaluation's own rows (the body of
``jobs.evaluate_early_exit``): the early-exit rows of the report's Tables 2 and 4, on the
same valid/test samples as the full-depth runs, so the numbers compare row for row.

Per variant: one full forward gives every exit head's P(Yes) on valid and test; the exit
rule (tau, m) the heads were saved with (chosen on valid by jobs.train_exit_heads, the rule
the nightly scorer serves) is replayed on both splits, which is exact (the engine's score is
its exit head's score, parity-tested). Heads saved without a rule get one chosen here, on
the same valid rows (``early_exit.calibration``). Scores and
exit layers go to ``eval_scores``; the run, key ``<variant>+ee`` (``<variant>+ee/seed=<n>``
for a seed replica, whose scorer and heads are the replica's), to the eval file.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import torch
from pyspark.sql import SparkSession

from optirag import registry
from optirag.config import Config
from optirag.early_exit.calibration import calibrate, head_aucs, p_matrix, replay
from optirag.early_exit.heads import calibrated_rule, load_exit_heads
from optirag.early_exit.job import early_exit_config
from optirag.early_exit.rules import build_rule, simulate_exits
from optirag.evaluation.config import evaluation_config
from optirag.evaluation.data import data_version, in_length_order
from optirag.evaluation.metrics import auc_interval, auc_or_none
from optirag.evaluation.replicas import exit_run_key, heads_kind, replica_seed, scorer_kind, tuning_seed
from optirag.evaluation.job import eval_prompts, merge_report, save_run
from optirag.llm.config import ModelConfig
from optirag.llm.scoring import answer_tokens
from optirag.llm.tuning import load_tuned

log = logging.getLogger(__name__)


def evaluate_early_exit(spark: SparkSession, cfg: Config, variants: Sequence[str],
                        seed: int | None = None) -> dict:
    """Evaluate `variants`' scorers with their exit heads (or their seed replicas' with
    `seed`); a variant without prompts, scorer or matching heads is skipped with the reason."""
    mcfg = ModelConfig.model_validate(cfg.model)
    seed = replica_seed(mcfg, seed)
    ecfg, ee = evaluation_config(cfg), early_exit_config(cfg)
    if "valid" not in ecfg.splits:
        raise ValueError("evaluation.splits needs 'valid': the exit rule is chosen on it")
    if ecfg.torch_threads:
        torch.set_num_threads(ecfg.torch_threads)
    runs, skipped = {}, {}
    for v in variants:
        key = exit_run_key(v, seed)
        prompts = eval_prompts(spark, cfg, v, ecfg)
        if prompts.empty:
            skipped[key] = f"no {'/'.join(ecfg.splits)} prompts for variant {v!r}: run jobs.build_prompts"
            continue
        try:
            model, tokenizer, meta = load_tuned(registry.resolve(cfg, scorer_kind(v, seed)), mcfg)
            version = meta["model_version"]
            heads_dir = registry.resolve(cfg, heads_kind(v, seed))
            heads = load_exit_heads(heads_dir, model, answer_tokens(tokenizer, mcfg.answer), version)
        except (registry.ModelNotFoundError, ValueError) as e:   # ValueError: heads of another scorer
            skipped[key] = f"no exit heads for this scorer: {e} (run jobs.train_exit_heads)"
            continue
        started = time.time()
        p = in_length_order(prompts, lambda texts: p_matrix(
            model, tokenizer, heads, texts, mcfg.batch_size, mcfg.max_length,
            progress=f"exit heads {key}"))
        seconds = time.time() - started
        labels = prompts["label"].to_numpy()
        split = {s: (prompts["split"] == s).to_numpy(copy=True) for s in ecfg.splits}   # writable: torch indexes with it
        layers = heads.exit_layers
        heads_meta = registry.read_meta(heads_dir)
        rule = calibrated_rule(heads_meta, ee)
        if rule is None:   # heads saved before rules were chosen with them
            rule, seen = calibrate(p[split["valid"]], labels[split["valid"]], layers, heads.num_layers, ee)
            calibration = {"rule_from": "chosen by evaluate_early_exit on valid", **seen["best"]}
        else:
            calibration = {"rule_from": "heads meta (jobs.train_exit_heads)", **heads_meta["calibration"]}
        at = simulate_exits(p, build_rule(rule))
        scores, exit_layers = p[torch.arange(len(at)), at].numpy(), np.asarray(layers)[at.numpy()]
        run = save_run(spark, cfg, ecfg, f"{key}/{version}", v, version, prompts, scores, seconds,
                       exit_layers)
        per_split = {s: {**replay(p[m], labels[m], layers, heads.num_layers, rule),
                         "auc_ci95": run["metrics"][s]["auc_ci95"],
                         "auc_full_depth": auc_or_none(labels[m], p[m, -1].numpy()),
                         "auc_full_depth_ci95": auc_interval(labels[m], p[m, -1].numpy()),
                         "head_auc": head_aucs(p[m], labels[m], layers)}
                     for s, m in split.items()}
        runs[key] = {**run, "tuned": True, "tuning_seed": tuning_seed(meta),
                     "heads_version": heads_dir.name,
                     "early_exit": {"tau": rule.tau, "window": rule.window, "rule": rule.rule,
                                    "n_layers": heads.num_layers, "exit_layers": layers,
                                    "calibration": calibration, **per_split}}
        log.info("%s: tau=%s m=%s, test mean exit layer %.1f of %d", key, rule.tau, rule.window,
                 per_split.get("test", per_split["valid"])["mean_exit_layer"], heads.num_layers)
        model = None   # the next variant loads its own (free this one first)
    for key, reason in skipped.items():
        log.warning("%s skipped: %s", key, reason)
    return merge_report(spark, cfg, ecfg, runs, skipped, data_version(spark, cfg), mcfg)
