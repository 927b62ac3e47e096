"""<reports>/report_jobs.json: every job `make report` ran, with wall time, kept across runs
so the report can say how long regenerating each input took on this machine."""
from __future__ import annotations

import json
import time
from pathlib import Path

from optirag.reporting.inputs import load_json

FILE = "report_jobs.json"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class JobsLog:
    """One `make report` run's entry, rewritten after every job (:meth:`record`), so a run
    that is killed or fails half-way still shows what it finished and how long it took."""

    def __init__(self, reports: Path, lake: str, datasets: list[str]):
        self.path = Path(reports) / FILE
        self.run = {"started_at": _now(), "lake": lake, "datasets": list(datasets)}

    def record(self, jobs: list[dict]) -> None:
        if not jobs:
            return
        doc = load_json(self.path) or {"runs": []}
        entry = {**self.run, "finished_at": _now(), "jobs": jobs,
                 "total_seconds": round(sum(j["seconds"] for j in jobs), 1)}
        doc["runs"] = [r for r in doc["runs"] if r.get("started_at") != self.run["started_at"]] + [entry]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.path)


def read_jobs(reports: Path) -> list[dict]:
    """All logged runs, oldest first ([] when none)."""
    return (load_json(Path(reports) / FILE) or {}).get("runs", [])
