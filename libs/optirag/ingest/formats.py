"""One reader per raw format. Each turns raw files into checked interaction and item rows.

A reader returns :class:`RawDataset`: for every raw file, the accepted rows (typed) and
the rejected lines with a reason. Format-independent rules (duplicates, labels, the
sample protocol) live in :mod:`optirag.ingest.protocol`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from optirag.config import DatasetConfig
from optirag.ingest.delimited import id_checks, read_delimited
from optirag.ingest.raw import (
    Parsed, RawInputError, blank, first_failure, line_checks, rating_checks, read_lines,
    resolve_files, split_outcome,
)

LINE_COLS = ("source_file", "line_number", "value")


@dataclass
class RawDataset:
    interactions: list[Parsed] = field(default_factory=list)
    items: list[Parsed] = field(default_factory=list)

    @property
    def parsed(self) -> list[Parsed]:
        return self.interactions + self.items


def _files(spark: SparkSession, raw_dir: str, ds: DatasetConfig, role: str) -> list[str]:
    pattern = ds.files.get(role)
    if pattern is None:
        return []
    found = resolve_files(spark, raw_dir, pattern)
    if not found and role not in ds.optional_files:
        raise RawInputError(f"required {role} file {pattern!r} not found in {raw_dir}")
    return found


def _check(parsed: DataFrame, checks: list[tuple[Column, str]]) -> DataFrame:
    return parsed.withColumn("_reason", F.coalesce(F.col("_reason"), first_failure(checks)))


def _interactions(df: DataFrame, timestamp: Column | None) -> DataFrame:
    ts = timestamp if timestamp is not None else F.lit(None).cast("long")
    return df.select(
        *LINE_COLS, F.trim("user_id").alias("user_id"), F.trim("item_id").alias("item_id"),
        F.col("rating").try_cast("double").alias("rating"), ts.alias("timestamp"), "_reason",
    )


def _timestamp_checks(col: str) -> tuple[Column, list[tuple[Column, str]]]:
    value = F.col(col).try_cast("double").try_cast("long")
    return value, [(value.isNull(), "bad_timestamp")]


def _year(col: Column) -> Column:
    year = col.try_cast("double").try_cast("int")
    return F.when((year > 0) & (year < 3000), year)  # BX stores unknown years as 0


def read_bookcrossing(spark: SparkSession, raw_dir: str, ds: DatasetConfig) -> RawDataset:
    out = RawDataset()
    for path in _files(spark, raw_dir, ds, "ratings"):
        parsed, n = read_delimited(spark, path, ds.delimiter,
                                   {"User_ID": "user_id", "ISBN": "item_id", "Book_Rating": "rating"}, quoted=True)
        parsed = _check(parsed, id_checks("user_id", "item_id") + rating_checks("rating", ds.rating_min, ds.rating_max))
        out.interactions.append(split_outcome("ratings", path, n, _interactions(parsed, None)))
    for path in _files(spark, raw_dir, ds, "books"):
        wanted = {"ISBN": "item_id", "Book_Title": "title", "Book_Author": "author",
                  "Year_Of_Publication": "year", "Publisher": "publisher"}
        parsed, n = read_delimited(spark, path, ds.delimiter, wanted, quoted=True)
        parsed = _check(parsed, id_checks("item_id"))
        items = parsed.select(
            *LINE_COLS, F.trim("item_id").alias("item_id"), F.trim("title").alias("title"),
            F.trim("author").alias("author"), _year(F.col("year")).alias("year"),
            F.trim("publisher").alias("publisher"), F.lit(None).cast("array<string>").alias("genres"), "_reason",
        )
        out.items.append(split_outcome("books", path, n, items))
    return out


def read_recbole(spark: SparkSession, raw_dir: str, ds: DatasetConfig) -> RawDataset:
    out = RawDataset()
    for path in _files(spark, raw_dir, ds, "inter"):
        wanted = {"user_id": "user_id", "item_id": "item_id", "rating": "rating", "timestamp": "timestamp"}
        parsed, n = read_delimited(spark, path, ds.delimiter, wanted, quoted=False)
        ts, ts_checks = _timestamp_checks("timestamp")
        parsed = _check(parsed, id_checks("user_id", "item_id")
                        + rating_checks("rating", ds.rating_min, ds.rating_max) + ts_checks)
        out.interactions.append(split_outcome("inter", path, n, _interactions(parsed, ts)))
    for path in _files(spark, raw_dir, ds, "item"):
        wanted = {"item_id": "item_id", "movie_title": "title", "release_year": "year", "class": "genres"}
        parsed, n = read_delimited(spark, path, ds.delimiter, wanted, quoted=False)
        parsed = _check(parsed, id_checks("item_id"))
        items = parsed.select(
            *LINE_COLS, F.trim("item_id").alias("item_id"), F.trim("title").alias("title"),
            F.lit(None).cast("string").alias("author"), _year(F.col("year")).alias("year"),
            F.lit(None).cast("string").alias("publisher"),
            F.when(~blank("genres"), F.split(F.trim("genres"), r"\s+")).alias("genres"), "_reason",
        )
        out.items.append(split_outcome("item", path, n, items))
    return out


_REVIEW = T.StructType([
    T.StructField(n, T.StringType()) for n in ("reviewerID", "asin", "overall", "unixReviewTime", "_corrupt")
])
_META = T.StructType([
    T.StructField("asin", T.StringType()), T.StructField("title", T.StringType()),
    T.StructField("brand", T.StringType()), T.StructField("category", T.ArrayType(T.StringType())),
    T.StructField("date", T.StringType()), T.StructField("_corrupt", T.StringType()),
])
_JSON_OPTS = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": "_corrupt"}


def _json_lines(spark: SparkSession, path: str, schema: T.StructType) -> tuple[DataFrame, int]:
    lines = read_lines(spark, path)
    parsed = lines.select(*LINE_COLS, F.from_json("value", schema, _JSON_OPTS).alias("j"))
    base = line_checks() + [(F.col("j").isNull() | F.col("j._corrupt").isNotNull(), "bad_json")]
    return parsed.withColumn("_reason", first_failure(base)), lines.count()


def read_amazon(spark: SparkSession, raw_dir: str, ds: DatasetConfig) -> RawDataset:
    """Amazon 2018 reviews (JSON lines, .gz or plain) + optional meta_*.json item file."""
    out = RawDataset()
    for path in _files(spark, raw_dir, ds, "reviews"):
        parsed, n = _json_lines(spark, path, _REVIEW)
        parsed = parsed.select(*LINE_COLS, "_reason", F.col("j.reviewerID").alias("user_id"),
                               F.col("j.asin").alias("item_id"), F.col("j.overall").alias("rating"),
                               F.col("j.unixReviewTime").alias("unix_time"))
        ts, ts_checks = _timestamp_checks("unix_time")
        parsed = _check(parsed, id_checks("user_id", "item_id")
                        + rating_checks("rating", ds.rating_min, ds.rating_max) + ts_checks)
        out.interactions.append(split_outcome("reviews", path, n, _interactions(parsed, ts)))
    for path in _files(spark, raw_dir, ds, "meta"):
        parsed, n = _json_lines(spark, path, _META)
        parsed = parsed.select(*LINE_COLS, "_reason", F.col("j.*"))
        parsed = _check(parsed.withColumnRenamed("asin", "item_id"), id_checks("item_id"))
        items = parsed.select(
            *LINE_COLS, F.trim("item_id").alias("item_id"), F.trim("title").alias("title"),
            F.lit(None).cast("string").alias("author"),
            _year(F.regexp_extract("date", r"(\d{4})", 1)).alias("year"),
            F.trim("brand").alias("publisher"), F.col("category").alias("genres"), "_reason",
        )
        out.items.append(split_outcome("meta", path, n, items))
    return out


# The item columns each format's metadata file fills (the others stay null by design).
METADATA_COLUMNS = {"bookcrossing": ("title", "author", "year", "publisher"),
                    "recbole": ("title", "year", "genres"),
                    "amazon": ("title", "year", "publisher", "genres")}

READERS: dict[str, Callable[[SparkSession, str, DatasetConfig], RawDataset]] = {
    "bookcrossing": read_bookcrossing,
    "recbole": read_recbole,
    "amazon": read_amazon,
}


def read_raw(spark: SparkSession, raw_dir: str, ds: DatasetConfig) -> RawDataset:
    if ds.format not in READERS:
        raise RawInputError(f"no reader for format {ds.format!r}")
    return READERS[ds.format](spark, raw_dir, ds)
