"""Spark builder of the ``prompts`` table: one prompt per (variant, sample).

Leakage rules (the graph's ``edges`` are the allowed interactions: they never hold a
valid/test target):

* every history or neighbour item is joined against the allowed (user, item) pairs;
* a training sample's history is its own ``samples.history`` (for the chronological
  protocol only earlier items), filtered to allowed pairs;
* a valid/test sample's history is the user's allowed interactions: with the random-target
  protocol its ``samples.history`` (the other items, all allowed); with the chronological
  one the user's newest ``history_max`` allowed interactions (``samples.history`` of a later
  held-out target would show the user's earlier held-out targets);
* neighbours' items are their allowed interactions, newest first (ties: a seeded hash);
* (evidence style) the similar users' ratings of the target are allowed interactions of
  other users (``optirag.retrieval.raters``): never the user's own rating of its target.

Only a seeded subset of the training split gets prompts (the few-shot tuning pool,
``prompts.train_fraction`` / ``train_max``); valid and test get all. The text is built in
``mapInPandas`` with the pure functions of :mod:`optirag.prompts.text`, one prefix per
(user, history) per partition.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence

import pandas as pd
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from optirag.config import Config, ConfigError
from optirag.prompts.config import VARIANTS, PromptsConfig, prompts_config
from optirag.tables import (
    EDGES, ITEM_INDEX, ITEMS, NEIGHBOURS, PROMPTS, SAMPLES, USER_INDEX, read_table, write_table,
)

log = logging.getLogger(__name__)
SPLITS = ("train", "valid", "test")
_ENTRY = "struct<k1:bigint,k2:string,text:string,rating:double,label:int>"
ITEM_TEXT_SCHEMA = "item_id string, text string, ctx_text string"


def allowed_interactions(spark: SparkSession, lake: str) -> DataFrame:
    """(user_id, item_id, rating, label, timestamp) of the graph: what prompts may show."""
    users = read_table(spark, USER_INDEX, lake).select("user_id", "user_idx")
    items = read_table(spark, ITEM_INDEX, lake).select("item_id", "item_idx")
    return (read_table(spark, EDGES, lake).join(users, "user_idx").join(items, "item_idx")
            .select("user_id", "item_id", "rating", "label", "timestamp"))


def item_texts(spark: SparkSession, lake: str, pcfg: PromptsConfig) -> DataFrame:
    """item_id -> the target's text (`prompts.target_item`) and the context lines' text."""
    def render(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from optirag.prompts.text import context_item_text, target_item_text
        for df in frames:
            rows = df.to_dict("records")
            yield pd.DataFrame({
                "item_id": df["item_id"],
                "text": [target_item_text(r, pcfg) for r in rows],
                "ctx_text": [context_item_text(r, pcfg) for r in rows],
            })
    items = read_table(spark, ITEMS, lake).select("item_id", "title", "author", "year", "genres")
    return items.mapInPandas(render, ITEM_TEXT_SCHEMA)


def select_samples(spark: SparkSession, lake: str, pcfg: PromptsConfig,
                   splits: Sequence[str]) -> DataFrame:
    """Samples of `splits`; training samples cut to the seeded few-shot pool."""
    samples = read_table(spark, SAMPLES, lake).where(F.col("split").isin(list(splits)))
    if "train" not in splits:
        return samples
    n_train = samples.where("split = 'train'").count()
    keep = min(pcfg.train_max or n_train, math.ceil(pcfg.train_fraction * n_train))
    order = Window.partitionBy("split").orderBy(
        F.xxhash64(F.lit(pcfg.seed), F.lit("few-shot"), "sample_id"), "sample_id")
    ranked = samples.withColumn("_r", F.row_number().over(order))
    return ranked.where((F.col("split") != "train") | (F.col("_r") <= keep)).drop("_r")


def _histories(samples: DataFrame, allowed: DataFrame, texts: DataFrame, pcfg: PromptsConfig,
               chronological: bool) -> DataFrame:
    """sample_id -> `hist`: array of entries, ascending (oldest first)."""
    ctx = texts.select("item_id", "ctx_text")
    own = (samples.select("sample_id", "user_id", "split", F.posexplode("history").alias("pos", "h"))
           .select("sample_id", "user_id", "split", "pos", F.col("h.item_id").alias("item_id"),
                   F.col("h.rating").alias("rating"), F.col("h.label").alias("label"))
           .join(allowed.select("user_id", "item_id"), ["user_id", "item_id"])  # leak guard
           .join(ctx, "item_id")
           .select("sample_id", "split", F.struct(
               F.col("pos").cast("bigint").alias("k1"), F.lit("").alias("k2"),
               F.col("ctx_text").alias("text"), F.col("rating").cast("double").alias("rating"),
               F.col("label").cast("int").alias("label")).alias("e")))
    if chronological:  # valid/test: the user's newest allowed interactions instead
        own = own.where("split = 'train'")
        newest = Window.partitionBy("user_id").orderBy(
            F.col("timestamp").desc_nulls_last(), F.col("item_id").desc())
        latest = (allowed.join(samples.where("split != 'train'").select("user_id").distinct(), "user_id")
                  .withColumn("_r", F.row_number().over(newest))
                  .where(F.col("_r") <= pcfg.history_max).join(ctx, "item_id")
                  .select("user_id", F.struct(
                      F.coalesce("timestamp", F.lit(0)).cast("bigint").alias("k1"),
                      F.col("item_id").alias("k2"), F.col("ctx_text").alias("text"),
                      F.col("rating").cast("double").alias("rating"),
                      F.col("label").cast("int").alias("label")).alias("e")))
        heldout = (samples.where("split != 'train'").select("sample_id", "user_id", "split")
                   .join(latest, "user_id").select("sample_id", "split", "e"))
        own = own.unionByName(heldout)
    return own.groupBy("sample_id").agg(F.array_sort(F.collect_list("e")).alias("hist"))


def neighbours_partition(spark: SparkSession, lake: str, retriever: str) -> DataFrame | None:
    try:
        nb = read_table(spark, NEIGHBOURS, lake).where(F.col("retriever") == retriever)
    except AnalysisException:
        return None
    return nb if nb.limit(1).count() else None


def _blocks(nb: DataFrame, samples: DataFrame, allowed: DataFrame, texts: DataFrame,
            pcfg: PromptsConfig) -> DataFrame:
    """user_id -> `blocks`: nearest neighbour first, each a list of its newest items."""
    users = samples.select("user_id").distinct()
    nb = (nb.join(users, "user_id").where(F.col("neighbour_user_id").isNotNull())
          .where(F.col("rank") <= pcfg.k).select("user_id", "neighbour_user_id", "rank"))
    newest = Window.partitionBy("user_id").orderBy(
        F.col("timestamp").desc_nulls_last(), F.xxhash64(F.lit(pcfg.seed), "user_id", "item_id"),
        F.col("item_id"))
    their = (allowed.join(nb.select(F.col("neighbour_user_id").alias("user_id")).distinct(), "user_id")
             .withColumn("_r", F.row_number().over(newest))
             .where(F.col("_r") <= pcfg.items_per_neighbour)
             .join(texts.select("item_id", "ctx_text"), "item_id")
             .select(F.col("user_id").alias("neighbour_user_id"), F.struct(
                 F.col("_r").cast("bigint").alias("k1"), F.col("item_id").alias("k2"),
                 F.col("ctx_text").alias("text"), F.col("rating").cast("double").alias("rating"),
                 F.col("label").cast("int").alias("label")).alias("e")))
    per_neighbour = (nb.join(their, "neighbour_user_id")
                     .groupBy("user_id", "rank", "neighbour_user_id")
                     .agg(F.array_sort(F.collect_list("e")).alias("items")))
    return per_neighbour.groupBy("user_id").agg(F.array_sort(F.collect_list(
        F.struct("rank", "neighbour_user_id", "items"))).alias("blocks"))


def similar_raters(spark: SparkSession, cfg: Config, variant: str, version: str):
    """The target-aware retrieval of the evidence style for a retriever variant: its model
    version's user embedding over the graph's raters (optirag.retrieval.raters)."""
    from optirag import registry
    from optirag.retrieval.raters import SimilarRaters

    folder = registry.version_dir(cfg, f"retriever/{variant}", version)
    if not folder.is_dir():
        raise FileNotFoundError(f"the {variant} neighbours were made by model {version}, but "
                                f"{folder} is gone: re-run jobs.train_retriever --retriever {variant}")
    edges = allowed_interactions(spark, cfg.dataset_lake()).select("user_id", "item_id", "rating")
    return SimilarRaters.from_folder(folder, edges.toPandas())


def _render_fn(pcfg: PromptsConfig, tokenizer_dir: str, scale, variant: str,
               retriever_version: str | None, suffix):
    """mapInPandas body: one prompt per row (`suffix`: a prompts.text.SuffixBuilder)."""
    def render(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from transformers import AutoTokenizer

        from optirag.prompts.text import build_prefix, count_tokens, interactions

        tok = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)

        prefixes: dict = {}  # (user, history, blocks) -> Prefix: built once, shared
        for df in frames:
            out = []
            for r in df.itertuples(index=False):
                hist = interactions(r.hist)
                blocks = [interactions(b["items"]) for b in (r.blocks if r.blocks is not None else [])]
                key = (r.user_id, tuple(hist), tuple(tuple(b) for b in blocks))
                if key not in prefixes:
                    prefixes[key] = build_prefix(hist, blocks, pcfg, tok, scale)
                prefix = prefixes[key]
                end, shown = suffix(r.user_id, r.item_id, r.target_text)
                text = prefix.text + end
                n_similar = prefix.n_neighbours if shown is None else shown
                out.append((variant, r.sample_id, r.user_id, r.item_id, int(r.label), r.split,
                            retriever_version, n_similar, prefix.n_history, text,
                            count_tokens(tok, text), len(prefix.text)))
            yield pd.DataFrame(out, columns=PROMPTS.schema.fieldNames())
    return render


def prompt_frame(spark: SparkSession, cfg: Config, variant: str, splits: Sequence[str] = SPLITS,
                 tokenizer_dir: str | None = None) -> tuple[DataFrame, str | None]:
    """(PROMPTS rows of `variant` as a lazy DataFrame, the retriever's model version)."""
    if variant not in VARIANTS:
        raise ConfigError(f"unknown prompt variant {variant!r}; known: {', '.join(VARIANTS)}")
    pcfg = prompts_config(cfg)
    lake = cfg.dataset_lake()
    if tokenizer_dir is None:
        from optirag.llm.config import ModelConfig
        from optirag.llm.loading import prepare_model
        tokenizer_dir = str(prepare_model(ModelConfig.model_validate(cfg.model)))

    samples = select_samples(spark, lake, pcfg, splits)
    allowed = allowed_interactions(spark, lake)
    texts = item_texts(spark, lake, pcfg)
    hist = _histories(samples, allowed, texts, pcfg, cfg.dataset.protocol == "chronological")
    frame = (samples.select("sample_id", "user_id", "item_id", "label", "split")
             .join(hist, "sample_id", "left")
             .join(texts.select("item_id", F.col("text").alias("target_text")), "item_id", "left"))
    retriever_version, raters = None, None
    no_blocks = F.lit(None).cast(f"array<struct<rank:int,neighbour_user_id:string,items:array<{_ENTRY}>>>")
    if variant == "none":
        frame = frame.withColumn("blocks", no_blocks)
    else:
        nb = neighbours_partition(spark, lake, variant)
        if nb is None:
            raise FileNotFoundError(
                f"no neighbours with retriever={variant!r} under {lake}/neighbours: run the "
                f"{variant} retriever first (jobs.train_retriever)")
        found = sorted(r[0] for r in nb.select("model_version").distinct().collect())
        if len(found) != 1:
            raise ConfigError(f"neighbours retriever={variant!r} mixes model versions {found}")
        retriever_version = found[0]
        if pcfg.style == "evidence":
            raters = similar_raters(spark, cfg, variant, retriever_version)
            frame = frame.withColumn("blocks", no_blocks)
        else:
            frame = frame.join(_blocks(nb, samples, allowed, texts, pcfg), "user_id", "left")
    missing = frame.where(F.col("target_text").isNull()).count()
    if missing:
        raise ValueError(f"{missing} samples have a target item missing from `items`")
    from optirag.prompts.text import RatingScale, SuffixBuilder  # torch: only when rendering

    render = _render_fn(pcfg, tokenizer_dir, RatingScale.of(cfg.dataset), variant,
                        retriever_version, SuffixBuilder(pcfg, raters))
    return frame.repartition(4, "user_id").mapInPandas(render, PROMPTS.schema), retriever_version


def build_prompts(spark: SparkSession, cfg: Config, variant: str,
                  splits: Sequence[str] = SPLITS, tokenizer_dir: str | None = None) -> dict:
    """Write the `prompts` rows of `variant` (its partition is replaced); returns a summary."""
    started = time.time()
    prompts, retriever_version = prompt_frame(spark, cfg, variant, splits, tokenizer_dir)
    write_table(prompts, PROMPTS, cfg.dataset_lake(), replace_where=f"variant = '{variant}'")
    return summarize(spark, cfg, variant, prompts_config(cfg), started, retriever_version)


def summarize(spark: SparkSession, cfg: Config, variant: str, pcfg: PromptsConfig,
              started: float, retriever_version: str | None) -> dict:
    rows = (read_table(spark, PROMPTS, cfg.dataset_lake()).where(F.col("variant") == variant)
            .groupBy("split").agg(
                F.count(F.lit(1)).alias("n"), F.avg("n_tokens").alias("mean_tokens"),
                F.max("n_tokens").alias("max_tokens"),
                F.sum((F.col("n_tokens") > pcfg.token_budget).cast("int")).alias("over_budget"),
                F.sum((F.col("n_history") == 0).cast("int")).alias("no_history"),
                F.sum((F.col("n_neighbours") == 0).cast("int")).alias("no_neighbours"),
                F.avg("n_history").alias("mean_history"), F.avg("n_neighbours").alias("mean_neighbours"),
                F.avg("label").alias("positive_rate"))
            .collect())
    per_split = {r["split"]: {k: (round(v, 2) if isinstance(v, float) else v)
                              for k, v in r.asDict().items() if k != "split"} for r in rows}
    return {"dataset": cfg.dataset.name, "variant": variant, "retriever_version": retriever_version,
            "token_budget": pcfg.token_budget, "splits": dict(sorted(per_split.items())),
            "wall_seconds": round(time.time() - started, 1)}


def available_variants(spark: SparkSession, cfg: Config) -> list[str]:
    """`none` always, plus each retriever whose neighbours partition exists."""
    return ["none"] + [v for v in VARIANTS[1:]
                       if neighbours_partition(spark, cfg.dataset_lake(), v) is not None]
