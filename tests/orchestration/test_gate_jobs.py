"""publish / promote / retriever freshness on hand-made Delta tables and registry folders
(real deltalake tables, real registry files; no Airflow, no Spark)."""
from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
from conftest import hand_made_manifest, hand_made_scores
from deltalake import DeltaTable

from optirag import registry
from optirag.config import load_config
from optirag.orchestration.freshness import retriever_due
from optirag.orchestration.lake import read, replace_rows
from optirag.orchestration.promote import NotEvaluatedError, promote_if_better
from optirag.orchestration.publish import NothingToPublishError, publish
from optirag.tables import EVAL_SCORES, PUBLISHED, USER_INDEX


@pytest.fixture
def cfg(tmp_path):
    return load_config("bookcrossing", lake=str(tmp_path / "lake"), overrides=["orchestration.promote_tolerance=0.01"])


def test_publish_writes_one_row_per_date_and_is_idempotent(cfg):
    lake = cfg.dataset_lake()
    rows = hand_made_scores(lake, "2026-11-20")
    first = publish(cfg, "2026-11-20")
    assert (first["rows"], first["model_version"], first["changed"]) == (rows, "m1", True)
    version = DeltaTable(PUBLISHED.path(lake)).version()
    again = publish(cfg, "2026-11-20")
    assert again["changed"] is False and again["published_at"] == first["published_at"]
    assert DeltaTable(PUBLISHED.path(lake)).version() == version      # nothing rewritten
    hand_made_scores(lake, "2026-11-21")
    hand_made_scores(lake, "2026-11-20", version="m2")                # the date re-scored
    publish(cfg, "2026-11-21")
    assert publish(cfg, "2026-11-20")["changed"] is True
    got = sorted((r["score_date"], r["model_version"], r["rows"]) for r in read(PUBLISHED, lake).to_pylist())
    assert got == [("2026-11-20", "m2", rows), ("2026-11-21", "m1", rows)]


def test_publish_refuses_a_date_without_scores(cfg):
    with pytest.raises(NothingToPublishError, match="no scores for 2026-11-22"):
        publish(cfg, "2026-11-22")
    hand_made_scores(cfg.dataset_lake(), "2026-11-20")
    with pytest.raises(NothingToPublishError, match="no scores for 2026-11-22"):
        publish(cfg, "2026-11-22")
    assert read(PUBLISHED, cfg.dataset_lake()) is None


def _version(cfg, kind: str, version: str, **meta) -> None:
    folder = registry.version_dir(cfg, kind, version)
    folder.mkdir(parents=True)
    (folder / registry.META_FILE).write_text(json.dumps({"model_version": version, **meta}))


def _eval(cfg, version: str, labels: list[int], scores: list[float]) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    rows = [{"run_id": f"gcn/{version}", "variant": "gcn", "model_version": version, "sample_id": f"s{i}",
             "user_id": f"u{i}", "item_id": "i", "split": "valid", "label": y, "score": s, "exit_layer": None,
             "scored_at": now} for i, (y, s) in enumerate(zip(labels, scores))]
    replace_rows(rows, EVAL_SCORES, cfg.dataset_lake(), f"run_id = 'gcn/{version}'")


LABELS = [0, 0, 1, 1, 0, 1]


def test_promote_first_version_then_only_if_not_worse(cfg):
    _version(cfg, "scorer/gcn", "v1", created_at="2026-11-01T00:00:00")
    _version(cfg, "exit_heads/gcn", "h1", model_version="v1")
    _eval(cfg, "v1", LABELS, [0.1, 0.4, 0.35, 0.8, 0.2, 0.9])          # AUC 8/9
    first = promote_if_better(cfg)
    assert first["promoted"] and first["reason"] == "first promoted version"
    assert registry.promoted(cfg, "scorer/gcn")["version"] == "v1"
    assert registry.promoted(cfg, "exit_heads/gcn")["version"] == "h1"

    _version(cfg, "scorer/gcn", "v2", created_at="2026-11-08T00:00:00")
    _eval(cfg, "v2", LABELS, [0.9, 0.1, 0.2, 0.8, 0.7, 0.3])          # AUC 4/9: much worse
    worse = promote_if_better(cfg)
    assert not worse["promoted"] and "worse than" in worse["reason"]
    assert worse["candidate_valid_auc"] == pytest.approx(4 / 9)
    assert worse["promoted_valid_auc"] == pytest.approx(8 / 9)
    assert registry.promoted(cfg, "scorer/gcn")["version"] == "v1"

    _version(cfg, "scorer/gcn", "v3", created_at="2026-11-15T00:00:00")
    _eval(cfg, "v3", LABELS, [0.1, 0.2, 0.3, 0.8, 0.35, 0.9])         # AUC 8/9: equal, not worse
    no_heads = promote_if_better(cfg)
    assert not no_heads["promoted"] and "no exit_heads/gcn version trained on v3" in no_heads["reason"]
    _version(cfg, "exit_heads/gcn", "h3", model_version="v3")
    assert promote_if_better(cfg)["promoted"]
    assert registry.promoted(cfg, "scorer/gcn")["version"] == "v3"
    assert registry.promoted(cfg, "exit_heads/gcn")["version"] == "h3"
    assert promote_if_better(cfg)["reason"] == "v3 is already the promoted version"


def test_promote_refuses_an_unevaluated_version(cfg):
    _version(cfg, "scorer/gcn", "v1", created_at="2026-11-01T00:00:00")
    with pytest.raises(NotEvaluatedError, match="run jobs.evaluate"):
        promote_if_better(cfg)
    assert registry.promoted(cfg, "scorer/gcn") is None


def test_retriever_due_on_age_and_data_version(cfg):
    hand_made_manifest(cfg.dataset_lake(), "dv1")
    assert retriever_due(cfg, "2026-11-20") == (True, "no retriever/gcn version yet")
    _version(cfg, "retriever/gcn", "g1", data_version="dv1", created_at="2026-11-18T03:00:00+00:00")
    due, why = retriever_due(cfg, "2026-11-20")
    assert not due and "fresh (2 days old" in why
    due, why = retriever_due(cfg, "2026-11-25")   # refresh every 7 days (conf/base.yaml)
    assert due and "7 days old" in why
    hand_made_manifest(cfg.dataset_lake(), "dv2")
    due, why = retriever_due(cfg, "2026-11-20")   # no saved degrees: any change retrains
    assert due and why == "data_version changed: dv1 -> dv2"


def _user_index(cfg, counts: dict[str, int]) -> None:
    rows = [{"user_id": u, "user_idx": i, "n_edges": n} for i, (u, n) in enumerate(counts.items())]
    replace_rows(rows, USER_INDEX, cfg.dataset_lake(), "true")


def test_a_small_drop_keeps_the_retriever_a_large_one_retrains_it(cfg):
    """Due on a data_version change only when >= retriever_refresh_edges_share (5%) of the
    graph's edges changed: per-user edge counts in user_index against the degrees the
    retriever saved. New users count with all their edges."""
    from safetensors.numpy import save_file

    hand_made_manifest(cfg.dataset_lake(), "dv1")
    degrees = {f"u{i}": 10 for i in range(20)}                      # 200 edges
    _version(cfg, "retriever/gcn", "g1", data_version="dv1", created_at="2026-11-18T03:00:00+00:00",
             user_ids=list(degrees))
    save_file({"user_degree": np.array(list(degrees.values()), dtype=np.int64)},
              str(registry.version_dir(cfg, "retriever/gcn", "g1") / "embeddings.safetensors"))
    hand_made_manifest(cfg.dataset_lake(), "dv2")
    _user_index(cfg, {**degrees, "u0": 12, "u1": 11, "u7": 4})     # 2 + 1 + 6 = 9 edges: 4.5%
    due, why = retriever_due(cfg, "2026-11-20")
    assert not due and why.endswith("9 of 200 edges changed (4.50%, 3 users), refresh at 5.00%")
    _user_index(cfg, {**degrees, "u0": 12, "u1": 11, "new": 7})     # 2 + 1 + 7 = 10: 5%
    due, why = retriever_due(cfg, "2026-11-20")
    assert due and "10 of 200 edges changed (5.00%, 3 users)" in why
    strict = load_config("bookcrossing", lake=cfg.lake, overrides=["orchestration.retriever_refresh_edges_share=0"])
    _user_index(cfg, degrees)
    assert retriever_due(strict, "2026-11-20") == (True, "data_version changed: dv1 -> dv2")
    assert retriever_due(cfg, "2026-11-20")[0] is False and "0 of 200 edges" in retriever_due(cfg, "2026-11-20")[1]
    assert retriever_due(cfg, "2026-11-25")[0] is True                # and age still refreshes


def test_a_process_that_read_the_lake_exits_cleanly(cfg):
    """The DAGs' external-python checks (retriever_due, new_scorer_version) read the lake and
    then exit the normal way. With deltalake's to_pyarrow_table such a process aborted at exit
    in about 6 runs of 10 (SIGABRT, "terminate called without an active exception"), which
    failed retriever_due in CI on 12-04. Ten clean exits in a row: ~2e-4 with the old read."""
    import subprocess
    import sys

    hand_made_manifest(cfg.dataset_lake(), "dv1")
    script = ("import sys; from optirag.orchestration.lake import read; from optirag.tables import MANIFEST; "
              "t = read(MANIFEST, sys.argv[1], filters=[('role', '=', 'ratings')], columns=['data_version']); "
              "assert t.column('data_version').to_pylist() == ['dv1']")
    codes = [subprocess.run([sys.executable, "-c", script, cfg.dataset_lake()], capture_output=True, text=True)
             for _ in range(10)]
    assert [c.returncode for c in codes] == [0] * 10, [c.stderr[-500:] for c in codes if c.returncode]
