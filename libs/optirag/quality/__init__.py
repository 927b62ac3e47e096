"""Data-quality gates: great-expectations suites (suites, scores), their runner, and where
each gate's JSON report lies (read by the night's page without loading great-expectations)."""
from __future__ import annotations

import os

from optirag.config import Config


def gate_report_path(cfg: Config, name: str) -> str:
    """`<quality.reports_dir>/<dataset>-<name>.json`; name: "ingest" or "scores-<date>"."""
    return os.path.join(cfg.quality.reports_dir, f"{cfg.dataset.name}-{name}.json")
