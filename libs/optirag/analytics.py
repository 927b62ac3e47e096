"""What analysts run on the score tables, as Spark SQL over registered tables.

:func:`register_tables` registers every Delta table of a dataset in the session catalog
as ``<database>.<table>`` (``database`` defaults to ``optirag_<dataset>``), plus the view
``published_scores`` (only the dates that passed the score-quality gate). Locally that
catalog is Spark's in-memory one; on a cluster, point Spark at the shared metastore
(``spark.conf`` in conf/env/cluster.yaml: e.g. ``spark.sql.catalogImplementation: hive``
or a Unity/Glue catalog) and the same statements register external Delta tables there.

The queries below are plain SQL strings (``{db}`` and ``:name`` parameters filled in by
:func:`run`), so they can be pasted into any SQL client of the metastore.
"""
from __future__ import annotations

import re

from pyspark.sql import DataFrame, SparkSession

from optirag.config import Config
from optirag.tables import TABLES

QUERIES: dict[str, str] = {
    # the N best-scored items per user for a date, with the item's title
    "top_n_per_user": """
        SELECT user_id, rank, item_id, title, score, exit_layer FROM (
          SELECT s.user_id, s.item_id, i.title, s.score, s.exit_layer,
                 ROW_NUMBER() OVER (PARTITION BY s.user_id ORDER BY s.score DESC, s.item_id) AS rank
          FROM {db}.scores s JOIN {db}.items i ON s.item_id = i.item_id
          WHERE s.score_date = :score_date)
        WHERE rank <= :n ORDER BY user_id, rank""",
    # score distribution per date: deciles and mean
    "score_distribution": """
        SELECT score_date, COUNT(*) AS rows, AVG(score) AS mean_score,
               PERCENTILE_APPROX(score, ARRAY(0.1, 0.25, 0.5, 0.75, 0.9)) AS quantiles
        FROM {db}.scores GROUP BY score_date ORDER BY score_date""",
    # where the early-exit scorer answered, per date
    "exit_layer_histogram": """
        SELECT score_date, exit_layer, COUNT(*) AS rows,
               COUNT(*) / SUM(COUNT(*)) OVER (PARTITION BY score_date) AS share
        FROM {db}.scores GROUP BY score_date, exit_layer ORDER BY score_date, exit_layer""",
    # test AUC of a date's evaluation candidates (source = 'eval' rows carry the label)
    "eval_rows": """
        SELECT s.sample_id, s.label, s.score FROM {db}.scores s
        WHERE s.score_date = :score_date AND s.source = 'eval' AND s.label IS NOT NULL""",
}


def database(cfg: Config) -> str:
    return f"optirag_{cfg.dataset.name}"


def register_tables(spark: SparkSession, cfg: Config, db: str | None = None) -> list[str]:
    """Register the dataset's existing Delta tables (external, by location); returns names."""
    from pathlib import Path

    db = db or database(cfg)
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {db}")
    registered = []
    for table in TABLES.values():
        path = table.path(cfg.dataset_lake())
        if "://" not in path and not Path(path, "_delta_log").is_dir():
            continue  # not written yet (e.g. no scores before the first nightly run)
        spark.sql(f"CREATE TABLE IF NOT EXISTS {db}.{table.name} USING delta LOCATION '{path}'")
        registered.append(table.name)
    if {"scores", "published"} <= set(registered):
        spark.sql(f"""CREATE OR REPLACE VIEW {db}.published_scores AS
                      SELECT s.* FROM {db}.scores s JOIN {db}.published p
                      ON s.score_date = p.score_date AND s.model_version = p.model_version""")
        registered.append("published_scores")
    return registered


def _literal(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"unsupported query parameter {value!r}")
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return repr(value)


def run(spark: SparkSession, name: str, db: str, **params) -> DataFrame:
    """One of QUERIES with its `:name` parameters bound as escaped SQL literals. (Spark's
    own named parameters stay unbound under Delta's analysis rules in Spark 4.1.)"""
    sql = QUERIES[name].format(db=db)
    for key in sorted(params, key=len, reverse=True):
        sql = re.sub(rf":{key}\b", lambda _: _literal(params[key]), sql)
    missing = re.findall(r":([a-z_]+)\b", sql)
    if missing:
        raise ValueError(f"query {name!r} needs parameters {sorted(set(missing))}")
    return spark.sql(sql)
