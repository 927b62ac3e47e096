"""Staging and the atomic commit of a scoring run.

    stage    each finished batch of rows becomes one Parquet file under
             <lake>/<dataset>/_staging/scores/<date>/ (scored and rejected rows together)
    commit   one Delta commit per table replaces the date's partition of `scores` (and of
             `score_rejects`) with the staged rows

Until the commit nothing in `scores` changes, and the commit is a single atomic Delta
transaction (deltalake ``predicate`` overwrite), so a run killed at any point leaves the
table as it was.
"""
from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from optirag.config import Config
from optirag.tables import SCORE_REJECTS, SCORES, arrow_schema

# Staged rows: the scores columns + the reject reason, all nullable (a rejected row has no
# score); the commit casts each side to its table's schema, which enforces the non-nulls.
STAGED = pa.schema([f.with_nullable(True) for f in arrow_schema(SCORES)] + [pa.field("reason", pa.string())])


def staging_dir(cfg: Config, table: str, score_date: str) -> Path:
    return Path(cfg.dataset_lake()) / "_staging" / table / score_date


def _conform(frame: pd.DataFrame, retriever_version: str | None) -> pa.Table:
    frame = frame.assign(retriever_version=retriever_version)
    frame["exit_layer"] = frame["exit_layer"].astype("int32")
    if "label" in frame:
        frame["label"] = frame["label"].astype("Int32")
    return pa.Table.from_pandas(frame[STAGED.names], schema=STAGED, preserve_index=False)


def stage(folder: Path, part: int, frame: pd.DataFrame, retriever_version: str | None) -> int:
    """Write a batch of scored (or rejected) rows as the staging folder's part `part`;
    returns its row count."""
    table = _conform(frame, retriever_version)
    pq.write_table(table, folder / f"part-{part:06d}-{uuid.uuid4().hex[:8]}.parquet")
    return table.num_rows


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
        # schema_mode merge: a table from before a column was added gains it (older rows: null)
        write_deltalake(path, reader, partition_by=list(table.partition_by),
                        mode="overwrite" if exists else "append",
                        predicate=f"score_date = '{score_date}'" if exists else None,
                        schema_mode="merge" if exists else None)
        counts[table.name] = staged.count_rows(filter=keep)
    return counts
