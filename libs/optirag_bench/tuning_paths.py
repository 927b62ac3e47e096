"""Tuning as prompts vs tuning with shared prefixes, on the same rows (jobs.bench_tuning_paths).

    rows      tuning_set(n, k): whole runs of k consecutive training samples of a user
              (the rows both paths tune on; the packed path's blocks)
    prompt    tune_lora on the rows as prompts of their own (today's path)
    packed    tune_lora on the same rows, k targets behind each shared prefix
              (optirag.llm.packing), the same recipe and seed
    each      all-in seconds = the frozen bottom's pass over the training rows + the
              epochs; the whole test split scored with the tuned adapters (prompts as
              served, the test rows' bottom computed once for both) -> AUC [95% CI]
    -> reports/bench/tuning_paths.json: datasets.<d>.variants.<v>.runs["n<n>_k<k>"]:
       both paths, the all-in speedup (packed over prompt) and the paired AUC difference

Early stopping's valid pass is left out of both (the same work for either path; with one
epoch it keeps the only epoch anyway), so the speedup is the training's own.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from pyspark.sql import SparkSession

from optirag.config import Config
from optirag.environment import environment
from optirag.evaluation.config import evaluation_config
from optirag.evaluation.data import (
    data_version, labelled_pairs, read_prompts, retriever_version, tuning_set,
)
from optirag.evaluation.metrics import ctr_metrics, paired_auc_difference, write_report
from optirag.llm.config import ModelConfig
from optirag.llm.layerwise import BottomCache
from optirag.llm.loading import load_model
from optirag.llm.scoring import answer_tokens
from optirag.llm.tuning import frozen_batches, top_probabilities, tune_lora

log = logging.getLogger(__name__)


def _tune_and_score(mcfg: ModelConfig, examples, blocks, test, cache: BottomCache | None):
    """(the path's record, its test scores)."""
    model, tokenizer = load_model(mcfg)
    answer = answer_tokens(tokenizer, mcfg.answer)
    started = time.time()
    result = tune_lora(model, tokenizer, examples, mcfg.tuning, answer, blocks=blocks)
    all_in = time.time() - started
    tuned = result.model.get_base_model()
    frozen = (mcfg.tuning.trainable_from or 1) - 1
    batches = frozen_batches(tuned, tokenizer, test["text"].tolist(), mcfg.tuning, frozen,
                             mcfg.max_length, cache, "test")
    scores = top_probabilities(tuned, batches, frozen, answer)
    metrics = ctr_metrics(test["label"], scores)
    train_seconds = sum(e["seconds"] for e in result.epochs)
    return {"test_auc": metrics["auc"], "test_auc_ci95": metrics["auc_ci95"],
            "bottom_seconds": result.train_cache_seconds, "train_seconds": round(train_seconds, 1),
            "all_in_seconds": round(all_in, 1),
            "all_in_examples_per_s": round(len(examples) / all_in, 2),
            "loss": result.epochs[-1]["loss"], "steps": len(result.losses)}, scores


def compare_paths(spark: SparkSession, cfg: Config, variant: str, n: int | None,
                  targets_per_prefix: int, out: Path) -> dict[str, Any]:
    """Both paths on the same `n` rows (None: every training prompt); merged into `out`."""
    if targets_per_prefix < 2:
        raise ValueError("--targets-per-prefix must be >= 2: 1 is the prompt path itself")
    mcfg = ModelConfig.model_validate(cfg.model)
    ecfg = evaluation_config(cfg)
    if ecfg.torch_threads:
        torch.set_num_threads(ecfg.torch_threads)
    built = read_prompts(spark, cfg, variant, ["train"])
    if built.empty:
        raise FileNotFoundError(f"no training prompts for variant {variant!r}: run jobs.build_prompts")
    train, blocks = tuning_set(spark, cfg, built, n, ecfg.seed, targets_per_prefix)
    test = read_prompts(spark, cfg, variant, ["test"])
    examples = labelled_pairs(train)
    frozen = (mcfg.tuning.trainable_from or 1) - 1
    cache = BottomCache(frozen) if frozen and mcfg.tuning.cache_frozen else None
    mcfg = mcfg.model_copy(update={"tuning": mcfg.tuning.model_copy(update={"patience": None})})
    log.info("tuning paths %s/%s: %d rows, %d shared prefixes", cfg.dataset.name, variant,
             len(examples), len(blocks))
    paths, scores = {}, {}
    for name, packing in (("prompt", None), ("packed", blocks)):
        paths[name], scores[name] = _tune_and_score(mcfg, examples, packing, test, cache)
        log.info("tuning paths %s: %s", name, paths[name])
    record = {
        "n": len(examples), "targets_per_prefix": targets_per_prefix, "prefixes": len(blocks),
        "mean_prompt_tokens": round(float(train["n_tokens"].mean()), 1), "test_rows": len(test),
        "data_version": data_version(spark, cfg), "retriever_version": retriever_version(train),
        "tuning": mcfg.tuning.model_dump(), **paths,
        "all_in_speedup": round(paths["prompt"]["all_in_seconds"] / paths["packed"]["all_in_seconds"], 2),
        "packed_minus_prompt": paired_auc_difference(test["label"], scores["packed"], scores["prompt"]),
        "environment": environment(), "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    doc = json.loads(out.read_text()) if out.is_file() else {}
    runs = (doc.setdefault("datasets", {}).setdefault(cfg.dataset.name, {})
            .setdefault("variants", {}).setdefault(variant, {}).setdefault("runs", {}))
    runs[f"n{len(examples)}_k{targets_per_prefix}"] = record
    write_report(out, doc)
    return record
