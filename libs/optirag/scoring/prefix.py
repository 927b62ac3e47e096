"""Shared user prefixes: one key/value cache per user, many short candidate suffixes.

A nightly prompt is ``prefix(user) + suffix(item)``: the instruction, the retrieved
neighbours' interactions and the user's history do not depend on the candidate item. With
C candidates per user, scoring independent prompts pushes C x (P + S) tokens through every
layer; here the P prefix tokens run once per user and only C x S suffix tokens run per
layer (they attend to the cached prefix), so the saving approaches (P + S) / S.

    encode_pairs        token ids of each prefix (BOS included) and suffix (no specials)
    plan_blocks         rows -> blocks of whole users (one prefix forward per block)
    fold_shared_lead    per block: tokens every suffix of a user starts with ("Target:")
                        -> that user's prefix
    score_shared_prefix per block: prefix forward once -> the block's rows sorted by suffix
                        length, in batches -> each batch's cache rows selected (one per
                        candidate) -> early_exit_forward over the suffixes (per-row exit works)
    score_independent   the same token sequences scored as full prompts (parity, benchmarks)

Why blocks and length order: batches cut in row order padded every suffix to the longest of
its batch (x1.6 the real suffix tokens on BookCrossing at 32 rows), and a user with more
candidates than a batch had its prefix run again for each batch.

Parity: a row's token sequence is exactly prefix_ids + suffix_ids in both paths, so the
shared-prefix score equals the independent one up to float reassociation (tested 1e-4).
Prefixes in one block are right-padded; the engine derives each row's positions from the
attention mask, so padding between a short prefix and its suffix changes nothing.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from optirag.early_exit.engine import ExitOutput, early_exit_forward
from optirag.early_exit.heads import ExitHeads
from optirag.early_exit.rules import Rule


def encode_pairs(tokenizer: PreTrainedTokenizerBase, prefixes: Sequence[str],
                 suffixes: Sequence[str]) -> tuple[list[list[int]], list[list[int]]]:
    """Prefix ids with the tokenizer's specials (e.g. BOS), suffix ids without any."""
    prefix_ids = tokenizer(list(prefixes), add_special_tokens=True)["input_ids"] if prefixes else []
    suffix_ids = tokenizer(list(suffixes), add_special_tokens=False)["input_ids"] if suffixes else []
    if any(not ids for ids in suffix_ids):
        raise ValueError("a suffix encodes to no tokens: the answer position would be lost")
    return prefix_ids, suffix_ids


def _pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask


def fold_shared_lead(prefix_ids: Sequence[Sequence[int]], suffix_ids: Sequence[Sequence[int]],
                     group: np.ndarray) -> tuple[list[list[int]], list[list[int]]]:
    """Leading tokens that every suffix of a user shares (e.g. "Target:") move to the end of
    that user's prefix, so they run once per user instead of once per candidate. Each row's
    token sequence is unchanged; every suffix keeps at least its last token."""
    prefixes, suffixes = [list(p) for p in prefix_ids], [list(s) for s in suffix_ids]
    rows_of: dict[int, list[int]] = {}
    for r, u in enumerate(group.tolist()):
        rows_of.setdefault(u, []).append(r)
    for u, rows in rows_of.items():
        first = suffixes[rows[0]]
        n = min(len(suffixes[r]) for r in rows) - 1
        for r in rows[1:]:
            other = suffixes[r]
            n = next((i for i in range(n) if other[i] != first[i]), n)
        if n > 0:
            prefixes[u] += first[:n]
            for r in rows:
                suffixes[r] = suffixes[r][n:]
    return prefixes, suffixes


def plan_blocks(group: Sequence[int], batch_size: int, rows_per_block: int | None = None
                ) -> list[np.ndarray]:
    """Row indices per block of whole users: at most `batch_size` users (one prefix forward)
    and about `rows_per_block` rows (default 4 x batch_size); a user with more rows is a
    block alone. A block's rows are then scored in batches of similar suffix length."""
    rows_per_block = rows_per_block or 4 * batch_size
    group = np.asarray(group)
    order = np.argsort(group, kind="stable")
    starts = np.flatnonzero(np.r_[True, group[order][1:] != group[order][:-1]])
    blocks, current, users, size = [], [], 0, 0
    for a, b in zip(starts, np.r_[starts[1:], len(order)]):
        if current and (size + b - a > rows_per_block or users == batch_size):
            blocks.append(np.concatenate(current))
            current, users, size = [], 0, 0
        current.append(order[a:b])
        users, size = users + 1, size + b - a
    if current:
        blocks.append(np.concatenate(current))
    return blocks


@torch.no_grad()
def prefix_cache(model: PreTrainedModel, prefix_ids: Sequence[Sequence[int]], pad_id: int
                 ) -> tuple[DynamicCache, torch.Tensor]:
    """(KV cache of the right-padded prefixes through every layer, their attention mask)."""
    device = next(model.parameters()).device
    ids, mask = _pad(prefix_ids, pad_id)
    ids, mask = ids.to(device), mask.to(device)
    cache = DynamicCache(config=model.config)
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    model.get_decoder()(input_ids=ids, attention_mask=mask, position_ids=positions,
                        past_key_values=cache, use_cache=True)
    return cache, mask


def _select(model: PreTrainedModel, cache: DynamicCache, mask: torch.Tensor, rows: torch.Tensor
            ) -> tuple[DynamicCache, torch.Tensor]:
    """A fresh cache holding `rows` of a prefix cache (indices may repeat: one per candidate),
    cut to the longest of their prefixes (right padding that none of them needs)."""
    mask = mask[rows]
    width = int(mask.sum(dim=1).max())
    data = [(keys[rows, :, :width], values[rows, :, :width]) for keys, values, *_ in cache]
    return DynamicCache(ddp_cache_data=data, config=model.config), mask[:, :width]


def _empty_output(num_layers: int) -> ExitOutput:
    return ExitOutput(p_yes=torch.zeros(0), exit_layer=torch.zeros(0, dtype=torch.long),
                      rows_per_layer=[0] * num_layers, tokens_per_layer=[0] * num_layers,
                      num_layers=num_layers)


def _scatter(outputs: list[tuple[np.ndarray, ExitOutput]], n: int, num_layers: int) -> ExitOutput:
    """Batch outputs back into row order."""
    if not outputs:
        return _empty_output(num_layers)
    merged = ExitOutput.concat([o for _, o in outputs])
    order = torch.from_numpy(np.concatenate([rows for rows, _ in outputs]))
    p_yes, exit_layer = torch.empty(n), torch.empty(n, dtype=torch.long)
    p_yes[order], exit_layer[order] = merged.p_yes, merged.exit_layer
    merged.p_yes, merged.exit_layer = p_yes, exit_layer
    return merged


def _by_length(rows: np.ndarray, lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """`rows` in batches of <= batch_size rows of similar length (little padding)."""
    rows = rows[np.argsort([lengths[r] for r in rows], kind="stable")]
    return [rows[i: i + batch_size] for i in range(0, len(rows), batch_size)]


def score_shared_prefix(
    model: PreTrainedModel, heads: ExitHeads, rule: Rule,
    prefix_ids: Sequence[Sequence[int]], suffix_ids: Sequence[Sequence[int]],
    group: Sequence[int], batch_size: int, pad_id: int,
) -> ExitOutput:
    """Row r is prefix_ids[group[r]] + suffix_ids[r]; outputs are in row order."""
    if len(suffix_ids) != len(group):
        raise ValueError("one group index per suffix row is needed")
    device = next(model.parameters()).device
    num_layers = model.config.num_hidden_layers
    group = np.asarray(group, dtype=np.int64)
    outputs = []
    for block in plan_blocks(group, batch_size):
        users, local = np.unique(group[block], return_inverse=True)   # blocks hold whole users
        prefixes, suffixes = fold_shared_lead([prefix_ids[u] for u in users],
                                              [suffix_ids[r] for r in block], local)
        cache, prefix_mask = prefix_cache(model, prefixes, pad_id)
        for part in _by_length(np.arange(len(block)), [len(s) for s in suffixes], batch_size):
            select = torch.from_numpy(local[part]).to(device)
            rows_cache, rows_prefix_mask = _select(model, cache, prefix_mask, select)
            ids, mask = _pad([suffixes[i] for i in part], pad_id)
            full_mask = torch.cat([rows_prefix_mask, mask.to(device)], dim=1)
            outputs.append((block[part], early_exit_forward(model, heads, rule, ids.to(device),
                                                            full_mask, past_key_values=rows_cache)))
    return _scatter(outputs, len(group), num_layers)


def score_independent(
    model: PreTrainedModel, heads: ExitHeads, rule: Rule,
    prefix_ids: Sequence[Sequence[int]], suffix_ids: Sequence[Sequence[int]],
    group: Sequence[int], batch_size: int, pad_id: int,
) -> ExitOutput:
    """The same rows as full prompts, no sharing (the baseline and the parity reference),
    batched by length as the shared path is, so the two differ only in the sharing."""
    device = next(model.parameters()).device
    num_layers = model.config.num_hidden_layers
    lengths = [len(prefix_ids[g]) + len(s) for g, s in zip(group, suffix_ids)]
    outputs = []
    for rows in _by_length(np.arange(len(group)), lengths, batch_size):
        ids, mask = _pad([list(prefix_ids[group[r]]) + list(suffix_ids[r]) for r in rows], pad_id)
        outputs.append((rows, early_exit_forward(model, heads, rule, ids.to(device), mask.to(device))))
    return _scatter(outputs, len(group), num_layers)
