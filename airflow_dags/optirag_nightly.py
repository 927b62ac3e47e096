"""optirag_nightly: score today's candidates and publish them once they pass the gates.

settings -> ingest (the day's raw drop) -> check_ingest (GE gate) -> retriever_due
(branch: refresh the retriever when its data_version changed or it is old) ->
[train_retriever] -> build_candidates -> score (promoted scorer + exit heads) ->
check_scores (GE gate) -> publish, and beside publish night_report (the night's page,
optirag.reporting.night). A failed gate fails its task, so publish does not run and the
gate's log lists every failing expectation; night_report runs whatever the gate said
(all_done) and shows them too. publish stays a leaf: a run whose publish did not run is
failed even when the page was written (Airflow fails a run when any leaf failed or
upstream_failed).
"""
from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from optirag_common import CONF, LIGHT, default_args, job_python, job_task, resolve_settings, setting_params

with DAG(
    dag_id="optirag_nightly",
    description="Nightly CTR scoring: ingest -> gate -> retriever refresh -> candidates -> score -> gate -> "
                "publish + the night's page",
    schedule=CONF["nightly_schedule"],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,                 # past dates go through optirag_backfill
    max_active_runs=1,             # runs share the lake's non-partitioned tables
    default_args=default_args(),
    params=setting_params(),
    tags=["optirag", "scoring", "nightly"],
    doc_md=__doc__,
) as dag:

    @task.branch_external_python(task_id="retriever_due", python=job_python(), expect_airflow=False,
                                 **LIGHT)
    def retriever_due(settings: dict, run_date: str) -> list[str]:
        """Light check in the job venv: the registry's meta.json and the manifest's data_version."""
        from optirag.config import load_config
        from optirag.orchestration.freshness import retriever_due as due

        cfg = load_config(settings["dataset"], env=settings["env"], model=settings["model"],
                          overrides=settings["overrides"], lake=settings["lake"])
        is_due, why = due(cfg, run_date)
        print(f"retriever {'DUE' if is_due else 'fresh'}: {why}")
        return ["train_retriever", "build_candidates"] if is_due else ["build_candidates"]

    settings = resolve_settings()
    ingest = job_task("ingest")(settings, args=["--raw", "{raw_dir}"])
    check_ingest = job_task("check", task_id="check_ingest", retries=0)(settings, args=["--suite", "ingest"])
    due = retriever_due(settings, "{{ ds }}")
    train_retriever = job_task("train_retriever")(settings)
    candidates = job_task("build_candidates", trigger_rule="none_failed_min_one_success")(settings, date="{{ ds }}")
    score = job_task("score")(settings, date="{{ ds }}")
    check_scores = job_task("check", task_id="check_scores", retries=0)(
        settings, date="{{ ds }}", args=["--suite", "scores"])
    publish = job_task("publish")(settings, date="{{ ds }}")
    night_report = job_task("night_report", trigger_rule="all_done")(settings, date="{{ ds }}")

    ingest >> check_ingest >> due >> [train_retriever, candidates]
    train_retriever >> candidates >> score >> check_scores >> [publish, night_report]
