"""What the nightly scorer needs besides the candidate rows: one prompt prefix per user,
one target text per item and the suffix builder, all from the prompt builder's own
functions (so nightly prompts and evaluation prompts follow the same text, budget and
leakage rules).

A user's prefix shows the user's newest ``history_max`` allowed interactions (the graph's
edges: never a valid/test target) and, in the paper style, its neighbours' blocks from the
chosen retriever. A candidate's suffix is its target line and, in the evidence style with a
retriever, the user's most similar raters of it (``SuffixBuilder``). ``variant: none`` has
no retrieval (TALLRec-style). The prefixes, texts and the raters index are small next to
the candidates (one row per active user / item / edge), so the scoring job collects them
once and hands them to the Ray stages by reference.
"""
from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from optirag.config import Config
from optirag.prompts.builder import (
    _blocks, allowed_interactions, item_texts, neighbours_partition, similar_raters,
)
from optirag.prompts.config import prompts_config
from optirag.tables import CANDIDATES, read_table

PREFIX_SCHEMA = "user_id string, prefix string, prefix_tokens int, n_history int, n_neighbours int"


def scored_users(spark: SparkSession, cfg: Config, score_date: str, max_rows: int | None
                 ) -> tuple[DataFrame, list[str] | None, int]:
    """(users to score, the same as a list when capped else None, rows to score). With
    `max_rows`, the first users by user_id whose candidates cover max_rows rows."""
    cand = (read_table(spark, CANDIDATES, cfg.dataset_lake())
            .where(F.col("score_date") == score_date).groupBy("user_id").count())
    if not max_rows:
        total = cand.agg(F.sum("count")).first()[0] or 0
        return cand.select("user_id"), None, int(total)
    before = F.sum("count").over(Window.orderBy("user_id").rowsBetween(Window.unboundedPreceding, -1))
    rows = (cand.withColumn("before", F.coalesce(before, F.lit(0)))
            .where(F.col("before") < max_rows).collect())
    users = [r.user_id for r in rows]
    return spark.createDataFrame([(u,) for u in users], "user_id string"), users, sum(r["count"] for r in rows)


def newest_history(allowed: DataFrame, users: DataFrame, texts: DataFrame, history_max: int
                   ) -> DataFrame:
    """user_id -> `hist`: the newest `history_max` allowed interactions, oldest first."""
    newest = Window.partitionBy("user_id").orderBy(F.col("timestamp").desc_nulls_last(),
                                                   F.col("item_id").desc())
    return (allowed.join(users, "user_id")
            .withColumn("_r", F.row_number().over(newest)).where(F.col("_r") <= history_max)
            .join(texts.select("item_id", "ctx_text"), "item_id")
            .groupBy("user_id").agg(F.array_sort(F.collect_list(F.struct(
                (-F.col("_r")).cast("bigint").alias("k1"), F.col("item_id").alias("k2"),
                F.col("ctx_text").alias("text"), F.col("rating").cast("double").alias("rating"),
                F.col("label").cast("int").alias("label")))).alias("hist")))


def _render_prefixes(cfg: Config, tokenizer_dir: str):
    pcfg = prompts_config(cfg)

    def render(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from transformers import AutoTokenizer

        from optirag.prompts.text import RatingScale, build_prefix, interactions

        scale = RatingScale.of(cfg.dataset)
        tok = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)

        for df in frames:
            out = []
            for r in df.itertuples(index=False):
                blocks = [interactions(b["items"]) for b in (r.blocks if r.blocks is not None else [])]
                p = build_prefix(interactions(r.hist), blocks, pcfg, tok, scale)
                out.append((r.user_id, p.text, p.n_tokens, p.n_history, p.n_neighbours))
            yield pd.DataFrame(out, columns=["user_id", "prefix", "prefix_tokens", "n_history",
                                             "n_neighbours"])
    return render


def user_prefixes(spark: SparkSession, cfg: Config, users: DataFrame, variant: str,
                  tokenizer_dir: str) -> tuple[pa.Table, str | None]:
    """(Arrow table user_id -> prefix text and sizes, the retriever's model_version)."""
    pcfg, lake = prompts_config(cfg), cfg.dataset_lake()
    allowed = allowed_interactions(spark, lake)
    texts = item_texts(spark, lake, pcfg).cache()
    frame = users.join(newest_history(allowed, users, texts, pcfg.history_max), "user_id", "left")
    retriever_version = None
    if variant == "none":
        frame = frame.withColumn("blocks", F.lit(None).cast("array<string>"))
    else:
        nb = neighbours_partition(spark, lake, variant)
        if nb is None:
            raise FileNotFoundError(f"no neighbours with retriever={variant!r} under {lake}: "
                                    f"run jobs.train_retriever first")
        versions = sorted(r[0] for r in nb.select("model_version").distinct().collect())
        retriever_version = versions[-1] if len(versions) == 1 else ",".join(versions)
        if pcfg.style == "paper":
            frame = frame.join(_blocks(nb, users, allowed, texts, pcfg), "user_id", "left")
        else:  # evidence style: the similar users are in each candidate's suffix
            frame = frame.withColumn("blocks", F.lit(None).cast("array<string>"))
    rows = frame.repartition(4, "user_id").mapInPandas(_render_prefixes(cfg, tokenizer_dir),
                                                        PREFIX_SCHEMA).toArrow()
    texts.unpersist()
    return rows, retriever_version


def item_targets(spark: SparkSession, cfg: Config, items: DataFrame | None = None) -> pa.Table:
    """item_id -> the target text of its suffix, for `items` (default all)."""
    texts = item_texts(spark, cfg.dataset_lake(), prompts_config(cfg)).select("item_id", "text")
    if items is not None:
        texts = texts.join(items.select("item_id").distinct(), "item_id")
    return texts.toArrow()


def suffix_builder(spark: SparkSession, cfg: Config, variant: str, retriever_version: str | None):
    """The SuffixBuilder of the variant's evaluation prompts (same text, same raters)."""
    from optirag.prompts.text import SuffixBuilder

    pcfg = prompts_config(cfg)
    raters = None
    if pcfg.style == "evidence" and variant != "none":
        raters = similar_raters(spark, cfg, variant, retriever_version)
    return SuffixBuilder(pcfg, raters)


def candidate_items(spark: SparkSession, cfg: Config, score_date: str) -> DataFrame:
    return (read_table(spark, CANDIDATES, cfg.dataset_lake())
            .where(F.col("score_date") == score_date).select("item_id"))
