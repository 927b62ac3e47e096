"""<reports>/report_jobs.json: every job `make report` ran, with wall time, kept across runs
so the report can say how long regenerating each input took on this machine."""
from __future__ import annotations

import json
import time
from pathlib import Path

from optirag.reporting.inputs import load_json

FILE = "report_jobs.json"


def append_jobs(reports: Path, lake: str, datasets: list[str], jobs: list[dict]) -> None:
    if not jobs:
        return
    path = Path(reports) / FILE
    doc = load_json(path) or {"runs": []}
    doc["runs"].append({"finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "lake": lake, "datasets": datasets, "jobs": jobs,
                        "total_seconds": round(sum(j["seconds"] for j in jobs), 1)})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_jobs(reports: Path) -> list[dict]:
    """All logged runs, oldest first ([] when none)."""
    return (load_json(Path(reports) / FILE) or {}).get("runs", [])
