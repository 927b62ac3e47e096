"""Named fault points: make a job crash, hang or raise at a chosen place (for tests).

As FoundationDB's and TiKV's failpoints: the code marks the places where a failure matters
with ``faults.point("scoring.before_commit")``, and a test arms some of them through the
environment of the job it starts, so a crash lands exactly there instead of wherever a
timer-driven ``kill`` happens to hit:

    OPTIRAG_FAULTS="scoring.after_staged_rows=kill:100,scoring.before_commit=hang"

Each comma-separated entry is ``point=action[:N]``; ``point`` must be one of :data:`POINTS`.

    crash      os._exit(FAULT_EXIT_CODE): the process ends at once, nothing cleaned up
    kill       SIGKILL of this process (what the OOM killer or a lost VM does): exit -9
    hang       block forever (the test or a timeout has to end it)
    raise      raise FaultInjected (the error path: task retries, a failed job)
    kill_host  SIGKILL the cluster node this process runs on: the Spark standalone Worker
               (with its executor) or the Ray raylet above it, then this process. Never a
               head node; outside a cluster it raises FaultInjected.

N (default 1): the point fires the first time its count reaches N. The count is what the
code passes (rows staged so far, batches an actor scored) or, when it passes none, how many
times this process has reached the point.

A point fires once per process. With ``OPTIRAG_FAULTS_DIR`` set to a folder every process
sees, it fires once in all: the first process to fire creates ``<dir>/<point>`` (O_EXCL,
JSON: pid, host, count) before it acts, so the Spark task retried on another executor or the
Ray actor restarted on another node passes the point, and the test can see where it fired.

Off by default and free when off: the variable is parsed once, at import; with nothing
armed :func:`point` is a function that returns at once and :func:`in_spark_tasks` returns
its DataFrame unchanged. Faults come only from the process environment (optirag.spark and
optirag.ray_session forward it to Spark executors and Ray workers), never from config files
or data.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ENV = "OPTIRAG_FAULTS"
ONCE_DIR_ENV = "OPTIRAG_FAULTS_DIR"
FAULT_EXIT_CODE = 86  # `crash`: a code no job uses, so a test knows the fault ended it

# Every fault point in the code base (a typo in OPTIRAG_FAULTS fails at once, not silently).
POINTS = {
    "scoring.after_staged_rows": "scoring driver, after each staged Parquet part; count = rows staged",
    "scoring.before_commit": "scoring driver, every row staged, just before the Delta commit",
    "scoring.scorer_batch": "scoring Ray actor, after each scored batch; count = batches this actor scored",
    "candidates.task": "a Spark task writing candidates (rows pass a Python map only when armed); "
                       "count = rows this task passed",
}
ACTIONS = ("crash", "kill", "hang", "raise", "kill_host")


class FaultInjected(RuntimeError):
    """Raised by an armed point with action ``raise`` (or ``kill_host`` off a cluster)."""


class FaultSpecError(ValueError):
    """OPTIRAG_FAULTS cannot be parsed; the message names the bad entry."""


@dataclass(frozen=True)
class Fault:
    point: str
    action: str
    at: int = 1


def parse(text: str) -> dict[str, Fault]:
    """``"a=kill:3,b=hang"`` -> {point: Fault}; unknown points or actions raise FaultSpecError."""
    faults: dict[str, Fault] = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        name, sep, rest = entry.partition("=")
        action, _, at = rest.partition(":")
        name, action = name.strip(), action.strip()
        if not sep or name not in POINTS or action not in ACTIONS:
            raise FaultSpecError(f"{ENV} entry {entry!r}: expected point=action[:N] with a point in "
                                 f"{sorted(POINTS)} and an action in {list(ACTIONS)}")
        try:
            n = int(at) if at.strip() else 1
        except ValueError:
            raise FaultSpecError(f"{ENV} entry {entry!r}: N must be an integer") from None
        faults[name] = Fault(name, action, max(n, 1))
    return faults


def environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The fault variables of `env` (default: this process's), to forward to Spark executors
    and Ray workers."""
    env = os.environ if env is None else env
    return {k: env[k] for k in (ENV, ONCE_DIR_ENV) if env.get(k)}


def armed(name: str) -> bool:
    return name in _ARMED


def _noop(name: str, count: int | None = None) -> None:
    return None


def _point(name: str, count: int | None = None) -> None:
    fault = _ARMED.get(name)
    if fault is None or name in _fired:
        return
    if count is None:
        _hits[name] = count = _hits.get(name, 0) + 1
    if count < fault.at or not _claim(fault, count):
        return
    _fired.add(name)
    _ACT[fault.action](fault)


def _claim(fault: Fault, count: int) -> bool:
    """True if this process is the one to fire (always, without OPTIRAG_FAULTS_DIR)."""
    folder = os.environ.get(ONCE_DIR_ENV)
    if not folder:
        return True
    os.makedirs(folder, exist_ok=True)
    try:
        fd = os.open(os.path.join(folder, fault.point), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        _fired.add(fault.point)  # another process fired it: never again here either
        return False
    with os.fdopen(fd, "w") as f:
        json.dump({"point": fault.point, "action": fault.action, "count": count, "pid": os.getpid(),
                   "host": socket.gethostname(), "time": time.time()}, f)
    return True


def _host_daemon(chain: list[Any]) -> int | None:
    """Index in `chain` (this process, then its ancestors) of the cluster node daemon."""
    for i, proc in enumerate(chain):
        try:
            cmd = proc.cmdline()
        except Exception:  # a process gone or not ours: not a node daemon
            continue
        if "org.apache.spark.deploy.worker.Worker" in cmd:
            return i
        if cmd and os.path.basename(cmd[0]) == "raylet":
            if any(a.startswith("--head") or a == "--is_head_node" for a in cmd):
                raise FaultInjected("kill_host: this process runs on the Ray head node; refusing")
            return i
    return None


def _kill_host(fault: Fault) -> None:
    import psutil

    me = psutil.Process()
    chain = [me, *me.parents()]
    top = _host_daemon(chain)
    if top is None:
        raise FaultInjected(f"{fault.point}: kill_host found no Spark worker or Ray raylet above pid {me.pid}")
    # Top down (node daemon, executor JVM, ..., this process last): like a machine that
    # vanishes, nothing in between gets to notice the others dying and clean up.
    for proc in reversed(chain[1:top + 1]):
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    os.kill(me.pid, signal.SIGKILL)


def _raise(fault: Fault) -> None:
    raise FaultInjected(f"fault point {fault.point} fired (action raise)")


_ACT = {
    "crash": lambda f: os._exit(FAULT_EXIT_CODE),
    "kill": lambda f: os.kill(os.getpid(), signal.SIGKILL),
    "hang": lambda f: threading.Event().wait(),
    "raise": _raise,
    "kill_host": _kill_host,
}

_ARMED: dict[str, Fault] = parse(os.environ.get(ENV, ""))
_hits: dict[str, int] = {}
_fired: set[str] = set()
# `point(name, count=None)`: the call sites' entry; a no-op function unless something is armed.
point = _point if _ARMED else _noop


def in_spark_tasks(df: Any, name: str) -> Any:
    """`df` with fault point `name` inside the Spark tasks that compute it: a pass-through
    ``mapInArrow`` whose count is the rows the task has passed. Returns `df` itself (no extra
    Python stage) when `name` is not armed."""
    if name not in _ARMED:
        return df

    def passthrough(batches):
        from optirag import faults  # the executor's own copy, armed by its environment

        rows = 0
        for batch in batches:
            rows += batch.num_rows
            faults.point(name, rows)
            yield batch

    return df.mapInArrow(passthrough, df.schema)
