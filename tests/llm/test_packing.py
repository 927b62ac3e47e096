"""Training with shared prefixes (optirag.llm.packing): several targets of a user behind one
prefix must give each target the logits of its own prompt, and train as the plain path does."""
import pandas as pd
import pytest
import torch

from optirag.llm.config import TuningConfig
from optirag.llm.layerwise import frozen_bottom, length_buckets, top_logits
from optirag.llm.packing import Block, packed_batches, plan_blocks, split_blocks
from optirag.llm.scoring import yes_probability
from optirag.llm.tiny import tiny_causal_lm
from optirag.llm.tuning import tune_lora

PREFIXES = ["The user liked Dune and Emma, disliked Ulysses.\n",
            "The user rated five books, all liked: Persuasion, Middlemarch.\n"]
SUFFIXES = [["Target: Solaris (Lem)\nAnswer:", "Target: Ubik\nAnswer:",
             "Target: The Left Hand of Darkness (Le Guin), 1969\nAnswer:"],
            ["Target: Beloved\nAnswer:", "Target: Ivanhoe (Scott)\nAnswer:"]]


def _own_prompts(tokenizer, blocks):
    """Each target's own prompt as token ids: the block's prefix + its suffix."""
    rows, index = [], []
    for block in blocks:
        prefix = tokenizer(block.prefix, add_special_tokens=True)["input_ids"]
        for suffix, i in zip(block.suffixes, block.examples):
            rows.append(prefix + tokenizer(suffix, add_special_tokens=False)["input_ids"])
            index.append(i)
    return rows, index


@torch.no_grad()
def _p_yes(model, batches, frozen, answer, n):
    p = torch.empty(n, dtype=torch.float64)
    for b in batches:
        p[b.index] = yes_probability(top_logits(model, frozen_bottom(model, b, frozen), b, frozen,
                                                answer)).double()
    return p


def test_every_packed_target_scores_as_its_own_prompt(tiny_model, tokenizer, answer):
    blocks = [Block(PREFIXES[0], tuple(SUFFIXES[0]), (0, 1, 2)),
              Block(PREFIXES[1], tuple(SUFFIXES[1]), (3, 4))]
    rows, index = _own_prompts(tokenizer, blocks)
    for frozen in (0, 2):
        own = _p_yes(tiny_model, length_buckets(rows, 8, tokenizer.pad_token_id), frozen, answer, 5)
        expected = torch.empty(5, dtype=torch.float64)
        expected[torch.as_tensor(index)] = own
        for per_batch in (1, 5):     # one block a batch, and both blocks right-padded together
            packed = packed_batches(tokenizer, blocks, per_batch, max_length=512)
            assert len(packed) == (2 if per_batch == 1 else 1)
            got = _p_yes(tiny_model, packed, frozen, answer, 5)
            assert got.numpy() == pytest.approx(expected.numpy(), abs=1e-5)


def test_a_packed_row_costs_the_prefix_once(tokenizer):
    block = Block(PREFIXES[0], tuple(SUFFIXES[0]), (0, 1, 2))
    (batch,) = packed_batches(tokenizer, [block], 8, max_length=512)
    prefix = len(tokenizer(PREFIXES[0])["input_ids"])
    suffixes = [len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in SUFFIXES[0]]
    assert batch.input_ids.shape == (1, prefix + sum(suffixes))
    assert batch.positions[0, prefix:prefix + suffixes[0]].tolist() == list(range(prefix, prefix + suffixes[0]))
    assert batch.positions[0, -suffixes[2]:].tolist() == list(range(prefix, prefix + suffixes[2]))
    mask = batch.attention_mask()[0, 0]
    second = prefix + suffixes[0]                     # first token of the second suffix
    assert mask[second, :prefix].all() and not mask[second, prefix:second].any()
    assert not mask[prefix - 1, prefix:].any()        # the prefix never sees a suffix


def test_a_long_prefix_loses_its_beginning_and_keeps_the_bos(tokenizer):
    block = Block(PREFIXES[0] * 20, (SUFFIXES[0][0],), (0,))
    (batch,) = packed_batches(tokenizer, [block], 8, max_length=40)
    full = tokenizer(block.prefix)["input_ids"]
    suffix = tokenizer(block.suffixes[0], add_special_tokens=False)["input_ids"]
    assert batch.input_ids[0].tolist()[-len(suffix):] == suffix           # the end is kept
    assert batch.input_ids.shape[1] == 40
    if full[0] == tokenizer.bos_token_id:   # a tokenizer that adds a BOS keeps it
        assert batch.input_ids[0, 0] == tokenizer.bos_token_id
    else:
        assert batch.input_ids[0, : 40 - len(suffix)].tolist() == full[-(40 - len(suffix)):]


def test_blocks_are_a_users_consecutive_samples_behind_the_oldest_prefix():
    frame = pd.DataFrame({            # u's samples 2 and 4 share a timestamp: item_id orders them
        "user_id": ["u", "v", "u", "u", "u", "v"],
        "timestamp": [30, 5, 10, 40, 10, None],
        "item_id": ["c", "b", "a", "d", "b", "a"],
        "text": ["P3|s3", "Q2|t2", "P1|s1", "P4|s4", "P2|s2", "Q1|t1"],
        "prefix_chars": [3, 3, 3, 3, 3, 3],
    })
    blocks = plan_blocks(frame, 3)
    assert blocks == [Block("P1|", ("s1", "s2", "s3"), (2, 4, 0)), Block("P4|", ("s4",), (3,)),
                      Block("Q1|", ("t1", "t2"), (5, 1))]
    assert sorted(i for b in plan_blocks(frame, 1) for i in b.examples) == list(range(6))
    own = [t[:c] for t, c in zip(frame["text"], frame["prefix_chars"])]
    assert split_blocks(blocks, 2, own) == [
        Block("P1|", ("s1", "s2"), (2, 4)), Block("P3|", ("s3",), (0,)), Block("P4|", ("s4",), (3,)),
        Block("Q1|", ("t1", "t2"), (5, 1))]
    with pytest.raises(ValueError, match="re-run jobs.build_prompts"):
        plan_blocks(frame.assign(prefix_chars=[3, None, 3, 3, 3, 3]), 2)


def test_one_target_per_prefix_trains_as_the_plain_path(tokenizer, answer):
    """Blocks of one give the plain path's batches (same length order) and so its losses."""
    texts = [p + s for p, ss in zip(PREFIXES, SUFFIXES) for s in ss]
    examples = [(t, i % 2) for i, t in enumerate(texts)]
    blocks = [Block(p, (s,), (i,)) for i, (p, s) in
              enumerate((p, s) for p, ss in zip(PREFIXES, SUFFIXES) for s in ss)]
    tuning = TuningConfig(lr=1e-2, epochs=2, batch_size=2, seed=7, progress=False,
                          trainable_from=3, dropout=0.0)
    runs = []
    for packed in (None, blocks):
        model = tiny_causal_lm(len(tokenizer), initializer_range=0.2,
                               pad_token_id=tokenizer.pad_token_id, seed=0)
        runs.append(tune_lora(model, tokenizer, examples, tuning, answer, blocks=packed).losses)
    assert runs[1] == pytest.approx(runs[0], abs=1e-5)


def test_packed_tuning_learns_and_needs_every_example_once(tokenizer, answer):
    good = Block("The user loved every book.\n", ("Target: Emma\nAnswer:", "Target: Dune\nAnswer:"), (0, 1))
    bad = Block("The user hated every book.\n", ("Target: Emma\nAnswer:", "Target: Dune\nAnswer:"), (2, 3))
    examples = [(good.prefix + s, 1) for s in good.suffixes] + [(bad.prefix + s, 0) for s in bad.suffixes]
    tuning = TuningConfig(lr=1e-2, epochs=8, batch_size=2, seed=7, progress=False)
    model = tiny_causal_lm(len(tokenizer), initializer_range=0.2, pad_token_id=tokenizer.pad_token_id, seed=0)
    result = tune_lora(model, tokenizer, examples, tuning, answer, blocks=[good, bad])
    assert sum(result.losses[-2:]) < 0.5 * sum(result.losses[:2])
    with pytest.raises(ValueError, match="every tuning example exactly once"):
        tune_lora(model, tokenizer, examples, tuning, answer, blocks=[good])
