"""great-expectations suites for the ingest tables.

Each :class:`Check` pairs a DataFrame with a list of expectations. Table-level rules
that are not a column property (split shares, leakage into the graph, row accounting)
are checked on a small derived view, so every rule is still a real GE expectation with
its observed value in the report.
"""
from __future__ import annotations

from dataclasses import dataclass

import great_expectations as gx
from great_expectations.expectations import Expectation
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from optirag.config import Config
from optirag.tables import read_table

E = gx.expectations


@dataclass
class Check:
    name: str
    frame: DataFrame
    expectations: list[Expectation]


def _keys(cols: list[str]) -> list[Expectation]:
    """Not-null on every key column, and unique as a whole."""
    out: list[Expectation] = [E.ExpectColumnValuesToNotBeNull(column=c) for c in cols]
    if len(cols) == 1:
        out.append(E.ExpectColumnValuesToBeUnique(column=cols[0]))
    else:
        out.append(E.ExpectCompoundColumnsToBeUnique(column_list=cols))
    return out


def _label(col: str = "label") -> Expectation:
    return E.ExpectColumnValuesToBeInSet(column=col, value_set=[0, 1])


def ingest_checks(spark: SparkSession, cfg: Config) -> list[Check]:
    lake = cfg.dataset_lake()
    ds, ingest = cfg.dataset, cfg.ingest
    table = lambda name: read_table(spark, name, lake)  # noqa: E731
    items, interactions, samples = table("items"), table("interactions"), table("samples")
    edges, user_index, item_index = table("edges"), table("user_index"), table("item_index")
    quarantine, manifest = table("quarantine"), table("manifest")

    sample_view = samples.select(
        "sample_id", "user_id", "item_id", "label", "split",
        F.size("history").alias("history_length"),
        F.exists("history", lambda e: e["item_id"] == F.col("item_id")).alias("target_in_history"),
    )
    users = samples.select("user_id", "split").distinct()
    n_users = users.count()
    expected = F.create_map(*[x for s in ("train", "valid", "test")
                              for x in (F.lit(s), F.lit(getattr(ingest.split, s)))])
    split_view = (users.groupBy("split").count()
                  .select("split", F.abs(F.col("count") / F.lit(max(n_users, 1)) - expected[F.col("split")])
                          .alias("share_deviation")))
    # Held-out targets in the graph (must be none): valid/test sample pairs found in edges.
    graph_pairs = (edges.join(user_index, "user_idx").join(item_index, "item_idx")
                   .select("user_id", "item_id"))
    leaked = samples.where("split != 'train'").select("user_id", "item_id").join(graph_pairs, ["user_id", "item_id"])
    quarantined = quarantine.groupBy("source_file").agg(F.count(F.lit(1)).alias("q_rows"))
    accounting = manifest.join(quarantined, "source_file", "left").fillna(0, ["q_rows"]).select(
        "source_file",
        (F.col("raw_records") - F.col("accepted") - F.col("quarantined")).alias("unaccounted"),
        (F.col("quarantined") - F.col("q_rows")).alias("quarantine_mismatch"),
    )
    accepted_ratings = manifest.where(F.col("role").isin("ratings", "inter", "reviews")).agg(
        F.sum("accepted")).first()[0] or 0
    return [
        Check("items", items, _keys(["item_id"]) + [E.ExpectColumnValuesToNotBeNull(column="title")]),
        Check("interactions", interactions, _keys(["user_id", "item_id"]) + [
            _label(),
            E.ExpectColumnValuesToBeBetween(column="rating", min_value=ds.rating_min, max_value=ds.rating_max),
            E.ExpectTableRowCountToEqual(value=accepted_ratings),
        ]),
        Check("samples", sample_view, _keys(["sample_id"]) + [
            E.ExpectCompoundColumnsToBeUnique(column_list=["user_id", "item_id"]),
            _label(),
            E.ExpectColumnValuesToBeInSet(column="split", value_set=["train", "valid", "test"]),
            E.ExpectColumnValuesToBeBetween(column="history_length", min_value=ds.min_history,
                                            max_value=ingest.history_max),
            E.ExpectColumnValuesToBeInSet(column="target_in_history", value_set=[False]),
            E.ExpectTableRowCountToBeBetween(min_value=1),
        ]),
        Check("split_ratios", split_view, [
            E.ExpectColumnValuesToBeBetween(column="share_deviation", min_value=0,
                                            max_value=cfg.quality.split_tolerance),
            E.ExpectTableRowCountToEqual(value=3),
        ]),
        Check("edges", edges, _keys(["user_idx", "item_idx"]) + [_label()]),
        Check("graph_leakage", leaked, [E.ExpectTableRowCountToEqual(value=0)]),
        Check("user_index", user_index, _keys(["user_id"]) + [E.ExpectColumnValuesToBeUnique(column="user_idx")]),
        Check("item_index", item_index, _keys(["item_id"]) + [E.ExpectColumnValuesToBeUnique(column="item_idx")]),
        Check("quarantine", quarantine, [
            E.ExpectColumnValuesToNotBeNull(column="reason"),
            E.ExpectCompoundColumnsToBeUnique(column_list=["source_file", "line_number"]),
        ]),
        Check("row_accounting", accounting, [
            E.ExpectColumnValuesToBeBetween(column="unaccounted", min_value=0, max_value=0),
            E.ExpectColumnValuesToBeBetween(column="quarantine_mismatch", min_value=0, max_value=0),
            E.ExpectTableRowCountToBeBetween(min_value=1),
        ]),
    ]
