"""Every Delta table of a dataset as Spark, delta-rs and DuckDB read it, with its protocol.

python -m jobs.describe_lake --dataset bookcrossing --lake /tmp/lake
Prints a Markdown table: rows per reader, the Delta reader/writer versions and table
features (which clients can open the table). Exit 1 when a reader disagrees with Spark.
"""
import argparse

from optirag.cli import run_job
from optirag.config import add_common_args, config_from_args


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    cfg = config_from_args(parser.parse_args())
    from optirag.interop import describe, markdown
    from optirag.spark import get_spark
    from optirag.tables import read_table

    lake = cfg.dataset_lake()
    rows = describe(lake)
    spark = get_spark(cfg)
    spark_rows = {r["table"]: read_table(spark, r["table"], lake).count() for r in rows}
    print(markdown(rows, spark_rows))
    differ = [r["table"] for r in rows if not spark_rows[r["table"]] == r["rows_deltalake"] == r["rows_duckdb"]]
    if differ:
        print(f"describe_lake: row counts differ between readers: {', '.join(differ)}")
    return 1 if differ else 0


if __name__ == "__main__":
    run_job("describe_lake", main)
