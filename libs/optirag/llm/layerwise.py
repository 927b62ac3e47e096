"""The decoder in two parts, for tuning on a CPU: a frozen bottom run once, a tuned top.

    prompt ids -> embed -> layers 1..S (frozen: no grad, output cached once per example)
                                  -> layers S+1..N (LoRA) -> norm -> last token -> answer logits

With LoRA only on the top N - S layers, the bottom's output never changes during tuning:
computing it once and reusing it every epoch (and skipping its backward pass) is what makes
several epochs over a whole training split affordable on two cores.

Batches are right-padded and run under plain causal attention: a real token never attends
to a pad (pads come after it), so no mask is needed and row positions are 0..len-1, which
is what the scorer's masked forward gives the same rows (tested). Rows are bucketed by
length so a batch carries little padding. A packed batch (optirag.llm.packing: one prefix,
several targets per row) carries its own position ids, attention mask and answer positions. For the same reason a row's bottom does not
depend on its batch: `BottomCache` keeps it per token sequence, so tunings on nested
training sets (the learning curve) and the splits scored after each compute it once.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedModel

from optirag.llm.scoring import AnswerTokens, answer_logits


@dataclass
class Batch:
    """Rows of one length bucket: the example of each answer position, right-padded ids,
    each answer's column and, once computed, the frozen bottom's output (B, T, H) in the
    model's dtype. A plain batch answers once per row at its last real token; a packed one
    (optirag.llm.packing) names each answer's `row` and brings `positions` (B, T) and each
    token's `segment` (B, T): 0 the shared prefix, i >= 1 the i-th target's suffix."""
    index: torch.Tensor
    input_ids: torch.Tensor
    last: torch.Tensor
    bottom: torch.Tensor | None = None
    row: torch.Tensor | None = None
    positions: torch.Tensor | None = None
    segment: torch.Tensor | None = None

    def attention_mask(self) -> torch.Tensor | None:
        """A packed batch's may-attend mask (B, 1, T, T): causal, and a token sees the
        prefix and its own segment only (None for plain causal rows). Built per forward
        rather than stored: T x T per row would outweigh the ids."""
        if self.segment is None:
            return None
        seg = self.segment
        width = seg.shape[1]
        causal = torch.ones(width, width, dtype=torch.bool, device=seg.device).tril()
        visible = (seg[:, :, None] == seg[:, None, :]) | (seg == 0)[:, None, :]
        return (visible & causal)[:, None]


def length_buckets(ids: Sequence[Sequence[int]], batch_size: int, pad_id: int) -> list[Batch]:
    """Rows sorted by length (stable), cut into batches of `batch_size`."""
    order = np.argsort([len(x) for x in ids], kind="stable")
    batches = []
    for start in range(0, len(order), batch_size):
        rows = order[start: start + batch_size]
        width = max(len(ids[i]) for i in rows)
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        for j, i in enumerate(rows):
            input_ids[j, : len(ids[i])] = torch.as_tensor(ids[i], dtype=torch.long)
        last = torch.as_tensor([len(ids[i]) - 1 for i in rows], dtype=torch.long)
        batches.append(Batch(torch.as_tensor(rows, dtype=torch.long), input_ids, last))
    return batches


def run_layers(model: PreTrainedModel, hidden: torch.Tensor, lo: int, hi: int,
               batch: Batch | None = None) -> torch.Tensor:
    """Decoder layers lo+1..hi (0-based slice lo:hi) over right-padded, causal rows, or
    over a packed batch's rows with its positions and mask."""
    decoder = model.get_decoder()
    mask = None
    if batch is not None and batch.segment is not None:
        positions = batch.positions.to(hidden.device)
        mask = batch.attention_mask().to(hidden.device)
    else:
        positions = torch.arange(hidden.shape[1], device=hidden.device)[None]
    cos_sin = decoder.rotary_emb(hidden, position_ids=positions)
    for layer in decoder.layers[lo:hi]:
        hidden = layer(hidden, attention_mask=mask, position_ids=positions,
                       position_embeddings=cos_sin)
    return hidden


@torch.no_grad()
def frozen_bottom(model: PreTrainedModel, batch: Batch, frozen: int) -> torch.Tensor:
    """The output of the first `frozen` layers (the embeddings when 0), on the batch's device."""
    device = next(model.parameters()).device
    hidden = model.get_decoder().embed_tokens(batch.input_ids.to(device))
    return run_layers(model, hidden, 0, frozen, batch)


def top_logits(model: PreTrainedModel, bottom: torch.Tensor, batch: Batch, frozen: int,
               answer: AnswerTokens, full_vocab: bool = False) -> torch.Tensor:
    """(No, Yes) logits (or the full vocabulary's) at each answer position of the batch,
    from the bottom's output through the remaining layers and the final norm."""
    decoder = model.get_decoder()
    hidden = run_layers(model, bottom, frozen, model.config.num_hidden_layers, batch)
    rows = batch.row if batch.row is not None else torch.arange(hidden.shape[0])
    final = decoder.norm(hidden[rows.to(hidden.device), batch.last.to(hidden.device)])
    if full_vocab:
        return model.get_output_embeddings()(final).float()
    return answer_logits(model, final, answer).float()


class BottomCache:
    """The frozen bottom's output per row (unpadded, (len, H)), keyed by its token ids.

    Valid for one base model and one frozen depth (the adapters sit above it, so every
    tuning of that model shares it); a batch is assembled by right-padding the cached rows
    (pad positions are never attended to by real tokens under causal attention)."""

    def __init__(self, frozen: int):
        self.frozen = frozen
        self._rows: dict[bytes, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def bottom(self, model: PreTrainedModel, batch: Batch) -> torch.Tensor:
        """`frozen_bottom(model, batch, self.frozen)`, computing only the rows not seen yet."""
        lengths = (batch.last + 1).tolist()
        keys = [batch.input_ids[j, :n].numpy().tobytes() for j, n in enumerate(lengths)]
        missing = [j for j, k in enumerate(keys) if k not in self._rows]
        if missing:
            width = max(lengths[j] for j in missing)
            rows = torch.as_tensor(missing, dtype=torch.long)
            out = frozen_bottom(model, Batch(rows, batch.input_ids[rows, :width], batch.last[rows]),
                                self.frozen)
            for i, j in enumerate(missing):
                self._rows[keys[j]] = out[i, : lengths[j]].clone()
        first = self._rows[keys[0]]
        hidden = first.new_zeros((len(keys), batch.input_ids.shape[1], first.shape[-1]))
        for j, (k, n) in enumerate(zip(keys, lengths)):
            hidden[j, :n] = self._rows[k]
        return hidden
