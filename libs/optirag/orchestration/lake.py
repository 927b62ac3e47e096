"""Small Delta reads/writes for the orchestration jobs, through deltalake (no JVM).

The gate-side jobs (publish, promote, retriever freshness) touch a handful of rows; a
Spark session would cost more to start than the work. Schemas still come from
optirag.tables, so Spark reads what these write.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable, write_deltalake

from optirag.tables import Table, arrow_schema


def uri(path: str) -> str:
    """deltalake spells Hadoop's s3a:// as s3://."""
    return "s3://" + path[len("s3a://"):] if path.startswith("s3a://") else path


def read(table: Table, dataset_lake: str, filters=None, columns: list[str] | None = None) -> pa.Table | None:
    """Matching rows, or None when the table does not exist yet."""
    path = uri(table.path(dataset_lake))
    if not DeltaTable.is_deltatable(path):
        return None
    # Not to_pyarrow_table: its threaded scan leaves Arrow threads that abort the interpreter's
    # exit about half the time ("terminate called without an active exception", SIGABRT;
    # deltalake 1.6.6, pyarrow 26). Jobs end with os._exit (optirag.cli), but the DAGs'
    # external-python checks exit normally, and the abort failed retriever_due in CI.
    expression = pq.filters_to_expression(filters) if filters else None
    return DeltaTable(path).to_pyarrow_dataset().to_table(columns=columns, filter=expression,
                                                           use_threads=False)


def partition_values(table: Table, dataset_lake: str, column: str) -> list[str]:
    """The values of a partition column that hold files, sorted, from the Delta log alone
    (no data file is opened); [] when the table does not exist yet."""
    path = uri(table.path(dataset_lake))
    if not DeltaTable.is_deltatable(path):
        return []
    return sorted({p[column] for p in DeltaTable(path).partitions()})


def replace_rows(rows: list[dict], table: Table, dataset_lake: str, predicate: str) -> None:
    """Atomically replace the rows matching `predicate` by `rows` (creates the table)."""
    path = uri(table.path(dataset_lake))
    data = pa.Table.from_pylist(rows, schema=arrow_schema(table))
    if DeltaTable.is_deltatable(path):
        write_deltalake(path, data, mode="overwrite", predicate=predicate)
    else:
        write_deltalake(path, data, mode="append", partition_by=list(table.partition_by) or None)
