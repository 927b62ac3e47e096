"""Tuning as prompts vs tuning with shared prefixes, on the same rows (jobs.bench_tuning_paths).

    rows      tuning_set(n, max k): whole runs of k consecutive training samples of a user
              (the rows every path tunes on)
    prompt    tune_lora on the rows as prompts of their own (today's path)
    packed k  tune_lora on the same rows, k targets behind each shared prefix
              (optirag.llm.packing; a smaller k splits the runs), same recipe and seed
    each      all-in seconds = the frozen bottom's pass over the training rows + the
              epochs; the whole test split scored with the tuned adapters (prompts as
              served, the test rows' bottom computed once for all paths) -> AUC [95% CI]
    -> reports/bench/tuning_paths.json: datasets.<d>.variants.<v>.runs["n<n>"]: every
       path, each packed path's all-in speedup over the prompt path and its paired AUC
       difference (packed - prompt)

Early stopping's valid pass is left out of every path (the same work for each; with one
epoch it keeps the only epoch anyway), so the speedup is the training's own.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
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
from optirag.llm.packing import split_blocks
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
    load = os.getloadavg()[1]   # the 5-minute load as the tuning ends: others' work skews a rate
    train_seconds = sum(e["seconds"] for e in result.epochs)
    record: dict[str, Any] = {}
    scores = None
    if test is not None:
        tuned = result.model.get_base_model()
        frozen = (mcfg.tuning.trainable_from or 1) - 1
        batches = frozen_batches(tuned, tokenizer, test["text"].tolist(), mcfg.tuning, frozen,
                                 mcfg.max_length, cache, "test")
        scores = top_probabilities(tuned, batches, frozen, answer)
        metrics = ctr_metrics(test["label"], scores)
        record = {"test_auc": metrics["auc"], "test_auc_ci95": metrics["auc_ci95"]}
    return {**record,
            "bottom_seconds": result.train_cache_seconds, "train_seconds": round(train_seconds, 1),
            "all_in_seconds": round(all_in, 1),
            "all_in_examples_per_s": round(len(examples) / all_in, 2),
            "loss": result.epochs[-1]["loss"], "steps": len(result.losses),
            "load_average_5min": round(load, 2)}, scores


def compare_paths(spark: SparkSession, cfg: Config, variant: str, n: int | None,
                  ks: list[int], out: Path, score_test: bool = True) -> dict[str, Any]:
    """The prompt path and a packed path per k in `ks`, all on the same `n` rows (None:
    every training prompt); merged into `out`. Without `score_test`, speed only: no AUC
    (the whole test split's bottom pass costs more than a small tuning on a slow CPU)."""
    if not ks or min(ks) < 2:
        raise ValueError("--targets-per-prefix must be >= 2: 1 is the prompt path itself")
    mcfg = ModelConfig.model_validate(cfg.model)
    ecfg = evaluation_config(cfg)
    if ecfg.torch_threads:
        torch.set_num_threads(ecfg.torch_threads)
    built = read_prompts(spark, cfg, variant, ["train"])
    if built.empty:
        raise FileNotFoundError(f"no training prompts for variant {variant!r}: run jobs.build_prompts")
    train, runs = tuning_set(spark, cfg, built, n, ecfg.seed, max(ks))
    own_prefix = [t[: int(c)] for t, c in zip(train["text"], train["prefix_chars"])]
    test = read_prompts(spark, cfg, variant, ["test"]) if score_test else None
    examples = labelled_pairs(train)
    frozen = (mcfg.tuning.trainable_from or 1) - 1
    cache = BottomCache(frozen) if frozen and mcfg.tuning.cache_frozen else None
    mcfg = mcfg.model_copy(update={"tuning": mcfg.tuning.model_copy(update={"patience": None})})
    paths, scores = {}, {}
    for k in [1, *sorted(set(ks))]:
        name = "prompt" if k == 1 else f"packed_k{k}"
        blocks = None if k == 1 else split_blocks(runs, k, own_prefix)
        log.info("tuning paths %s/%s: %s on %d rows", cfg.dataset.name, variant, name, len(examples))
        paths[name], scores[name] = _tune_and_score(mcfg, examples, blocks, test, cache)
        if blocks is not None:
            paths[name].update(
                prefixes=len(blocks),
                all_in_speedup=round(paths["prompt"]["all_in_seconds"] / paths[name]["all_in_seconds"], 2))
            if test is not None:
                paths[name]["minus_prompt"] = paired_auc_difference(test["label"], scores[name],
                                                                    scores["prompt"])
        log.info("tuning paths %s: %s", name, paths[name])
    record = {
        "n": len(examples), "mean_prompt_tokens": round(float(train["n_tokens"].mean()), 1),
        "test_rows": len(test) if test is not None else 0, "data_version": data_version(spark, cfg),
        "retriever_version": retriever_version(train), "tuning": mcfg.tuning.model_dump(),
        "paths": paths, "environment": environment(),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    doc = json.loads(out.read_text()) if out.is_file() else {}
    found = (doc.setdefault("datasets", {}).setdefault(cfg.dataset.name, {})
             .setdefault("variants", {}).setdefault(variant, {}).setdefault("runs", {}))
    found[f"n{len(examples)}" + ("" if score_test else "_speed")] = record
    write_report(out, doc)
    return record
