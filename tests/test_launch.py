"""How jobs are started: the launchers of conf/base.yaml per env (optirag.orchestration.launch),
env layers, and the local clusters' process table. The commands run for real in
tests/cluster/ and tests/orchestration/; here, what they are made of."""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest
import yaml

from optirag import localcluster
from optirag.config import load_config
from optirag.orchestration.launch import LaunchError, job_command, launcher

REPO = Path(__file__).resolve().parents[1]
CONF = yaml.safe_load((REPO / "conf" / "base.yaml").read_text())["orchestration"]
SETTINGS = {"dataset": "bookcrossing", "lake": "/lake", "model": "tiny", "overrides": ["a.b=1"]}


def _command(job: str, env: str, repo: Path = REPO) -> list[str]:
    return shlex.split(job_command(CONF, job, {**SETTINGS, "env": env}, ["--date", "2026-11-23"], repo, sys.executable))


def test_local_runs_every_job_as_python_module():
    assert _command("score", "demo")[3:6] == [sys.executable, "-m", "jobs.score"]
    assert launcher(CONF, "local", "ingest") == "{python} -m {module}"


def test_localcluster_submits_spark_jobs_with_spark_submit_and_the_dist(tmp_path):
    (tmp_path / "dist" / "jars").mkdir(parents=True)
    (tmp_path / "dist" / "optirag.zip").write_bytes(b"")
    for jar in ("delta-spark_x.jar", "delta-storage-x.jar"):
        (tmp_path / "dist" / "jars" / jar).write_bytes(b"")
    cmd = _command("build_candidates", "demo+localcluster", tmp_path)  # the last layer's launchers
    assert cmd[:3] == ["cd", str(tmp_path), "&&"] and cmd[4].endswith("/spark-submit")
    assert cmd[cmd.index("--master") + 1] == "spark://127.0.0.1:7077"
    assert cmd[cmd.index("--py-files") + 1] == f"{tmp_path}/dist/optirag.zip"
    assert cmd[cmd.index("--jars") + 1].split(",") == [f"{tmp_path}/dist/jars/{j}" for j in
                                                       ("delta-spark_x.jar", "delta-storage-x.jar")]
    assert cmd[cmd.index("--py-files") + 2] == f"{tmp_path}/jobs/build_candidates.py"
    assert cmd[-8:] == ["--env", "demo+localcluster", "--model", "tiny", "--set", "a.b=1", "--date", "2026-11-23"]


def test_a_missing_dist_is_a_one_line_error(tmp_path):
    with pytest.raises(LaunchError, match="make dist"):
        _command("ingest", "localcluster", tmp_path)


def test_localcluster_submits_ray_jobs_with_the_repo_and_armed_faults_in_the_runtime_env(monkeypatch):
    monkeypatch.setenv("OPTIRAG_FAULTS", "scoring.scorer_batch=kill_host:2")
    cmd = _command("score", "localcluster")
    submit = cmd.index("submit")
    assert cmd[submit - 2].endswith("/ray") and cmd[submit - 1] == "job"
    assert cmd[cmd.index("--address") + 1] == "http://127.0.0.1:8265"
    env = json.loads(cmd[cmd.index("--runtime-env-json") + 1])
    assert env["working_dir"] == str(REPO) and env["py_modules"] == [str(REPO / "libs" / "optirag")]
    assert env["env_vars"]["OPTIRAG_FAULTS"] == "scoring.scorer_batch=kill_host:2"
    assert env["env_vars"]["HF_HUB_OFFLINE"] == "1"
    assert cmd[cmd.index("--") + 1:cmd.index("--") + 4] == ["python", "-m", "jobs.score"]


def test_a_ray_job_gets_the_faults_of_the_environment_it_is_launched_in_not_the_builders(monkeypatch):
    """The cluster test builds the command in its own process and runs it with the faults in
    the child's env only: the runtime_env must carry those (it missed them once)."""
    monkeypatch.delenv("OPTIRAG_FAULTS", raising=False)
    child = {"OPTIRAG_FAULTS": "scoring.scorer_batch=kill_host:2", "OPTIRAG_FAULTS_DIR": "/tmp/f"}
    cmd = shlex.split(job_command(CONF, "score", {**SETTINGS, "env": "localcluster"}, [], REPO,
                                  sys.executable, child))
    env = json.loads(cmd[cmd.index("--runtime-env-json") + 1])["env_vars"]
    assert env["OPTIRAG_FAULTS"] == child["OPTIRAG_FAULTS"] and env["OPTIRAG_FAULTS_DIR"] == "/tmp/f"
    own = _command("score", "localcluster")   # built from this process's env: no faults
    assert "OPTIRAG_FAULTS" not in json.loads(own[own.index("--runtime-env-json") + 1])["env_vars"]


def test_env_layers_merge_left_to_right():
    cfg = load_config("bookcrossing", env="demo+localcluster")
    assert cfg.env == "demo+localcluster"
    assert cfg.spark.master == "spark://127.0.0.1:7077" and cfg.ray.address == "127.0.0.1:6379"
    assert cfg.candidates["per_user"] == 20 and cfg.scoring["block_rows"] == 100  # demo's sizes
    assert load_config("bookcrossing", env="localcluster+demo").spark.master == "local[2]"


def test_the_local_clusters_are_separate_processes_with_their_own_ports_and_cpus(tmp_path):
    ccfg = localcluster.load_cluster_config(str(tmp_path))
    procs = {p.name: p for p in localcluster.processes(ccfg)}
    assert list(procs) == ["spark-master", "spark-worker-1", "spark-worker-2", "ray-head", "ray-node-1"]
    for n in (1, 2):
        argv = procs[f"spark-worker-{n}"].argv
        assert argv[1] == "org.apache.spark.deploy.worker.Worker" and argv[-1] == "spark://127.0.0.1:7077"
        assert argv[argv.index("--cores") + 1] == "1"
    head, node = procs["ray-head"].argv, procs["ray-node-1"].argv
    assert head[1:3] == ["start", "--head"] and head[head.index("--num-cpus") + 1] == "1"
    assert node[node.index("--address") + 1] == "127.0.0.1:6379" and node[node.index("--num-cpus") + 1] == "2"
    assert "--block" in head and "--block" in node
    ports = lambda argv: {argv[i + 1] for i, a in enumerate(argv) if a.endswith("-port")}  # noqa: E731
    assert not ports(head) & ports(node)  # two raylets on one host
    # only the head carries the dashboard's dependencies (the Jobs API)
    assert str(localcluster.cluster_site()) in procs["ray-head"].env["PYTHONPATH"]
    assert str(localcluster.cluster_site()) not in procs["ray-node-1"].env.get("PYTHONPATH", "")


def test_every_module_imports_from_the_spark_submit_zip_alone(tmp_path):
    """spark-submit ships optirag as dist/optirag.zip (--py-files): every module must import
    from the zip, not from the source tree (a folder without __init__.py is a namespace
    package, which zipimport does not find: check_scores failed so on the local cluster)."""
    import subprocess

    from optirag.orchestration.dist import zip_package

    package = REPO / "libs" / "optirag"
    zipped = zip_package(package, tmp_path / "optirag.zip")
    modules = sorted(".".join(p.relative_to(package.parent).with_suffix("").parts).removesuffix(".__init__")
                     for p in package.rglob("*.py"))
    script = ("import importlib, sys; sys.path.insert(0, sys.argv[1]); bad = []\n"
              "for m in sys.argv[2:]:\n"
              "    mod = importlib.import_module(m)\n"
              "    bad += [] if mod.__file__.startswith(sys.argv[1]) else [m]\n"
              "print(bad); sys.exit(1 if bad else 0)")
    # no PYTHONPATH, cwd outside the repo: only the zip (and site-packages) can provide optirag
    out = subprocess.run([sys.executable, "-c", script, str(zipped), *modules], cwd=tmp_path,
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "optirag.orchestration.config" in modules and "optirag.quality.scores" in modules


def test_cluster_up_creates_rays_auth_token_once_and_keeps_it_private(tmp_path, monkeypatch):
    """A fresh machine has no ~/.ray/auth_token and `ray start --head` (token auth on) then
    refuses to start: cluster up generates one with Ray's own CLI, and keeps an existing one."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    token = tmp_path / ".ray" / "auth_token"
    assert not token.exists()
    localcluster.ensure_auth_token()
    first = token.read_text()
    assert len(first) >= 16 and token.stat().st_mode & 0o777 == 0o600
    localcluster.ensure_auth_token()
    assert token.read_text() == first
