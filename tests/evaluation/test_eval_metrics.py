import json
import math

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from optirag.evaluation.metrics import auc_or_none, ctr_metrics, write_report

LABELS = [0, 0, 1, 1, 1, 0]
SCORES = [0.1, 0.4, 0.35, 0.8, 0.9, 0.2]


def test_known_values():
    m = ctr_metrics(LABELS, SCORES)
    # positives 0.35/0.8/0.9 against negatives 0.1/0.2/0.4: 8 of 9 pairs ordered right
    assert m["auc"] == pytest.approx(8 / 9)
    manual = -np.mean([math.log(1 - 0.1), math.log(1 - 0.4), math.log(0.35), math.log(0.8),
                       math.log(0.9), math.log(1 - 0.2)])
    assert m["logloss"] == pytest.approx(manual)
    assert (m["n"], m["positive_rate"]) == (6, 0.5)
    assert m["mean_score"] == pytest.approx(np.mean(SCORES))


def test_matches_sklearn_on_random_input():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    p = rng.random(500)
    m = ctr_metrics(y, p)
    assert m["auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["logloss"] == pytest.approx(log_loss(y, p))


def test_edge_cases():
    one_class = ctr_metrics([1, 1], [0.2, 1.0])
    assert one_class["auc"] is None and math.isfinite(one_class["logloss"])  # clipped
    assert ctr_metrics([], [])["n"] == 0
    with pytest.raises(ValueError, match="probabilities"):
        ctr_metrics([0, 1], [0.5, 1.5])
    with pytest.raises(ValueError, match="shape"):
        ctr_metrics([0, 1], [0.5])


def test_auc_or_none_is_sklearns_auc_or_none_with_one_class():
    assert auc_or_none(np.array(LABELS), np.array(SCORES)) == pytest.approx(roc_auc_score(LABELS, SCORES))
    assert auc_or_none([1, 1, 1], [0.2, 0.5, 0.9]) is None and auc_or_none([], []) is None


def test_write_report_is_whole_json(tmp_path):
    path = write_report(tmp_path / "eval" / "x.json", {"auc": 0.7})
    assert json.loads(path.read_text()) == {"auc": 0.7}
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]
