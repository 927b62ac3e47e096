"""The format-independent ingest protocol: duplicates, labels, samples, split, graph.

Paper section 6 and ``shared/data/README.md``:

* ``random_target`` (BookCrossing, no timestamps): a user's items in a seeded order (a
  hash of (seed, user, item)); the target is position 0 and the history the up to
  ``history_max`` items at positions 1.. . Users with fewer than ``min_history`` other
  items get no sample (their ratings still feed the graph). With
  ``train_targets_per_user: k > 1`` a TRAIN user's first m = min(k, n - min_history)
  positions are all targets and share ONE history, the items at positions m.. (valid/test
  users are as with k = 1):

      seeded order   t0 t1 .. t(m-1) | h h h ... (up to history_max) | rest
      train, k > 1   m samples, each: target t_i, history = the h's
      valid/test     one sample: target t0, history = positions 1..history_max

  Shared, not each target's own "other items": a target's history then never holds
  another target of the user (its rating would be a label leaked into a prompt of the
  same user), and the user's samples share one prompt prefix, which shared-prefix tuning
  (optirag.llm.packing) packs into one row.
* ``chronological`` (MovieLens, Amazon): a user's interactions ordered by (timestamp,
  item_id); a sample at position p has the up to ``history_max`` items before p as
  history and needs ``p >= min_history``. Every eligible user's last ``heldout_last_n``
  eligible interactions are their targets; train users also yield a sample at every
  earlier eligible position (``train_all_positions``) so full-shot baselines see
  enough data.

Users (not samples) are split train/valid/test 8:1:1 by a seeded hash rank, exactly.
The graph (``edges``) is every interaction except the held-out ones: for the random
protocol the valid/test targets; for the chronological one a valid/test user's
interactions from their first target on, so nothing at or after a held-out target
reaches the graph (no label leakage).

Duplicate (user, item) ratings keep the latest (timestamp, then the later line: a
re-rating corrects the earlier one); the others are quarantined as
``duplicate_rating``. Duplicate item metadata rows keep the first line.
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from optirag.config import DatasetConfig, IngestConfig
from optirag.ingest.raw import quarantine_rows
from optirag.tables import HISTORY_ENTRY

SPLITS = ("train", "valid", "test")


def keep_first(df: DataFrame, keys: list[str], order: list[Column], reason: str) -> tuple[DataFrame, DataFrame]:
    """Rows ranked first per key by `order`, and the rest as quarantine rows with `reason`."""
    ranked = df.withColumn("_rank", F.row_number().over(Window.partitionBy(*keys).orderBy(*order)))
    kept = ranked.where("_rank = 1").drop("_rank")
    dropped = quarantine_rows(ranked.where("_rank > 1"), F.lit(reason))
    return kept, dropped


def dedupe_interactions(df: DataFrame) -> tuple[DataFrame, DataFrame]:
    order = [F.col("timestamp").desc_nulls_last(), F.col("source_file").desc(), F.col("line_number").desc()]
    return keep_first(df, ["user_id", "item_id"], order, "duplicate_rating")


def dedupe_items(df: DataFrame) -> tuple[DataFrame, DataFrame]:
    return keep_first(df, ["item_id"], [F.col("source_file"), F.col("line_number")], "duplicate_item")


def with_label(df: DataFrame, ds: DatasetConfig) -> DataFrame:
    return df.withColumn("label", (F.col("rating") >= F.lit(ds.positive_threshold)).cast("int"))


def placeholder_title(template: str, item_id: Column) -> Column:
    head, _, tail = template.partition("{item_id}")
    return F.concat(F.lit(head), item_id, F.lit(tail)) if _ else F.lit(template)


def build_items(meta: DataFrame | None, interactions: DataFrame, ds: DatasetConfig) -> DataFrame:
    """Metadata items plus a placeholder row for every rated item without metadata."""
    cols = ["item_id", "title", "author", "year", "publisher", "genres"]
    rated = interactions.select("item_id").distinct()
    if meta is None:
        known = rated.limit(0).select("item_id", *[F.lit(None).alias(c) for c in cols[1:]])
    else:
        known = meta.select(*cols)
    missing = rated.join(known.select("item_id"), "item_id", "left_anti").select(
        "item_id", *[F.lit(None).alias(c) for c in cols[1:]], F.lit(False).alias("has_metadata"))
    items = known.withColumn("has_metadata", F.lit(True)).unionByName(missing, allowMissingColumns=True)
    title = F.when(F.trim(F.coalesce("title", F.lit(""))) != "", F.col("title")).otherwise(
        placeholder_title(ds.missing_title, F.col("item_id")))
    return items.withColumn("title", title)


def _positions(interactions: DataFrame, ds: DatasetConfig, seed: int) -> DataFrame:
    """Each interaction's position in its user's order, and the user's count."""
    if ds.protocol == "random_target":
        order = [F.xxhash64(F.lit(seed), "user_id", "item_id"), F.col("item_id")]
    else:
        order = [F.col("timestamp"), F.col("item_id")]
    by_user = Window.partitionBy("user_id")
    return (interactions
            .withColumn("pos", F.row_number().over(by_user.orderBy(*order)) - 1)
            .withColumn("n", F.count(F.lit(1)).over(by_user)))


def _history(frame_start: int, frame_end: int) -> Column:
    """Ordered history entries from a window frame of the user's ordered interactions."""
    entry = F.struct(F.col("pos").alias("_p"), "item_id", "rating", "label", "timestamp")
    window = Window.partitionBy("user_id").orderBy("pos").rowsBetween(frame_start, frame_end)
    ordered = F.array_sort(F.collect_list(entry).over(window))  # by _p: order is explicit
    return F.transform(ordered, lambda e: F.struct(
        *[e[f.name].alias(f.name) for f in HISTORY_ENTRY.fields]))


def assign_splits(users: DataFrame, ingest: IngestConfig) -> DataFrame:
    """Exact 8:1:1 (config) split of users by a seeded hash rank."""
    n_users = users.count()
    n_train = round(n_users * ingest.split.train)
    n_valid = round(n_users * ingest.split.valid)
    rank = F.row_number().over(Window.orderBy(F.xxhash64(F.lit(ingest.seed), F.lit("split"), "user_id"), "user_id")) - 1
    return users.withColumn("_r", rank).select(
        "user_id",
        F.when(F.col("_r") < n_train, "train").when(F.col("_r") < n_train + n_valid, "valid")
        .otherwise("test").alias("split"))


def build_samples(interactions: DataFrame, ds: DatasetConfig, ingest: IngestConfig) -> tuple[DataFrame, DataFrame]:
    """(samples, held_out): the CTR samples, and the (user, item) pairs the graph must not see.

    Held out are the valid/test users' target interactions and, for the chronological
    protocol, everything of theirs at or after their first target.
    """
    h = ingest.history_max
    positioned = _positions(interactions, ds, ingest.seed)
    if ds.protocol == "random_target":
        # positions 0..m-1 (m = 1 unless train_targets_per_user > 1), each with its own
        # history (the h items after it): a valid/test user keeps position 0 and its own, a
        # train user every position and the last one's (`_shared`), the items after all its targets
        m = F.least(F.lit(ds.train_targets_per_user), F.col("n") - ds.min_history)
        candidates = (positioned.withColumn("history", _history(1, h)).where(F.col("pos") < m)
                      .withColumn("_shared", F.max_by("history", "pos").over(Window.partitionBy("user_id"))))
        target = F.col("pos") == 0
        train_extra = True  # positions beyond 0 are candidates only when k > 1
    else:
        candidates = positioned.withColumn("history", _history(-h, -1)).where(F.col("pos") >= ds.min_history)
        target = F.col("pos") >= F.greatest(F.col("n") - ds.heldout_last_n, F.lit(ds.min_history))
        train_extra = ds.train_all_positions
    candidates = candidates.withColumn("_target", target)
    users = candidates.where("_target").select("user_id").distinct()
    splits = assign_splits(users, ingest)
    samples = candidates.join(splits, "user_id")
    train = F.col("split") == "train"
    if ds.protocol == "random_target":
        samples = samples.withColumn("history", F.when(train, F.col("_shared")).otherwise(F.col("history")))
    keep = (F.col("_target") | train) if train_extra else F.col("_target")
    sample_id = F.substring(F.sha2(F.concat_ws("\u001f", "user_id", "item_id"), 256), 1, 16)
    samples = samples.where(keep).withColumn("sample_id", sample_id)
    heldout_users = splits.where(~train)
    held_out = positioned.join(heldout_users, "user_id").where(target).select("user_id", "item_id")
    return samples, held_out


def build_graph(interactions: DataFrame, held_out: DataFrame) -> tuple[DataFrame, DataFrame, DataFrame]:
    """(edges, user_index, item_index): interactions minus the held-out pairs, indexed."""
    graph = interactions.join(held_out, ["user_id", "item_id"], "left_anti")
    user_index = _index(interactions, graph, "user_id", "user_idx")
    item_index = _index(interactions, graph, "item_id", "item_idx")
    edges = (graph.join(user_index.select("user_id", "user_idx"), "user_id")
             .join(item_index.select("item_id", "item_idx"), "item_id"))
    return edges, user_index, item_index


def _index(interactions: DataFrame, graph: DataFrame, id_col: str, idx_col: str) -> DataFrame:
    """Contiguous indices in id order over every id of the interactions (degree 0 = cold)."""
    ids = interactions.select(id_col).distinct()
    degree = graph.groupBy(id_col).agg(F.count(F.lit(1)).alias("n_edges"))
    return (ids.withColumn(idx_col, F.row_number().over(Window.orderBy(id_col)) - 1)
            .join(degree, id_col, "left").fillna(0, ["n_edges"]))
