"""Every Delta table of the lake: its name, schema and partitioning, declared once.

A dataset's tables live under ``<lake>/<dataset>/<table>``. Spark jobs write through
:func:`write_table` (columns conformed to the declared schema, atomic overwrite or an
atomic ``replaceWhere`` of a partition); Ray / deltalake writers get the same schema
as Arrow from :func:`arrow_schema`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T


@dataclass(frozen=True)
class Table:
    name: str
    schema: T.StructType
    description: str
    partition_by: tuple[str, ...] = field(default=())
    key: tuple[str, ...] = field(default=())  # the columns that identify a row

    def path(self, dataset_lake: str) -> str:
        return f"{dataset_lake.rstrip('/')}/{self.name}"


def _f(name: str, dtype: T.DataType, nullable: bool = True) -> T.StructField:
    return T.StructField(name, dtype, nullable)


S, L, I, D, B = T.StringType(), T.LongType(), T.IntegerType(), T.DoubleType(), T.BooleanType()
BIN = T.BinaryType()

HISTORY_ENTRY = T.StructType([
    _f("item_id", S), _f("rating", D), _f("label", I), _f("timestamp", L),
])

ITEMS = Table("items", T.StructType([
    _f("item_id", S, False), _f("title", S, False), _f("author", S), _f("year", I),
    _f("publisher", S), _f("genres", T.ArrayType(S)), _f("has_metadata", B, False),
]), "one row per item; items rated but absent from the metadata file get a placeholder title",
    key=("item_id",))

INTERACTIONS = Table("interactions", T.StructType([
    _f("user_id", S, False), _f("item_id", S, False), _f("rating", D, False),
    _f("timestamp", L), _f("label", I, False),
]), "accepted ratings, one per (user, item); label = rating >= positive_threshold",
    key=("user_id", "item_id"))

SAMPLES = Table("samples", T.StructType([
    _f("sample_id", S, False), _f("user_id", S, False), _f("item_id", S, False),
    _f("label", I, False), _f("rating", D, False), _f("timestamp", L),
    _f("history", T.ArrayType(HISTORY_ENTRY), False), _f("split", S, False),
]), "CTR samples: a target item with up to history_max earlier/other items of the user", ("split",),
    key=("sample_id",))

EDGES = Table("edges", T.StructType([
    _f("user_idx", I, False), _f("item_idx", I, False), _f("rating", D, False),
    _f("label", I, False), _f("timestamp", L),
]), "the bipartite user-item graph the retriever trains on; never holds a valid/test target",
    key=("user_idx", "item_idx"))

USER_INDEX = Table("user_index", T.StructType([
    _f("user_id", S, False), _f("user_idx", I, False), _f("n_edges", L, False),
]), "user_id <-> contiguous user_idx of the graph; n_edges = 0 marks a cold user", key=("user_id",))

ITEM_INDEX = Table("item_index", T.StructType([
    _f("item_id", S, False), _f("item_idx", I, False), _f("n_edges", L, False),
]), "item_id <-> contiguous item_idx of the graph", key=("item_id",))

# raw_bytes keeps the line exactly as read (without its line break); raw_text is the same
# line as valid UTF-8 (invalid bytes become U+FFFD), so every Delta client can read it.
QUARANTINE = Table("quarantine", T.StructType([
    _f("source_file", S, False), _f("line_number", L, False), _f("raw_bytes", BIN),
    _f("raw_text", S), _f("reason", S, False),
]), "every raw record that was not accepted, with why", key=("source_file", "line_number"))

MANIFEST = Table("manifest", T.StructType([
    _f("source_file", S, False), _f("role", S, False), _f("raw_records", L, False),
    _f("accepted", L, False), _f("quarantined", L, False), _f("sha256", S, False),
    _f("data_version", S, False), _f("ingested_at", T.TimestampType(), False),
]), "row accounting per raw file (raw_records = accepted + quarantined) and the data version",
    key=("source_file",))

NEIGHBOURS = Table("neighbours", T.StructType([
    _f("retriever", S, False), _f("model_version", S, False), _f("user_id", S, False),
    _f("neighbour_user_id", S), _f("rank", I), _f("similarity", D), _f("is_cold", B, False),
]), "top-k similar users per sample user; a cold user has one row with no neighbour", ("retriever",),
    key=("retriever", "user_id", "rank"))

PROMPTS = Table("prompts", T.StructType([
    _f("variant", S, False), _f("sample_id", S, False), _f("user_id", S, False),
    _f("item_id", S, False), _f("label", I, False), _f("split", S, False),
    _f("retriever_version", S), _f("n_neighbours", I, False), _f("n_history", I, False),
    _f("text", S, False), _f("n_tokens", I, False), _f("prefix_chars", I),
]), "one scorer prompt per (variant, sample); variant = none | llm | gcn (which neighbours fed it); "
    "text[:prefix_chars] is the user's prefix, the rest the target's suffix",
    ("variant",), key=("variant", "sample_id"))

EVAL_SCORES = Table("eval_scores", T.StructType([
    _f("run_id", S, False), _f("variant", S, False), _f("model_version", S, False),
    _f("sample_id", S, False), _f("user_id", S, False), _f("item_id", S, False),
    _f("split", S, False), _f("label", I, False), _f("score", D, False), _f("exit_layer", I),
    _f("scored_at", T.TimestampType(), False),
]), "scores of the valid/test samples per evaluated model (run_id = variant/model/exit setting)",
    ("run_id",), key=("run_id", "sample_id"))

CANDIDATES = Table("candidates", T.StructType([
    _f("score_date", S, False), _f("user_id", S, False), _f("item_id", S, False),
    _f("source", S, False), _f("sample_id", S), _f("label", I),
]), "items to score per user and date; source = neighbour | popular | eval (a valid/test sample)",
    ("score_date",), key=("score_date", "user_id", "item_id"))

SCORES = Table("scores", T.StructType([
    _f("score_date", S, False), _f("user_id", S, False), _f("item_id", S, False),
    _f("score", D, False), _f("exit_layer", I, False), _f("model_version", S, False),
    _f("retriever_version", S), _f("source", S, False), _f("sample_id", S), _f("label", I),
    _f("scored_at", T.TimestampType(), False),
    # added with incremental nights (rows written before read null): sha256[:32] of what
    # determined the score (optirag.scoring.reuse), and the date it was computed on
    _f("score_key", S), _f("scored_on", S),
]), "nightly CTR scores; one partition per score_date, replaced whole by a re-run; a row whose "
    "score_key an earlier date holds keeps that score (scored_on: the date it was computed)",
    ("score_date",),
    key=("score_date", "user_id", "item_id"))

SCORE_REJECTS = Table("score_rejects", T.StructType([
    _f("score_date", S, False), _f("user_id", S), _f("item_id", S), _f("reason", S, False),
]), "candidate rows that could not be scored (unknown user or item), per date", ("score_date",),
    key=("score_date", "user_id", "item_id"))

PUBLISHED = Table("published", T.StructType([
    _f("score_date", S, False), _f("model_version", S, False), _f("rows", L, False),
    _f("published_at", T.TimestampType(), False),
]), "score dates that passed the score-quality gate; analysts read the scores of these dates",
    key=("score_date",))

TABLES: dict[str, Table] = {t.name: t for t in (
    ITEMS, INTERACTIONS, SAMPLES, EDGES, USER_INDEX, ITEM_INDEX, QUARANTINE, MANIFEST, NEIGHBOURS,
    PROMPTS, EVAL_SCORES, CANDIDATES, SCORES, SCORE_REJECTS, PUBLISHED,
)}
INGEST_TABLES = ("items", "interactions", "samples", "edges", "user_index", "item_index",
                 "quarantine", "manifest")


def conform(df: DataFrame, table: Table) -> DataFrame:
    """Select the declared columns in order, cast to the declared types."""
    missing = [f.name for f in table.schema.fields if f.name not in df.columns]
    if missing:
        raise ValueError(f"{table.name}: missing columns {missing}")
    return df.select([F.col(f.name).cast(f.dataType).alias(f.name) for f in table.schema.fields])


def write_table(df: DataFrame, table: Table, dataset_lake: str, replace_where: str | None = None) -> None:
    """Atomic Delta write: overwrite the whole table, or only the rows matching `replace_where`.

    Either way readers see the old version or the new one, never a partial write, and a
    re-run with the same input yields the same content (idempotent).
    """
    writer = conform(df, table).write.format("delta").mode("overwrite")
    if replace_where:  # a column added to the declared schema joins the existing table
        writer = writer.option("replaceWhere", replace_where).option("mergeSchema", "true")
    else:
        writer = writer.option("overwriteSchema", "true")
    if table.partition_by:
        writer = writer.partitionBy(*table.partition_by)
    writer.save(table.path(dataset_lake))


def read_table(spark: SparkSession, table: Table | str, dataset_lake: str) -> DataFrame:
    table = TABLES[table] if isinstance(table, str) else table
    return spark.read.format("delta").load(table.path(dataset_lake))


_ARROW = {
    T.StringType: pa.string(), T.LongType: pa.int64(), T.IntegerType: pa.int32(),
    T.DoubleType: pa.float64(), T.BooleanType: pa.bool_(), T.TimestampType: pa.timestamp("us", tz="UTC"),
    T.BinaryType: pa.binary(),
}


def _arrow_type(dtype: T.DataType) -> pa.DataType:
    if isinstance(dtype, T.ArrayType):
        return pa.list_(_arrow_type(dtype.elementType))
    if isinstance(dtype, T.StructType):
        return pa.struct([pa.field(f.name, _arrow_type(f.dataType), f.nullable) for f in dtype.fields])
    return _ARROW[type(dtype)]


def arrow_schema(table: Table) -> pa.Schema:
    """The table's schema as Arrow, for Ray Data / deltalake writers."""
    return pa.schema([pa.field(f.name, _arrow_type(f.dataType), f.nullable) for f in table.schema.fields])
