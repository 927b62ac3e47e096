"""The night's page (optirag.reporting.night) on hand-made Delta tables of three dates, a
score summary and a real gate report (quality.runner.Report.to_json); no Spark, no Airflow.
Its numbers are checked against the tables, recomputed here."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from conftest import hand_made_scores
from sklearn.metrics import roc_auc_score

from optirag.config import load_config
from optirag.orchestration.lake import read
from optirag.quality import gate_report_path
from optirag.reporting.night import night_dir, write_night_report, write_score_summary
from optirag.tables import SCORE_REJECTS, SCORES

BEFORE, NIGHT, EMPTY = "2026-11-19", "2026-11-20", "2026-11-22"


@pytest.fixture
def cfg(tmp_path):
    return load_config("bookcrossing", lake=str(tmp_path / "lake"),
                       overrides=[f"quality.reports_dir={tmp_path / 'checks'}"])


def _summary(date: str, rows: int, **extra) -> dict:
    """What jobs.score's run_scoring returns (numbers made up; `extra`: newer keys)."""
    return {"score_date": date, "rows": rows, "scored": rows - 1, "rejected": 1, "model_version": "m1",
            "retriever_version": "r1", "variant": "gcn", "early_exit": True, "shared_prefix": True,
            "exit_rule": None, "exit_layers": {}, "mean_exit_layer": 0.0, "mean_prefix_tokens": 0.0,
            "context_seconds": 2.0, "scoring_seconds": 4.0, "rows_per_second": 2.75,
            "wall_seconds": 8.0, **extra}


def _rows(cfg, date: str, table=SCORES, columns=("score", "exit_layer", "label")) -> list[dict]:
    return read(table, cfg.dataset_lake(), filters=[("score_date", "=", date)], columns=list(columns)).to_pylist()


def test_the_nights_page_shows_the_tables_numbers_the_gate_and_the_previous_date(cfg):
    from optirag.quality.runner import Outcome, Report

    lake = cfg.dataset_lake()
    hand_made_scores(lake, BEFORE, broken=True, labelled=True)
    hand_made_scores(lake, NIGHT, labelled=True)
    write_score_summary(cfg, _summary(NIGHT, 12, reused=3, stages={"read": 1.5, "scoring": 4.0}))
    write_score_summary(cfg, _summary(BEFORE, 11))           # without the newer keys
    Report([Outcome("scores", "expect_column_values_to_not_be_null", {"column": "score"}, True, {}),
            Outcome("scores", "expect_table_row_count_to_equal", {"value": 12}, False,
                    {"observed_value": 11})]).to_json(gate_report_path(cfg, f"scores-{NIGHT}"))

    page = write_night_report(cfg, NIGHT)
    assert page == night_dir(cfg, NIGHT) / "report.md" and str(page).startswith(f"{lake}/_reports/nightly/")
    text = page.read_text()
    lines = set(text.splitlines())
    scores, rejects = _rows(cfg, NIGHT), _rows(cfg, NIGHT, SCORE_REJECTS, ["reason"])
    assert {f"| scored | {len(scores) - 3} |", "| reused | 3 |", "| rejected | 1 (unknown_item: 1) |",
            f"| candidates | {len(scores) + len(rejects)} |"} <= lines
    # seconds per stage as the summary gives them; rows/s = its 12 candidate rows over them
    assert {"| read | 1.5 | 8.0 |", "| scoring | 4.0 | 3.0 |", "| wall | 8.0 | 1.5 |"} <= lines
    exits = Counter(r["exit_layer"] for r in scores)
    assert len(exits) > 1
    for layer, n in exits.items():
        assert f"| {layer} | {n} | {100 * n / len(scores):.1f}% |" in lines, layer
    # both dates' distributions, the earlier one (broken: 10 rows) named
    for date, rows in ((NIGHT, scores), (BEFORE, _rows(cfg, BEFORE))):
        values = np.array([r["score"] for r in rows])
        assert (f"| {date} | {len(values)} | {values.mean():.4f} | "
                + " | ".join(f"{q:.4f}" for q in np.quantile(values, [0.05, 0.25, 0.5, 0.75, 0.95]))
                + " |") in lines, date
    assert "FAILED: 1 of 2 expectations met (1 failing)" in text
    assert "- FAIL scores.expect_table_row_count_to_equal(value=12): observed 11" in lines
    labelled = [r for r in scores if r["label"] is not None]
    auc = roc_auc_score([r["label"] for r in labelled], [r["score"] for r in labelled])
    assert auc == pytest.approx(0.625)   # 10 of the 16 (positive, negative) pairs in order
    assert f"{len(labelled)} rows with a label, 50.0% positive: AUC {auc:.4f}," in text
    for figure in ("exit_layers.png", "scores.png"):
        assert f"]({figure})" in text
        assert (page.parent / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # A broken night (a score of 1.7) with no earlier date and no gate report: still a page.
    text = write_night_report(cfg, BEFORE).read_text()
    assert "No earlier scored date in `scores`" in text and "No AUC: scores must be probabilities" in text
    assert f"Gate not run: no `{gate_report_path(cfg, f'scores-{BEFORE}')}`." in text
    assert "| context | 2.0 | 5.5 |" in text   # no `stages` in its summary: context + scoring
    # A night whose score job never ran: the page says what is missing.
    text = write_night_report(cfg, EMPTY).read_text()
    assert f"No scores for {EMPTY}" in text and "No score summary" in text and "Gate not run" in text
    assert json.loads((night_dir(cfg, NIGHT) / "score_summary.json").read_text())["reused"] == 3
