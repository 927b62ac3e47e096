"""Raw files as numbered lines, and the record checks every reader shares.

Every reader starts from :func:`read_lines`: one row per physical line with its
1-based line number, so that a rejected record can be quarantined with its file,
line and text. Parsing then happens in Spark SQL (no Python UDFs), so the same
readers serve the full public releases.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import urlparse

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from optirag.cli import register_user_error
from optirag.tables import QUARANTINE

_ROW_BITS = 33  # monotonically_increasing_id = partition id << 33 | row within partition


class RawInputError(RuntimeError):
    """A required raw file is missing or unreadable: the job stops with this one line."""


register_user_error(RawInputError)


@dataclass
class Parsed:
    """The outcome of reading one raw file: accepted rows and rejected lines."""

    role: str
    source_file: str
    raw_records: int
    accepted: DataFrame
    rejected: DataFrame  # QUARANTINE columns


def _fs(spark: SparkSession, pattern: str):
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(pattern)
    return path, path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())


def resolve_files(spark: SparkSession, raw_dir: str, pattern: str) -> list[str]:
    """Files under raw_dir matching the (glob) pattern, sorted; local or any Hadoop FS."""
    path, fs = _fs(spark, f"{raw_dir.rstrip('/')}/{pattern}")
    statuses = fs.globStatus(path) or []
    return sorted(str(s.getPath().toString()) for s in statuses if s.isFile())


def file_digest(spark: SparkSession, path: str) -> str:
    """sha256 of a local file; elsewhere a fingerprint of length + modification time."""
    parsed = urlparse(path)
    if parsed.scheme in ("", "file"):
        digest = hashlib.sha256()
        with open(parsed.path if parsed.scheme else path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()
    jpath, fs = _fs(spark, path)
    status = fs.getFileStatus(jpath)
    return f"len{status.getLen()}-mtime{status.getModificationTime()}"


def read_lines(spark: SparkSession, path: str) -> DataFrame:
    """(source_file, line_number, value) for every physical line of one file.

    Line numbers are exact without a single-partition sort: count rows per input
    partition, turn the counts into offsets, and add each row's index inside its
    partition. Partitions of one file are in byte order, so this is file order.
    """
    lines = spark.read.text(path).withColumn("_mid", F.monotonically_increasing_id())
    lines = lines.withColumn("_part", F.shiftright("_mid", _ROW_BITS)).cache()
    counts = sorted((r["_part"], r["count"]) for r in lines.groupBy("_part").count().collect())
    offsets, running = [], 0
    for part, count in counts:
        offsets.append((part, running))
        running += count
    if not offsets:
        return spark.createDataFrame([], "source_file string, line_number long, value string")
    offset_df = spark.createDataFrame(offsets, "_part long, _offset long")
    in_part = F.col("_mid").bitwiseAND(F.lit((1 << _ROW_BITS) - 1))
    return (
        lines.join(F.broadcast(offset_df), "_part")
        .select(
            F.lit(path).alias("source_file"),
            (F.col("_offset") + in_part + 1).alias("line_number"),
            "value",
        )
    )


def first_failure(checks: list[tuple[Column, str]]) -> Column:
    """The reason of the first failing check (checks are (failed?, reason)), else null."""
    expr = F.lit(None).cast("string")
    for failed, reason in reversed(checks):
        expr = F.when(failed, F.lit(reason)).otherwise(expr)
    return expr


def line_checks() -> list[tuple[Column, str]]:
    """Checks every text format starts with."""
    return [
        (~F.expr("is_valid_utf8(value)"), "invalid_utf8"),
        (F.trim("value") == "", "empty_line"),
    ]


def blank(col: str) -> Column:
    return F.col(col).isNull() | (F.trim(F.col(col)) == "")


def rating_checks(col: str, rating_min: float, rating_max: float) -> list[tuple[Column, str]]:
    value = F.col(col).try_cast("double")
    return [
        (value.isNull() | F.isnan(value), "non_numeric_rating"),
        ((value < rating_min) | (value > rating_max), "rating_out_of_range"),
    ]


def quarantine_rows(lines: DataFrame, reason: Column) -> DataFrame:
    """QUARANTINE rows of raw lines (source_file, line_number, value) with `reason`.

    Spark's text reader keeps a line's bytes as they are, valid UTF-8 or not; written
    into a string column, invalid bytes make the table unreadable for Arrow-based
    clients. So the bytes go to a binary column, and the text is the repaired copy."""
    return lines.select(
        "source_file", "line_number", F.col("value").cast("binary").alias("raw_bytes"),
        F.expr("make_valid_utf8(value)").alias("raw_text"), reason.alias("reason"),
    ).select(*QUARANTINE.schema.names)


def split_outcome(role: str, path: str, raw_records: int, checked: DataFrame) -> Parsed:
    """Split rows carrying a `_reason` column into accepted rows and quarantine rows."""
    checked = checked.cache()
    rejected = quarantine_rows(checked.where(F.col("_reason").isNotNull()), F.col("_reason"))
    accepted = checked.where(F.col("_reason").isNull()).drop("_reason")
    return Parsed(role, path, raw_records, accepted, rejected)


def csv_field_count(value: Column, delimiter: str) -> Column:
    """Fields in a CSV line: delimiters outside quoted sections + 1."""
    unquoted = F.regexp_replace(value, r'"([^"]|"")*"', "")
    return F.size(F.split(unquoted, _regex_escape(delimiter), -1))


def odd_quotes(value: Column) -> Column:
    """A line whose quotes do not pair up (broken CSV quoting)."""
    n_quotes = F.length(value) - F.length(F.regexp_replace(value, '"', ""))
    return (n_quotes % 2) == 1


def _regex_escape(text: str) -> str:
    return "".join("\\" + c if not c.isalnum() else c for c in text)
