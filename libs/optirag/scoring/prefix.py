"""Shared user prefixes: one key/value cache per user, many short candidate suffixes.

A nightly prompt is ``prefix(user) + suffix(item)``: the instruction, the retrieved
neighbours' interactions and the user's history do not depend on the candidate item. With
C candidates per user, scoring independent prompts pushes C x (P + S) tokens through every
layer; here the P prefix tokens run once per user and only C x S suffix tokens run per
layer (they attend to the cached prefix), so the saving approaches (P + S) / S.

    encode_pairs        token ids of each prefix (BOS included) and suffix (no specials)
    plan_chunks         rows -> chunks of <= batch_size rows, whole users where possible
    score_shared_prefix prefix forward per chunk -> cache rows selected per candidate ->
                        early_exit_forward over the suffixes (per-sample exit still works)
    score_independent   the same token sequences scored as full prompts (parity, benchmarks)

Parity: a row's token sequence is exactly prefix_ids + suffix_ids in both paths, so the
shared-prefix score equals the independent one up to float reassociation (tested 1e-4).
Prefixes in one chunk are right-padded; the engine derives each row's positions from the
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


def plan_chunks(group: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Row indices per chunk, rows of a user together. A user is split only when it alone
    has more than `batch_size` rows (its prefix is then recomputed per piece)."""
    group = np.asarray(group)
    order = np.argsort(group, kind="stable")
    starts = np.flatnonzero(np.r_[True, group[order][1:] != group[order][:-1]])
    units = []
    for a, b in zip(starts, np.r_[starts[1:], len(order)]):
        units.extend(order[i: min(i + batch_size, b)] for i in range(a, b, batch_size))
    chunks, current, size = [], [], 0
    for unit in units:
        if current and size + len(unit) > batch_size:
            chunks.append(np.concatenate(current))
            current, size = [], 0
        current.append(unit)
        size += len(unit)
    if current:
        chunks.append(np.concatenate(current))
    return chunks


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


def _empty_output(num_layers: int) -> ExitOutput:
    return ExitOutput(p_yes=torch.zeros(0), exit_layer=torch.zeros(0, dtype=torch.long),
                      rows_per_layer=[0] * num_layers, tokens_per_layer=[0] * num_layers,
                      num_layers=num_layers)


def _scatter(outputs: list[tuple[np.ndarray, ExitOutput]], n: int, num_layers: int) -> ExitOutput:
    """Chunk outputs back into row order."""
    if not outputs:
        return _empty_output(num_layers)
    merged = ExitOutput.concat([o for _, o in outputs])
    order = torch.from_numpy(np.concatenate([rows for rows, _ in outputs]))
    p_yes, exit_layer = torch.empty(n), torch.empty(n, dtype=torch.long)
    p_yes[order], exit_layer[order] = merged.p_yes, merged.exit_layer
    merged.p_yes, merged.exit_layer = p_yes, exit_layer
    return merged


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
    for rows in plan_chunks(group, batch_size):
        users, local = np.unique(group[rows], return_inverse=True)
        cache, prefix_mask = prefix_cache(model, [prefix_ids[u] for u in users], pad_id)
        select = torch.from_numpy(local).to(device)
        cache.batch_select_indices(select)  # one cache row per candidate (indices repeat)
        ids, mask = _pad([suffix_ids[r] for r in rows], pad_id)
        full_mask = torch.cat([prefix_mask[select], mask.to(device)], dim=1)
        outputs.append((rows, early_exit_forward(model, heads, rule, ids.to(device), full_mask,
                                                 past_key_values=cache)))
    return _scatter(outputs, len(group), num_layers)


def score_independent(
    model: PreTrainedModel, heads: ExitHeads, rule: Rule,
    prefix_ids: Sequence[Sequence[int]], suffix_ids: Sequence[Sequence[int]],
    group: Sequence[int], batch_size: int, pad_id: int,
) -> ExitOutput:
    """The same rows as full prompts, no sharing (the baseline and the parity reference)."""
    device = next(model.parameters()).device
    num_layers = model.config.num_hidden_layers
    outputs = []
    for start in range(0, len(group), batch_size):
        rows = np.arange(start, min(start + batch_size, len(group)))
        ids, mask = _pad([list(prefix_ids[group[r]]) + list(suffix_ids[r]) for r in rows], pad_id)
        outputs.append((rows, early_exit_forward(model, heads, rule, ids.to(device), mask.to(device))))
    return _scatter(outputs, len(group), num_layers)
