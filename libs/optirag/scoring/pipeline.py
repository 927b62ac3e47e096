"""The nightly scoring job's body: candidates[date] -> Ray Data -> scores[date] (Delta).

    read      the date's candidate files (Delta log -> Parquet files, streamed)
    prompts   CPU map_batches actors: attach each user's prefix ids and each item's suffix
              ids (tokenized once per actor); unknown users/items get a reject reason
    score     map_batches actor pool: each actor loads the scorer and exit heads once and
              scores its batches with shared user prefixes and per-sample early exit
    stage     the driver streams finished batches into Parquet files under
              <lake>/<dataset>/_staging/scores/<date>/ and prints rows, rows/s and ETA
    commit    one Delta commit replaces the date's partition of `scores` (and of
              `score_rejects`) with the staged rows, then the staging folder is removed

Crash safety: until the commit nothing in `scores` changes, and the commit is a single
atomic Delta transaction (deltalake ``predicate`` overwrite), so a run killed at any point
leaves the table as it was; the next run of that date clears the stale staging folder
and starts over. Re-running a date replaces exactly that date (idempotent). One run per
date at a time (the DAGs guarantee it). Rows pass through the driver on their way to the
staging files; at LLM scoring speeds (hundreds of rows/s per worker) that is never the
bottleneck, and it gives exact progress.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import shutil
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from optirag import faults
from optirag.config import Config, ConfigError
from optirag.scoring.config import ScoringConfig, scoring_config
from optirag.tables import CANDIDATES, SCORE_REJECTS, SCORES, arrow_schema

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------
# the model an actor runs: resolved on the driver, loaded in each actor
# ---------------------------------------------------------------------------------------

def resolve_models(cfg: Config, scfg: ScoringConfig) -> dict[str, Any]:
    """Folders and versions of the scorer and heads, checked on the driver (clear errors
    before any actor starts)."""
    from optirag import registry
    from optirag.llm.config import ModelConfig
    from optirag.llm.loading import prepare_model

    model_cfg = ModelConfig.model_validate(cfg.model)
    spec: dict[str, Any] = {"model_cfg": model_cfg.model_dump(), "early_exit_cfg": cfg.early_exit,
                            "early_exit": scfg.early_exit, "torch_threads": scfg.torch_threads}
    if scfg.scorer_version == "base":
        spec.update(scorer_dir=None, base_dir=str(prepare_model(model_cfg)),
                    model_version=f"{model_cfg.name}-base")
    else:
        folder = registry.resolve(cfg, f"scorer/{scfg.variant}", scfg.scorer_version)
        scorer_meta = registry.read_meta(folder)
        check_prompt_layout(cfg, folder, scorer_meta)
        spec.update(scorer_dir=str(folder), model_version=scorer_meta["model_version"])
    spec["heads_dir"] = None
    if scfg.early_exit:
        heads = registry.resolve(cfg, f"exit_heads/{scfg.variant}", scfg.heads_version)
        meta = registry.read_meta(heads)
        if meta["model_version"] != spec["model_version"]:
            raise ConfigError(
                f"exit heads {heads} were trained for scorer {meta['model_version']!r}, but the "
                f"scorer is {spec['model_version']!r}: run jobs.train_exit_heads --variant "
                f"{scfg.variant} (or --set scoring.early_exit=false)")
        spec["heads_dir"] = str(heads)
        spec["early_exit_cfg"], spec["rule_from"] = serving_rule(cfg, scfg, heads, meta)
    return spec


def check_prompt_layout(cfg: Config, scorer_dir, meta: dict) -> None:
    """A scorer reads the prompts it was tuned on: refuse to serve it prompts laid out
    otherwise (a changed suffix or item text would score silently worse). Scorers saved
    before their meta kept the prompt config are served with a warning."""
    from optirag.prompts.config import layout_differences, prompts_config

    saved = meta.get("prompts_config")
    if saved is None:
        log.warning("scorer %s does not record its training prompts' config: cannot check "
                    "that tonight's prompts are laid out the same way", scorer_dir)
        return
    differ = layout_differences(saved, prompts_config(cfg))
    if differ:
        shown = "; ".join(f"prompts.{k}: tuned on {a!r}, tonight {b!r}" for k, (a, b) in differ.items())
        raise ConfigError(f"scorer {scorer_dir} was tuned on differently laid-out prompts ({shown}): "
                          "set those prompts.* back, or rebuild the prompts and retrain the scorer "
                          "(jobs.build_prompts, jobs.train_scorer)")


def serving_rule(cfg: Config, scfg: ScoringConfig, heads_dir, meta: dict) -> tuple[dict, str]:
    """(early_exit config to serve, where its rule came from): the heads' calibrated rule,
    unless scoring.rule_from says config or the heads carry none (then said in the log)."""
    from optirag.early_exit.config import EarlyExitConfig
    from optirag.early_exit.heads import calibrated_rule

    base = EarlyExitConfig.model_validate(cfg.early_exit)
    rule = calibrated_rule(meta, base) if scfg.rule_from == "heads" else None
    if rule is None and scfg.rule_from == "heads":
        reason = (meta.get("calibration") or {}).get("reason", "trained before rules were saved with heads")
        log.warning("exit heads %s carry no rule chosen on valid (%s): serving the config's "
                    "tau=%s, m=%s; retrain them with jobs.train_exit_heads", heads_dir, reason,
                    base.tau, base.window)
    source = "heads" if rule is not None else "config"
    rule = rule or base
    log.info("exit rule from %s: %s tau=%s m=%s min_previous=%s", source, rule.rule, rule.tau,
             rule.window, rule.required_previous)
    return rule.model_dump(mode="json"), source


def load_scorer(spec: dict[str, Any]):
    """(model, tokenizer, heads, rule) in eval mode, as `spec` (from resolve_models) says."""
    import torch

    from optirag.early_exit.config import EarlyExitConfig
    from optirag.early_exit.heads import ExitHeads, load_exit_heads
    from optirag.early_exit.rules import build_rule, never_exit
    from optirag.llm.config import ModelConfig
    from optirag.llm.loading import load_model_from
    from optirag.llm.scoring import answer_tokens
    from optirag.llm.tuning import load_tuned

    torch.set_num_threads(spec["torch_threads"])
    model_cfg = ModelConfig.model_validate(spec["model_cfg"])
    if spec["scorer_dir"] is None:
        model, tokenizer = load_model_from(spec["base_dir"], model_cfg)
    else:
        model, tokenizer, _ = load_tuned(spec["scorer_dir"], model_cfg)
    answer = answer_tokens(tokenizer, model_cfg.answer)
    ee_cfg = EarlyExitConfig.model_validate(spec["early_exit_cfg"])
    if spec["heads_dir"]:
        heads = load_exit_heads(spec["heads_dir"], model, answer, spec["model_version"])
        rule = build_rule(ee_cfg)
    else:  # full depth: only the model's own head at the last layer
        heads, rule = ExitHeads.final_only(model, answer), never_exit
    return model, tokenizer, heads, rule


# ---------------------------------------------------------------------------------------
# Ray Data stages
# ---------------------------------------------------------------------------------------

def _get(value: Any) -> Any:
    import ray
    return ray.get(value) if isinstance(value, ray.ObjectRef) else value


class AttachPrompts:
    """CPU stage: user prefix ids and candidate suffix ids per row, or a reject reason. The
    suffix comes from the evaluation prompts' SuffixBuilder (per item, or per (user, item)
    when it shows the user's similar raters of the candidate)."""

    def __init__(self, prefixes: Any, targets: Any, suffix: Any, tokenizer_dir: str, score_date: str):
        from optirag.llm.loading import load_tokenizer

        prefixes, targets = _get(prefixes), _get(targets)
        self.prefix = dict(zip(prefixes["user_id"].to_pylist(), prefixes["prefix"].to_pylist()))
        self.target = dict(zip(targets["item_id"].to_pylist(), targets["text"].to_pylist()))
        self.suffix = _get(suffix)
        self.tokenizer = load_tokenizer(tokenizer_dir)
        self.score_date = score_date
        self.prefix_ids: dict[str, list[int]] = {}
        self.suffix_ids: dict[Any, list[int]] = {}

    def _ids(self, cache: dict | None, keys: list, text, specials: bool) -> list[list[int]]:
        """Token ids of `keys`' texts; `cache` (None: no caching) keeps them across batches."""
        if cache is None:
            return self.tokenizer([text(k) for k in keys], add_special_tokens=specials)["input_ids"] if keys else []
        if len(cache) > 200_000:  # bounded memory on huge candidate sets (users arrive sorted)
            cache.clear()
        todo = sorted({k for k in keys if k not in cache})
        if todo:
            encoded = self.tokenizer([text(k) for k in todo], add_special_tokens=specials)["input_ids"]
            cache.update(zip(todo, encoded))
        return [cache[k] for k in keys]

    def _suffix_text(self, key: Any) -> str:
        user, item = key if self.suffix.per_user else (None, key)
        return self.suffix(user, item, self.target[item])[0]

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        users, items = batch["user_id"], batch["item_id"]
        reason = np.where(users.isna() | items.isna(), "null_id",
                          np.where(~users.isin(self.prefix.keys()), "unknown_user",
                                   np.where(~items.isin(self.target.keys()), "unknown_item", None)))
        ok = pd.isna(reason)
        ok_users = users[ok].tolist()
        prefix_ids = iter(self._ids(self.prefix_ids, ok_users, self.prefix.__getitem__, True))
        # a suffix showing the user's similar raters is one row's own: nothing to reuse
        keys, cache = ((list(zip(ok_users, items[ok].tolist())), None) if self.suffix.per_user
                       else (items[ok].tolist(), self.suffix_ids))
        suffix_ids = iter(self._ids(cache, keys, self._suffix_text, False))
        batch = batch.copy()
        batch["score_date"] = self.score_date
        batch["reason"] = pd.Series(reason, index=batch.index, dtype=object)
        batch["prefix_ids"] = [next(prefix_ids) if o else [] for o in ok]
        batch["suffix_ids"] = [next(suffix_ids) if o else [] for o in ok]
        return batch


class ExitScorer:
    """Actor stage: the scorer + heads loaded once; scores its batches (prefix-shared)."""

    def __init__(self, spec: dict[str, Any], batch_size: int, shared_prefix: bool,
                 counter: Any = None):
        self.model, self.tokenizer, self.heads, self.rule = load_scorer(spec)
        self.model_version = spec["model_version"]
        self.batch_size, self.shared_prefix = batch_size, shared_prefix
        self.counter = counter
        self.batches = 0

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        from optirag.scoring.prefix import score_independent, score_shared_prefix

        batch = batch.copy()
        batch["score"] = np.nan
        batch["exit_layer"] = -1
        ok = batch["reason"].isna().to_numpy()
        if ok.any():
            rows = batch[ok]
            _, first, group = np.unique(rows["user_id"].to_numpy(dtype=object),
                                        return_index=True, return_inverse=True)
            prefixes = [list(rows["prefix_ids"].iloc[i]) for i in first]
            suffixes = [list(s) for s in rows["suffix_ids"]]
            score = score_shared_prefix if self.shared_prefix else score_independent
            out = score(self.model, self.heads, self.rule, prefixes, suffixes, group,
                        self.batch_size, self.tokenizer.pad_token_id)
            batch.loc[ok, "score"] = out.p_yes.double().numpy()
            batch.loc[ok, "exit_layer"] = out.exit_layer.numpy()
        batch["model_version"] = self.model_version
        batch["scored_at"] = pd.Timestamp.now(tz="UTC")
        if self.counter is not None:
            self.counter.add.remote(len(batch))
        self.batches += 1
        faults.point("scoring.scorer_batch", self.batches)
        return batch.drop(columns=["prefix_ids", "suffix_ids"])


# ---------------------------------------------------------------------------------------
# staging and the atomic commit
# ---------------------------------------------------------------------------------------

# Staged rows: the scores columns + the reject reason, all nullable (a rejected row has no
# score); the commit casts each side to its table's schema, which enforces the non-nulls.
STAGED = pa.schema([f.with_nullable(True) for f in arrow_schema(SCORES)] + [pa.field("reason", pa.string())])


def staging_dir(cfg: Config, table: str, score_date: str) -> Path:
    return Path(cfg.dataset_lake()) / "_staging" / table / score_date


def _read_files(batch: pa.Table, columns: list[str], users: list[str] | None, rows: int):
    """Stream each candidate file in `rows`-row blocks (a generator: Ray passes each block
    on as it is read, so scoring starts before a large file is read and memory stays flat)."""
    import pyarrow.compute as pc

    keep = None if users is None else pa.array(users)
    for path in batch["path"].to_pylist():
        for record_batch in pq.ParquetFile(path).iter_batches(batch_size=rows, columns=columns):
            table = pa.Table.from_batches([record_batch])
            if keep is not None:
                table = table.filter(pc.is_in(table["user_id"], keep))
            if table.num_rows:
                yield table


def candidate_files(cfg: Config, score_date: str) -> list[str]:
    from deltalake import DeltaTable

    path = CANDIDATES.path(cfg.dataset_lake())
    try:
        table = DeltaTable(path)
    except Exception:
        raise FileNotFoundError(f"no candidates table at {path}: run jobs.build_candidates") from None
    files = table.file_uris(partition_filters=[("score_date", "=", score_date)])
    if not files:
        raise FileNotFoundError(f"no candidates for {score_date} in {path}: run "
                                f"jobs.build_candidates --date {score_date}")
    return files


def _conform(frame: pd.DataFrame, retriever_version: str | None) -> pa.Table:
    frame = frame.assign(retriever_version=retriever_version)
    frame["exit_layer"] = frame["exit_layer"].astype("int32")
    if "label" in frame:
        frame["label"] = frame["label"].astype("Int32")
    return pa.Table.from_pandas(frame[STAGED.names], schema=STAGED, preserve_index=False)


def commit(cfg: Config, score_date: str, folder: Path) -> dict[str, int]:
    """Replace the date's partitions of `scores` and `score_rejects` with the staged rows."""
    from deltalake import write_deltalake

    lake = cfg.dataset_lake()
    staged = pads.dataset(str(folder), format="parquet", schema=STAGED)
    counts = {}
    for table, keep in ((SCORES, pads.field("reason").is_null()),
                        (SCORE_REJECTS, pads.field("reason").is_valid())):
        schema = arrow_schema(table)
        batches = (cast for b in staged.to_batches(columns=schema.names, filter=keep)
                   for cast in pa.Table.from_batches([b]).cast(schema).to_batches())
        reader = pa.RecordBatchReader.from_batches(schema, batches)
        path = table.path(lake)
        exists = Path(path, "_delta_log").is_dir()
        write_deltalake(path, reader, partition_by=list(table.partition_by),
                        mode="overwrite" if exists else "append",
                        predicate=f"score_date = '{score_date}'" if exists else None)
        counts[table.name] = staged.count_rows(filter=keep)
    return counts


# ---------------------------------------------------------------------------------------
# the job
# ---------------------------------------------------------------------------------------

class Progress:
    """Rows scored, rows/s and ETA, printed every `every` seconds."""

    def __init__(self, total: int, every: float, out=sys.stdout):
        self.total, self.every, self.out = total, every, out
        self.done, self.started, self.last = 0, time.time(), 0.0

    def update(self, done: int, force: bool = False) -> None:
        self.done = done
        now = time.time()
        if force or now - self.last >= self.every:
            self.last = now
            rate = self.done / max(now - self.started, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            eta_text = str(dt.timedelta(seconds=int(eta))) if np.isfinite(eta) else "?"
            print(f"scored {self.done:,}/{self.total:,} rows ({rate:,.1f} rows/s, ETA {eta_text})",
                  file=self.out, flush=True)


def _row_counter():
    """A CPU-free Ray actor the scorer actors add their rows to. Ray merges a task's small
    outputs into one block (up to 128 MiB), so the driver may see a whole candidate file's
    scores at once; the counter shows progress per scored batch instead."""
    import ray

    @ray.remote(num_cpus=0)
    class RowCounter:
        def __init__(self):
            self.rows = 0

        def add(self, rows: int) -> None:
            self.rows += rows

        def get(self) -> int:
            return self.rows

    # On the driver's node: a counter on a worker node would die with that node and take
    # the progress thread (and so the job) with it, while Ray Data restarts the scorers.
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return RowCounter.options(scheduling_strategy=here).remote()


@contextlib.contextmanager
def _report_progress(progress: Progress, counter: Any):
    """Print `progress` from the counter in a driver thread while the pipeline runs."""
    import ray

    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(progress.every):
            progress.update(ray.get(counter.get.remote()))

    thread = threading.Thread(target=loop, name="scoring-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        progress.update(ray.get(counter.get.remote()), force=True)


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
    context_seconds = time.time() - started

    folder = staging_dir(cfg, "scores", score_date)
    shutil.rmtree(folder, ignore_errors=True)  # a killed earlier run's leftovers
    folder.mkdir(parents=True)
    init_ray(cfg.ray)
    # our progress line (rows, rows/s, ETA) replaces Ray's per-operator log every 10 s
    ray.data.DataContext.get_current().enable_progress_bars = False
    counter = _row_counter()
    columns = [f.name for f in CANDIDATES.schema.fields if f.name != "score_date"]
    # One read task per candidate file, at a fraction of a CPU: Ray's read_parquet plans a
    # 1-CPU file-listing task that, on a 2-CPU node, can wait forever behind the actors.
    ds = ray.data.from_items([{"path": f} for f in files]).map_batches(
        _read_files, fn_kwargs={"columns": columns, "users": keep_users, "rows": scfg.block_rows},
        batch_size=1,
        batch_format="pyarrow", num_cpus=scfg.read_num_cpus)
    ds = ds.map_batches(
        AttachPrompts, batch_format="pandas", batch_size=scfg.block_rows,
        fn_constructor_args=(ray.put(prefixes), ray.put(targets), ray.put(suffix), tokenizer_dir,
                             score_date),
        compute=ray.data.ActorPoolStrategy(size=1), num_cpus=scfg.prompt_num_cpus)
    ds = ds.map_batches(
        ExitScorer, batch_format="pandas", batch_size=scfg.block_rows,
        fn_constructor_args=(spec, scfg.batch_size, scfg.shared_prefix, counter),
        compute=ray.data.ActorPoolStrategy(size=scfg.actors),
        num_cpus=scfg.actor_num_cpus, num_gpus=scfg.num_gpus or None)

    exits: dict[int, int] = {}
    staged_rows = 0
    scoring_started = time.time()
    with _report_progress(Progress(total, scfg.progress_seconds), counter):
        for part, batch in enumerate(ds.iter_batches(batch_size=None, batch_format="pandas")):
            if batch.empty:
                continue
            table = _conform(batch, retriever_version)
            pq.write_table(table, folder / f"part-{part:06d}-{uuid.uuid4().hex[:8]}.parquet")
            staged_rows += table.num_rows
            faults.point("scoring.after_staged_rows", staged_rows)
            for layer, n in zip(*np.unique(batch.loc[batch["reason"].isna(), "exit_layer"],
                                           return_counts=True)):
                exits[int(layer)] = exits.get(int(layer), 0) + int(n)
    scoring_seconds = time.time() - scoring_started
    faults.point("scoring.before_commit")
    counts = commit(cfg, score_date, folder)
    shutil.rmtree(folder, ignore_errors=True)
    scored = counts[SCORES.name]
    return {
        "score_date": score_date, "rows": scored + counts[SCORE_REJECTS.name], "scored": scored,
        "rejected": counts[SCORE_REJECTS.name], "model_version": spec["model_version"],
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
    }
