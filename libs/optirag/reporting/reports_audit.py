"""Does reports/ match its manifest (reports_manifest.FILES)? One line per problem, [] if so.

    files under reports/ --+-- unlisted(): a file FILES does not name, a FILES path that is missing
    FILES ----------------+-- off_record(): `of record` measured on a scorer / data version the eval
                          |                 of record's runs lack; `stale` measured on the record's
                          +-- uncited(): superseded / historical whose note does not name it
                          +-- uncommitted(): `make X` without target X, `python -m jobs.X` without jobs/X.py
"""
from __future__ import annotations

import re
from fnmatch import fnmatch
from pathlib import Path

from optirag.reporting.reports_manifest import (FILES, HISTORICAL, OF_RECORD, STALE, SUPERSEDED, entry_for,
                                                files_on_disk)
from optirag.reporting.versions import Versions, measured_on, of_record, sources


def unlisted(reports: Path) -> list[str]:
    on_disk = files_on_disk(reports)
    out = [f"reports/{rel}: not in the manifest (add it to FILES in reporting/reports_manifest.py)"
           for rel in on_disk if entry_for(rel) is None]
    for key, entry in FILES.items():
        globbed = any(c in key for c in "*?[")
        there = any(fnmatch(rel, key) for rel in on_disk) if globbed else (Path(reports) / key).is_file()
        if not there and not entry.optional:
            out.append(f"reports/{key}: in the manifest but not on disk")
        drawn_from = [s.strip().partition(":")[0] for s in entry.source.split(",") if s.strip()]
        out += [f"reports/{key}: its source reports/{s} is missing"
                for s in drawn_from if there and not (Path(reports) / s).is_file()]
    return out


def _fmt(v: Versions) -> str:
    return ", ".join(sorted(v.scorers) + [f"data {d}" for d in sorted(v.data)])


def off_record(reports: Path) -> list[str]:
    record, out = of_record(reports), []
    if not record.scorers:
        return ["the eval of record names no scorer (runs.<run>.model_version)"]
    for rel, entry in FILES.items():
        if entry.status not in (OF_RECORD, STALE) or not (Path(reports) / rel).is_file():
            continue
        other = measured_on(reports, rel, entry).outside(record)
        if entry.status == OF_RECORD and (other.scorers or other.data):
            out.append(f"reports/{rel}: of record but measured on {_fmt(other)}, not the eval of record's: "
                       "re-measure it, or mark it stale")
        if entry.status == STALE and not (other.scorers or other.data):
            out.append(f"reports/{rel}: marked stale but measured on the versions of record: mark it of record")
    return out


def _names(reports: Path, note: str, name: str) -> bool:
    path = Path(reports) / note
    return path.is_file() and name in path.read_text(encoding="utf-8")


def uncited(reports: Path) -> list[str]:
    out = []
    for rel, entry in FILES.items():
        if entry.status not in (SUPERSEDED, HISTORICAL):
            continue
        notes = [n.strip() for n in entry.note.split(",") if n.strip()]
        if not notes:
            out.append(f"reports/{rel}: {entry.status} but no note cites it (a note, or remove the file)")
        name = Path((sources(rel, entry) or [rel])[0].partition(":")[0]).name   # a PNG: its JSON's name
        out += [f"reports/{rel}: its note reports/{n} does not name {name}" for n in notes
                if not _names(reports, n, name)]
    return out


MAKE_TARGET = re.compile(r"^make ([\w-]+)")
JOB = re.compile(r"python -m jobs\.(\w+)")


def uncommitted(repo: Path) -> list[str]:
    makefile = (Path(repo) / "Makefile").read_text(encoding="utf-8")
    out = []
    for rel, entry in FILES.items():
        cmd = entry.command or ""
        target = MAKE_TARGET.match(cmd)
        if target and not re.search(rf"^{re.escape(target.group(1))}:", makefile, re.M):
            out.append(f"reports/{rel}: no Makefile target {target.group(1)}")
        out += [f"reports/{rel}: no jobs/{job}.py" for job in JOB.findall(cmd)
                if not (Path(repo) / "jobs" / f"{job}.py").is_file()]
    return out


def problems(reports: Path, repo: Path | None = None) -> list[str]:
    repo = repo or Path(reports).resolve().parent
    return unlisted(reports) + off_record(reports) + uncited(reports) + uncommitted(repo)
