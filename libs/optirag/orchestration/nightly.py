"""The nightly chain without Airflow, every step through the launchers of the run's env.

    ingest -> check (ingest gate) -> [train_retriever, when due: the DAG's retriever_due] ->
    [build_prompts -> train_scorer ->
    train_exit_heads, only while the model store lacks them] -> build_candidates -> score
    -> check (scores gate) -> night_report (whatever happened before it) -> publish

Each step is the shell command the optirag_nightly DAG's task runs
(optirag.orchestration.launch), so ``--env demo`` runs the demo-size chain locally and
``--env demo+localcluster`` the same chain as spark-submit / Ray job submissions to the local
clusters: the two wall times compare the platforms, not two code paths. Stops at the first
failing step, but the night's page is written first, as the DAG's all_done night_report task
does, and a page that fails does not stop publish (they are siblings in the DAG); returns
each step's seconds.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from optirag import registry
from optirag.config import Config
from optirag.orchestration.freshness import retriever_due
from optirag.orchestration.launch import job_command

HEAD = (("ingest", "ingest", ("--raw", "{raw}")), ("check_ingest", "check", ("--suite", "ingest")))
RETRIEVER = ("retriever", "train_retriever", ())
TRAIN = (("prompts", "build_prompts", ("--variant", "{variant}")),
         ("train_scorer", "train_scorer", ("--variant", "{variant}")),
         ("train_exit_heads", "train_exit_heads", ("--variant", "{variant}")))
TAIL = (("candidates", "build_candidates", ("--date", "{date}")), ("score", "score", ("--date", "{date}")),
        ("check_scores", "check", ("--suite", "scores", "--date", "{date}")))
REPORT = ("night_report", "night_report", ("--date", "{date}"))
PUBLISH = ("publish", "publish", ("--date", "{date}"))


class StepFailed(RuntimeError):
    pass


def run_nightly(cfg: Config, settings: dict, raw: str, date: str, variant: str, repo: Path) -> dict:
    """settings: dataset, lake (absolute), env, model, overrides: the jobs' common arguments."""
    values = {"raw": raw, "date": date, "variant": variant}
    seconds: dict[str, float] = {}

    def step(name: str, job: str, args: tuple[str, ...]) -> None:
        command = job_command(cfg.orchestration, job, settings, [a.format(**values) for a in args],
                              repo, sys.executable)
        print(f"\n=== {name}: {command}", flush=True)
        started = time.time()
        code = subprocess.run(["bash", "-c", command]).returncode
        seconds[name] = round(time.time() - started, 1)
        if code != 0:
            raise StepFailed(f"nightly stopped: step {name!r} failed with exit code {code}")
        print(f"=== {name} done in {seconds[name]:.0f} s", flush=True)

    started = time.time()
    stopped = page_failed = why = None
    try:
        for spec in HEAD:
            step(*spec)
        due, why = retriever_due(cfg, date)
        print(f"\n=== retriever {'DUE' if due else 'fresh'}: {why}", flush=True)
        if due:
            step(*RETRIEVER)
        missing_scorer = not registry.versions(cfg, f"scorer/{variant}")
        for name, job, args in TRAIN:
            kind = "exit_heads" if job == "train_exit_heads" else "scorer"
            if missing_scorer or not registry.versions(cfg, f"{kind}/{variant}"):
                step(name, job, args)
        for spec in TAIL:
            step(*spec)
    except StepFailed as e:
        stopped = e
    try:
        step(*REPORT)   # whatever happened above, as the DAG's all_done night_report
    except StepFailed as e:
        page_failed = e
    if stopped:
        raise stopped
    step(*PUBLISH)      # beside the page in the DAG: a failed page does not hold it back
    if page_failed:
        raise page_failed
    return {"seconds": seconds, "wall_seconds": round(time.time() - started, 1), "env": settings["env"],
            "retriever": why}
