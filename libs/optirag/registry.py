"""Model versions on disk, and which one is promoted.

A model version is a folder ``<store>/<kind>/<version>/`` (safetensors + a ``meta.json``
holding at least ``model_version``, ``data_version`` and ``created_at``), written at once
with :func:`optirag.artifacts.atomic_folder`. ``<store>`` is ``Config.model_store()``.
Kinds in use: ``retriever/gcn``, ``retriever/llm``, ``scorer/<variant>``, ``exit_heads/<variant>``,
and ``scorer_seeds/<variant>/seed=<n>`` + ``exit_heads_seeds/<variant>/seed=<n>`` (the report's
seed replicas; nothing scores with them).

``<store>/<kind>/PROMOTED.json`` names the version the nightly run uses; the retraining
DAG rewrites it (atomically, by rename) only when a new version is not worse. Resolution
order for a stage that needs a model: an explicit version > the promoted one > the newest.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from optirag.config import Config

META_FILE = "meta.json"
PROMOTED_FILE = "PROMOTED.json"


class ModelNotFoundError(FileNotFoundError):
    """No usable model version of a kind; the message says how to make one."""


def kind_dir(cfg: Config, kind: str) -> Path:
    return cfg.model_store() / kind


def version_dir(cfg: Config, kind: str, version: str) -> Path:
    return kind_dir(cfg, kind) / version


def read_meta(folder: Path) -> dict[str, Any]:
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise ModelNotFoundError(f"{folder} is not a model version folder (no {META_FILE})")
    return json.loads(path.read_text())


def versions(cfg: Config, kind: str) -> list[str]:
    """Complete versions of a kind, oldest first (by meta created_at, then name)."""
    root = kind_dir(cfg, kind)
    if not root.is_dir():
        return []
    found = []
    for folder in root.iterdir():
        if folder.name.startswith(".") or not (folder / META_FILE).is_file():
            continue  # temp folders of an atomic write in progress, stray files
        found.append((read_meta(folder).get("created_at", ""), folder.name))
    return [name for _, name in sorted(found)]


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def promote(cfg: Config, kind: str, version: str, **info: Any) -> dict[str, Any]:
    """Make `version` the one the nightly run uses; `info` (e.g. valid AUC) is kept beside it."""
    if not (version_dir(cfg, kind, version) / META_FILE).is_file():
        raise ModelNotFoundError(f"cannot promote {kind}/{version}: no such version folder")
    record = {"version": version, "promoted_at": dt.datetime.now(dt.timezone.utc)
              .isoformat(timespec="seconds"), **info}
    _write_json_atomic(kind_dir(cfg, kind) / PROMOTED_FILE, record)
    return record


def promoted(cfg: Config, kind: str) -> dict[str, Any] | None:
    path = kind_dir(cfg, kind) / PROMOTED_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def resolve(cfg: Config, kind: str, version: str | None = None) -> Path:
    """The folder of `version`, else the promoted version, else the newest one."""
    if version is None:
        record = promoted(cfg, kind)
        if record is not None:
            version = record["version"]
        else:
            found = versions(cfg, kind)
            if not found:
                raise ModelNotFoundError(
                    f"no {kind} model under {kind_dir(cfg, kind)}; train one first "
                    f"(see README: jobs.train_retriever / train_scorer / train_exit_heads)")
            version = found[-1]
    folder = version_dir(cfg, kind, version)
    if not (folder / META_FILE).is_file():
        raise ModelNotFoundError(f"model version {kind}/{version} not found under {kind_dir(cfg, kind)}")
    return folder
