"""Delimited text with a header line: BX CSVs and RecBole atomic (tab-separated) files.

Columns are found by header name, not position, so both the shared subset
(`User_ID,ISBN,...`) and the original release (`"User-ID";"ISBN";...`) map the same way:
names are compared lower-cased with `-`/space as `_` and RecBole's `:type` suffix dropped.
"""
from __future__ import annotations

import re

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from optirag.ingest.raw import (
    RawInputError, blank, csv_field_count, first_failure, line_checks, odd_quotes, read_lines,
)


def normalise_name(name: str) -> str:
    name = name.strip().strip('"').split(":")[0]
    return re.sub(r"[-\s]+", "_", name).lower()


def read_delimited(
    spark: SparkSession, path: str, delimiter: str, wanted: dict[str, str], quoted: bool,
) -> tuple[DataFrame, int]:
    """Lines of `path` parsed into the `wanted` columns (header name -> output name).

    Returns rows with source_file, line_number, value, the wanted columns (strings) and
    `_reason` (null = structurally fine), plus the number of raw records (lines after
    the header). Only structural checks happen here; value checks belong to the caller.
    """
    lines = read_lines(spark, path).cache()
    header_row = lines.where("line_number = 1").select("value").collect()
    if not header_row:  # an empty file: no header, no records
        empty = lines.select("*", *[F.lit(None).cast("string").alias(c) for c in wanted.values()],
                             F.lit(None).cast("string").alias("_reason"))
        return empty, 0
    header = [normalise_name(h) for h in header_row[0]["value"].split(delimiter)]
    missing = [name for name in wanted if normalise_name(name) not in header]
    if missing:
        raise RawInputError(f"{path}: header {header_row[0]['value']!r} lacks column(s) {missing}")
    records = lines.where("line_number > 1")
    n_cols = len(header)
    if quoted:
        schema = T.StructType([T.StructField(f"_c{i}", T.StringType()) for i in range(n_cols)])
        fields = F.from_csv("value", schema.simpleString(), {"sep": delimiter, "quote": '"', "escape": '"'})
        n_fields = csv_field_count(F.col("value"), delimiter)
        broken = odd_quotes(F.col("value")) | (n_fields != n_cols)
        get = lambda i: fields[f"_c{i}"]  # noqa: E731
    else:
        parts = F.split("value", re.escape(delimiter), -1)
        broken = F.size(parts) != n_cols
        get = lambda i: F.get(parts, i)  # noqa: E731  (null, not an error, on short rows)
    columns = [get(header.index(normalise_name(name))).alias(out) for name, out in wanted.items()]
    parsed = records.select("source_file", "line_number", "value", *columns, broken.alias("_broken"))
    reason = first_failure(line_checks() + [(F.col("_broken"), "malformed_row")])
    return parsed.withColumn("_reason", reason).drop("_broken"), records.count()


def id_checks(*cols: str) -> list:
    return [(blank(c), "empty_id") for c in cols]
