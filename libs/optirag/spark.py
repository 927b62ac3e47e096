"""The one way to get a SparkSession with Delta Lake.

Locally the Delta jars come from a cache that `make setup` fills from Maven Central
(:func:`fetch_delta_jars`), so Spark starts offline. Their version is read from the
installed `delta-spark` Python package, so the jars always match the pin.
"""
from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from optirag import faults
from optirag.config import Config, ConfigError, SparkConfig

DELTA_EXTENSIONS = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def delta_version() -> str:
    return importlib.metadata.version("delta-spark")


def delta_artifacts(spark_conf: SparkConfig) -> list[str]:
    """Maven coordinates of the jars Spark needs for Delta (delta-spark + delta-storage)."""
    version = delta_version()
    return [
        f"io.delta:delta-spark_{spark_conf.scala_suffix}:{version}",
        f"io.delta:delta-storage:{version}",
    ]


def _jar_name(coordinate: str) -> str:
    _, artifact, version = coordinate.split(":")
    return f"{artifact}-{version}.jar"


def cached_jars(spark_conf: SparkConfig) -> list[str]:
    folder = Path(os.path.expanduser(spark_conf.jars_dir))
    return [str(folder / _jar_name(c)) for c in delta_artifacts(spark_conf)]


def fetch_delta_jars(spark_conf: SparkConfig) -> list[str]:
    """Idempotently copy the Delta jars from Maven Central into `jars_dir` with Maven."""
    if spark_conf.delta_jars != "cache":
        print(f"delta jars: skipped (spark.delta_jars={spark_conf.delta_jars})")
        return []
    folder = Path(os.path.expanduser(spark_conf.jars_dir))
    folder.mkdir(parents=True, exist_ok=True)
    for coordinate, path in zip(delta_artifacts(spark_conf), cached_jars(spark_conf)):
        if Path(path).is_file():
            continue
        mvn = shutil.which("mvn")
        if mvn is None:
            raise ConfigError("Maven (mvn) is needed once to fetch the Delta jars; install it")
        print(f"delta jars: fetching {coordinate}", flush=True)
        subprocess.run(
            [mvn, "-q", "-B", "dependency:copy", f"-Dartifact={coordinate}",
             f"-DoutputDirectory={folder}"],
            check=True,
        )
    return cached_jars(spark_conf)


def submitted() -> bool:
    """True when spark-submit started this driver (its JVM is up, launched with the submit
    command's --master, --jars/--packages and --py-files, which then decide)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def _builder(spark_conf: SparkConfig) -> SparkSession.Builder:
    builder = SparkSession.builder.appName(spark_conf.app_name)
    # Under spark-submit the driver's JVM runs already: its master is the submit command's,
    # and jars added now would reach the executors but not the driver's classpath, so Delta
    # comes with the submit command (--jars / --packages) and spark.delta_jars is not used.
    delta_jars = "provided" if submitted() else spark_conf.delta_jars
    if spark_conf.master and not submitted():
        builder = builder.master(spark_conf.master)
    if delta_jars == "cache":
        jars = cached_jars(spark_conf)
        missing = [j for j in jars if not Path(j).is_file()]
        if missing:
            raise ConfigError(
                f"Delta jars missing from {spark_conf.jars_dir} ({', '.join(map(os.path.basename, missing))}): run `make setup`"
            )
        builder = builder.config("spark.jars", ",".join(jars))
    elif delta_jars == "packages":
        builder = builder.config("spark.jars.packages", ",".join(delta_artifacts(spark_conf)))
    for key, value in {**DELTA_EXTENSIONS, **spark_conf.conf}.items():
        builder = builder.config(key, value)
    # Armed fault points (optirag.faults) must fire in the executors' Python workers too.
    for key, value in faults.environment().items():
        builder = builder.config(f"spark.executorEnv.{key}", value)
    return builder


def get_spark(config: Config | SparkConfig | None = None) -> SparkSession:
    """A SparkSession configured for Delta; with no argument, the local default."""
    if isinstance(config, Config):
        spark_conf = config.spark
    elif config is None:
        spark_conf = SparkConfig(conf={"spark.sql.shuffle.partitions": "4", "spark.ui.enabled": "false"})
    else:
        spark_conf = config
    # The workers must run the driver's interpreter (the job venv), not the system one.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    spark = _builder(spark_conf).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark

