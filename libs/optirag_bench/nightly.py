"""The nightly job against its own engine, same scorer, same machine (jobs.bench_nightly).

    candidates  the date's candidates, --users users x --candidates-per-user (built if absent)
    engine      the scoring bench's variant (d), shared prefix + the served exit rule, in this
                process on the first --engine-users users' candidates, with the torch threads
                a scorer actor gets here: rows/s after one untimed pass, median of repeats
    night       jobs.score over the whole date in a child process, in the run's env (the
                scorer pool sized from Ray's resources), a full re-score: its summary (stages,
                busy seconds, pool) and the process tree's peak RSS
    again       the next date with the same candidates, incrementally: every row's key is
                unchanged, so every row is reused (the cost of a night where nothing changed)
    -> reports/bench/nightly_scale.json: runs["rows<n>_threads<t>"] with rows,
       job_rows_per_s (end to end: rows / the job's wall), scoring_rows_per_s (its streaming
       stage), the engine's rows/s and both ratios
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from pyspark.sql import functions as F

from optirag.config import Config
from optirag.environment import environment
from optirag.evaluation.metrics import write_report
from optirag.scoring.candidates import write_candidates
from optirag.scoring.config import scoring_config
from optirag.scoring.prefix import score_shared_prefix
from optirag.spark import get_spark
from optirag.tables import CANDIDATES, read_table, write_table
from optirag_bench import peers
from optirag_bench import scoring as bench
from optirag_bench.scoring_job import REPO, _bench_inputs, _job_args

SUMMARY_KEYS = ("rows", "scored", "reused", "rejected", "wall_seconds", "scoring_seconds",
                "rows_per_second", "stages", "busy_seconds", "actors", "mean_exit_layer", "model_version")


def _candidates(spark, cfg: Config, date: str, users: int, per_user: int) -> int:
    """Rows of the date's candidates, built for `users` x `per_user` when there are none."""
    lake = cfg.dataset_lake()
    have = Path(CANDIDATES.path(lake), "_delta_log").is_dir() and \
        read_table(spark, CANDIDATES, lake).where(F.col("score_date") == date).count()
    if not have:
        print(f"building candidates for {date}: {users} users x {per_user}", flush=True)
        sized = cfg.model_copy(update={"candidates": {**cfg.candidates, "max_users": users,
                                                      "per_user": per_user, "include_eval": False}})
        have = write_candidates(spark, sized, date)["rows"]
    return int(have)


def _copy_candidates(spark, cfg: Config, date: str) -> str:
    """The day after `date`, with `date`'s candidates: a night where nothing changed."""
    nxt = (dt.date.fromisoformat(date) + dt.timedelta(days=1)).isoformat()
    same = (read_table(spark, CANDIDATES, cfg.dataset_lake()).where(F.col("score_date") == date)
            .withColumn("score_date", F.lit(nxt)))
    write_table(same, CANDIDATES, cfg.dataset_lake(), replace_where=f"score_date = '{nxt}'")
    return nxt


def engine_rate(cfg: Config, args) -> dict[str, Any]:
    """Variant (d) of the scoring bench in process: rows/s on the first engine users."""
    spark = get_spark(cfg)
    scfg = scoring_config(cfg)
    bench_args = argparse.Namespace(**{**vars(args), "users": args.engine_users})
    spec, model, tokenizer, heads, rule, prefix_ids, suffix_ids, group, users = \
        _bench_inputs(spark, cfg, bench_args, scfg)

    def score(*rows):
        score_shared_prefix(model, heads, rule, *rows, scfg.batch_size, tokenizer.pad_token_id)

    timed = peers.time_scorers({"exit_prefix": score}, (prefix_ids, suffix_ids, group), args.repeats)
    return {"rows": len(group), "users": len(users), "torch_threads": spec["torch_threads"],
            "rows_per_s": timed["exit_prefix"]["rows_per_s"], "seconds": timed["exit_prefix"]["seconds"]}


def run_nightly_bench(cfg: Config, args, out: Path) -> dict[str, Any]:
    spark = get_spark(cfg)
    rows = _candidates(spark, cfg, args.date, args.users, args.candidates_per_user)
    print(f"engine: variant (d) on the first {args.engine_users} users' candidates", flush=True)
    engine = engine_rate(cfg, args)
    print(f"engine: {engine['rows_per_s']:.1f} rows/s; the night: jobs.score over {rows} rows", flush=True)
    night = bench.run_job_measured(_job_args(cfg, args), REPO)
    again = None
    if args.again:
        nxt = _copy_candidates(spark, cfg, args.date)
        print(f"again: {nxt} with {args.date}'s candidates, incrementally", flush=True)
        next_night = argparse.Namespace(**{**vars(args), "date": nxt})
        again = bench.run_job_measured(_job_args(cfg, next_night), REPO, full=False)
    job_rate = night["scored"] / night["wall_seconds"]
    record = {
        "rows": rows, "date": args.date, "scorer": night["model_version"],
        "engine": engine, "engine_rows_per_s": round(engine["rows_per_s"], 2),
        "job_rows_per_s": round(job_rate, 2), "scoring_rows_per_s": night["rows_per_second"],
        "ratio": round(job_rate / engine["rows_per_s"], 3),
        "scoring_ratio": round(night["rows_per_second"] / engine["rows_per_s"], 3),
        "night": {k: night.get(k) for k in SUMMARY_KEYS} | {"peak_rss_mb": round(night["peak_rss_mb"])},
        "again": None if again is None else (
            {k: again.get(k) for k in SUMMARY_KEYS} | {"peak_rss_mb": round(again["peak_rss_mb"]),
                                                       "rows_rescored_share": again["scored"] / max(again["rows"], 1)}),
        "cpu_count": os.cpu_count(), "environment": environment(),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    doc = json.loads(out.read_text()) if out.is_file() else {}
    runs = doc.setdefault("datasets", {}).setdefault(cfg.dataset.name, {}).setdefault("runs", {})
    runs[f"rows{rows}_threads{engine['torch_threads']}"] = record
    write_report(out, doc)
    return record
