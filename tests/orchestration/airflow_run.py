"""Run inside the Airflow venv (`.venv-airflow/bin/python`), called by the tests.

  airflow_run.py dagbag                       -> JSON: import errors, per-DAG facts, parse seconds
  airflow_run.py test DAG_ID DATE [CONF_JSON] [--mark-success REGEX]
                                              -> runs dag.test(); JSON: state per task instance

--mark-success: tasks whose id matches are marked successful without running (dag.test's
mark_success_pattern), e.g. to run the gate and publish on hand-made tables. Retries are set to 0 so a failing task fails the run at once
instead of waiting for its retry delay. The JSON is the stdout line starting with AIRFLOW_RUN_RESULT.
"""
from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path

MARKER = "AIRFLOW_RUN_RESULT "
DAGS = Path(__file__).resolve().parents[2] / "airflow_dags"


def dagbag():
    from airflow.dag_processing.dagbag import BundleDagBag

    started = time.perf_counter()
    bag = BundleDagBag(dag_folder=str(DAGS), bundle_path=DAGS)
    seconds = time.perf_counter() - started
    dags = {dag_id: {
        "schedule": dag.schedule if isinstance(dag.schedule, str) else None,
        "tags": sorted(dag.tags), "owners": sorted({t.owner for t in dag.tasks}),
        "tasks": {t.task_id: {"retries": t.retries, "timeout": t.execution_timeout.total_seconds()
                              if t.execution_timeout else None, "trigger_rule": str(t.trigger_rule),
                              "max_active_tis_per_dagrun": t.max_active_tis_per_dagrun,
                              "downstream": sorted(t.downstream_task_ids)} for t in dag.tasks},
        "catchup": dag.catchup, "max_active_runs": dag.max_active_runs, "params": sorted(dag.params.keys()),
    } for dag_id, dag in bag.dags.items()}
    return {"import_errors": bag.import_errors, "dags": dags, "parse_seconds": round(seconds, 3),
            "modules": sorted(m for m in sys.modules if m.split(".")[0] in ("pyspark", "torch", "ray", "optirag"))}


def run_test(dag_id: str, date: str, conf: dict, mark_success: str | None):
    from airflow.dag_processing.dagbag import BundleDagBag
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    bag = BundleDagBag(dag_folder=str(DAGS), bundle_path=DAGS)
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags[dag_id]
    for task in dag.tasks:
        task.retries = 0
    logical = dt.datetime.fromisoformat(date).replace(tzinfo=dt.timezone.utc)
    started = time.perf_counter()
    dag.test(logical_date=logical, run_conf=conf, mark_success_pattern=mark_success)
    seconds = time.perf_counter() - started
    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.logical_date == logical) \
            .order_by(DagRun.id.desc()).first()
        states = {}
        for ti in run.get_task_instances(session=session):
            key = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
            states[key] = str(ti.state.value if hasattr(ti.state, "value") else ti.state)
        return {"dag_run_state": str(run.state.value if hasattr(run.state, "value") else run.state),
                "tasks": states, "seconds": round(seconds, 1)}


if __name__ == "__main__":
    if sys.argv[1] == "dagbag":
        out = dagbag()
    else:
        args = sys.argv[2:]
        mark = None
        if "--mark-success" in args:
            i = args.index("--mark-success")
            mark, args = args[i + 1], args[:i] + args[i + 2:]
        out = run_test(args[0], args[1], json.loads(args[2]) if len(args) > 2 else {}, mark)
    print(MARKER + json.dumps(out, default=str))
