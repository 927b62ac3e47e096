"""Incremental nights: a row whose score inputs did not change keeps its earlier score.

    driver   key_versions(spec)            the model part of every row's key: scorer
                                           version and serving settings, heads version,
                                           the exit rule served (once per run)
             earlier_scores(lake, date)    the latest earlier date that has keys: its
                                           (score_key, score, exit_layer, scored_on)
    actor    score_key(versions, p, s)     + the row's prefix and suffix token ids
             Reuse(earlier)                AttachPrompts fills score, exit_layer, scored_on
                                           of the rows whose key is there; ExitScorer
                                           passes filled rows through and scores the rest

A row's score is a function of its token sequence and of the model that scores it (up to
float reassociation between batch compositions: see docs/scoring.md), so an equal key is
an equal score. `scored_on` is the date the score was computed; a reused row carries the
earlier row's, so a score copied night after night still names the night it was computed.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# what an earlier night's row gives a reused one (score_key: what it is looked up by)
REUSED = ["score", "exit_layer", "scored_on"]
# model settings that change a score besides the weights (tokens are in the row's part)
SERVING = ("dtype", "device", "attn_implementation", "max_length", "answer")


def key_versions(spec: dict[str, Any]) -> str:
    """What the served model contributes to every key, from resolve_models' spec."""
    part: dict[str, Any] = {"model_version": spec["model_version"], "early_exit": spec["early_exit"],
                            "serving": {k: spec["model_cfg"].get(k) for k in SERVING}}
    if spec["heads_dir"]:  # at full depth neither heads nor rule play any part
        rule = spec["early_exit_cfg"]
        # the heads' <variant>/<version>, not the folder: a moved model store keeps its keys
        part["heads"] = "/".join(Path(spec["heads_dir"]).parts[-2:])
        part["rule"] = {k: rule.get(k) for k in ("rule", "tau", "window", "min_previous", "confidence")}
    return json.dumps(part, sort_keys=True)


def score_key(versions: str, prefix_ids: Sequence[int], suffix_ids: Sequence[int]) -> str:
    """32 hex chars of sha256 over the versions and the row's token ids (lengths included,
    so the same tokens split otherwise between prefix and suffix make another key)."""
    digest = hashlib.sha256(versions.encode())
    for ids in (prefix_ids, suffix_ids):
        digest.update(len(ids).to_bytes(4, "little"))
        digest.update(np.asarray(ids, dtype="<i4").tobytes())
    return digest.hexdigest()[:32]


def earlier_scores(dataset_lake: str, score_date: str) -> pd.DataFrame | None:
    """(score_key, score, exit_layer, scored_on) of the latest date before `score_date` whose
    rows have keys (dates scored before keys existed are skipped), one row per key; None
    when there is none."""
    from deltalake import DeltaTable

    from optirag.orchestration import lake
    from optirag.tables import SCORES

    dates = [d for d in lake.partition_values(SCORES, dataset_lake, "score_date") if d < score_date]
    if not dates:
        return None
    if "score_key" not in {f.name for f in DeltaTable(lake.uri(SCORES.path(dataset_lake))).schema().fields}:
        return None  # a table from before keys: its next commit adds the column
    for date in reversed(dates):
        rows = lake.read(SCORES, dataset_lake, filters=[("score_date", "=", date)],
                         columns=["score_key", *REUSED]).to_pandas()
        rows = rows[rows["score_key"].notna()]
        if len(rows):
            return rows.drop_duplicates("score_key").reset_index(drop=True)
    return None


class Reuse:
    """Looks keys up in an earlier night's scores (in an actor; built once per actor)."""

    def __init__(self, earlier: pd.DataFrame | None):
        self.earlier = earlier if earlier is not None else pd.DataFrame(columns=["score_key", *REUSED])
        self.index = pd.Index(self.earlier["score_key"])

    def fill(self, batch: pd.DataFrame) -> np.ndarray:
        """Set score, exit_layer, scored_on of `batch` (NaN, -1, None where unknown) from the
        earlier rows with its score_key; returns which rows were filled."""
        at = self.index.get_indexer(batch["score_key"]) if len(self.index) else np.full(len(batch), -1)
        found = at >= 0
        batch["score"] = np.nan
        batch["exit_layer"] = -1
        batch["scored_on"] = None
        if found.any():
            hits = self.earlier.iloc[at[found]]
            batch.loc[found, "score"] = hits["score"].to_numpy()
            batch.loc[found, "exit_layer"] = hits["exit_layer"].to_numpy()
            batch.loc[found, "scored_on"] = hits["scored_on"].to_numpy()
        return found


def reused_rows(batch: pd.DataFrame) -> int:
    """Rows of a finished batch whose score was copied (scored on an earlier date)."""
    return int((batch["reason"].isna() & (batch["scored_on"] != batch["score_date"])).sum())
