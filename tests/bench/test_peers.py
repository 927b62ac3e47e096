"""The peer bench's own arithmetic (llama.cpp itself is a bench-only install, not tested here)."""
import numpy as np
import pytest

from optirag_bench import peers


def test_agreement_is_measured_against_the_reference_scorer():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    ref = np.clip(labels * 0.3 + rng.random(200) * 0.7, 0, 1)
    scores = {"ref": ref, "same_order": ref ** 2, "noisy": ref + rng.normal(0, 0.2, 200)}
    got = peers.agreement(scores, labels, "ref")
    assert got["ref"]["max_abs_dp"] == 0 and got["ref"]["spearman"] == pytest.approx(1)
    assert got["same_order"]["spearman"] == pytest.approx(1) and got["same_order"]["max_abs_dp"] > 0.1
    assert got["same_order"]["auc"] == pytest.approx(got["ref"]["auc"])   # AUC reads the order only
    assert got["noisy"]["spearman"] < 0.95 and got["noisy"]["auc"] < got["ref"]["auc"]
    lo, hi = got["ref"]["auc_ci95"]
    assert lo < got["ref"]["auc"] < hi


def test_scorers_are_timed_interleaved_on_the_same_rows():
    calls = []

    def scorer(name):
        def score(prefix_ids, suffix_ids, group):
            calls.append((name, len(group)))
            return np.zeros(len(group))
        return score

    rows = ([[1, 2]], [[3], [4], [5]], [0, 0, 0])
    out = peers.time_scorers({"a": scorer("a"), "b": scorer("b")}, rows, repeats=2)
    assert calls == [("a", 3), ("b", 3)] * 3   # one untimed warm-up pass each, then 2 timed
    assert set(out) == {"a", "b"} and all(len(v["seconds"]) == 2 and v["rows_per_s"] > 0 for v in out.values())


def test_our_scorer_runs_on_the_threads_it_is_given(tiny_model, tokenizer, answer):
    """Loading a scorer sets the nightly actor's thread count (1); the peer bench must still
    time ours on the threads llama.cpp gets (it did not until 12-04)."""
    import torch

    from optirag.early_exit.heads import ExitHeads
    from optirag.early_exit.rules import never_exit
    from optirag.scoring.prefix import encode_pairs

    before = torch.get_num_threads()
    prefix_ids, suffix_ids = encode_pairs(tokenizer, ["The user liked Emma.\n"], ["Target: Dune\nAnswer:\n"] * 3)
    score = peers.ours(tiny_model, ExitHeads.final_only(tiny_model, answer), never_exit, batch_size=2,
                       pad_id=tokenizer.pad_token_id, shared_prefix=True, threads=2)
    try:
        torch.set_num_threads(1)
        p = score(prefix_ids, suffix_ids, [0, 0, 0])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert p.shape == (3,) and np.all((p > 0) & (p < 1))
