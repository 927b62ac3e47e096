"""The command that starts a job: `orchestration.launchers` (conf/base.yaml) per env and engine.

    local         python -m jobs.<job>                         (every engine)
    localcluster  spark-submit --master spark://127.0.0.1:7077 ... jobs/<job>.py
                  ray job submit --address http://127.0.0.1:8265 --runtime-env-json ... -- python -m jobs.<job>
    cluster       the same against YARN/Kubernetes and a remote Ray cluster

An env may stack layers (``demo+localcluster``: demo sizes on the local clusters); the
launchers are those of the last layer that has some. Template fields:

    {python}  the job venv's interpreter       {bin}     its bin folder (spark-submit, ray)
    {module}  jobs.<job>                       {script}  <repo>/jobs/<job>.py
    {repo}    the repository                   {jars}    <repo>/dist/jars/*.jar, comma-joined
    {runtime_env}  the Ray job's runtime_env as JSON: conf/ray/runtime_env.yaml with the repo
                   as working_dir, its py_modules and env_vars + the armed faults

Standard library + PyYAML only: the Airflow DAGs (another venv) build their task commands
with it at run time, the nightly runner and the cluster test with it here.
"""
from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping
from pathlib import Path

import yaml

from optirag import faults


class LaunchError(ValueError):
    """A launcher that cannot be built (unknown env, `make dist` not run); one line."""


def launcher(conf: dict, env: str, job: str) -> str:
    """The template for `job` under `env` (orchestration section `conf`)."""
    launchers = conf["launchers"]
    chosen = next((launchers[e] for e in reversed(env.split("+")) if e in launchers), launchers["local"])
    return chosen.get(conf["engines"].get(job, "default")) or chosen["default"]


def runtime_env(repo: Path, env: Mapping[str, str] | None = None) -> dict:
    """What a Ray job carries: the repo (code + conf/) as working_dir, optirag as a py_module,
    env_vars (offline model loading, the faults armed in `env`, default this process's);
    .gitignore'd files (venvs, lakes) stay home."""
    spec = yaml.safe_load((repo / "conf" / "ray" / "runtime_env.yaml").read_text(encoding="utf-8")) or {}
    return {**spec, "working_dir": str(repo),
            "py_modules": [str(repo / m) for m in spec.get("py_modules", [])],
            "env_vars": {**spec.get("env_vars", {}), **faults.environment(env)}}


def _dist_jars(repo: Path) -> str:
    jars = sorted(str(p) for p in (repo / "dist" / "jars").glob("*.jar"))
    if not jars or not (repo / "dist" / "optirag.zip").is_file():
        raise LaunchError(f"{repo / 'dist'} lacks optirag.zip or the Delta jars: run `make dist`")
    return ",".join(jars)


def job_command(conf: dict, job: str, settings: dict, args: list[str], repo: Path, python: str,
                env: Mapping[str, str] | None = None) -> str:
    """`cd <repo> && <launcher> --dataset … --lake … --env … --model … [--set …] <args>`.
    settings: dataset, lake, env, model, overrides (lake and raw paths already absolute).
    env: the environment the command will run in (default this process's): a Ray job gets
    only what its runtime_env carries, so faults armed there are baked into it here."""
    template = launcher(conf, settings["env"], job)
    fields = {"python": python, "bin": str(Path(python).parent), "module": f"jobs.{job}",
              "script": str(repo / "jobs" / f"{job}.py"), "repo": str(repo)}
    if "{jars}" in template:
        fields["jars"] = _dist_jars(repo)
    if "{runtime_env}" in template:
        fields["runtime_env"] = json.dumps(runtime_env(repo, env), sort_keys=True)
    prefix = template.format(**{k: shlex.quote(v) for k, v in fields.items()})
    common = ["--dataset", settings["dataset"], "--lake", settings["lake"], "--env", settings["env"],
              "--model", settings["model"]]
    for item in settings.get("overrides") or []:
        common += ["--set", item]
    return f"cd {shlex.quote(str(repo))} && {prefix} " + " ".join(shlex.quote(str(a)) for a in common + list(args))


def absolute(path: str, base: Path | None = None) -> str:
    """A local path made absolute (a Ray job runs in a copy of the repo, elsewhere); URIs as is."""
    return path if "://" in path or os.path.isabs(path) else str(((base or Path.cwd()) / path).resolve())
