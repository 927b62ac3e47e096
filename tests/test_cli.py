"""Job entry points: py4j's retried-connection noise is dropped, real py4j errors are kept."""
import logging

from optirag.cli import _not_py4j_retry


def test_py4j_retry_info_is_dropped_errors_are_kept(caplog):
    root = logging.getLogger()
    root.addFilter(_not_py4j_retry)
    try:
        with caplog.at_level(logging.INFO):
            logging.info("Exception while sending command.")       # what py4j logs before its retry
            logging.error("Exception while sending command.")      # a send that failed for good
            logging.info("an ordinary message")
    finally:
        root.removeFilter(_not_py4j_retry)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.ERROR, "Exception while sending command."), (logging.INFO, "an ordinary message")]
