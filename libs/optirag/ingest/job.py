"""Raw files -> Delta tables of one dataset: the body of ``jobs.ingest``.

Each table is replaced atomically (Delta overwrite), so a re-run on the same input
rewrites the same content with no duplicates. Row accounting is exact: every raw
record of every file ends up either accepted or in ``quarantine``, and ``manifest``
records raw = accepted + quarantined per file.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import datetime, timezone
from functools import reduce

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from optirag.config import Config
from optirag.ingest import protocol
from optirag.ingest.formats import METADATA_COLUMNS, RawDataset, read_raw
from optirag.ingest.raw import file_digest
from optirag.tables import (
    EDGES, INTERACTIONS, ITEM_INDEX, ITEMS, MANIFEST, QUARANTINE, SAMPLES, USER_INDEX, write_table,
)

log = logging.getLogger(__name__)


def _union(frames: list[DataFrame]) -> DataFrame | None:
    return reduce(DataFrame.unionByName, frames) if frames else None


def data_version(cfg: Config, digests: list[tuple[str, str, str]]) -> str:
    """Names the input: raw file digests + every setting that shapes the tables."""
    dataset = cfg.dataset.model_dump()
    if dataset["train_targets_per_user"] == 1:  # today's tables: keep the version they had
        del dataset["train_targets_per_user"]
    payload = json.dumps({
        "files": sorted(digests),
        "dataset": dataset,
        "ingest": cfg.ingest.model_dump(),
    }, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def run_ingest(spark: SparkSession, cfg: Config, raw_dir: str) -> dict:
    started = time.time()
    lake = cfg.dataset_lake()
    ds = cfg.dataset

    def step(msg: str) -> None:
        log.info("[ingest %s %5.1fs] %s", ds.name, time.time() - started, msg)

    step(f"reading raw files from {raw_dir}")
    raw: RawDataset = read_raw(spark, raw_dir, ds)
    interactions, dup_ratings = protocol.dedupe_interactions(_union([p.accepted for p in raw.interactions]))
    interactions = protocol.with_label(interactions, ds).cache()
    meta = _union([p.accepted for p in raw.items])
    dup_items = None
    if meta is not None:
        meta, dup_items = protocol.dedupe_items(meta)
    rejected = [p.rejected for p in raw.parsed] + [dup_ratings] + ([dup_items] if dup_items is not None else [])
    quarantine = _union(rejected).cache()

    step("writing items and interactions")
    items = protocol.build_items(meta, interactions, ds).cache()
    write_table(items, ITEMS, lake)
    write_table(interactions, INTERACTIONS, lake)

    step("building samples (history, split)")
    samples, held_out = protocol.build_samples(interactions, ds, cfg.ingest)
    samples = samples.cache()
    write_table(samples, SAMPLES, lake)

    step("building the graph (edges without valid/test targets)")
    edges, user_index, item_index = protocol.build_graph(interactions, held_out)
    write_table(edges, EDGES, lake)
    write_table(user_index, USER_INDEX, lake)
    write_table(item_index, ITEM_INDEX, lake)
    write_table(quarantine, QUARANTINE, lake)

    step("accounting")
    accepted_by_file = _counts(interactions, "source_file")
    if meta is not None:
        accepted_by_file.update(_counts(meta, "source_file"))
    quarantined_by_file = _counts(quarantine, "source_file")
    digests = [(p.role, p.source_file.rsplit("/", 1)[-1], file_digest(spark, p.source_file)) for p in raw.parsed]
    version = data_version(cfg, digests)
    now = datetime.now(timezone.utc)
    manifest_rows = [
        (p.source_file, p.role, p.raw_records, accepted_by_file.get(p.source_file, 0),
         quarantined_by_file.get(p.source_file, 0), digest, version, now)
        for p, (_, _, digest) in zip(raw.parsed, digests)
    ]
    manifest = spark.createDataFrame(manifest_rows, MANIFEST.schema)
    write_table(manifest, MANIFEST, lake)

    summary = _summary(cfg, manifest_rows, quarantine, interactions, items, samples, user_index, version)
    summary["metadata_empty_share"], summary["warnings"] = metadata_gaps(
        meta, METADATA_COLUMNS[ds.format], cfg.quality.metadata_max_empty_share)
    for warning in summary["warnings"]:
        log.warning("[ingest %s] %s", ds.name, warning)
    summary["wall_seconds"] = round(time.time() - started, 1)
    step(f"done: {json.dumps(summary)}")
    for df in (interactions, quarantine, items, samples):
        df.unpersist()
    return summary


def metadata_gaps(meta: DataFrame | None, columns: tuple[str, ...], max_share: float) -> tuple[dict, list[str]]:
    """Share of the metadata file's items with each column empty, and a warning per column
    emptier than `max_share` (a reader fed the wrong column, or a file without it)."""
    if meta is None:
        return {}, []
    empty = {c: (F.size(c) < 1) if c == "genres" else F.trim(F.col(c).cast("string")) == "" for c in columns}
    row = meta.agg(F.count(F.lit(1)).alias("_n"), *[
        F.sum((F.col(c).isNull() | F.coalesce(e, F.lit(False))).cast("int")).alias(c) for c, e in empty.items()
    ]).first()
    if not row["_n"]:
        return {}, []
    shares = {c: round(row[c] / row["_n"], 4) for c in columns}
    warnings = [f"items.{c} is empty for {share:.0%} of the {row['_n']} items of the metadata file "
                f"(quality.metadata_max_empty_share: {max_share:.0%})"
                for c, share in shares.items() if share > max_share]
    return shares, warnings


def _counts(df: DataFrame, col: str) -> dict:
    return {r[col]: r["count"] for r in df.groupBy(col).count().collect()}


def _summary(cfg, manifest_rows, quarantine, interactions, items, samples, user_index, version) -> dict:
    split_counts = _counts(samples, "split")
    positives = samples.agg(F.avg("label")).first()[0]
    return {
        "dataset": cfg.dataset.name,
        "data_version": version,
        "files": {row[0].rsplit("/", 1)[-1]: {"raw": row[2], "accepted": row[3], "quarantined": row[4]}
                  for row in manifest_rows},
        "raw_records": sum(r[2] for r in manifest_rows),
        "accepted": sum(r[3] for r in manifest_rows),
        "quarantined": sum(r[4] for r in manifest_rows),
        "quarantined_by_reason": dict(sorted(_counts(quarantine, "reason").items())),
        "interactions": interactions.count(),
        "users": user_index.count(),
        "cold_users": user_index.where("n_edges = 0").count(),
        "items": items.count(),
        "items_without_metadata": items.where("not has_metadata").count(),
        "interaction_positive_rate": round(interactions.agg(F.avg("label")).first()[0] or 0.0, 4),
        "samples": {s: split_counts.get(s, 0) for s in protocol.SPLITS},
        "sample_positive_rate": round(positives or 0.0, 4),
    }
