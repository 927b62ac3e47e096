"""The nightly scoring job's body: candidates[date] -> Ray Data -> scores[date] (Delta).

    read      the date's candidate files (Delta log -> Parquet files, streamed)
    prompts   CPU map_batches actors: attach each user's prefix ids and each item's suffix
              ids (tokenized once per actor); unknown users/items get a reject reason;
              incremental nights: a row whose score_key the latest earlier date holds
              keeps that score (``reuse``)
    score     map_batches actor pool: each actor loads the scorer and exit heads once and
              scores its batches' other rows with shared user prefixes and per-sample
              early exit; how many actors, CPUs and torch threads comes from Ray's
              resources (``sizing``)
    stage     the driver streams finished batches into Parquet files under
              <lake>/<dataset>/_staging/scores/<date>/ and prints rows, rows/s and ETA
    commit    one Delta commit replaces the date's partition of `scores` (and of
              `score_rejects`) with the staged rows, then the staging folder is removed

This module wires the steps; each lives in a module of its own in optirag.scoring:
``read`` (candidate files), ``sizing`` (the scorer pool), ``resolve`` (which scorer, heads
and exit rule a run serves, checked on the driver, and loading them in an actor),
``actors`` (AttachPrompts, ExitScorer), ``reuse`` (incremental nights), ``commit``
(staging files and the Delta commit), ``progress`` (the progress line), ``context``
(prefixes, item texts and the suffix builder, from Spark).

Crash safety: until the commit nothing in `scores` changes, and the commit is a single
atomic Delta transaction (deltalake ``predicate`` overwrite), so a run killed at any point
leaves the table as it was; the next run of that date clears the stale staging folder
and starts over. Re-running a date replaces exactly that date (idempotent). One run per
date at a time (the DAGs guarantee it). Rows pass through the driver on their way to the
staging files; at LLM scoring speeds (hundreds of rows/s per worker) that is never the
bottleneck, and it gives exact progress.
"""
from __future__ import annotations

import shutil
import time
from typing import Any

import numpy as np

from optirag import faults
from optirag.config import Config
from optirag.scoring.actors import AttachPrompts, ExitScorer
from optirag.scoring.commit import commit, stage, staging_dir
from optirag.scoring.config import scoring_config
from optirag.scoring.progress import Progress, report_progress, row_counter
from optirag.scoring.read import candidate_files, read_files
from optirag.scoring.resolve import resolve_models
from optirag.scoring.reuse import earlier_scores, key_versions, reused_rows
from optirag.scoring.sizing import ray_node_resources, size_actors
from optirag.tables import CANDIDATES, SCORE_REJECTS, SCORES


def run_scoring(cfg: Config, score_date: str, spark=None) -> dict[str, Any]:
    """Score the date's candidates and commit them; returns a summary."""
    import ray

    from optirag.ray_session import init_ray
    from optirag.scoring.context import (
        candidate_items, item_targets, scored_users, suffix_builder, user_prefixes,
    )
    from optirag.spark import get_spark
    from optirag.tables import USER_INDEX, read_table

    scfg = scoring_config(cfg)
    started = time.time()
    files = candidate_files(cfg, score_date)
    spec = resolve_models(cfg, scfg)
    tokenizer_dir = spec["scorer_dir"] or spec["base_dir"]

    # context (Spark): prefixes of the known candidate users, suffixes of every item
    spark = spark or get_spark(cfg)
    known = read_table(spark, USER_INDEX, cfg.dataset_lake()).select("user_id")
    users, keep_users, total = scored_users(spark, cfg, score_date, scfg.max_rows)
    variant = scfg.variant
    prefixes, retriever_version = user_prefixes(spark, cfg, users.join(known, "user_id"), variant,
                                                tokenizer_dir)
    targets = item_targets(spark, cfg, candidate_items(spark, cfg, score_date))
    suffix = suffix_builder(spark, cfg, variant, retriever_version)
    earlier = earlier_scores(cfg.dataset_lake(), score_date) if scfg.incremental else None
    context_seconds = time.time() - started

    folder = staging_dir(cfg, "scores", score_date)
    shutil.rmtree(folder, ignore_errors=True)  # a killed earlier run's leftovers
    folder.mkdir(parents=True)
    stages = {"context": round(context_seconds, 1)}
    mark = time.time()
    init_ray(cfg.ray)
    sizing = size_actors(scfg, ray_node_resources(ray))
    spec["torch_threads"] = sizing.torch_threads
    stages["ray_start"] = round(time.time() - mark, 1)
    context = ray.data.DataContext.get_current()
    # our progress line (rows, rows/s, ETA) replaces Ray's per-operator log every 10 s
    context.enable_progress_bars = False
    context.target_max_block_size = int(scfg.max_block_mb * 2 ** 20)   # blocks stream (config)
    counter = row_counter()
    columns = [f.name for f in CANDIDATES.schema.fields if f.name != "score_date"]
    # One read task per candidate file, at a fraction of a CPU: Ray's read_parquet plans a
    # 1-CPU file-listing task that, on a 2-CPU node, can wait forever behind the actors.
    ds = ray.data.from_items([{"path": f} for f in files]).map_batches(
        read_files, fn_kwargs={"columns": columns, "users": keep_users, "rows": scfg.block_rows},
        batch_size=1,
        batch_format="pyarrow", num_cpus=scfg.read_num_cpus)
    ds = ds.map_batches(
        AttachPrompts, batch_format="pandas", batch_size=scfg.block_rows,
        fn_constructor_args=(ray.put(prefixes), ray.put(targets), ray.put(suffix), tokenizer_dir,
                             score_date, key_versions(spec), ray.put(earlier), counter),
        compute=ray.data.ActorPoolStrategy(size=1), num_cpus=scfg.prompt_num_cpus)
    ds = ds.map_batches(
        ExitScorer, batch_format="pandas", batch_size=scfg.block_rows,
        fn_constructor_args=(spec, scfg.batch_size, scfg.shared_prefix, counter),
        compute=ray.data.ActorPoolStrategy(size=sizing.actors),
        num_cpus=sizing.actor_num_cpus, num_gpus=sizing.num_gpus or None)

    exits: dict[int, int] = {}
    staged_rows = reused = blocks = 0
    staging_seconds = 0.0
    scoring_started = time.time()
    with report_progress(Progress(total, scfg.progress_seconds), counter):
        for part, batch in enumerate(ds.iter_batches(batch_size=None, batch_format="pandas")):
            if batch.empty:
                continue
            mark = time.time()
            staged_rows += stage(folder, part, batch, retriever_version)
            blocks += 1
            staging_seconds += time.time() - mark
            faults.point("scoring.after_staged_rows", staged_rows)
            reused += reused_rows(batch)
            for layer, n in zip(*np.unique(batch.loc[batch["reason"].isna(), "exit_layer"],
                                           return_counts=True)):
                exits[int(layer)] = exits.get(int(layer), 0) + int(n)
    scoring_seconds = time.time() - scoring_started
    stages["score"] = round(scoring_seconds, 1)
    faults.point("scoring.before_commit")
    mark = time.time()
    counts = commit(cfg, score_date, folder)
    shutil.rmtree(folder, ignore_errors=True)
    stages["commit"] = round(time.time() - mark, 1)
    busy = ray.get(counter.busy_seconds.remote()) | {"staging": round(staging_seconds, 1)}
    scored = counts[SCORES.name] - reused  # run through the model tonight
    return {
        "score_date": score_date, "rows": counts[SCORES.name] + counts[SCORE_REJECTS.name],
        "scored": scored, "reused": reused, "rejected": counts[SCORE_REJECTS.name],
        "incremental": scfg.incremental, "model_version": spec["model_version"],
        "retriever_version": retriever_version, "variant": variant,
        "early_exit": scfg.early_exit, "shared_prefix": scfg.shared_prefix,
        "exit_rule": ({k: spec["early_exit_cfg"][k] for k in ("rule", "tau", "window", "min_previous")}
                      | {"from": spec["rule_from"]}) if spec["heads_dir"] else None,
        "exit_layers": dict(sorted(exits.items())),
        "mean_exit_layer": (sum(k * v for k, v in exits.items()) / max(sum(exits.values()), 1)),
        "mean_prefix_tokens": float(np.mean(prefixes["prefix_tokens"].to_numpy())) if len(prefixes) else 0.0,
        "context_seconds": round(context_seconds, 1), "scoring_seconds": round(scoring_seconds, 1),
        "rows_per_second": round(scored / max(scoring_seconds, 1e-9), 2),
        "wall_seconds": round(time.time() - started, 1),
        # wall-clock stages of the job (they add up to wall_seconds) and the seconds each
        # streaming stage's actors were busy (summed over actors; they overlap in time)
        "stages": stages, "busy_seconds": busy, "actors": sizing.as_dict(),
        "blocks": blocks,   # staged one by one as they streamed out (scoring.max_block_mb)
    }
