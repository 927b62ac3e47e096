"""Every table of a real lake reads the same in Spark, delta-rs and DuckDB.

The lake: the session's small BookCrossing lake (real ingest, with a quarantined line that
is not UTF-8, and GCN neighbours) plus, for one date, real candidates (one unknown user
added, so score_rejects has a row), Ray Data scoring with the tiny model, publish, the
`none` prompts and a zero-shot evaluation. Then all 15 tables exist and none is empty.
"""
from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pytest
from pyspark.sql import functions as F

from optirag.config import load_config
from optirag.interop import protocol, read_deltalake, read_duckdb
from optirag.tables import CANDIDATES, TABLES, arrow_schema, read_table, write_table

DATE = "2026-11-23"
DATA_MODEL_DOC = Path(__file__).resolve().parents[1] / "docs" / "data-model.md"


@pytest.fixture(scope="module")
def full_lake(spark, small_lake, tmp_path_factory):
    import ray

    from optirag.evaluation.job import evaluate
    from optirag.orchestration.publish import publish
    from optirag.prompts.builder import build_prompts
    from optirag.scoring.candidates import write_candidates
    from optirag.scoring.job import run_scoring

    reports = tmp_path_factory.mktemp("interop_reports")
    cfg = load_config("bookcrossing", model="tiny", lake=small_lake, overrides=[
        "candidates.per_user=3", "scoring.scorer_version=base", "scoring.early_exit=false",
        "scoring.batch_size=8", "scoring.block_rows=64", "scoring.actor_num_cpus=0.5",
        "evaluation.torch_threads=1", f"evaluation.reports_dir={reports}"])
    lake = cfg.dataset_lake()
    write_candidates(spark, cfg, DATE)
    day = read_table(spark, CANDIDATES, lake).where(F.col("score_date") == DATE)
    unknown = day.limit(1).withColumn("user_id", F.lit("no-such-user")).withColumn("source", F.lit("popular"))
    write_table(day.unionByName(unknown), CANDIDATES, lake, replace_where=f"score_date = '{DATE}'")
    started_ray = not ray.is_initialized()
    try:
        run_scoring(cfg, DATE, spark)
    finally:
        if started_ray:
            ray.shutdown()
    publish(cfg, DATE)
    build_prompts(spark, cfg, "none")
    evaluate(spark, cfg, variants=["none"])
    return lake


def _type(t: pa.DataType) -> str:
    """An Arrow type in Spark's simpleString words (string/large_string/view alike)."""
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"array<{_type(t.value_type)}>"
    if pa.types.is_struct(t):
        return "struct<" + ",".join(f"{f.name}:{_type(f.type)}" for f in t) + ">"
    if pa.types.is_timestamp(t):
        return "timestamp"
    for name, check in (("string", pa.types.is_string), ("string", pa.types.is_large_string),
                        ("string", pa.types.is_string_view), ("binary", pa.types.is_binary),
                        ("binary", pa.types.is_large_binary), ("bigint", pa.types.is_int64),
                        ("int", pa.types.is_int32), ("double", pa.types.is_float64),
                        ("boolean", pa.types.is_boolean)):
        if check(t):
            return name
    return str(t)


def _comparable(data: pa.Table, table) -> pa.Table:
    """Rows sorted by the table's key, cast to its declared Arrow types (all nullable)."""
    schema = pa.schema([f.with_nullable(True) for f in arrow_schema(table)])
    return data.select(schema.names).cast(schema).sort_by([(k, "ascending") for k in table.key]).combine_chunks()


def test_every_table_reads_the_same_in_spark_deltalake_and_duckdb(spark, full_lake):
    counts = {}
    for name, table in TABLES.items():
        df = read_table(spark, table, full_lake)
        declared = [(f.name, f.dataType.simpleString()) for f in table.schema.fields]
        assert [(f.name, f.dataType.simpleString()) for f in df.schema.fields] == declared, name
        key_rows = df.groupBy(*table.key).count()
        assert key_rows.where("count > 1").count() == 0, f"{name}: key {table.key} not unique"
        reference = _comparable(df.toArrow(), table)
        assert reference.num_rows > 0, f"{name} is empty: the run should fill every table"
        for reader in (read_deltalake, read_duckdb):
            data = reader(table, full_lake)
            got = [(f.name, _type(f.type)) for f in data.schema]
            assert got == declared, f"{name} as {reader.__name__}: {got}"
            data = _comparable(data, table)
            assert data.num_rows == reference.num_rows, f"{name} as {reader.__name__}"
            assert data.select(table.key).equals(reference.select(table.key)), f"{name} keys, {reader.__name__}"
            assert data.equals(reference), f"{name}: rows differ as {reader.__name__}"
        counts[name] = reference.num_rows
    print("rows per table (Spark = delta-rs = DuckDB):", counts)


def test_docs_state_each_table_s_delta_protocol(full_lake):
    """docs/data-model.md's "Delta protocol" table is what this lake's tables really require."""
    from deltalake import DeltaTable

    section = DATA_MODEL_DOC.read_text().split("## Delta protocol", 1)[1].split("\n#", 1)[0]
    stated = {}
    for m in re.finditer(r"^\| `(\w+)` \| (\d+) \| (\d+) \| ([^|]*)\|", section, re.M):
        features = sorted(re.findall(r"`(\w+)`", m.group(4)))
        stated[m.group(1)] = (int(m.group(2)), int(m.group(3)), features)
    actual = {}
    for name, table in TABLES.items():
        p = protocol(DeltaTable(table.path(full_lake)))
        features = sorted(set(p["reader_features"]) | set(p["writer_features"]))
        actual[name] = (p["min_reader"], p["min_writer"], features)
    assert stated == actual
