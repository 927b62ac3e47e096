"""Training that shares the prefix, as serving does: one prefix, several targets per row.

    a user's training samples, oldest target first
      -> blocks of up to k samples; the block's prefix is its FIRST sample's (the history
         as of the oldest target, so no target of the block is shown in it), and each
         sample keeps its own suffix (target, similar raters, answer cue)
      -> one packed row      [ prefix | suffix 1 | suffix 2 | ... | suffix k ]
         position ids          0..p-1 | p..p+s1-1 | p..p+s2-1 | ...
         attention             prefix tokens: causal; suffix i: the whole prefix and
                               itself, causally; never another suffix
      -> one answer position per suffix (its last token), one loss term per target

Suffix i sees exactly the tokens and positions of the prompt ``prefix + suffix i`` (as
nightly scoring's shared-prefix cache gives them), so the block's first target gets the
logits of its own prompt (tested), and a later target is trained on its own prompt with
the history as of the block's first target. A block costs p + sum(s_i) tokens through
every layer instead of k * p + sum(s_i), in the frozen bottom and in the tuned top alike.
Evaluation and serving prompts are unchanged: only what training pays for each example.

Prefix and suffix are tokenized apart (prefix with the tokenizer's specials, suffix
without), as the scoring job does (optirag.scoring.prefix.encode_pairs).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from transformers import PreTrainedTokenizerBase

from optirag.llm.layerwise import Batch


@dataclass(frozen=True)
class Block:
    """One packed row's content: the shared prefix, each target's suffix, and the index of
    each target's example (its label's row in the tuning examples)."""
    prefix: str
    suffixes: tuple[str, ...]
    examples: tuple[int, ...]


def plan_blocks(frame: pd.DataFrame, targets_per_prefix: int,
                order: Sequence[str] = ("timestamp", "item_id")) -> list[Block]:
    """Blocks of up to `targets_per_prefix` consecutive samples of one user.

    `frame` (one row per tuning example, in the examples' order) needs `user_id`, `text`,
    `prefix_chars` (where the suffix starts in `text`), and the `order` columns: a user's
    samples in the ingest protocol's order. Chronological: (timestamp, item_id), so that a
    block's first sample is its oldest and its history shows none of the block's targets (a
    missing timestamp counts as 0). random_target has no timestamps: (item_id,), its train
    user's samples sharing one history anyway. A prompt without `prefix_chars` (a prompts
    table built before it was recorded) is refused.
    """
    if targets_per_prefix < 1:
        raise ValueError("targets_per_prefix must be >= 1")
    missing = frame["prefix_chars"].isna()
    if missing.any():
        raise ValueError(f"{int(missing.sum())} prompts have no prefix_chars (built before the "
                         "prompts table recorded it): re-run jobs.build_prompts")
    keyed = frame.assign(_i=np.arange(len(frame)))
    if "timestamp" in order:
        keyed["timestamp"] = keyed["timestamp"].fillna(0)
    keyed = keyed.sort_values(["user_id", *order], kind="stable")
    blocks = []
    for _, rows in keyed.groupby("user_id", sort=True):
        texts, cuts, ids = rows["text"].tolist(), rows["prefix_chars"].astype(int).tolist(), rows["_i"].tolist()
        for start in range(0, len(rows), targets_per_prefix):
            part = range(start, min(start + targets_per_prefix, len(rows)))
            blocks.append(Block(prefix=texts[start][: cuts[start]],
                                suffixes=tuple(texts[i][cuts[i]:] for i in part),
                                examples=tuple(ids[i] for i in part)))
    return blocks


def split_blocks(blocks: Sequence[Block], targets_per_prefix: int, prefixes: Sequence[str]) -> list[Block]:
    """Each block cut into blocks of up to `targets_per_prefix` targets, each behind its own
    first target's prefix (`prefixes[i]`: example i's own prefix): the same rows packed
    with a smaller k, for comparisons on equal rows."""
    out = []
    for block in blocks:
        for a in range(0, len(block.examples), targets_per_prefix):
            part = slice(a, a + targets_per_prefix)
            out.append(Block(prefixes[block.examples[a]], block.suffixes[part], block.examples[part]))
    return out


def _pack(prefix: Sequence[int], suffixes: Sequence[Sequence[int]]
          ) -> tuple[list[int], list[int], list[int], list[int]]:
    """(ids, position ids, segment ids, answer columns) of one packed row."""
    p = len(prefix)
    ids, positions, segment, answers = list(prefix), list(range(p)), [0] * p, []
    for i, s in enumerate(suffixes, start=1):
        ids += list(s)
        positions += range(p, p + len(s))
        segment += [i] * len(s)
        answers.append(len(ids) - 1)
    return ids, positions, segment, answers


def packed_batches(tokenizer: PreTrainedTokenizerBase, blocks: Sequence[Block], targets_per_batch: int,
                   max_length: int) -> list[Batch]:
    """Batches of whole blocks, about `targets_per_batch` targets each (a block is never
    split), blocks of similar packed length together. A prefix longer than `max_length`
    minus its longest suffix loses its beginning (the BOS is kept), as a prompt does."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    bos = tokenizer.bos_token_id
    rows = []
    for block in blocks:
        prefix = tokenizer(block.prefix, add_special_tokens=True)["input_ids"]
        suffixes = tokenizer(list(block.suffixes), add_special_tokens=False)["input_ids"]
        if any(not s for s in suffixes):
            raise ValueError("a suffix encodes to no tokens: the answer position would be lost")
        room = max_length - max(len(s) for s in suffixes)
        if len(prefix) > room:
            keep_bos = bos is not None and prefix[:1] == [bos]
            prefix = ([bos] if keep_bos else []) + prefix[len(prefix) - room + int(keep_bos):]
        rows.append((_pack(prefix, suffixes), block.examples))
    order = np.argsort([len(r[0][0]) for r in rows], kind="stable")
    groups, current, n = [], [], 0
    for i in order:
        current.append(rows[i])
        n += len(rows[i][1])
        if n >= targets_per_batch:
            groups.append(current)
            current, n = [], 0
    if current:
        groups.append(current)
    return [_batch(g, pad) for g in groups]


def _batch(rows, pad: int) -> Batch:
    """Right-padded packed rows. Pads form a segment of their own (-1): a fully masked query
    row would give NaN in attention, and no answer position reads a pad."""
    width = max(len(ids) for (ids, *_), _ in rows)
    n = len(rows)
    input_ids = torch.full((n, width), pad, dtype=torch.long)
    positions = torch.zeros((n, width), dtype=torch.long)
    segment = torch.full((n, width), -1, dtype=torch.long)
    index, row, last = [], [], []
    for r, ((ids, pos, seg, answers), examples) in enumerate(rows):
        t = len(ids)
        input_ids[r, :t] = torch.as_tensor(ids)
        positions[r, :t] = torch.as_tensor(pos)
        segment[r, :t] = torch.as_tensor(seg)
        index += examples
        row += [r] * len(answers)
        last += answers
    return Batch(index=torch.as_tensor(index), input_ids=input_ids, last=torch.as_tensor(last),
                 row=torch.as_tensor(row), positions=positions, segment=segment)
