"""Is the retriever due for a refresh? (the nightly DAG's light check before candidates)

    manifest.data_version ─ same as the retriever's ─────────────────────> fresh unless old
                          └ changed ─> per-user edge counts (user_index) vs the degrees the
                                       retriever trained on (embeddings.safetensors) ─> share
                                       of the graph's edges changed >= threshold? -> due

Due when no retriever version exists, when that version is at least
``orchestration.retriever_refresh_days`` old on the run's date, or when the ingest's
data_version differs from the one it was trained on *and* at least
``retriever_refresh_edges_share`` of the graph's edges changed since. A small raw drop then
keeps the retriever, its neighbour lists and so every prompt that the drop did not touch: an
incremental night re-scores what changed, not the whole catalogue. New users are cold until
the next refresh (``retriever.unknown_user``). A retriever without saved degrees (the LLM
retriever) refreshes on any data_version change.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow.compute as pc
from safetensors import safe_open

from optirag import registry
from optirag.config import Config
from optirag.orchestration import lake
from optirag.orchestration.config import orchestration_config
from optirag.retrieval.config import EMBEDDINGS_FILE
from optirag.tables import MANIFEST, USER_INDEX


def graph_change(folder: Path, meta: dict, dataset_lake: str) -> tuple[int, int, int] | None:
    """(edges changed, edges the retriever trained on, users whose edge count changed) from
    the lake's per-user edge counts against the retriever's saved degrees (`meta`: its
    meta.json, whose user_ids name them); None when the model has no degrees. An edge
    replaced by another of the same user counts as unchanged."""
    path = Path(folder) / EMBEDDINGS_FILE
    if not path.is_file() or "user_ids" not in meta:
        return None
    with safe_open(str(path), "np") as f:
        if "user_degree" not in f.keys():
            return None
        degree = f.get_tensor("user_degree")
    then = dict(zip(meta["user_ids"], degree.tolist()))
    index = lake.read(USER_INDEX, dataset_lake, columns=["user_id", "n_edges"])
    now = dict(zip(index["user_id"].to_pylist(), index["n_edges"].to_pylist())) if index is not None else {}
    diffs = [abs(now.get(u, 0) - then.get(u, 0)) for u in then.keys() | now.keys()]
    return sum(diffs), sum(then.values()), sum(d > 0 for d in diffs)


def retriever_due(cfg: Config, run_date: str) -> tuple[bool, str]:
    kind = f"retriever/{cfg.retriever.get('name', 'gcn')}"
    ocfg = orchestration_config(cfg)
    manifest = lake.read(MANIFEST, cfg.dataset_lake(), columns=["data_version"])
    data_versions = sorted(pc.unique(manifest["data_version"]).to_pylist()) if manifest is not None else []
    try:
        folder = registry.resolve(cfg, kind)
        meta = registry.read_meta(folder)
    except registry.ModelNotFoundError:
        return True, f"no {kind} version yet"
    created = dt.datetime.fromisoformat(meta["created_at"]).date()
    age = (dt.date.fromisoformat(run_date) - created).days
    if age >= ocfg.retriever_refresh_days:
        return True, f"{kind}/{meta['model_version']} is {age} days old (refresh every {ocfg.retriever_refresh_days})"
    if data_versions == [meta.get("data_version")]:
        return False, f"{kind}/{meta['model_version']} is fresh ({age} days old, data_version unchanged)"
    changed = f"data_version changed: {meta.get('data_version')} -> {','.join(data_versions) or 'none'}"
    threshold = ocfg.retriever_refresh_edges_share
    delta = graph_change(folder, meta, cfg.dataset_lake()) if threshold > 0 else None
    if delta is None:
        return True, changed
    edges, trained_on, users = delta
    share = edges / max(trained_on, 1)
    detail = (f"{changed}; {edges} of {trained_on} edges changed ({share:.2%}, {users} users), "
              f"refresh at {threshold:.2%}")
    return share >= threshold, detail
