"""Cluster mode, proven on this machine: a Spark standalone cluster (master + two 1-core
workers) and a Ray cluster (head with 1 CPU + one 2-CPU node), every piece its own process,
brought up and down by `jobs.cluster` (what `make cluster-up` / `cluster-down` run).

The nightly chain ingest -> train_retriever -> build_candidates -> score -> publish runs on
the 60-user BookCrossing slice of `small_lake`, every job submitted through the
`localcluster` launchers (spark-submit with dist/optirag.zip + the Delta jars, `ray job
submit` with the repo in its runtime_env), and must give the tables of local mode on the same
input (the same library calls on local Spark / in-process, `jobs.score` with local Ray).

Two faults, at fault points (optirag.faults), so they land the same way every run:
- candidates: the Spark worker running the first task to pass a row through
  `candidates.task` is SIGKILLed with its executor (kill_host). Spark re-runs the lost tasks
  (and the shuffle output lost with the executor) on the other worker: the job succeeds
  with the local result.
- score: after its 2nd batch, the scorer actor kills the Ray node it runs on (kill_host); it
  can only run on the 2-CPU node (it asks 1.5 CPUs, the head has 1). Ray Data restarts the
  actor (max_restarts=-1) once a node with room joins; the test starts one with `jobs.cluster
  up`, as KubeRay or the autoscaler would replace a lost node. Lost blocks are rebuilt from
  lineage and the job succeeds: every candidate scored once, scores as local.
Then `jobs.cluster down` must leave no process of the cluster behind.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from optirag import localcluster
from optirag.config import load_config
from optirag.orchestration.launch import job_command
from optirag.tables import INGEST_TABLES, read_table

# Out of `make test` (pyproject addopts): 8 minutes more would break CI's 40. `make test-cluster`.
pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
CONF = yaml.safe_load((REPO / "conf" / "base.yaml").read_text())["orchestration"]
DAY = "2026-11-25"
OVERRIDES = ["retriever.epochs=2", "retriever.torch_threads=1", "candidates.per_user=6",
             "scoring.scorer_version=base", "scoring.early_exit=false", "scoring.batch_size=8",
             "scoring.block_rows=32", "scoring.actor_num_cpus=1.5", "scoring.progress_seconds=5"]
SCORE_KEYS = ["user_id", "item_id", "source", "sample_id", "label", "exit_layer", "model_version",
              "retriever_version"]


def _settings(lake: Path, env: str) -> dict:
    return {"dataset": "bookcrossing", "lake": str(lake), "env": env, "model": "tiny", "overrides": OVERRIDES}


def _env(**faults: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTIRAG_FAULTS")}
    return {**env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **faults}


def _launch(job: str, lake: Path, env: str, *args: str, faults: dict | None = None) -> subprocess.Popen:
    """The job as the nightly DAG's task starts it: its launcher's shell command."""
    environment = _env(**(faults or {}))   # a Ray job's faults travel in its runtime_env
    command = job_command(CONF, job, _settings(lake, env), list(args), REPO, sys.executable, environment)
    return subprocess.Popen(["bash", "-c", command], env=environment, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _run(job: str, lake: Path, env: str, *args: str, faults: dict | None = None) -> str:
    proc = _launch(job, lake, env, *args, faults=faults)
    out, _ = proc.communicate(timeout=1200)
    assert proc.returncode == 0, f"{job} ({env}) failed:\n{out[-6000:]}"
    return out


def _cluster(action: str, state: Path) -> None:
    subprocess.run([sys.executable, "-m", "jobs.cluster", action, "--state-dir", str(state)],
                   cwd=REPO, env=_env(), check=True, timeout=600)


def _wait_for(what: str, ready, proc: subprocess.Popen, timeout: float = 900) -> None:
    """Until `ready()`; fails at once if the job ended first (the fault never fired)."""
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, f"the job ended before {what}:\n{proc.stdout.read()[-6000:]}"
        assert time.time() < deadline, f"no {what} after {timeout:.0f} s"
        time.sleep(1)


def _rows(spark, lake: Path, table: str, where: str | None = None, drop: tuple[str, ...] = ()) -> list[tuple]:
    df = read_table(spark, table, f"{lake}/bookcrossing")
    if where:
        df = df.where(where)
    cols = sorted(c for c in df.columns if c not in drop)
    # Nulls sort last (a plain sort cannot compare None with a value).
    return sorted((tuple(r) for r in df.select(*cols).collect()),
                  key=lambda row: tuple((v is None, v) for v in row))


@pytest.fixture(scope="module")
def local_lake(spark, small_lake, tmp_path_factory) -> Path:
    """Local mode on small_lake's raw slice: its ingest tables (run_ingest on local Spark),
    then the retriever, candidates (the jobs' library calls) and jobs.score (local Ray)."""
    from optirag.orchestration.publish import publish
    from optirag.retrieval.job import train_gcn
    from optirag.scoring.candidates import write_candidates

    lake = tmp_path_factory.mktemp("local_mode") / "lake"
    for table in INGEST_TABLES:
        shutil.copytree(Path(small_lake, "bookcrossing", table), lake / "bookcrossing" / table)
    cfg = load_config("bookcrossing", env="local", model="tiny", overrides=OVERRIDES, lake=str(lake))
    train_gcn(spark, cfg, None)          # ray=None: training and search in this process
    write_candidates(spark, cfg, DAY)
    _run("score", lake, "local", "--date", DAY)
    publish(cfg, DAY)
    return lake


@pytest.fixture(scope="module")
def cluster():
    """The clusters, in a state folder of their own (short: Ray's socket paths are limited)."""
    state = Path(tempfile.mkdtemp(prefix="optirag-test-cluster-", dir="/tmp"))
    ccfg = localcluster.load_cluster_config(str(state))
    subprocess.run([sys.executable, "-m", "jobs.cluster", "dist"], cwd=REPO, check=True, timeout=600)
    try:
        _cluster("up", state)
        yield ccfg
    finally:
        _cluster("down", state)  # idempotent: the test itself brings them down first
        shutil.rmtree(state, ignore_errors=True)


def test_the_nightly_chain_on_real_clusters_gives_the_local_tables_through_a_worker_and_a_node_kill(
        spark, small_lake, local_lake, cluster, tmp_path):
    ccfg, lake, faults_dir = cluster, tmp_path / "lake", tmp_path / "faults"
    raw = Path(small_lake).parent / "raw"
    env = "localcluster"

    _run("ingest", lake, env, "--raw", str(raw))
    for table in INGEST_TABLES:
        drop = ("ingested_at",) if table == "manifest" else ()
        assert _rows(spark, lake, table, drop=drop) == _rows(spark, local_lake, table, drop=drop), table

    _run("train_retriever", lake, env)
    gcn = "retriever = 'gcn'"
    assert _rows(spark, lake, "neighbours", gcn) == _rows(spark, local_lake, "neighbours", gcn)

    # A Spark worker dies inside a candidates task; the other finishes the job.
    fault = {"OPTIRAG_FAULTS": "candidates.task=kill_host:1", "OPTIRAG_FAULTS_DIR": str(faults_dir)}
    _run("build_candidates", lake, env, "--date", DAY, faults=fault)
    assert json.loads((faults_dir / "candidates.task").read_text())["action"] == "kill_host"
    workers = [f"spark-worker-{n}" for n in (1, 2)]
    assert sum(localcluster.running(ccfg, w) is None for w in workers) == 1  # exactly one was killed
    day = f"score_date = '{DAY}'"
    assert _rows(spark, lake, "candidates", day) == _rows(spark, local_lake, "candidates", day)
    _cluster("up", Path(ccfg.state_dir))  # idempotent: brings back only the killed worker
    assert all(localcluster.running(ccfg, w) is not None for w in workers)

    # The Ray node running the scorer actor dies after its 2nd batch; a new node joins.
    node = "ray-node-1"
    fault = {"OPTIRAG_FAULTS": "scoring.scorer_batch=kill_host:2", "OPTIRAG_FAULTS_DIR": str(faults_dir)}
    proc = _launch("score", lake, env, "--date", DAY, faults=fault)
    _wait_for("the node kill", lambda: (faults_dir / "scoring.scorer_batch").exists()
              and localcluster.running(ccfg, node) is None, proc)
    _cluster("up", Path(ccfg.state_dir))
    out, _ = proc.communicate(timeout=1200)
    assert proc.returncode == 0, out[-6000:]
    assert localcluster.running(ccfg, node) is not None

    local = {tuple(r[k] for k in SCORE_KEYS): r["score"]
             for r in read_table(spark, "scores", f"{local_lake}/bookcrossing").where(day).collect()}
    remote = {tuple(r[k] for k in SCORE_KEYS): r["score"]
              for r in read_table(spark, "scores", f"{lake}/bookcrossing").where(day).collect()}
    assert len(remote) == read_table(spark, "scores", f"{lake}/bookcrossing").where(day).count()
    assert remote.keys() == local.keys() and len(remote) > 0
    assert max(abs(remote[k] - local[k]) for k in local) < 1e-5
    assert _rows(spark, lake, "score_rejects", day) == _rows(spark, local_lake, "score_rejects", day)

    _run("publish", lake, env, "--date", DAY)
    published = ("published_at",)
    assert _rows(spark, lake, "published", drop=published) == _rows(spark, local_lake, "published", drop=published)

    # Down stops every process up started, and what they started (executors, Ray workers,
    # job drivers): nothing runs from the cluster's folder any more.
    _cluster("down", Path(ccfg.state_dir))
    assert localcluster.leftovers(ccfg) == []
