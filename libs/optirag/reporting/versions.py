"""The scorer and data versions a file under reports/ was measured on, read from the file.

scorers: every `lora-<12 hex>` the JSON names (model_version, scorer, model, ...); data: every
`data_version` value in it. A PNG or a figure: those of the JSON it is drawn from
(Entry.source, or one sub-tree of it: "bench/early_exit.json:datasets.bookcrossing").
The versions of record: those of the eval of record's runs (EVAL_OF_RECORD).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optirag.reporting.inputs import load_json, pick
from optirag.reporting.reports_manifest import EVAL_OF_RECORD, Entry

SCORER = re.compile(r"lora-[0-9a-f]{12}")


@dataclass(frozen=True)
class Versions:
    scorers: frozenset[str] = frozenset()
    data: frozenset[str] = frozenset()

    def __or__(self, other: Versions) -> Versions:
        return Versions(self.scorers | other.scorers, self.data | other.data)

    def outside(self, record: Versions) -> Versions:
        """The versions here that are not the record's."""
        return Versions(self.scorers - record.scorers, self.data - record.data)


def _values(node: Any, key: str):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key and isinstance(v, str):
                yield v
            yield from _values(v, key)
    elif isinstance(node, list):
        for v in node:
            yield from _values(v, key)


def of_json(data: Any) -> Versions:
    return Versions(frozenset(SCORER.findall(json.dumps(data))), frozenset(_values(data, "data_version")))


def sources(rel: str, entry: Entry) -> list[str]:
    """Where a file's versions are read: its source(s), else the file itself if it is JSON."""
    named = [s.strip() for s in entry.source.split(",") if s.strip()]
    return named or ([rel] if rel.endswith(".json") else [])


def measured_on(reports: Path, rel: str, entry: Entry) -> Versions:
    out = Versions()
    for src in sources(rel, entry):
        path, _, part = src.partition(":")
        data = load_json(Path(reports) / path)   # a missing source is the audit's to report
        out |= of_json(pick(data, part) if part else data)
    return out


def of_record(reports: Path) -> Versions:
    """Scorers and data versions of the eval of record's runs (runs.<run>.model_version)."""
    out = Versions()
    for rel in EVAL_OF_RECORD:
        doc = load_json(Path(reports) / rel) or {}
        for run in (doc.get("runs") or {}).values():
            out |= Versions(frozenset(SCORER.findall(str(run.get("model_version", "")))),
                            frozenset(v for v in (run.get("data_version"), doc.get("data_version")) if v))
    return out
