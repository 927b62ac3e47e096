import pytest
import torch
from pydantic import ValidationError

from optirag.early_exit.config import EarlyExitConfig
from optirag.early_exit.rules import (
    build_rule,
    confidence_rule,
    discrepancies,
    never_exit,
    probability_rule,
    simulate_exits,
)


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_discrepancies_between_consecutive_exit_layers():
    d = discrepancies(t([[0.5, 0.7, 0.8, 0.85]]))
    torch.testing.assert_close(d, t([[0.2, 0.1, 0.05]]))


def test_probability_rule_waits_for_m_previous_discrepancies():
    # k = 3 exit layers seen: D_2, D_3 exist, so only 1 previous discrepancy < m = 2.
    stable = t([[0.9, 0.9, 0.9]])
    assert not probability_rule(stable, tau=1.0, window=2, min_previous=2).any()
    # With min_previous = 1 the same history may exit: |D_3 - D_2| = 0 < tau.
    assert probability_rule(stable, tau=0.01, window=2, min_previous=1).all()
    # Fewer than two exit layers: no discrepancy at all, never an exit.
    assert not probability_rule(t([[0.9], [0.1]]), tau=1.0, window=1, min_previous=1).any()


def test_probability_rule_on_hand_made_histories():
    history = t([
        [0.5, 0.7, 0.8, 0.85],   # D = .2 .1 .05 -> |.05 - mean(.2, .1)| = 0.10
        [0.5, 0.6, 0.7, 0.80],   # D = .1 .1 .1  -> 0.00
        [0.5, 0.5, 0.5, 0.90],   # D = 0  0  .4  -> 0.40
    ])
    torch.testing.assert_close(
        probability_rule(history, tau=0.11, window=2, min_previous=2),
        torch.tensor([True, True, False]))
    torch.testing.assert_close(
        probability_rule(history, tau=0.09, window=2, min_previous=2),
        torch.tensor([False, True, False]))


def test_probability_rule_window_uses_only_the_last_m_discrepancies():
    # D = .4 .1 .1 .1: with m = 2 the old .4 is outside the window -> |.1 - .1| = 0.
    history = t([[0.1, 0.5, 0.6, 0.7, 0.8]])
    assert probability_rule(history, tau=0.01, window=2, min_previous=2).item()
    # With m = 3 it counts: |.1 - mean(.4, .1, .1)| = 0.1.
    assert not probability_rule(history, tau=0.05, window=3, min_previous=3).item()


def test_confidence_rule_and_never_exit():
    history = t([[0.5, 0.95], [0.5, 0.05], [0.5, 0.6], [0.99, 0.9]])
    torch.testing.assert_close(confidence_rule(history, confidence=0.9),
                               torch.tensor([True, True, False, True]))
    assert not never_exit(history).any()


def test_simulate_exits_replays_a_rule_and_the_last_layer_always_answers():
    p = t([
        [0.95, 0.5, 0.5],   # confident at the first exit layer
        [0.5, 0.97, 0.5],   # at the second
        [0.5, 0.5, 0.5],    # never: the model's own head (last column) answers
    ])
    rule = build_rule(EarlyExitConfig(rule="confidence", confidence=0.9))
    assert simulate_exits(p, rule).tolist() == [0, 1, 2]
    assert simulate_exits(p, never_exit).tolist() == [2, 2, 2]


def test_build_rule_follows_the_config():
    history = t([[0.5, 0.6, 0.7, 0.8]])  # D = .1 .1 .1
    assert build_rule(EarlyExitConfig(rule="probability", tau=0.01))(history).item()
    assert not build_rule(EarlyExitConfig(rule="probability", tau=0.0))(history).item()
    assert not build_rule(EarlyExitConfig(rule="none"))(history).item()
    assert build_rule(EarlyExitConfig(rule="confidence", confidence=0.8))(history).item()


def test_config_validation():
    assert EarlyExitConfig().required_previous == EarlyExitConfig().window
    assert EarlyExitConfig(window=3, min_previous=1).required_previous == 1
    for bad in ({"min_previous": 3, "window": 2}, {"window": 0}, {"confidence": 0.3},
                {"tau": -1}, {"exit_stride": 0}, {"rules": "probability"}):
        with pytest.raises(ValidationError):
            EarlyExitConfig.model_validate(bad)


def test_the_rule_is_chosen_cheapest_within_the_auc_budget_and_the_agreement_guard():
    """A rule that reorders the rows (here: lucky on the labels) passes the AUC budget alone
    and is refused by min_agreement; with the guard off the cheaper, reordering one wins."""
    import numpy as np

    from optirag.early_exit.calibration import agreement, choose

    grid = [
        {"tau": 0.0, "auc": 0.70, "flops_ratio": 1.0, "agreement": 1.0},
        {"tau": 0.01, "auc": 0.699, "flops_ratio": 0.9, "agreement": 0.99},
        {"tau": 0.05, "auc": 0.702, "flops_ratio": 0.6, "agreement": 0.85},
        {"tau": 0.1, "auc": 0.65, "flops_ratio": 0.5, "agreement": 0.80},
    ]
    assert choose(grid, 0.70, 0.003)["tau"] == 0.05
    assert choose(grid, 0.70, 0.003, min_agreement=0.97)["tau"] == 0.01
    assert choose(grid, 0.70, 0.0, min_agreement=0.97)["tau"] == 0.0
    full = np.array([0.1, 0.4, 0.3, 0.9])
    assert agreement(full, full) == 1.0
    assert agreement(full[::-1].copy(), full) < 0
