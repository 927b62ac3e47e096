"""optirag.faults: each action for real, in a child process armed through its environment
(the only way faults are armed), plus the parser and the off state."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from optirag import faults

REPO = Path(__file__).resolve().parents[1]
STAGED = "scoring.after_staged_rows"
COMMIT = "scoring.before_commit"
# Reaches the staged-rows point with counts 10, 20, ..., 50, printing each count it got past.
CHILD = f"""
from optirag import faults
for rows in range(10, 60, 10):
    faults.point("{STAGED}", rows)
    print(rows, flush=True)
"""


def child(spec: str, code: str = CHILD, once_dir: Path | None = None, **popen) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTIRAG_FAULTS")}
    env[faults.ENV] = spec
    if once_dir is not None:
        env[faults.ONCE_DIR_ENV] = str(once_dir)
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def finished(spec: str, code: str = CHILD, once_dir: Path | None = None) -> tuple[int, str, str]:
    proc = child(spec, code, once_dir)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def test_off_by_default_point_is_a_no_op_function():
    assert faults.ENV not in os.environ, "run the test suite without OPTIRAG_FAULTS"
    assert faults.point is faults._noop and not faults.armed(STAGED)
    frame = object()
    assert faults.in_spark_tasks(frame, "candidates.task") is frame  # no Python stage added
    assert finished("") == (0, "10\n20\n30\n40\n50\n", "")


def test_parse_accepts_the_grammar_and_rejects_typos():
    assert faults.parse(f" {STAGED}=kill:100 , {COMMIT}=hang") == {
        STAGED: faults.Fault(STAGED, "kill", 100), COMMIT: faults.Fault(COMMIT, "hang", 1)}
    for bad in ("scoring.after_staged=kill", f"{STAGED}=explode", f"{STAGED}=kill:many", STAGED):
        with pytest.raises(faults.FaultSpecError):
            faults.parse(bad)
    code, _, err = finished("no.such.point=crash")
    assert code == 1 and "FaultSpecError" in err and "no.such.point" in err


def test_crash_ends_the_process_at_the_first_count_reaching_n():
    code, out, _ = finished(f"{STAGED}=crash:25")
    assert (code, out) == (faults.FAULT_EXIT_CODE, "10\n20\n")


def test_kill_sigkills_the_process():
    code, out, _ = finished(f"{STAGED}=kill:10")
    assert (code, out) == (-signal.SIGKILL, "")


def test_raise_fires_once_per_process_and_counts_hits_without_a_count():
    code = f"""
from optirag import faults
for i in range(4):
    try:
        faults.point("{COMMIT}")
        print("passed", i, flush=True)
    except faults.FaultInjected as e:
        print("fault", i, e, flush=True)
"""
    rc, out, _ = finished(f"{COMMIT}=raise:2", code)
    assert rc == 0
    assert out.splitlines() == ["passed 0", f"fault 1 fault point {COMMIT} fired (action raise)",
                                "passed 2", "passed 3"]


def test_hang_blocks_at_the_point(tmp_path):
    proc = child(f"{STAGED}=hang:30", once_dir=tmp_path)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=3)  # a working hang never returns; a broken one ends at once
        assert json.loads((tmp_path / STAGED).read_text())["count"] == 30
    finally:
        proc.kill()
    out, _ = proc.communicate()
    assert out == "10\n20\n"


def test_once_dir_makes_a_point_fire_once_across_processes(tmp_path):
    first = finished(f"{STAGED}=crash:20", once_dir=tmp_path)
    token = json.loads((tmp_path / STAGED).read_text())
    assert first[0] == faults.FAULT_EXIT_CODE and token["action"] == "crash" and token["count"] == 20
    # a retried task / restarted actor reaches the same point: it passes
    assert finished(f"{STAGED}=crash:20", once_dir=tmp_path)[:2] == (0, "10\n20\n30\n40\n50\n")


def test_kill_host_outside_a_cluster_raises_instead_of_killing_anything():
    code, out, err = finished(f"{STAGED}=kill_host:10")
    assert code == 1 and out == "" and "kill_host found no Spark worker or Ray raylet" in err


def test_a_spark_task_fault_fires_inside_the_executor(tmp_path):
    """candidates.task armed: the rows pass a Python map in the tasks, and the fault fails
    the (local-mode, not retried) Spark job with the injected error."""
    code = """
from optirag import faults
from optirag.spark import get_spark
spark = get_spark()
df = faults.in_spark_tasks(spark.range(100).repartition(2), "candidates.task")
try:
    df.collect()
    print("no fault")
except Exception as e:
    print("FaultInjected" in str(e) and "candidates.task" in str(e))
spark.stop()
"""
    _, out, err = finished("candidates.task=raise:10", code, once_dir=tmp_path)
    assert out.strip().splitlines()[-1:] == ["True"], err[-3000:]
    assert json.loads((tmp_path / "candidates.task").read_text())["count"] >= 10
