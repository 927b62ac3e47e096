"""What every job entry point shares: logging, and one-line errors with a non-zero exit."""
from __future__ import annotations

import logging
import os
import sys
from typing import Callable

from optirag.config import ConfigError

# Errors a user can fix from the message alone: printed as one line, exit code 2.
USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, FileNotFoundError)


def register_user_error(exc_type: type[BaseException]) -> None:
    global USER_ERRORS
    USER_ERRORS = USER_ERRORS + (exc_type,)


def _not_py4j_retry(record: logging.LogRecord) -> bool:
    """py4j logs a stale pooled connection to the JVM at INFO on the root logger, with a
    traceback, and then retries it (a send that really fails is logged at ERROR): after
    Ray starts beside a Spark session this printed two alarming tracebacks per job."""
    return not (record.levelno == logging.INFO and record.getMessage() == "Exception while sending command.")


def _log_friendly_environment() -> None:
    """Settings read by the libraries (and the Ray workers, which inherit the environment)
    that keep a job log readable: no redrawn progress bars (carriage returns) when the
    output is not a terminal; the jobs log their own progress lines."""
    if not (sys.stdout.isatty() and sys.stderr.isatty()):
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' "Loading weights"


def run_job(name: str, main: Callable[[], int | None]) -> None:
    _log_friendly_environment()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger().addFilter(_not_py4j_retry)
    for noisy in ("py4j", "great_expectations", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        code = main()
    except USER_ERRORS as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        code = 2
    _exit(code or 0)


def _exit(code: int) -> None:
    """Stop Ray and Spark, flush, and end the process without the interpreter's teardown.

    The job's work is committed by now; native thread pools (Arrow, deltalake) can abort
    that teardown ("terminate called without an active exception", exit -6), which turned
    a finished publish into a failed Airflow task. Exceptions other than user errors never
    get here: they keep Python's traceback and exit code 1."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
    if "pyspark" in sys.modules:
        from pyspark.sql import SparkSession

        spark = SparkSession.getActiveSession()
        if spark is not None:
            spark.stop()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
