"""The three DAGs under real Airflow (its own venv): integrity, and dag.test() runs whose
tasks run the real jobs in this venv against real Delta tables.

Wall time of every dag.test() run is printed (-s shows it), never asserted.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import EXIT_LAYERS, REPO, hand_made_manifest, hand_made_scores, job_conf, tiny_bookcrossing

from optirag.orchestration.lake import read
from optirag.tables import PUBLISHED, SCORE_REJECTS, SCORES

CONF = yaml.safe_load((REPO / "conf" / "base.yaml").read_text())["orchestration"]
GATES = {"check_ingest", "check_scores", "score_date.check_scores", "promote"}
LIGHT = {"settings", "retriever_due", "score_dates", "new_scorer_version"}
# The jobs the full runs need; until they all exist those tests are skipped, by name.
PIPELINE_JOBS = ["ingest", "check", "train_retriever", "build_prompts", "train_scorer",
                 "train_exit_heads", "evaluate", "build_candidates", "score", "publish", "promote"]
MISSING = [j for j in PIPELINE_JOBS if not (REPO / "jobs" / f"{j}.py").exists()]
needs_all_jobs = pytest.mark.skipif(bool(MISSING), reason=f"jobs not written yet: {', '.join(MISSING)}")


def test_dagbag_integrity(run_airflow):
    out = run_airflow("dagbag").result
    print(f"DagBag parse time: {out['parse_seconds']}s")
    assert out["import_errors"] == {}
    assert out["modules"] == [], "DAG files must not import pyspark/torch/ray/optirag at parse time"
    dags = out["dags"]
    assert set(dags) == {"optirag_nightly", "optirag_backfill", "optirag_retrain"}
    assert dags["optirag_nightly"]["schedule"] == CONF["nightly_schedule"]
    assert dags["optirag_retrain"]["schedule"] == CONF["retrain_schedule"]
    assert dags["optirag_backfill"]["schedule"] is None
    for dag_id, dag in dags.items():
        assert dag["owners"] == [CONF["owner"]], dag_id
        assert "optirag" in dag["tags"] and not dag["catchup"] and dag["max_active_runs"] == 1
        assert {"dataset", "lake", "env", "model", "overrides"} <= set(dag["params"])
        for task_id, task in dag["tasks"].items():
            assert task["timeout"], f"{dag_id}.{task_id} has no execution_timeout"
            expected = 0 if task_id in GATES | LIGHT else CONF["retries"]
            assert task["retries"] == expected, f"{dag_id}.{task_id}"
    nightly = dags["optirag_nightly"]["tasks"]
    chain = ["settings", "ingest", "check_ingest", "retriever_due", "train_retriever", "build_candidates",
             "score", "check_scores", "publish"]
    assert list(nightly) == [*chain, "night_report"]
    for up, down in zip(chain[1:], chain[2:]):
        assert down in nightly[up]["downstream"], (up, down)
    assert set(nightly["retriever_due"]["downstream"]) == {"train_retriever", "build_candidates"}
    assert nightly["build_candidates"]["trigger_rule"].endswith("NONE_FAILED_MIN_ONE_SUCCESS")
    # The night's page beside publish, whatever the gate said; both leaves, so a failed gate
    # (publish upstream_failed) still fails the run.
    assert nightly["check_scores"]["downstream"] == ["night_report", "publish"]
    assert nightly["night_report"]["trigger_rule"].endswith("ALL_DONE")
    assert nightly["publish"]["downstream"] == nightly["night_report"]["downstream"] == []
    backfill = dags["optirag_backfill"]
    assert {"start_date", "end_date"} <= set(backfill["params"])
    for step in ("build_candidates", "score", "check_scores", "publish"):
        assert backfill["tasks"][f"score_date.{step}"]["max_active_tis_per_dagrun"] == CONF["backfill_max_active"]
    retrain = dags["optirag_retrain"]["tasks"]
    chain = ["train_retriever", "build_prompts", "train_scorer", "new_scorer_version", "train_exit_heads",
             "evaluate", "promote"]
    assert set(retrain) == {"settings", *chain}
    for up, down in zip(chain, chain[1:]):
        assert down in retrain[up]["downstream"], (up, down)


def _published(lake: Path) -> list[tuple]:
    table = read(PUBLISHED, f"{lake}/bookcrossing")
    return sorted((r["score_date"], r["model_version"], r["rows"]) for r in (table.to_pylist() if table else []))


def _assert_night_report(run, lake: Path, date: str) -> str:
    """The night_report task ran, wrote the night's page and named it in its log; the page."""
    page = lake / "bookcrossing" / "_reports" / "nightly" / date / "report.md"
    assert run.tasks["night_report"] == "success" and page.is_file(), run.log[-6000:]
    assert f"night report: {page}" in run.log
    return page.read_text()


def test_backfill_gate_publishes_the_good_date_and_stops_the_broken_one(run_airflow, tmp_path):
    """Real gate and publish over two dates of hand-made candidates/scores; the not-yet
    relevant steps (candidates, scoring) are marked successful by dag.test, not run."""
    lake = tmp_path / "lake"
    rows = hand_made_scores(f"{lake}/bookcrossing", "2026-11-20")
    hand_made_scores(f"{lake}/bookcrossing", "2026-11-21", broken=True)
    conf = job_conf(lake, tmp_path, f"orchestration.scores_gate.exit_layers={EXIT_LAYERS}",
                    start_date="2026-11-20", end_date="2026-11-21")
    run = run_airflow("test", "optirag_backfill", "2026-11-22", conf=conf,
                      mark_success=r"score_date\.(build_candidates|score)$")
    assert run.tasks["score_dates"] == "success"
    assert run.tasks["score_date.check_scores[0]"] == "success"
    assert run.tasks["score_date.publish[0]"] == "success"
    assert run.tasks["score_date.check_scores[1]"] == "failed"
    assert run.tasks["score_date.publish[1]"] == "upstream_failed"
    assert _published(lake) == [("2026-11-20", "m1", rows)]
    # The gate's log says why: every failing expectation with its observed value.
    for line in ("FAIL  scores          expect_table_row_count_to_equal(value=11)  observed_value=10",
                 "FAIL  scores          expect_column_values_to_be_between(column=score",
                 "FAIL  scores          expect_column_values_to_be_in_set(column=exit_layer",
                 "check: scores gate FAILED"):
        assert line in run.log, f"{line!r} not in the run's log (see the log path printed above)"


@pytest.mark.e2e   # a real ingest + check in the DAG (~3 min); make test has a failing gate
# stopping a DAG (the backfill's score gate) and the ingest suite failing on a garbage drop
# (tests/ingest/test_bad_input.py)
def test_nightly_stops_at_the_ingest_gate_on_a_broken_drop(run_airflow, tmp_path, shared_data):
    """A day's drop whose ratings file is garbage: ingest quarantines every line, the
    ingest gate fails, nothing after it runs, nothing is published."""
    raw = tiny_bookcrossing(shared_data, tmp_path / "raw", n_users=5)
    lines = (raw / "BX_Book_Ratings.csv").read_text().splitlines()
    (raw / "BX_Book_Ratings.csv").write_text("\n".join([lines[0]] + [ln.replace(",", ";") for ln in lines[1:]]) + "\n")
    lake = tmp_path / "lake"
    run = run_airflow("test", "optirag_nightly", "2026-11-20",
                      conf=job_conf(lake, tmp_path, raw_dir=str(raw), model="tiny"))
    assert run.tasks["ingest"] == "success"
    assert run.tasks["check_ingest"] == "failed"
    for task in ("retriever_due", "train_retriever", "build_candidates", "score", "check_scores", "publish"):
        assert run.tasks[task] == "upstream_failed", task
    assert "check: ingest gate FAILED" in run.log
    assert _published(lake) == []
    # the night's page is written all the same, and does not make the run a success
    assert "No scores for 2026-11-20" in _assert_night_report(run, lake, "2026-11-20")
    assert run.state == "failed"


# --- Full runs: every task runs its real job on a tiny real slice with the tiny model. ---

def _scores(lake: Path) -> list[tuple]:
    table = read(SCORES, f"{lake}/bookcrossing")
    cols = ["score_date", "user_id", "item_id", "score", "exit_layer", "model_version"]
    return sorted(tuple(r[c] for c in cols) for r in table.select(cols).to_pylist())


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_data, airflow_env):
    """A lake with a tiny slice ingested by the nightly DAG's own ingest step, then a
    retrain DAG run (retriever, prompts, scorer, exit heads, evaluate, promote)."""
    import subprocess
    import sys

    base = tmp_path_factory.mktemp("pipeline")
    raw, lake = tiny_bookcrossing(shared_data, base / "raw"), base / "lake"
    conf = job_conf(lake, base, "quality.split_tolerance=0.2", raw_dir=str(raw), model="tiny")
    args = ["--dataset", "bookcrossing", "--lake", str(lake), "--model", "tiny"]
    subprocess.run([sys.executable, "-m", "jobs.ingest", *args, "--raw", str(raw)], cwd=REPO, check=True,
                   capture_output=True)
    return base, raw, lake, conf


@pytest.mark.e2e   # ~18 min of 16 job processes: make test-e2e, not CI (make test)
@needs_all_jobs
def test_retrain_promotes_then_nightly_publishes_then_backfill_adds_only_the_new_date(run_airflow, trained):
    """One lake through the three DAGs in the order production runs them; then a backfill
    of the next date scores and publishes it once and leaves the nightly's date alone.
    (Re-runs of a date are covered job by job: tests/scoring, tests/orchestration/test_gate_jobs.)"""
    base, raw, lake, conf = trained
    retrain = run_airflow("test", "optirag_retrain", "2026-11-15", conf=conf, timeout=1800)
    assert retrain.state == "success", retrain.tasks
    promoted = json.loads((lake / "bookcrossing" / "_models" / "scorer" / "gcn" / "PROMOTED.json").read_text())
    assert "valid_auc" in promoted

    nightly = run_airflow("test", "optirag_nightly", "2026-11-20", conf=conf, timeout=1800)
    assert nightly.state == "success", nightly.tasks
    # The retrain run just trained the retriever on this data_version: no refresh.
    assert nightly.tasks["train_retriever"] == "skipped" and "retriever fresh" in nightly.log
    scores = _scores(lake)
    assert scores and {s[0] for s in scores} == {"2026-11-20"}
    assert {s[5] for s in scores} == {promoted["version"]}
    assert _published(lake) == [("2026-11-20", promoted["version"], len(scores))]
    published = read(PUBLISHED, f"{lake}/bookcrossing").to_pylist()
    page = _assert_night_report(nightly, lake, "2026-11-20")
    rejects = read(SCORE_REJECTS, f"{lake}/bookcrossing")
    assert f"| candidates | {len(scores) + (rejects.num_rows if rejects else 0)} |" in page
    assert "PASSED: " in page and "## Speed" in page and "No score summary" not in page

    backfill = run_airflow("test", "optirag_backfill", "2026-11-23", timeout=1800,
                           conf={**conf, "start_date": "2026-11-21", "end_date": "2026-11-21"})
    assert backfill.state == "success", backfill.tasks
    after = _scores(lake)
    assert [s for s in after if s[0] == "2026-11-20"] == scores, "the backfill touched another date"
    new = [s for s in after if s[0] == "2026-11-21"]
    assert new and len({s[1:3] for s in new}) == len(new), "a (user, item) scored twice on the new date"
    rows = read(PUBLISHED, f"{lake}/bookcrossing").to_pylist()
    assert [r for r in rows if r["score_date"] == "2026-11-20"] == published   # same published_at too
    assert [(r["score_date"], r["rows"]) for r in rows if r["score_date"] == "2026-11-21"] == [("2026-11-21", len(new))]


def test_nightly_refreshes_the_retriever_only_when_due(run_airflow, tmp_path):
    """The retriever_due branch for real (in the job venv, on a hand-made manifest and
    registry); the jobs around it are marked successful by dag.test, not run."""
    lake = tmp_path / "lake"
    hand_made_manifest(f"{lake}/bookcrossing")
    others = r"^(ingest|check_ingest|train_retriever|build_candidates|score|check_scores|publish)$"
    due = run_airflow("test", "optirag_nightly", "2026-11-20", conf=job_conf(lake, tmp_path),
                      mark_success=others[:-2] + "|night_report)$")
    # on failure, show the task log (12-04: retriever_due aborted at exit; see test_gate_jobs)
    assert due.tasks["retriever_due"] == "success" and due.tasks["train_retriever"] == "success", due.log[-6000:]
    assert "retriever DUE: no retriever/gcn version yet" in due.log

    folder = lake / "bookcrossing" / "_models" / "retriever" / "gcn" / "g1"
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps(
        {"model_version": "g1", "data_version": "dv1", "created_at": "2026-11-19T03:00:00+00:00"}))
    # night_report runs its real job here, on hand-made scores of this night and the last
    for date in ("2026-11-20", "2026-11-21"):
        hand_made_scores(f"{lake}/bookcrossing", date)
    fresh = run_airflow("test", "optirag_nightly", "2026-11-21", conf=job_conf(lake, tmp_path), mark_success=others)
    assert fresh.tasks["train_retriever"] == "skipped", fresh.log[-6000:]
    assert fresh.tasks["build_candidates"] == "success" and fresh.tasks["publish"] == "success"
    assert "retriever fresh: retriever/gcn/g1 is fresh (2 days old" in fresh.log
    page = _assert_night_report(fresh, lake, "2026-11-21")
    assert "| 2026-11-20 | 11 |" in page and "Gate not run" in page   # check_scores was marked, not run
