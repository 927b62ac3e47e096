"""optirag_backfill: (re)score a range of dates, each date on its own.

Manual, params start_date and end_date (inclusive) plus the usual settings. One mapped
task group per date: build_candidates -> score -> check_scores -> publish, so a date
that fails its gate stops alone; at most orchestration.backfill_max_active dates run at
once. Every step replaces exactly its date's partition (publish keeps an identical
row), so re-running a range changes nothing.
"""
from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param, task, task_group

from optirag_common import CONF, LIGHT, default_args, job_task, resolve_settings, setting_params

MAX_ACTIVE = CONF["backfill_max_active"]

with DAG(
    dag_id="optirag_backfill",
    description="Score and publish every date in [start_date, end_date], dates independent",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    max_active_tasks=2 * MAX_ACTIVE,
    default_args=default_args(),
    params=setting_params(
        start_date=Param(None, type=["null", "string"], format="date", description="first date, YYYY-MM-DD"),
        end_date=Param(None, type=["null", "string"], format="date", description="last date (inclusive)"),
    ),
    tags=["optirag", "scoring", "backfill"],
    doc_md=__doc__,
) as dag:

    @task(**LIGHT)
    def score_dates(params: dict | None = None) -> list[str]:
        import datetime as dt

        if not params.get("start_date") or not params.get("end_date"):
            raise ValueError("set the params start_date and end_date (YYYY-MM-DD)")
        start, end = (dt.date.fromisoformat(params[k]) for k in ("start_date", "end_date"))
        if end < start:
            raise ValueError(f"end_date {end} is before start_date {start}")
        return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]

    settings = resolve_settings()

    @task_group(group_id="score_date")
    def score_date(date: str):
        bounded = {"max_active_tis_per_dagrun": MAX_ACTIVE}
        (job_task("build_candidates", **bounded)(settings, date=date)
         >> job_task("score", **bounded)(settings, date=date)
         >> job_task("check", task_id="check_scores", retries=0, **bounded)(settings, date=date, args=["--suite", "scores"])
         >> job_task("publish", **bounded)(settings, date=date))

    score_date.expand(date=score_dates())
