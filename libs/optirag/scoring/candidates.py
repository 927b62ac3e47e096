"""Candidate items per user and score date (Spark), written to ``candidates[score_date]``.

Which users: every user with at least one edge in the graph (``users: graph``), or only
the users that have samples (``users: samples``); ``max_users`` keeps a deterministic
subset (smallest sha2(user_id)) for demos and benchmarks.

Which items, per user, ``per_user`` of them, never an item the user has rated:
1. ``neighbour``: items the user's retrieved neighbours liked (label 1 edges), weighted by
   the sum of the neighbours' similarities, ties by item_id;
2. ``popular``: then the most liked items of the graph, by like count, ties by item_id.
Neighbour items come first: they are what the RAG prompt is about, and popularity fills
users whose neighbours liked little (cold users get popular items only).
3. ``eval`` (``include_eval: true``): exactly the valid/test samples (sample_id and label
   kept) on top of the per_user items, so that a nightly run also yields test AUC.

The result is deterministic for a given lake (no sampling), so re-running a date gives the
same rows, and the partition is replaced atomically (``replaceWhere``).
"""
from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from optirag import faults
from optirag.config import Config, parse_date
from optirag.prompts.builder import allowed_interactions
from optirag.scoring.config import CandidatesConfig, candidates_config
from optirag.tables import (
    CANDIDATES, INTERACTIONS, NEIGHBOURS, SAMPLES, USER_INDEX, read_table, write_table,
)


def active_users(spark: SparkSession, lake: str, ccfg: CandidatesConfig) -> DataFrame:
    if ccfg.users == "samples":
        users = read_table(spark, SAMPLES, lake).select("user_id").distinct()
    else:
        users = read_table(spark, USER_INDEX, lake).where("n_edges > 0").select("user_id")
    if ccfg.max_users:
        users = users.orderBy(F.sha2("user_id", 256), "user_id").limit(ccfg.max_users)
    return users


def build_candidates(spark: SparkSession, cfg: Config, score_date: str) -> DataFrame:
    ccfg, lake = candidates_config(cfg), cfg.dataset_lake()
    users = active_users(spark, lake, ccfg)
    edges = allowed_interactions(spark, lake)  # the graph: what prompts may show
    liked = edges.where("label = 1").select("user_id", "item_id")

    neighbours = (read_table(spark, NEIGHBOURS, lake)
                  .where(F.col("retriever") == ccfg.retriever)
                  .where("neighbour_user_id IS NOT NULL")
                  .join(users, "user_id")
                  .select("user_id", "neighbour_user_id", "similarity"))
    from_neighbours = (neighbours
                       .join(liked.withColumnRenamed("user_id", "neighbour_user_id"), "neighbour_user_id")
                       .groupBy("user_id", "item_id")
                       .agg(F.sum("similarity").alias("weight"))
                       .withColumn("priority", F.lit(0)))
    # enough popular items that per_user remain after removing the most a user has rated
    popular_items = (liked.groupBy("item_id").agg(F.count("*").alias("likes"))
                     .orderBy(F.desc("likes"), "item_id").limit(ccfg.per_user * 4))
    from_popular = (users.crossJoin(popular_items)
                    .select("user_id", "item_id", F.col("likes").cast("double").alias("weight"),
                            F.lit(1).alias("priority")))
    seen = read_table(spark, INTERACTIONS, lake).select("user_id", "item_id")
    ranked = (from_neighbours.unionByName(from_popular)
              .join(seen, ["user_id", "item_id"], "left_anti")
              .withColumn("best", F.row_number().over(
                  Window.partitionBy("user_id", "item_id").orderBy("priority", F.desc("weight"))))
              .where("best = 1")
              .withColumn("pos", F.row_number().over(
                  Window.partitionBy("user_id").orderBy("priority", F.desc("weight"), "item_id")))
              .where(F.col("pos") <= ccfg.per_user)
              .select("user_id", "item_id",
                      F.when(F.col("priority") == 0, "neighbour").otherwise("popular").alias("source"),
                      F.lit(None).cast("string").alias("sample_id"),
                      F.lit(None).cast("int").alias("label")))
    out = ranked
    if ccfg.include_eval:
        evals = (read_table(spark, SAMPLES, lake).where(F.col("split").isin(ccfg.eval_splits))
                 .select("user_id", "item_id", F.lit("eval").alias("source"), "sample_id", "label"))
        if ccfg.eval_max:
            evals = evals.orderBy(F.sha2("sample_id", 256), "sample_id").limit(ccfg.eval_max)
        out = out.unionByName(evals)
    # sorted by user: the scorer shares one prompt prefix per user within a batch
    return (out.withColumn("score_date", F.lit(score_date))
            .repartitionByRange(ccfg.files, "user_id")
            .sortWithinPartitions("user_id", "source", "item_id"))


def write_candidates(spark: SparkSession, cfg: Config, score_date: str) -> dict[str, Any]:
    score_date = parse_date(score_date)
    # fault point inside the write stage's tasks (tests kill a Spark worker there)
    df = faults.in_spark_tasks(build_candidates(spark, cfg, score_date), "candidates.task")
    write_table(df, CANDIDATES, cfg.dataset_lake(), replace_where=f"score_date = '{score_date}'")
    written = read_table(spark, CANDIDATES, cfg.dataset_lake()).where(F.col("score_date") == score_date)
    by_source = {r["source"]: r["count"] for r in written.groupBy("source").count().collect()}
    return {"score_date": score_date, "rows": sum(by_source.values()), "by_source": by_source,
            "users": written.select("user_id").distinct().count()}
