"""Platt rescaling of the exit heads: fitted per head on valid, saved with the heads."""
import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from optirag.early_exit.config import EarlyExitConfig
from optirag.early_exit.heads import ExitHeads, load_exit_heads, save_exit_heads
from optirag.early_exit.platt import IDENTITY, fit_columns, fit_platt, rescale, rescale_columns


def test_the_identity_leaves_scores_bit_for_bit_and_a_fit_recovers_a_known_scale():
    p = torch.rand(50)
    assert torch.equal(rescale(p, IDENTITY), p)
    rng = np.random.default_rng(0)
    x = rng.normal(size=20_000)
    labels = (rng.random(20_000) < 1 / (1 + np.exp(-(2.0 * x - 0.5)))).astype(int)
    a, b = fit_platt(torch.sigmoid(torch.tensor(x, dtype=torch.float32)), labels).tolist()
    assert abs(a - 2.0) < 0.1 and abs(b + 0.5) < 0.1
    assert fit_columns(torch.rand(10, 2), np.ones(10), [1, 2]) == {}   # one class: nothing to fit


def test_rescaling_puts_two_heads_on_one_scale_so_their_rows_rank_together():
    """Two heads that rank their own rows perfectly but answer on different scales: mixed as
    they are, the rows of the confident head outrank every row of the timid one."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 400)
    signal = np.where(labels == 1, 1.0, -1.0) + rng.normal(0, 0.8, 400)
    p = torch.tensor(np.stack([1 / (1 + np.exp(-(0.2 * signal - 2))),    # timid, shifted low
                               1 / (1 + np.exp(-(3.0 * signal + 2)))], 1), dtype=torch.float32)
    half = np.arange(400) < 200            # the first half leaves at head 1, the rest at head 2
    mixed = lambda m: np.where(half, m[:, 0].numpy(), m[:, 1].numpy())  # noqa: E731
    fits = fit_columns(p, labels, [10, 30])
    raw, scaled = roc_auc_score(labels, mixed(p)), roc_auc_score(labels, mixed(rescale_columns(p, fits, [10, 30])))
    assert scaled > raw + 0.05
    for j in range(2):   # one head's own order never changes
        assert roc_auc_score(labels, rescale_columns(p, fits, [10, 30])[:, j]) == roc_auc_score(labels, p[:, j])


def test_fits_are_saved_with_the_heads_and_old_heads_load_unscaled(tmp_path, tiny_model, answer):
    heads = ExitHeads.from_model(tiny_model, answer, EarlyExitConfig(exit_layers=[2, 4]))
    heads.set_platt({2: torch.tensor([0.5, 0.1]), 6: torch.tensor([1.5, -0.2])})
    save_exit_heads(heads, tmp_path / "heads", model_version="tiny")
    loaded = load_exit_heads(tmp_path / "heads", tiny_model, answer)
    assert loaded.platt == heads.platt == {2: [0.5, 0.1], 4: [1.0, 0.0], 6: [1.5, -0.2]}
    h = torch.randn(3, tiny_model.config.hidden_size)
    with torch.no_grad():
        for layer in heads.exit_layers:
            assert torch.equal(loaded[layer].p_yes(h), heads[layer].p_yes(h))
        raw = torch.softmax(heads[6].pair_logits(h), -1)[:, 1]
        torch.testing.assert_close(heads[6].p_yes(h), torch.sigmoid(1.5 * torch.logit(raw) - 0.2))

    # heads saved before Platt fits existed: no platt tensors at all
    from safetensors.torch import load_file, save_file
    weights = tmp_path / "heads" / "heads.safetensors"
    save_file({k: v for k, v in load_file(str(weights)).items() if not k.endswith("platt")}, str(weights))
    assert load_exit_heads(tmp_path / "heads", tiny_model, answer).platt == {
        2: [1.0, 0.0], 4: [1.0, 0.0], 6: [1.0, 0.0]}
