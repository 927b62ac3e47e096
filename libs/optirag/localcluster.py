"""A real Spark standalone cluster and a real Ray cluster on this machine (make cluster-up).

Every piece is its own OS process on 127.0.0.1, started from the installed pyspark and ray
exactly as on real machines, in its own session, with a pid file and a log:

    spark-master      spark-class org.apache.spark.deploy.master.Master   (spark://127.0.0.1:7077)
    spark-worker-<n>  spark-class org.apache.spark.deploy.worker.Worker   (worker_cores each)
    ray-head          ray start --head --block                           (127.0.0.1:6379, Jobs API :8265)
    ray-node-<n>      ray start --address 127.0.0.1:6379 --block         (its own CPU count)

``up`` is idempotent: it starts only what is not running (a killed worker or node comes
back, as a cluster manager would replace it) and waits until the Spark master lists every
worker ALIVE and Ray every node. ``down`` stops exactly what ``up`` started: each recorded
process (checked by its start time, so a reused pid is never hit) with everything in its
session and below it (Spark executors, Ray workers and job drivers), SIGTERM then SIGKILL.
The layout is the ``localcluster:`` section of conf/env/localcluster.yaml; the jobs reach
the clusters through that env's ``spark.master`` / ``ray.address`` and the launchers.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from optirag.config import CONF_DIR, Section, deep_merge, read_yaml, section


class SparkClusterConfig(Section):
    host: str = "127.0.0.1"
    port: int = 7077
    webui_port: int = 8090           # not 8080: Airflow's
    workers: int = Field(2, ge=1)
    worker_cores: int = Field(1, ge=1)
    worker_memory: str = "2g"
    worker_webui_port: int = 8091    # worker n: this + n - 1


class RayClusterConfig(Section):
    host: str = "127.0.0.1"
    port: int = 6379
    dashboard_port: int = 8265       # the Jobs API (ray job submit --address http://host:port)
    head_cpus: float = Field(1, ge=0)
    node_cpus: list[float] = Field(default_factory=lambda: [2.0])  # one entry per non-head node
    object_store_memory: int = Field(400 * 1024**2, ge=78 * 1024**2)
    # Two raylets share this host, so each node gets its own block of ports for its agents
    # and workers: node n (head = 0) uses [port_base + n * port_span, + port_span).
    port_base: int = 20000
    port_span: int = Field(1000, ge=16)
    startup_timeout_s: int = Field(600, ge=60)


class LocalClusterConfig(Section):
    state_dir: str = "/tmp/optirag-cluster"   # pid files, logs, Spark work dirs, Ray's temp dir
    ready_timeout_s: float = Field(900, gt=0)   # a busy 2-core box starts JVMs slowly
    start_attempts: int = Field(3, ge=1)
    spark: SparkClusterConfig = Field(default_factory=SparkClusterConfig)
    ray: RayClusterConfig = Field(default_factory=RayClusterConfig)


def load_cluster_config(state_dir: str | None = None) -> LocalClusterConfig:
    data = deep_merge(read_yaml(CONF_DIR / "base.yaml"), read_yaml(CONF_DIR / "env" / "localcluster.yaml"))
    ccfg = section(LocalClusterConfig, data.get("localcluster"), "localcluster")
    return ccfg.model_copy(update={"state_dir": state_dir}) if state_dir else ccfg


# Ray's token authentication, explicitly on: every client (ray job submit, a job's ray.init,
# the readiness check) then sends the token of ~/.ray/auth_token (RAY_AUTH_TOKEN_PATH).
# `ray start --head` does not create one (a local ray.init does): see ensure_auth_token.
RAY_AUTH_MODE = "token"


def ensure_auth_token() -> None:
    """The Ray token file, generated when missing (`ray get-auth-token --generate`; an existing
    one is kept) and readable by its owner only. Without it `ray start --head` refuses to
    start on a fresh machine. The command prints the token: its stdout is discarded."""
    done = subprocess.run([_bin("ray"), "get-auth-token", "--generate"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    if done.returncode != 0:
        raise RuntimeError(f"cluster: could not create Ray's auth token: {done.stderr.strip()[-500:]}")
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if path.is_file():
        path.chmod(0o600)


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]


def cluster_site() -> Path:
    """ray[default]'s extras (the dashboard, so the Jobs API) for the cluster processes only.

    They sit in a folder only the Ray head gets on PYTHONPATH, not in the job venv: there
    they would turn the node agent of every local ray.init (tests, --env local jobs) into the
    full dashboard agent, several times slower to start; on a loaded 2-core box its raylet
    then timed out waiting for it and the local run failed."""
    return Path(sys.prefix) / "cluster-site"


def install_cluster_site() -> list[str]:
    """`make setup`: pip-install into cluster_site() exactly what ray[default] of the
    installed Ray adds to the job venv (pip's own resolution, --dry-run --report); idempotent."""
    import importlib.metadata

    version = importlib.metadata.version("ray")
    stamp = cluster_site() / f".ray-{version}"
    if stamp.is_file():
        return []
    report = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report", "-",
                             f"ray[default]=={version}"], check=True, capture_output=True, text=True)
    pins = [f"{i['metadata']['name']}=={i['metadata']['version']}" for i in json.loads(report.stdout)["install"]]
    if pins:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--upgrade",
                        "--target", str(cluster_site()), *pins], check=True)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.touch()
    return pins


def _bin(name: str) -> str:
    """An executable of the job venv (ray), or of the installed pyspark (spark-class)."""
    if name == "spark-class":
        import pyspark

        return str(Path(pyspark.__file__).parent / "bin" / "spark-class")
    return str(Path(sys.executable).parent / name)


def processes(ccfg: LocalClusterConfig) -> list[Proc]:
    state, s, r = Path(ccfg.state_dir), ccfg.spark, ccfg.ray
    # The venv first on PATH: `python` in a Ray job's entrypoint is then the job venv's.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "SPARK_LOG_DIR": str(state / "logs"),
           "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": RAY_AUTH_MODE,
           # A busy 2-core box starts the dashboard and a Python worker (torch, pyarrow
           # imports) in well over Ray's 60 s; past that `ray start` or the raylet gives up.
           "RAY_DASHBOARD_STARTUP_TIMEOUT_S": str(r.startup_timeout_s),
           "RAY_worker_register_timeout_seconds": str(r.startup_timeout_s)}
    master = f"spark://{s.host}:{s.port}"
    procs = [Proc("spark-master", [_bin("spark-class"), "org.apache.spark.deploy.master.Master",
                                   "--host", s.host, "--port", str(s.port), "--webui-port", str(s.webui_port)], env)]
    for n in range(1, s.workers + 1):
        procs.append(Proc(f"spark-worker-{n}", [
            _bin("spark-class"), "org.apache.spark.deploy.worker.Worker", "--host", s.host,
            "--cores", str(s.worker_cores), "--memory", s.worker_memory,
            "--work-dir", str(state / "spark-work" / str(n)),
            "--webui-port", str(s.worker_webui_port + n - 1), master], env))
    # No --node-ip-address: `ray start` turns 127.0.0.1 into the host's reachable address on
    # purpose, so both nodes register under that; every client still reaches them on r.host.
    ray_common = ["--block", "--object-store-memory", str(r.object_store_memory),
                  "--disable-usage-stats", "--temp-dir", str(state / "ray")]

    def ports(n: int) -> list[str]:
        # Fixed agent ports, per node (two nodes share the host): the raylet waits at most
        # ~15 s for an agent to publish a port it chose itself, less than a busy box needs.
        base = r.port_base + n * r.port_span  # node n: 4 agent ports, then its workers' range
        return ["--dashboard-agent-listen-port", str(base), "--dashboard-agent-grpc-port", str(base + 1),
                "--metrics-export-port", str(base + 2), "--runtime-env-agent-port", str(base + 3),
                "--min-worker-port", str(base + 4), "--max-worker-port", str(base + r.port_span - 1)]

    # Only the head gets the dashboard's dependencies (the Jobs API lives there): the other
    # nodes run Ray's minimal agent, which starts in a fraction of the time.
    head_env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(cluster_site()), env.get("PYTHONPATH")]))}
    procs.append(Proc("ray-head", [_bin("ray"), "start", "--head", "--port", str(r.port),
                                   "--num-cpus", f"{r.head_cpus:g}", "--include-dashboard", "true",
                                   "--dashboard-host", r.host, "--dashboard-port", str(r.dashboard_port),
                                   *ports(0), *ray_common], head_env))
    for n, cpus in enumerate(r.node_cpus, start=1):
        procs.append(Proc(f"ray-node-{n}", [_bin("ray"), "start", "--address", f"{r.host}:{r.port}",
                                            "--num-cpus", f"{cpus:g}", *ports(n), *ray_common], env))
    return procs


# --------------------------------------------------------------------------------------
# pid files: "<pid> <create_time>", so that a pid the OS reused is never taken for ours
# --------------------------------------------------------------------------------------

def _pid_file(ccfg: LocalClusterConfig, name: str) -> Path:
    return Path(ccfg.state_dir) / "pids" / f"{name}.pid"


def running(ccfg: LocalClusterConfig, name: str):
    """The live process `up` started under `name`, else None."""
    import psutil

    try:
        pid, created = _pid_file(ccfg, name).read_text().split()
        proc = psutil.Process(int(pid))
        if abs(proc.create_time() - float(created)) < 0.01 and proc.status() != psutil.STATUS_ZOMBIE:
            return proc
    except (FileNotFoundError, ValueError, psutil.Error):
        pass
    return None


def _port_taken(host: str, port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex((host, port)) == 0


def _start(ccfg: LocalClusterConfig, proc: Proc) -> None:
    import psutil

    port = {"spark-master": (ccfg.spark.host, ccfg.spark.port), "ray-head": (ccfg.ray.host, ccfg.ray.port)}.get(proc.name)
    if port and _port_taken(*port):  # another cluster (another state dir) holds it
        raise RuntimeError(f"cluster: {proc.name}: {port[0]}:{port[1]} is taken by a process this cluster "
                           f"({ccfg.state_dir}) did not start; stop that one first (make cluster-down)")

    logs = Path(ccfg.state_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{proc.name}.log", "ab") as log:
        # cwd: the state folder, which every process below inherits (leftovers() looks there)
        child = subprocess.Popen(proc.argv, env=proc.env, stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True, cwd=ccfg.state_dir)
    pid_file = _pid_file(ccfg, proc.name)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{child.pid} {psutil.Process(child.pid).create_time()}")
    print(f"cluster: started {proc.name} (pid {child.pid})", flush=True)


def _get_json(url: str):
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.load(resp)
    except (OSError, ValueError):
        return None


def spark_alive_workers(ccfg: LocalClusterConfig) -> int:
    state = _get_json(f"http://{ccfg.spark.host}:{ccfg.spark.webui_port}/json/")
    return sum(w.get("state") == "ALIVE" for w in (state or {}).get("workers", []))


def ray_alive_nodes(ccfg: LocalClusterConfig) -> int:
    os.environ.setdefault("RAY_AUTH_MODE", RAY_AUTH_MODE)  # before Ray reads it at import
    from ray.util.state import list_nodes

    try:
        nodes = list_nodes(address=f"http://{ccfg.ray.host}:{ccfg.ray.dashboard_port}",
                           raise_on_missing_output=False)
    except Exception:  # not up yet (connection refused, dashboard still starting)
        return 0
    return sum(n.state == "ALIVE" for n in nodes)


def _wait(what: str, ready, ccfg: LocalClusterConfig, procs: list[Proc]) -> None:
    """Until ready(); a process that dies while starting is started again, up to
    start_attempts in all (Ray's raylet aborts when its agents start slowly, as on a busy box)."""
    deadline, attempts = time.time() + ccfg.ready_timeout_s, {p.name: 1 for p in procs}
    while not ready():
        for proc in procs:
            if running(ccfg, proc.name) is not None:
                continue
            if attempts[proc.name] >= ccfg.start_attempts:
                raise RuntimeError(f"cluster: {proc.name} exited while starting ({attempts[proc.name]} attempts); "
                                   f"see {Path(ccfg.state_dir) / 'logs' / proc.name}.log")
            attempts[proc.name] += 1
            print(f"cluster: {proc.name} exited while starting; attempt {attempts[proc.name]}", flush=True)
            _start(ccfg, proc)
        if time.time() > deadline:
            raise TimeoutError(f"cluster: {what} not ready after {ccfg.ready_timeout_s:.0f} s; "
                               f"see the logs in {Path(ccfg.state_dir) / 'logs'}")
        time.sleep(0.5)


def up(ccfg: LocalClusterConfig) -> dict[str, int]:
    """Start whatever is not running, in dependency order; return {name: pid}."""
    if not any(cluster_site().glob(".ray-*")):
        raise FileNotFoundError(f"{cluster_site()} (Ray's dashboard for the Jobs API) is missing: run `make setup`")
    procs = {p.name: p for p in processes(ccfg)}
    s, r = ccfg.spark, ccfg.ray
    ensure_auth_token()
    stages = [  # (processes, what they wait for before the next stage starts)
        (["spark-master"], ("Spark master", lambda: _get_json(f"http://{s.host}:{s.webui_port}/json/") is not None)),
        ([f"spark-worker-{n}" for n in range(1, s.workers + 1)],
         ("Spark workers", lambda: spark_alive_workers(ccfg) >= s.workers)),
        (["ray-head"], ("Ray head", lambda: ray_alive_nodes(ccfg) >= 1)),
        ([f"ray-node-{n}" for n in range(1, len(r.node_cpus) + 1)],
         ("Ray nodes", lambda: ray_alive_nodes(ccfg) >= 1 + len(r.node_cpus))),
    ]
    for names, (what, ready) in stages:
        for name in names:
            if running(ccfg, name) is None:
                _start(ccfg, procs[name])
        _wait(what, ready, ccfg, [procs[n] for n in names])
    pids = {name: running(ccfg, name).pid for name in procs}
    print(f"cluster: up: Spark spark://{s.host}:{s.port} ({s.workers} workers x {s.worker_cores} core), "
          f"Ray {r.host}:{r.port} (head {r.head_cpus:g} CPU + nodes {', '.join(f'{c:g}' for c in r.node_cpus)} CPU), "
          f"Jobs API http://{r.host}:{r.dashboard_port}", flush=True)
    return pids


def _family(proc) -> list:
    """`proc`, its descendants, and every process still in its session (a Ray job driver is
    started in a session of its own but below the head; Spark executors below their worker)."""
    import psutil

    found = {proc.pid: proc}
    for child in proc.children(recursive=True):
        found[child.pid] = child
    for other in psutil.process_iter():
        try:
            if os.getsid(other.pid) == proc.pid:
                found[other.pid] = other
        except (OSError, psutil.Error):
            continue
    return list(found.values())


def down(ccfg: LocalClusterConfig, timeout_s: float = 30) -> list[str]:
    """Stop every process `up` started (and theirs); returns the names that were running."""
    import psutil

    names = [p.name for p in reversed(processes(ccfg))]  # Ray nodes before the head, workers before the master
    stopped, victims = [], {}
    for name in names:
        proc = running(ccfg, name)
        if proc is not None:
            stopped.append(name)
            victims.update({p.pid: p for p in _family(proc)})
        _pid_file(ccfg, name).unlink(missing_ok=True)
    for proc in victims.values():
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(list(victims.values()), timeout=timeout_s)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=10)
    print(f"cluster: down: stopped {', '.join(stopped) or 'nothing (none was running)'}", flush=True)
    left = leftovers(ccfg)
    if left:
        raise RuntimeError(f"cluster: down: still running from {ccfg.state_dir}: {left}")
    return stopped


def leftovers(ccfg: LocalClusterConfig) -> list[str]:
    """'pid command' of every process still running from the cluster's state folder (its
    cwd or its command line there): each process `up` starts runs there, and so does all it
    starts (Spark executors and their Python workers, Ray workers, Ray job drivers)."""
    import psutil

    me = psutil.Process()
    mine = {me.pid, *(p.pid for p in me.parents())}  # `jobs.cluster down --state-dir …` itself
    state, found = str(Path(ccfg.state_dir).resolve()), []
    for proc in psutil.process_iter(["pid", "cwd", "cmdline", "status"]):
        info = proc.info
        if info["status"] == psutil.STATUS_ZOMBIE or info["pid"] in mine:
            continue
        if (info["cwd"] or "").startswith(state) or state in " ".join(info["cmdline"] or []):
            found.append(f"{info['pid']} {' '.join(info['cmdline'] or [])[:120]}")
    return found


def status(ccfg: LocalClusterConfig) -> dict[str, int | None]:
    return {p.name: (lambda proc: proc.pid if proc else None)(running(ccfg, p.name)) for p in processes(ccfg)}
