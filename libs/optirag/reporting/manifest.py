"""The `manifest` table's rows per dataset (data checksums for the environment section)."""
from __future__ import annotations

from optirag import tables
from optirag.config import load_config


def read_manifests(lake: str, datasets: list[str], env: str = "local") -> tuple[dict[str, list[dict]], list[str]]:
    from optirag.spark import get_spark

    rows, problems, spark = {}, [], None
    for d in datasets:
        cfg = load_config(d, env=env, lake=lake)
        spark = spark or get_spark(cfg)
        try:
            df = tables.read_table(spark, tables.MANIFEST, cfg.dataset_lake())
            rows[d] = [r.asDict() for r in df.orderBy("source_file").collect()]
        except Exception as e:  # noqa: BLE001 - a missing table is a "not run" row, not a crash
            problems.append(f"{d}: manifest unreadable ({type(e).__name__})")
    return rows, problems
