"""Bodies of ``jobs.bench_scoring`` and ``jobs.bench_peers``, on the nightly job's own rows
(see optirag_bench.scoring and optirag_bench.peers for what is measured):

    candidates[--date] (built if missing) -> the first --users users' first
      --candidates-per-user candidates (peers: + a seeded subset of the labelled eval ones)
      -> the nightly context's prefixes and suffixes -> token ids, with the scorer, heads and
         rule the nightly job would load
    run_bench              the variants (a)-(d) in process, the Ray job at 1 and 2 actors,
                           peak memory vs candidate-set size -> scoring.json + .png
    export_device_bundle   only the bundle a GPU worker times (optirag_bench.device)
    run_peers              ours vs llama.cpp on the same token ids -> peers.json + .png
"""
from __future__ import annotations

import copy
import json
import os
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pyspark.sql import functions as F

from optirag.config import Config
from optirag.early_exit.heads import ExitHeads
from optirag.early_exit.rules import never_exit
from optirag.environment import environment
from optirag.evaluation.data import seeded_subset
from optirag.evaluation.metrics import paired_auc_difference
from optirag.scoring.candidates import write_candidates
from optirag.scoring.config import scoring_config
from optirag.scoring.context import item_targets, suffix_builder, user_prefixes
from optirag.scoring.prefix import encode_pairs
from optirag.scoring.resolve import load_scorer, resolve_models
from optirag.scoring.sizing import size_actors
from optirag.spark import get_spark
from optirag.tables import CANDIDATES, read_table
from optirag_bench import peers
from optirag_bench import scoring as bench
from optirag_bench.device import export_bundle, reference_scores

REPO = Path(__file__).resolve().parents[2]


def _bench_rows(spark, cfg: Config, date: str, n_users: int, per_user: int):
    """The first n_users users (by user_id) with >= per_user non-eval candidates, and
    their first per_user candidates (the candidate order: neighbour items, then popular)."""
    cand = (read_table(spark, CANDIDATES, cfg.dataset_lake())
            .where((F.col("score_date") == date) & (F.col("source") != "eval")))
    users = (cand.groupBy("user_id").count().where(F.col("count") >= per_user)
             .orderBy("user_id").limit(n_users))
    rows = cand.join(users.select("user_id"), "user_id").select("user_id", "item_id").collect()
    by_user: dict[str, list[str]] = {}
    for r in sorted(rows, key=lambda r: (r.user_id, r.item_id)):
        by_user.setdefault(r.user_id, []).append(r.item_id)
    return {u: items[:per_user] for u, items in by_user.items()}


def _job_args(cfg: Config, args, *sets: str) -> list[str]:
    out = ["--dataset", cfg.dataset.name, "--lake", cfg.lake, "--date", args.date, "--model", args.model]
    for s in list(args.overrides) + list(sets):
        out += ["--set", s]
    return out


def _eval_rows(spark, cfg: Config, date: str, n: int, seed: int = 0):
    """The date's labelled eval candidates, a seeded subset of `n`: ({user: [items]}, labels
    per (user, item))."""
    rows = (read_table(spark, CANDIDATES, cfg.dataset_lake())
            .where((F.col("score_date") == date) & (F.col("source") == "eval") & F.col("label").isNotNull())
            .select("sample_id", "user_id", "item_id", "label").toPandas())
    rows = seeded_subset(rows, n, seed)
    chosen: dict[str, list[str]] = {}
    for u, i in zip(rows["user_id"], rows["item_id"]):
        chosen.setdefault(u, []).append(i)
    return chosen, {(u, i): int(y) for u, i, y in zip(rows["user_id"], rows["item_id"], rows["label"])}


def _encode_rows(spark, cfg: Config, scfg, spec, tokenizer, chosen: dict[str, list[str]]):
    """{user: [items]} -> the nightly job's (prefix ids, suffix ids, group, users), users sorted."""
    tokenizer_dir = spec["scorer_dir"] or spec["base_dir"]
    users_df = spark.createDataFrame([(u,) for u in chosen], "user_id string")
    prefixes, retriever_version = user_prefixes(spark, cfg, users_df, scfg.variant, tokenizer_dir)
    targets = item_targets(spark, cfg, spark.createDataFrame(
        [(i,) for i in {i for items in chosen.values() for i in items}], "item_id string"))
    suffix = suffix_builder(spark, cfg, scfg.variant, retriever_version)
    prefix_text = dict(zip(prefixes["user_id"].to_pylist(), prefixes["prefix"].to_pylist()))
    target_text = dict(zip(targets["item_id"].to_pylist(), targets["text"].to_pylist()))
    users = sorted(chosen)
    group = [g for g, u in enumerate(users) for _ in chosen[u]]
    prefix_ids, suffix_ids = encode_pairs(tokenizer, [prefix_text[u] for u in users],
                                          [suffix(u, i, target_text[i])[0] for u in users for i in chosen[u]])
    return prefix_ids, suffix_ids, group, users


def _bench_inputs(spark, cfg: Config, args, scfg):
    """The bench rows as token ids, with the scorer the nightly job would load."""
    chosen = _bench_rows(spark, cfg, args.date, args.users, args.candidates_per_user)
    spec = resolve_models(cfg, scfg)
    # the threads a scorer actor of the job gets on this machine (optirag.scoring.sizing)
    spec["torch_threads"] = size_actors(scfg, [{"CPU": float(os.cpu_count() or 1)}]).torch_threads
    model, tokenizer, heads, rule = load_scorer(spec)
    prefix_ids, suffix_ids, group, users = _encode_rows(spark, cfg, scfg, spec, tokenizer, chosen)
    return spec, model, tokenizer, heads, rule, prefix_ids, suffix_ids, group, users


def export_device_bundle(cfg: Config, args) -> dict[str, Any]:
    """Only the bundle a GPU worker times (see optirag_bench.device)."""
    spark = get_spark(cfg)
    scfg = scoring_config(cfg)
    _ensure_candidates(spark, cfg, args.date)
    spec, model, tokenizer, heads, rule, prefix_ids, suffix_ids, group, _ = _bench_inputs(spark, cfg, args, scfg)
    rows = min(len(group), 2 * args.candidates_per_user)
    reference = reference_scores(model, heads, rule, prefix_ids, suffix_ids, group, scfg.batch_size,
                                 tokenizer.pad_token_id, rows)
    return export_bundle(Path(args.device_bundle), spec, model, prefix_ids, suffix_ids, group,
                         scfg.batch_size, tokenizer.pad_token_id, reference, rows)


def _ensure_candidates(spark, cfg: Config, date: str) -> None:
    have = (Path(CANDIDATES.path(cfg.dataset_lake()), "_delta_log").is_dir() and
            read_table(spark, CANDIDATES, cfg.dataset_lake()).where(F.col("score_date") == date).limit(1).count())
    if not have:
        print(f"building candidates for {date}", flush=True)
        write_candidates(spark, cfg, date)


def run_bench(cfg: Config, args) -> dict[str, Any]:
    spark = get_spark(cfg)
    scfg = scoring_config(cfg)
    _ensure_candidates(spark, cfg, args.date)

    # --- (a)-(d) in process, same rows, interleaved repeats -------------------------------
    spec, model, tokenizer, heads, rule, prefix_ids, suffix_ids, group, users = _bench_inputs(spark, cfg, args, scfg)
    dtype = next(model.parameters()).dtype
    fp32_model = None if dtype == torch.float32 else copy.deepcopy(model).float()
    print(f"timing the variants x {args.repeats} on {len(group)} rows "
          f"({len(users)} users x {args.candidates_per_user}, {dtype})", flush=True)
    variants = bench.time_variants(model, heads, rule, prefix_ids, suffix_ids, group,
                                   scfg.batch_size, tokenizer.pad_token_id, args.repeats, fp32_model)
    speedups = bench.summarize(variants)

    flops, prefix_len, suffix_len = bench.rows_flops(model, prefix_ids, suffix_ids, group)
    ideal = bench.ideal_speedup_prefix(prefix_ids, suffix_ids, group)
    achieved = flops / variants["full_independent"]["seconds_median"]
    peak = bench.matmul_peak_flops(spec["torch_threads"], dtype=dtype)
    dtype_name = str(dtype).removeprefix("torch.")
    peaks = {dtype_name: peak}
    if fp32_model is not None:
        peaks["float32"] = bench.matmul_peak_flops(spec["torch_threads"])
    del model, fp32_model

    # --- the Ray job: 1 and 2 scorer actors on the same rows (--job-rows 0: skipped) -------
    actors = {}
    for n in (1, 2) if args.job_rows else ():
        print(f"Ray job, {n} actor(s), {args.job_rows} rows", flush=True)
        summary = bench.run_job_measured(_job_args(
            cfg, args, f"scoring.max_rows={args.job_rows}", f"scoring.actors={n}",
            f"scoring.actor_num_cpus={1.0 if n == 1 else 0.75}"), REPO)
        actors[str(n)] = {k: summary[k] for k in ("scored", "rows_per_second", "scoring_seconds",
                                                  "mean_exit_layer", "peak_rss_mb")}

    # --- memory vs candidate-set size (streaming: must stay flat) --------------------------
    memory = {}
    for rows in [int(x) for x in args.memory_rows.split(",") if x]:
        print(f"memory run: {rows} rows with the {args.memory_model} model", flush=True)
        summary = bench.run_job_measured(
            ["--dataset", cfg.dataset.name, "--lake", cfg.lake, "--date", args.date,
             "--model", args.memory_model, "--set", f"scoring.max_rows={rows}",
             "--set", "scoring.scorer_version=base", "--set", "scoring.early_exit=false",
             "--set", "scoring.block_rows=512"], REPO)
        memory[str(rows)] = {"peak_rss_mb": summary["peak_rss_mb"], "scored": summary["scored"],
                             "rows_per_second": summary["rows_per_second"]}

    result = {
        "dataset": cfg.dataset.name, "model": spec["model_version"], "variant": scfg.variant,
        "rows": len(group), "users": len(users), "candidates_per_user": args.candidates_per_user,
        "batch_size": scfg.batch_size, "torch_threads": spec["torch_threads"], "repeats": args.repeats,
        "mean_prefix_tokens": prefix_len, "mean_suffix_tokens": suffix_len,
        "ideal_speedup_prefix": ideal,
        "prefix_share_of_ideal": speedups["speedup_prefix"] / ideal,
        "throughput": {k: v["rows_per_s"] for k, v in variants.items() if isinstance(v, dict) and "rows_per_s" in v},
        **speedups,
        "variants": variants,
        "actors": actors,
        "peak_rss_mb": memory,
        "dtype": dtype_name,
        "model_flops_per_s": achieved, "matmul_peak_flops_per_s": peak,
        "matmul_peak_by_dtype": peaks,
        "roofline_ratio": achieved / peak,
    }
    return _write(result, Path(args.out), bench.plot)


def run_peers(cfg: Config, args) -> dict[str, Any]:
    """jobs.bench_peers: the four scorers of optirag_bench.peers on the same rows."""
    spark = get_spark(cfg)
    scfg = scoring_config(cfg)
    _ensure_candidates(spark, cfg, args.date)
    spec, model, tokenizer, heads, rule, *speed_rows, users = _bench_inputs(spark, cfg, args, scfg)
    chosen, labels = _eval_rows(spark, cfg, args.date, args.eval_rows)
    *eval_rows, eval_users = _encode_rows(spark, cfg, scfg, spec, tokenizer, chosen)
    y = np.array([labels[(u, i)] for u in eval_users for i in chosen[u]])

    hf_dir = spec["scorer_dir"] or spec["base_dir"]
    gguf = peers.convert_to_gguf(hf_dir, Path(args.gguf_dir) / f"{spec['model_version']}-{args.gguf_type}.gguf",
                                 args.llama_cpp_src, args.gguf_type)
    llama = peers.LlamaCppScorer(gguf, heads.answer.yes_id, heads.answer.no_id, args.threads)
    fp32 = copy.deepcopy(model).float()
    pad = tokenizer.pad_token_id

    def full_depth(m, shared_prefix: bool):
        return peers.ours(m, ExitHeads.final_only(m, heads.answer), never_exit, scfg.batch_size, pad,
                          shared_prefix=shared_prefix, threads=args.threads)

    scorers = {
        "ours_fp32_independent": full_depth(fp32, False),
        "ours_best": peers.ours(model, heads, rule, scfg.batch_size, pad, shared_prefix=scfg.shared_prefix,
                                threads=args.threads),
        "ours_full_depth": full_depth(model, scfg.shared_prefix),
        "llama_cpp_independent": llama.independent,
        "llama_cpp_prefix": llama.shared_prefix,
    }
    print(f"timing {len(scorers)} scorers x {args.repeats} on {len(speed_rows[2])} rows "
          f"({len(users)} users x {args.candidates_per_user}), then scoring {len(y)} eval rows", flush=True)
    speed = peers.time_scorers(scorers, tuple(speed_rows), args.repeats)
    eval_scores = {name: score(*eval_rows) for name, score in scorers.items()}
    agree = peers.agreement(eval_scores, y, "ours_fp32_independent")

    def versus(a: str, b: str) -> dict[str, Any]:
        paired = paired_auc_difference(y, eval_scores[a], eval_scores[b])
        return {"speed_ratio": speed[a]["rows_per_s"] / speed[b]["rows_per_s"],
                "auc_difference": paired["diff"], "auc_difference_ci95": paired["ci95"]}

    best_peer = max((n for n in scorers if n.startswith("llama_cpp")), key=lambda n: speed[n]["rows_per_s"])
    result = {
        "dataset": cfg.dataset.name, "model": spec["model_version"], "variant": scfg.variant,
        "rows": len(speed_rows[2]), "users": len(users), "candidates_per_user": args.candidates_per_user,
        "eval_rows": len(y), "threads": args.threads, "repeats": args.repeats,
        "ours_dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "exit_rule": {k: spec["early_exit_cfg"][k] for k in ("tau", "window", "min_previous")} | {"from": spec.get("rule_from")},
        "gguf_type": args.gguf_type, "gguf_mb": round(gguf.stat().st_size / 2 ** 20, 1),
        "llama_cpp_python": _version("llama_cpp_python"),
        "scorers": {n: {**speed[n], **agree[n]} for n in scorers},
        "best_peer": best_peer,
        "ours_best_vs_best_peer": versus("ours_best", best_peer),
        "ours_full_depth_vs_best_peer": versus("ours_full_depth", best_peer),
        "ours_best_vs_full_depth": versus("ours_best", "ours_full_depth"),   # what the exits buy here
    }
    return _write(result, Path(args.out), peers.plot)


def _write(result: dict[str, Any], out: Path, plot) -> dict[str, Any]:
    """The bench's JSON (+ the environment and time) and its PNG beside it."""
    result.update(environment=environment(), created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    plot(result, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return result


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None
