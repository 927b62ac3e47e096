"""Shared-prefix scoring equals scoring the same token sequences as independent prompts."""
import numpy as np
import pytest
import torch

from optirag.early_exit.config import EarlyExitConfig
from optirag.early_exit.heads import ExitHeads
from optirag.early_exit.rules import build_rule, never_exit
from optirag.scoring.prefix import (encode_pairs, fold_shared_lead, plan_blocks, score_independent,
                                    score_shared_prefix)

USERS = [
    "Instruction: predict whether the user likes the target book.\nUser A liked Dune.\n"
    "The user liked Emma, Beloved and Solaris.\n",
    "Instruction: predict whether the user likes the target book.\nThe user disliked It.\n",
    "Instruction: predict whether the user likes the target book.\nUser B liked Kindred, "
    "Gilead and Possession; User C disliked Atonement.\nThe user liked Middlemarch.\n",
]
ITEMS = ["Dune", "Ulysses", "The Name of the Rose", "Atonement", "It", "A very long title of "
         "a book with many words in it"]


def _rows():
    group, suffixes = [], []
    for u, n in [(0, 5), (1, 1), (2, 7), (0, 2)]:  # user 0 appears twice, non-contiguously
        for i in range(n):
            group.append(u)
            suffixes.append(f"Target: {ITEMS[(u + i) % len(ITEMS)]}\nAnswer:\n")
    return group, suffixes


def test_plan_blocks_keeps_users_whole_and_covers_every_row():
    group = [0] * 5 + [1] + [2] * 7 + [0] * 2
    blocks = plan_blocks(group, batch_size=2, rows_per_block=8)
    rows = np.concatenate(blocks)
    assert sorted(rows.tolist()) == list(range(len(group)))
    owners = [{group[r] for r in b} for b in blocks]
    assert all(sum(u in o for o in owners) == 1 for u in (0, 1, 2))  # each user in one block
    assert all(len(o) <= 2 for o in owners)                           # <= batch_size prefixes
    assert [len(b) for b in blocks] == [8, 7]  # user 0 + user 1; user 2 (7 rows) alone


def test_common_leading_suffix_tokens_move_to_the_prefix_and_sequences_stay_the_same():
    prefixes, suffixes = [[1, 2], [3]], [[7, 8, 9], [7, 8, 5, 6], [7, 4], [7, 8]]
    group = np.array([0, 0, 1, 1])
    new_prefixes, new_suffixes = fold_shared_lead(prefixes, suffixes, group)
    assert new_prefixes == [[1, 2, 7, 8], [3, 7]]
    assert new_suffixes == [[9], [5, 6], [4], [8]]
    for r, u in enumerate(group):
        assert new_prefixes[u] + new_suffixes[r] == prefixes[u] + suffixes[r]
    # one candidate: everything but the last token (the answer position) is shared
    assert fold_shared_lead([[1]], [[7, 8, 9]], np.array([0])) == ([[1, 7, 8]], [[9]])


@pytest.mark.parametrize("batch_size", [3, 16])
def test_shared_prefix_matches_independent_prompts_full_depth(tiny_model, tokenizer, answer, batch_size):
    group, suffixes = _rows()
    prefix_ids, suffix_ids = encode_pairs(tokenizer, USERS, suffixes)
    heads = ExitHeads.from_model(tiny_model, answer, EarlyExitConfig(exit_layers=[2, 4]))
    pad = tokenizer.pad_token_id
    shared = score_shared_prefix(tiny_model, heads, never_exit, prefix_ids, suffix_ids, group, batch_size, pad)
    indep = score_independent(tiny_model, heads, never_exit, prefix_ids, suffix_ids, group, batch_size, pad)
    torch.testing.assert_close(shared.p_yes, indep.p_yes, atol=1e-4, rtol=0)
    assert shared.exit_layer.tolist() == [6] * len(group)
    assert len(set(np.round(shared.p_yes.numpy(), 6))) > 3  # scores differ per row: not a constant
    # the prefix path runs far fewer tokens through the layers
    assert sum(shared.tokens_per_layer) < sum(indep.tokens_per_layer)


def test_shared_prefix_with_early_exit_gives_the_same_exit_layers(tiny_model, tokenizer, answer):
    group, suffixes = _rows()
    prefix_ids, suffix_ids = encode_pairs(tokenizer, USERS, suffixes)
    heads = ExitHeads.from_model(tiny_model, answer, EarlyExitConfig(exit_layers=[1, 2, 3, 4, 5]))
    pad = tokenizer.pad_token_id
    full = score_independent(tiny_model, heads, never_exit, prefix_ids, suffix_ids, group, 8, pad)
    # a rule that lets some rows go: confidence at the median of the first head's confidence
    rule = build_rule(EarlyExitConfig(rule="confidence", confidence=0.5))
    shared = score_shared_prefix(tiny_model, heads, rule, prefix_ids, suffix_ids, group, 8, pad)
    indep = score_independent(tiny_model, heads, rule, prefix_ids, suffix_ids, group, 8, pad)
    assert shared.exit_layer.tolist() == indep.exit_layer.tolist()
    torch.testing.assert_close(shared.p_yes, indep.p_yes, atol=1e-4, rtol=0)
    assert (shared.exit_layer < 6).any()
    assert not torch.allclose(shared.p_yes, full.p_yes)  # early answers are the heads' own


def test_the_ideal_prefix_speedup_counts_the_tokens_each_path_runs():
    from optirag_bench.scoring import ideal_speedup_prefix

    prefixes, suffixes = [[1, 2], [3]], [[7, 8, 9], [7, 8, 5, 6], [7, 4], [7, 8]]
    # independent: 5 + 6 + 3 + 3 tokens; shared: prefixes [1, 2, 7, 8] and [3, 7] once, then 1 + 2 + 1 + 1
    assert ideal_speedup_prefix(prefixes, suffixes, [0, 0, 1, 1]) == pytest.approx(17 / 11)


def test_tokens_of_prefix_plus_suffix_equal_the_joint_prompt(tokenizer):
    """The nightly path scores prefix_ids + suffix_ids; evaluation tokenizes the joint text.
    With prefixes ending in a newline they are the same sequence."""
    group, suffixes = _rows()
    prefix_ids, suffix_ids = encode_pairs(tokenizer, USERS, suffixes)
    for r, u in enumerate(group):
        joint = tokenizer(USERS[u] + suffixes[r], add_special_tokens=True)["input_ids"]
        assert joint == prefix_ids[u] + suffix_ids[r]


def test_the_scoring_bench_times_an_fp32_twin_of_a_bf16_scorer_on_the_same_rows(tiny_model, tokenizer, answer):
    """jobs.bench_scoring's dtype comparison: (a) and (c) again with an fp32 copy, interleaved,
    with their speedup ratios and the bf16-vs-fp32 score difference."""
    import copy

    from optirag_bench import scoring as bench

    group, suffixes = _rows()
    prefix_ids, suffix_ids = encode_pairs(tokenizer, USERS, suffixes)
    fp32 = copy.deepcopy(tiny_model)
    bf16 = copy.deepcopy(tiny_model).to(torch.bfloat16)
    heads = ExitHeads.from_model(bf16, answer, EarlyExitConfig(exit_layers=[2, 4]))
    rule = build_rule(EarlyExitConfig(exit_layers=[2, 4], tau=0.05, window=1, min_previous=1))
    variants = bench.time_variants(bf16, heads, rule, prefix_ids, suffix_ids, group, 4,
                                   tokenizer.pad_token_id, repeats=1, fp32_model=fp32)
    assert {"full_independent_fp32", "full_prefix_fp32"} <= variants.keys()
    diff = variants["parity_max_abs_diff"]["full_independent_vs_fp32"]
    assert 0 < diff < 0.05          # bf16 rounds (not the same model run twice), but stays close
    ratios = bench.summarize(variants)
    assert ratios["speedup_dtype"] > 0 and ratios["speedup_dtype_prefix"] > 0
    assert bench.matmul_peak_flops(1, n=128, repeats=1, dtype=torch.bfloat16) > 0
