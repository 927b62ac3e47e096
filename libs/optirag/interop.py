"""The lake as clients other than Spark see it: delta-rs (`deltalake`) and DuckDB.

Analysts read the tables with pandas, polars or DuckDB, which go through delta-rs or read
the Parquet files themselves. :func:`read_deltalake` reads a table the delta-rs way (and
checks every string is valid UTF-8, as Arrow's readers do); :func:`read_duckdb` reads
the files of the current snapshot with DuckDB, the file list and partition values taken
from the Delta log (DuckDB's own `delta` extension downloads itself at first use, which
a machine without network cannot do). :func:`protocol` says which Delta reader and
writer versions and table features a table needs, i.e. which clients can open it.
"""
from __future__ import annotations

from typing import Any

import pyarrow as pa
from deltalake import DeltaTable

from optirag.orchestration.lake import uri
from optirag.tables import TABLES, Table, arrow_schema


def _delta(table: Table, dataset_lake: str) -> DeltaTable | None:
    path = uri(table.path(dataset_lake))
    return DeltaTable(path) if DeltaTable.is_deltatable(path) else None


def protocol(dt: DeltaTable) -> dict[str, Any]:
    p = dt.protocol()
    return {"min_reader": p.min_reader_version, "min_writer": p.min_writer_version,
            "reader_features": sorted(p.reader_features or []),
            "writer_features": sorted(p.writer_features or [])}


def read_deltalake(table: Table, dataset_lake: str) -> pa.Table:
    data = DeltaTable(uri(table.path(dataset_lake))).to_pyarrow_table()
    data.validate(full=True)  # invalid UTF-8 in a string column fails here, as in pandas/polars
    return data


def snapshot_files(dt: DeltaTable) -> pa.Table:
    """(uri, one column per partition column) of every data file of the current snapshot."""
    if "deletionVectors" in protocol(dt)["reader_features"] and pa.table(dt.deletion_vectors()).num_rows:
        raise ValueError(f"{dt.table_uri} has deletion vectors: its Parquet files alone are not the table")
    actions = pa.table(dt.get_add_actions(flatten=True))
    parts = {name.removeprefix("partition."): actions[name]
             for name in actions.column_names if name.startswith("partition.")}
    return pa.table({"uri": dt.file_uris(), **parts})


def read_duckdb(table: Table, dataset_lake: str) -> pa.Table:
    """The table's rows, read by DuckDB from the current snapshot's Parquet files."""
    import duckdb

    dt = DeltaTable(uri(table.path(dataset_lake)))
    files = snapshot_files(dt)
    if files.num_rows == 0:
        return arrow_schema(table).empty_table()
    con = duckdb.connect()
    con.register("files", files)
    # Delta keeps partition values in the log, not in the files: joined on by file.
    names = ", ".join(f'{"files" if f.name in table.partition_by else "d"}."{f.name}"'
                      for f in table.schema.fields)
    return con.sql(
        f"SELECT {names} FROM read_parquet(?, filename = true, union_by_name = true) AS d "
        "JOIN files ON d.filename = files.uri", params=[files["uri"].to_pylist()]).to_arrow_table()


def describe(dataset_lake: str) -> list[dict[str, Any]]:
    """Per existing table: rows as delta-rs and DuckDB count them, and the Delta protocol."""
    out = []
    for name, table in TABLES.items():
        dt = _delta(table, dataset_lake)
        if dt is None:
            continue
        out.append({"table": name, "rows_deltalake": read_deltalake(table, dataset_lake).num_rows,
                    "rows_duckdb": read_duckdb(table, dataset_lake).num_rows, **protocol(dt)})
    return out


def markdown(rows: list[dict[str, Any]], spark_rows: dict[str, int] | None = None) -> str:
    """The "Delta protocol" table of docs/data-model.md (plus row counts per reader)."""
    head = ["table", "minReader", "minWriter", "table features"]
    counts = ["rows (Spark)"] * (spark_rows is not None) + ["rows (delta-rs)", "rows (DuckDB)"]
    lines = ["| " + " | ".join(head + counts) + " |", "|" + "---|" * (len(head) + len(counts))]
    for r in rows:
        features = sorted(set(r["reader_features"]) | set(r["writer_features"]))
        cells = [f"`{r['table']}`", str(r["min_reader"]), str(r["min_writer"]),
                 ", ".join(f"`{f}`" for f in features) or "none"]
        if spark_rows is not None:
            cells.append(str(spark_rows.get(r["table"], "")))
        cells += [str(r["rows_deltalake"]), str(r["rows_duckdb"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
