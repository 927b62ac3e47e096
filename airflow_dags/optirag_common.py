"""What the OptiRAG DAGs share: the `orchestration:` config, run settings, job tasks.

Parse time stays light (Airflow parses this folder every few seconds): only the
standard library, PyYAML and airflow.sdk are imported here. Every pipeline step runs
a job entry point (`python -m jobs.<name>`) in the job virtualenv, the same command a
person runs; on a cluster the per-env launcher in conf/base.yaml turns it into a
spark-submit or a Ray job submission.
"""
from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

import yaml
from airflow.sdk import Param, task

# The repo holding jobs/, libs/ and conf/ (DAGs synced elsewhere: set OPTIRAG_REPO).
REPO = Path(os.environ.get("OPTIRAG_REPO", Path(__file__).resolve().parents[1]))
with open(REPO / "conf" / "base.yaml", encoding="utf-8") as _f:
    CONF: dict = yaml.safe_load(_f)["orchestration"]

SETTING_KEYS = ("dataset", "lake", "raw_dir", "env", "model", "variant")
JOB_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def _repo_path(value: str) -> str:
    """Relative paths in the config are relative to the repo; URIs pass through."""
    return value if "://" in value or os.path.isabs(value) else str((REPO / value).resolve())


def job_python() -> str:
    return _repo_path(os.environ.get("OPTIRAG_JOB_PYTHON") or CONF["job_python"])


def default_args(**over) -> dict:
    return {"owner": CONF["owner"], "retries": CONF["retries"],
            "retry_delay": dt.timedelta(minutes=CONF["retry_delay_minutes"]), **over}


def timeout(job: str) -> dt.timedelta:
    minutes = CONF["timeout_minutes"]
    return dt.timedelta(minutes=minutes.get(job, minutes["default"]))


def setting_params(**extra: Param) -> dict[str, Param]:
    """DAG params; None means: Airflow Variable `optirag_<key>`, else the config default."""
    params = {key: Param(None, type=["null", "string"],
                         description=f"default: Variable optirag_{key}, else {CONF[key]!r} (conf/base.yaml)")
              for key in SETTING_KEYS}
    params["overrides"] = Param([], type="array", items={"type": "string"},
                                description="config overrides KEY=VALUE, passed as --set to every job")
    return {**params, **extra}


LIGHT = {"retries": 0, "execution_timeout": dt.timedelta(minutes=5)}  # in-Airflow helper tasks


@task(task_id="settings", **LIGHT)
def resolve_settings(params: dict | None = None, ds: str | None = None) -> dict:
    """Pin this run's settings (params > Variables > config) so every task sees the same."""
    from airflow.sdk import Variable

    out = {}
    for key in SETTING_KEYS:
        value = params.get(key) or Variable.get(f"optirag_{key}", default=None) or CONF[key]
        out[key] = value if key not in ("lake", "raw_dir") else _repo_path(value)
    out["raw_dir"] = out["raw_dir"].replace("{ds}", ds or "")
    out["overrides"] = list(params.get("overrides") or [])
    print("settings:", out)
    return out


def job_command(job: str, settings: dict, args: list[str]) -> str:
    """The task's shell command: the launcher of this run's env for the job's engine
    (optirag.orchestration.launch, standard library + PyYAML; imported here, at task run
    time, never at parse time)."""
    if str(REPO / "libs") not in sys.path:
        sys.path.insert(0, str(REPO / "libs"))
    from optirag.orchestration.launch import job_command as command

    args = [a.format_map(settings) for a in args]  # "{raw_dir}", "{variant}": this run's settings
    return command(CONF, job, settings, args, REPO, job_python())


def job_task(job: str, task_id: str | None = None, **task_kwargs):
    """A task running `python -m jobs.<job> <common args> [--date D] <args>`; call it with
    (settings, date=None, args=[...], values=None); args may name settings or `values`
    (an upstream task's dict), e.g. "{raw_dir}". Its log is the job's own output."""
    options = {"retries": CONF["retries"], "execution_timeout": timeout(job),
               "env": JOB_ENV, "append_env": True, **task_kwargs}

    @task.bash(task_id=task_id or job, **options)
    def run(settings: dict, date: str | None = None, args: list[str] | None = None,
            values: dict | None = None) -> str:
        extra = (["--date", date] if date else []) + list(args or [])
        return job_command(job, {**settings, **(values or {})}, extra)

    return run
