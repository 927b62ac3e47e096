"""Spark + registry glue of ``jobs.train_retriever``: Delta in, model folder + NEIGHBOURS out.

:func:`load_inputs` reads what :func:`optirag.retrieval.training.run_retriever` needs
from the dataset's lake; :func:`write_neighbours` writes its rows to the ``neighbours``
Delta table, replacing only the partition ``retriever = <name>`` (Delta
``replaceWhere``: atomic, and a re-run replaces instead of appending).
:func:`train_gcn` / :func:`train_llm` are the two job bodies; model folders go to the
registry, ``<cfg.model_store()>/retriever/<name>/<model_version>/``.

Types. Spark's ``toPandas`` turns a nullable long column holding nulls into float64
(BookCrossing has no timestamps, so ``edges.timestamp`` would arrive as NaN doubles);
Arrow conversion with nullable pandas integers keeps every LongType column Int64.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from optirag.config import Config, ConfigError
from optirag.registry import kind_dir
from optirag.retrieval.config import RetrieverConfig, retriever_config
from optirag.retrieval.neighbours import to_arrow
from optirag.tables import (
    EDGES, ITEM_INDEX, ITEMS, MANIFEST, NEIGHBOURS, SAMPLES, USER_INDEX, read_table, write_table,
)

log = logging.getLogger(__name__)
Echo = Callable[[str], None]


def to_pandas(df: DataFrame) -> pd.DataFrame:
    """Spark -> pandas through Arrow; 64-bit integer columns stay integers (nullable Int64)."""
    return df.toArrow().to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)


@dataclass
class RetrieverInputs:
    edges: pd.DataFrame          # EDGES columns; timestamp Int64 (nullable)
    user_index: pd.DataFrame
    item_index: pd.DataFrame
    sample_users: list[str]      # distinct samples.user_id, sorted
    data_version: str


def data_version(spark: SparkSession, cfg: Config) -> str:
    """The ingest's data version (``manifest.data_version``); exactly one is expected."""
    found = sorted(r[0] for r in read_table(spark, MANIFEST, cfg.dataset_lake())
                   .select("data_version").distinct().collect())
    if len(found) != 1:
        raise ConfigError(f"{cfg.dataset_lake()}/manifest holds {len(found)} data versions "
                          f"{found[:3]}; re-run jobs.ingest")
    return found[0]


def sample_users(spark: SparkSession, cfg: Config) -> list[str]:
    rows = read_table(spark, SAMPLES, cfg.dataset_lake()).select("user_id").distinct().collect()
    return sorted(str(r[0]) for r in rows)


def load_inputs(spark: SparkSession, cfg: Config) -> RetrieverInputs:
    lake = cfg.dataset_lake()
    cols = lambda t: [f.name for f in t.schema.fields]  # noqa: E731  (declared order)
    return RetrieverInputs(
        edges=to_pandas(read_table(spark, EDGES, lake).select(cols(EDGES))),
        user_index=to_pandas(read_table(spark, USER_INDEX, lake).select(cols(USER_INDEX))),
        item_index=to_pandas(read_table(spark, ITEM_INDEX, lake).select(cols(ITEM_INDEX))),
        sample_users=sample_users(spark, cfg),
        data_version=data_version(spark, cfg),
    )


def write_neighbours(spark: SparkSession, df: pd.DataFrame, cfg: Config) -> int:
    """Replace the ``retriever = <name>`` partition of NEIGHBOURS with ``df``; row count."""
    names = set(df["retriever"].astype(str))
    if len(names) != 1:
        raise ValueError(f"one retriever per write expected, got {sorted(names)}")
    name = names.pop()
    RetrieverConfig(name=name)  # validates the name: it is quoted into the predicate below
    sdf = spark.createDataFrame(to_arrow(df))
    write_table(sdf, NEIGHBOURS, cfg.dataset_lake(), replace_where=f"retriever = '{name}'")
    return len(df)


def read_neighbours(spark: SparkSession, cfg: Config, retriever: str) -> pd.DataFrame:
    return to_pandas(read_table(spark, NEIGHBOURS, cfg.dataset_lake())
                     .where(F.col("retriever") == retriever))


def _summary(df: pd.DataFrame, **extra: Any) -> dict[str, Any]:
    users = df.drop_duplicates("user_id")
    return {**extra, "users": int(len(users)), "cold_users": int(users["is_cold"].sum()),
            "rows": int(len(df)), "neighbours_per_user": round(float(df["rank"].notna().sum()
                                                                      / max(len(users), 1)), 3)}


def reusable_layers(cfg: Config, rcfg: RetrieverConfig, layers_from: str, data_version: str, echo: Echo):
    """The current `retriever/<layers_from>` model's layers if they fit rcfg, else None."""
    from optirag.registry import ModelNotFoundError, resolve
    from optirag.retrieval.embeddings import load_model
    from optirag.retrieval.training import reuse_layers

    try:
        folder = resolve(cfg, f"retriever/{layers_from}")
    except ModelNotFoundError:
        echo(f"no {layers_from} model to take layers from: training")
        return None
    trained = reuse_layers(load_model(folder), rcfg, data_version)
    echo(f"layers from {trained.source}: training skipped" if trained else
         f"{folder} was trained on other data or settings: training")
    return trained


def train_gcn(spark: SparkSession, cfg: Config, ray: Any, echo: Echo = print,
              layers_from: str | None = None) -> dict[str, Any]:
    """Train LightGCN on Ray (or take the layers of the `layers_from` model when its data and
    training config match), search the sample users' neighbours, write model + partition."""
    t0 = time.perf_counter()
    rcfg = retriever_config(cfg)
    from optirag.retrieval.training import run_retriever

    inp = load_inputs(spark, cfg)
    echo(f"inputs: {len(inp.edges)} edges, {len(inp.user_index)} users, {len(inp.item_index)} items, "
         f"{len(inp.sample_users)} sample users, data_version {inp.data_version}")
    trained = reusable_layers(cfg, rcfg, layers_from, inp.data_version, echo) if layers_from else None
    df, folder = run_retriever(
        inp.edges, inp.user_index, inp.sample_users, rcfg, ray, data_version=inp.data_version,
        models_dir=kind_dir(cfg, "retriever"), item_index_df=inp.item_index,
        on_epoch=lambda e, loss, s: echo(f"epoch {e}/{rcfg.epochs} loss {loss:.5f}"),
        progress=lambda d, t: echo(f"search blocks {d}/{t}"), trained=trained)
    rows = write_neighbours(spark, df, cfg)
    meta = json.loads((folder / "meta.json").read_text())
    return _summary(df, retriever=rcfg.name, model_version=folder.name, data_version=inp.data_version,
                    model_folder=str(folder), written_rows=rows,
                    train_seconds=round(float(meta["extra"]["train_seconds"]), 2),
                    final_loss=meta["losses"][-1] if meta["losses"] else None,
                    layers_from=meta["extra"].get("layers_from"),
                    wall_seconds=round(time.perf_counter() - t0, 1))


# -- the LLM-retriever baseline -----------------------------------------------------------

def user_histories(spark: SparkSession, cfg: Config, max_items: int,
                   users: list[str] | None = None) -> dict[str, list[str]]:
    """user_id -> titles of its last ``max_items`` *training-graph* items (oldest first).

    From ``edges`` (which never hold a valid/test target, so no leakage), ordered by
    (timestamp, item_id); a missing timestamp sorts first, a missing title is the item id.
    """
    lake = cfg.dataset_lake()
    e = (read_table(spark, EDGES, lake)
         .join(read_table(spark, USER_INDEX, lake).select("user_idx", "user_id"), "user_idx")
         .join(read_table(spark, ITEM_INDEX, lake).select("item_idx", "item_id"), "item_idx"))
    if users is not None:
        e = e.join(spark.createDataFrame([(u,) for u in users], "user_id string"), "user_id", "left_semi")
    e = e.join(read_table(spark, ITEMS, lake).select("item_id", "title"), "item_id", "left")
    entry = F.struct(F.coalesce("timestamp", F.lit(-(2**62))).alias("ts"), F.col("item_id"),
                     F.coalesce("title", "item_id").alias("title"))
    h = e.groupBy("user_id").agg(F.array_sort(F.collect_list(entry)).alias("h"))
    h = h.select("user_id", F.expr(f"transform(slice(h, greatest(size(h) - {int(max_items)} + 1, 1), "
                                   f"{int(max_items)}), x -> x.title)").alias("titles"))
    return {str(r["user_id"]): list(r["titles"]) for r in h.collect()}


def llm_model_version(model_name: str, data_version: str, rcfg: RetrieverConfig) -> str:
    """``<llm name>-<12 hex>`` of (data version, llm settings, k): same inputs, same version."""
    payload = json.dumps({"data_version": data_version, "llm": rcfg.llm.model_dump(mode="json"),
                          "k": rcfg.k}, sort_keys=True)
    return f"{model_name}-{hashlib.sha256(payload.encode()).hexdigest()[:12]}"


def llm_pool(histories: dict[str, list[str]], samples: list[str], rcfg: RetrieverConfig) -> list[str]:
    """Users to embed: the configured pool, minus empty histories, capped by max_users."""
    lc = rcfg.llm
    pool = sorted(histories) if lc.pool == "all" else [u for u in samples if histories.get(u)]
    pool = [u for u in pool if histories.get(u)]
    if lc.max_users is not None and len(pool) > lc.max_users:
        pick = np.random.default_rng(lc.seed).choice(len(pool), lc.max_users, replace=False)
        pool = [pool[i] for i in np.sort(pick)]
    return pool


def train_llm(spark: SparkSession, cfg: Config, echo: Echo = print,
              model_and_tokenizer: tuple[Any, Any] | None = None) -> dict[str, Any]:
    """Embed users with the ``model:`` LLM, search, write model folder + partition.

    model_and_tokenizer: an already loaded pair (benchmarks); default: load cfg.model.
    """
    from optirag.llm.config import ModelConfig
    from optirag.retrieval.lightgcn import torch_threads
    from optirag.retrieval.llm_retriever import embed_histories, embedding_neighbours, save_llm_embeddings

    t0 = time.perf_counter()
    rcfg = retriever_config(cfg)
    lc = rcfg.llm
    mcfg = ModelConfig.model_validate(cfg.model)
    version = llm_model_version(mcfg.name, dv := data_version(spark, cfg), rcfg)
    samples = sample_users(spark, cfg)
    histories = user_histories(spark, cfg, lc.max_items, samples if lc.pool == "samples" else None)
    pool = llm_pool(histories, samples, rcfg)
    pool_set = set(pool)
    # sample users with no history are cold (flagged); warm ones outside a max_users cap
    # are not embedded and get no row (counted below)
    queries = [u for u in samples if u in pool_set or not histories.get(u)]
    echo(f"llm retriever {mcfg.name}: {len(pool)} users to embed, {len(queries)} sample users "
         f"queried ({len(samples) - len(queries)} not embedded), version {version}")
    if model_and_tokenizer is None:
        from optirag.llm.loading import load_model

        model_and_tokenizer = load_model(mcfg)
    model, tok = model_and_tokenizer
    step = max(1, -(-len(pool) // lc.batch_size) // 10)
    t1 = time.perf_counter()
    with torch_threads(lc.torch_threads):
        user_ids, warm, emb = embed_histories(
            {u: histories[u] for u in pool}, model, tok, lc.max_items, lc.batch_size, lc.max_length,
            progress=lambda d, t: echo(f"embedded batches {d}/{t}") if d % step == 0 or d == t else None)
        embed_s = time.perf_counter() - t1
        t2 = time.perf_counter()
        df = embedding_neighbours(user_ids, emb, warm, queries, rcfg.k, version, lc.name,
                                  rcfg.search_block_size, rcfg.candidate_block_size)
        search_s = time.perf_counter() - t2
    folder = save_llm_embeddings(kind_dir(cfg, f"retriever/{lc.name}") / version, user_ids, emb, warm, {
        "model_version": version, "data_version": dv, "retriever": lc.name, "llm": mcfg.name,
        "config": rcfg.llm.model_dump(mode="json"), "k": rcfg.k,
        "not_embedded": len(samples) - len(queries), "embed_seconds": embed_s})
    rows = write_neighbours(spark, df, cfg)
    return _summary(df, retriever=lc.name, model_version=version, data_version=dv,
                    model_folder=str(folder), written_rows=rows, embedded_users=len(user_ids),
                    not_embedded=len(samples) - len(queries), embed_seconds=round(embed_s, 2),
                    embed_users_per_s=round(len(user_ids) / max(embed_s, 1e-9), 2),
                    search_seconds=round(search_s, 3), wall_seconds=round(time.perf_counter() - t0, 1))
