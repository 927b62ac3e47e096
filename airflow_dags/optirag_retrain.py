"""optirag_retrain: weekly retraining, promoted only when not worse on valid AUC.

settings -> train_retriever -> build_prompts (all variants) -> train_scorer ->
new_scorer_version -> train_exit_heads (on that version) -> evaluate -> promote. promote compares the new scorer's valid AUC
with the promoted version's (eval_scores) and promotes it, with its exit heads, only
if it is not worse beyond orchestration.promote_tolerance; the nightly DAG scores with
whatever is promoted.
"""
from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from optirag_common import CONF, LIGHT, default_args, job_python, job_task, resolve_settings, setting_params

with DAG(
    dag_id="optirag_retrain",
    description="Weekly retraining: retriever -> prompts -> scorer -> exit heads -> evaluate -> promote",
    schedule=CONF["retrain_schedule"],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    params=setting_params(),
    tags=["optirag", "training"],
    doc_md=__doc__,
) as dag:

    @task.external_python(task_id="new_scorer_version", python=job_python(), expect_airflow=False, **LIGHT)
    def new_scorer_version(settings: dict) -> dict:
        """The version train_scorer just wrote (the newest): the heads must be trained on it,
        not on the promoted one."""
        from optirag import registry
        from optirag.config import load_config

        cfg = load_config(settings["dataset"], env=settings["env"], model=settings["model"],
                          overrides=settings["overrides"], lake=settings["lake"])
        version = registry.versions(cfg, f"scorer/{settings['variant']}")[-1]
        print(f"new scorer version: {version}")
        return {"scorer_version": version}

    settings = resolve_settings()
    variant = ["--variant", "{variant}"]
    scorer = job_task("train_scorer")(settings, args=variant)
    new_version = new_scorer_version(settings)
    (job_task("train_retriever")(settings)
     >> job_task("build_prompts")(settings, args=["--variant", "all"])
     >> scorer >> new_version
     >> job_task("train_exit_heads")(settings, args=[*variant, "--scorer-version", "{scorer_version}"],
                                     values=new_version)
     >> job_task("evaluate")(settings, args=["--variants", "{variant}", "--no-zero-shot",
                                             "--scorer-version", "{scorer_version}"],
                             values=new_version)
     >> job_task("promote", retries=0)(settings, args=variant))
