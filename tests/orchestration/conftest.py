"""Real Airflow for the orchestration tests: its own venv, a throwaway AIRFLOW_HOME.

The DAGs run under `.venv-airflow/bin/python` (tests/orchestration/airflow_run.py) and
their tasks run the jobs with this interpreter (the job venv), exactly as in production.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_BIN = REPO / ".venv-airflow" / "bin"
RUNNER = Path(__file__).with_name("airflow_run.py")
MARKER = "AIRFLOW_RUN_RESULT "
EXIT_LAYERS = [2, 3, 4, 5, 6]  # the tiny recipe's exits + its full depth


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory) -> dict[str, str]:
    if not (AIRFLOW_BIN / "airflow").exists():
        pytest.fail("Airflow venv missing: run `make airflow-setup` (installs .venv-airflow)")
    home = tmp_path_factory.mktemp("airflow_home")
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "airflow_dags"), "OPTIRAG_REPO": str(REPO),
           "OPTIRAG_JOB_PYTHON": sys.executable, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    subprocess.run([str(AIRFLOW_BIN / "airflow"), "db", "migrate"], env=env, check=True,
                   capture_output=True, timeout=300)
    return env


class AirflowRun:
    def __init__(self, result: dict, log: str):
        self.result, self.log = result, log
        self.tasks: dict[str, str] = result.get("tasks", {})
        self.state: str = result.get("dag_run_state", "")
        self.seconds: float = result.get("seconds", 0.0)


@pytest.fixture
def run_airflow(airflow_env):
    """run_airflow("test", dag_id, date, conf=..., mark_success=REGEX) or run_airflow("dagbag")."""
    def run(*args: str, conf: dict | None = None, mark_success: str | None = None, timeout: int = 900) -> AirflowRun:
        cmd = [str(AIRFLOW_BIN / "python"), str(RUNNER), *args]
        if conf is not None:
            cmd.append(json.dumps(conf))
        if mark_success:
            cmd += ["--mark-success", mark_success]
        proc = subprocess.run(cmd, env=airflow_env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
        log = proc.stdout + proc.stderr
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER)]
        assert proc.returncode == 0 and lines, f"airflow runner failed ({proc.returncode}):\n{log[-6000:]}"
        out = AirflowRun(json.loads(lines[-1][len(MARKER):]), log)
        log_file = Path(airflow_env["AIRFLOW_HOME"]) / f"run-{'-'.join(args[:3])}-{len(list(Path(airflow_env['AIRFLOW_HOME']).glob('run-*')))}.log"
        log_file.write_text(log)
        if "seconds" in out.result:
            print(f"{args[:3]} tasks={out.tasks} wall={out.seconds}s log={log_file}")
        return out
    return run


def job_conf(lake: Path, tmp_path: Path, *overrides: str, **settings) -> dict:
    """DAG run conf: the test lake, every report under tmp_path (never the repo's reports/),
    the test's overrides."""
    reports = tmp_path / "reports"
    return {"dataset": "bookcrossing", "lake": str(lake), **settings,
            "overrides": [f"quality.reports_dir={reports}", f"evaluation.reports_dir={reports}",
                          f"baselines.reports_dir={reports}", *overrides]}


def hand_made_manifest(dataset_lake: str, data_version: str = "dv1") -> dict:
    """One ingest manifest row (the ratings file) with `data_version`, replacing the last one."""
    from optirag.orchestration.lake import replace_rows
    from optirag.tables import MANIFEST

    row = {"source_file": "BX_Book_Ratings.csv", "role": "ratings", "raw_records": 1, "accepted": 1,
           "quarantined": 0, "sha256": "x", "data_version": data_version,
           "ingested_at": dt.datetime.now(dt.timezone.utc)}
    replace_rows([row], MANIFEST, dataset_lake, "role = 'ratings'")
    return row


def hand_made_scores(dataset_lake: str, score_date: str, broken: bool = False, version: str = "m1",
                     labelled: bool = False) -> int:
    """Candidates, rejects and scores of one date, written the way the jobs write them.

    3 users x 4 items; (u2, i3) is rejected, the other 11 are scored. `broken` makes the
    scores wrong the ways the gate must catch: one candidate unscored, a score of 1.7,
    an exit layer the model does not have. `labelled`: the rows of u0 and u1 are eval
    samples labelled 0, 1, 0, 1 by item. Returns the expected scores row count.
    """
    from optirag.orchestration.lake import replace_rows
    from optirag.tables import CANDIDATES, SCORE_REJECTS, SCORES

    now = dt.datetime.now(dt.timezone.utc)
    evals = {(u, i) for u in range(2) for i in range(4)} if labelled else set()
    cands = [{"score_date": score_date, "user_id": f"u{u}", "item_id": f"i{i}",
              "source": "eval" if (u, i) in evals else "popular", "sample_id": None,
              "label": i % 2 if (u, i) in evals else None} for u in range(3) for i in range(4)]
    rejected = {("u2", "i3")}
    scored = [c for c in cands if (c["user_id"], c["item_id"]) not in rejected]
    scores = [{**c, "score": 0.05 + 0.08 * k, "exit_layer": EXIT_LAYERS[k % len(EXIT_LAYERS)],
               "model_version": version, "retriever_version": "r1", "scored_at": now}
              for k, c in enumerate(scored)]
    if broken:
        scores = scores[1:]
        scores[0]["score"], scores[1]["exit_layer"] = 1.7, 9
    where = f"score_date = '{score_date}'"
    replace_rows(cands, CANDIDATES, dataset_lake, where)
    replace_rows([{"score_date": score_date, "user_id": "u2", "item_id": "i3", "reason": "unknown_item"}],
                 SCORE_REJECTS, dataset_lake, where)
    replace_rows(scores, SCORES, dataset_lake, where)
    return len(scored)


def tiny_bookcrossing(shared_data: Path, dst: Path, n_users: int = 40, min_ratings: int = 5) -> Path:
    """The smallest real slice: the first `n_users` users (by id) with >= min_ratings
    ratings in the shared BookCrossing files, their ratings and their books, in BX layout."""
    import csv

    src = shared_data / "bookcrossing"
    with open(src / "BX_Book_Ratings.csv", newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    per_user: dict[str, list[list[str]]] = {}
    for row in rows:
        per_user.setdefault(row[0], []).append(row)
    users = sorted((u for u, r in per_user.items() if len(r) >= min_ratings), key=int)[:n_users]
    kept = [r for u in users for r in per_user[u]]
    isbns = {r[1] for r in kept}
    dst.mkdir(parents=True, exist_ok=True)
    with open(dst / "BX_Book_Ratings.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *kept])
    with open(src / "BX_Books.csv", newline="", encoding="utf-8") as f:
        books_header, *books = list(csv.reader(f))
    with open(dst / "BX_Books.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([books_header, *(b for b in books if b[0] in isbns)])
    return dst
