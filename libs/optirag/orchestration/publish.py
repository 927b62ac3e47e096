"""Publish a score date: mark its scores partition as the current one for analysts.

Writes (or replaces) the date's one row of ``published``. Idempotent: re-publishing the
same scores (same model_version and row count) leaves the table untouched, so a re-run
keeps the original published_at. Refuses a date without scores. The score-quality gate
runs before this in the DAGs (jobs.check --suite scores).
"""
from __future__ import annotations

import datetime as dt

import pyarrow.compute as pc

from optirag.config import Config
from optirag.orchestration import lake
from optirag.tables import PUBLISHED, SCORES


class NothingToPublishError(FileNotFoundError):
    """The date has no scores (or inconsistent ones); the message says what to run."""


def publish(cfg: Config, score_date: str) -> dict:
    dataset_lake = cfg.dataset_lake()
    scores = lake.read(SCORES, dataset_lake, filters=[("score_date", "=", score_date)],
                       columns=["model_version"])
    if scores is None or scores.num_rows == 0:
        raise NothingToPublishError(f"no scores for {score_date} in {SCORES.path(dataset_lake)}; "
                                    f"run jobs.score --date {score_date} first")
    versions = sorted(pc.unique(scores["model_version"]).to_pylist())
    if len(versions) != 1:
        raise NothingToPublishError(f"scores of {score_date} mix model versions {versions}; re-score the date")
    row = {"score_date": score_date, "model_version": versions[0], "rows": scores.num_rows}
    current = lake.read(PUBLISHED, dataset_lake, filters=[("score_date", "=", score_date)])
    same = current is not None and [{k: r[k] for k in row} for r in current.to_pylist()] == [row]
    if same:
        return {**row, "published_at": current.to_pylist()[0]["published_at"].isoformat(), "changed": False}
    row["published_at"] = dt.datetime.now(dt.timezone.utc)
    lake.replace_rows([row], PUBLISHED, dataset_lake, predicate=f"score_date = '{score_date}'")
    return {**row, "published_at": row["published_at"].isoformat(), "changed": True}
