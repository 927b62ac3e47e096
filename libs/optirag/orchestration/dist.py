"""`make dist`: what a Spark job ships to a cluster, the way spark-submit documents it.

    dist/optirag.zip   the optirag package (spark-submit --py-files: on the driver's and the
                       executors' sys.path, ahead of anything installed there)
    dist/jars/*.jar    the Delta jars matching the installed delta-spark (spark-submit --jars:
                       on the driver's classpath and fetched by every executor), copied from
                       the cache `make setup` fills, so submitting needs no network

Rebuilt from scratch each time (a few hundred kB), so it never ships stale code.
"""
from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from optirag.config import SparkConfig
from optirag.spark import fetch_delta_jars


def zip_package(package: Path, out: Path) -> Path:
    """`package` as the zip spark-submit ships with --py-files (zipimport finds only regular
    packages: each folder needs its __init__.py, which tests/test_launch.py checks)."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(package.rglob("*.py")):
            zf.write(path, path.relative_to(package.parent).as_posix())
    return out


def build_dist(repo: Path, spark_conf: SparkConfig) -> dict[str, list[str] | str]:
    out = repo / "dist"
    shutil.rmtree(out, ignore_errors=True)
    (out / "jars").mkdir(parents=True)
    zip_package(repo / "libs" / "optirag", out / "optirag.zip")
    jars = [shutil.copy2(jar, out / "jars") for jar in fetch_delta_jars(spark_conf.model_copy(update={"delta_jars": "cache"}))]
    return {"zip": str(out / "optirag.zip"), "jars": [str(j) for j in jars]}
