"""great-expectations suite for one date of nightly scores (the gate before publishing).

Rules: every candidate row is either scored or rejected (scores = candidates - rejects),
no nulls in required columns, score in [0, 1], exit_layer one of the model's exits,
(user, item) unique, one model_version per date. Table-level rules are checked on a
one-row derived view, so each is a real GE expectation with its observed value.
"""
from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from optirag import registry
from optirag.config import Config, ConfigError
from optirag.orchestration.config import orchestration_config
from optirag.quality.suites import E, Check, _keys
from optirag.tables import CANDIDATES, SCORE_REJECTS, SCORES, read_table


def valid_exit_layers(cfg: Config) -> list[int]:
    """Configured exit layers, else those of the exit heads the nightly run resolves."""
    ocfg = orchestration_config(cfg)
    if ocfg.scores_gate.exit_layers:
        return sorted(ocfg.scores_gate.exit_layers)
    kind = f"exit_heads/{cfg.scoring.get('variant') or ocfg.variant}"  # what jobs.score used
    try:
        meta = registry.read_meta(registry.resolve(cfg, kind))
    except registry.ModelNotFoundError as e:
        raise ConfigError(f"cannot tell the valid exit layers: {e}; or set "
                          "orchestration.scores_gate.exit_layers") from None
    return sorted(int(x) for x in meta["exit_layers"])


def _partition(spark: SparkSession, table, lake: str, score_date: str):
    """The date's rows; a table that does not exist yet counts as empty."""
    from delta.tables import DeltaTable

    if not DeltaTable.isDeltaTable(spark, table.path(lake)):
        return spark.createDataFrame([], table.schema)
    return read_table(spark, table, lake).where(F.col("score_date") == score_date)


def scores_checks(spark: SparkSession, cfg: Config, score_date: str) -> list[Check]:
    lake = cfg.dataset_lake()
    scores = _partition(spark, SCORES, lake, score_date)
    n_candidates = _partition(spark, CANDIDATES, lake, score_date).count()
    n_rejects = _partition(spark, SCORE_REJECTS, lake, score_date).count()
    required = [f.name for f in SCORES.schema.fields if not f.nullable]
    versions = scores.select("model_version").distinct()
    return [
        Check("scores", scores, [
            E.ExpectTableRowCountToEqual(value=n_candidates - n_rejects),
            E.ExpectTableRowCountToBeBetween(min_value=1),
            *[E.ExpectColumnValuesToNotBeNull(column=c) for c in required if c not in ("user_id", "item_id")],
            *_keys(["user_id", "item_id"]),
            E.ExpectColumnValuesToBeBetween(column="score", min_value=0.0, max_value=1.0),
            E.ExpectColumnValuesToBeInSet(column="exit_layer", value_set=valid_exit_layers(cfg)),
        ]),
        Check("score_model_versions", versions, [E.ExpectTableRowCountToEqual(value=1)]),
    ]
