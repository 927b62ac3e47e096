"""Is the retriever due for a refresh? (the nightly DAG's light check before candidates)

Due when no retriever version exists, when the ingest's data_version (``manifest``)
differs from the one the current version was trained on, or when that version is at
least ``orchestration.retriever_refresh_days`` old on the run's date.
"""
from __future__ import annotations

import datetime as dt

import pyarrow.compute as pc

from optirag import registry
from optirag.config import Config
from optirag.orchestration import lake
from optirag.orchestration.config import orchestration_config
from optirag.tables import MANIFEST


def retriever_due(cfg: Config, run_date: str) -> tuple[bool, str]:
    kind = f"retriever/{cfg.retriever.get('name', 'gcn')}"
    manifest = lake.read(MANIFEST, cfg.dataset_lake(), columns=["data_version"])
    data_versions = sorted(pc.unique(manifest["data_version"]).to_pylist()) if manifest is not None else []
    try:
        meta = registry.read_meta(registry.resolve(cfg, kind))
    except registry.ModelNotFoundError:
        return True, f"no {kind} version yet"
    if data_versions != [meta.get("data_version")]:
        return True, f"data_version changed: {meta.get('data_version')} -> {','.join(data_versions) or 'none'}"
    created = dt.datetime.fromisoformat(meta["created_at"]).date()
    age = (dt.date.fromisoformat(run_date) - created).days
    every = orchestration_config(cfg).retriever_refresh_days
    if age >= every:
        return True, f"{kind}/{meta['model_version']} is {age} days old (refresh every {every})"
    return False, f"{kind}/{meta['model_version']} is fresh ({age} days old, data_version unchanged)"
