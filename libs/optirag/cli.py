"""What every job entry point shares: logging, and one-line errors with a non-zero exit."""
from __future__ import annotations

import logging
import sys
from typing import Callable

from optirag.config import ConfigError

# Errors a user can fix from the message alone: printed as one line, exit code 2.
USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, FileNotFoundError)


def register_user_error(exc_type: type[BaseException]) -> None:
    global USER_ERRORS
    USER_ERRORS = USER_ERRORS + (exc_type,)


def run_job(name: str, main: Callable[[], int | None]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    for noisy in ("py4j", "great_expectations", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        code = main()
    except USER_ERRORS as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code or 0)
