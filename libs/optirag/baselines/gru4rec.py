"""GRU4Rec (Hidasi et al., 2016) as a CTR scorer: a GRU reads the history in time order;
the target's score is the inner product of the final state with the target embedding plus
the target's output bias (GRU4Rec's output layer, evaluated at one item)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from optirag.baselines.config import BaselinesConfig
from optirag.baselines.encoder import FeatureEncoder
from optirag.baselines.features import Vocabularies


class GRU4Rec(nn.Module):
    def __init__(self, vocab: Vocabularies, cfg: BaselinesConfig):
        super().__init__()
        self.enc = FeatureEncoder(vocab, cfg.emb_dim)
        item_dim = FeatureEncoder.n_item_fields * cfg.emb_dim
        self.gru = nn.GRU(item_dim, cfg.gru_hidden, batch_first=True)
        self.out = nn.Linear(cfg.gru_hidden, item_dim)
        self.item_bias = nn.Embedding(vocab.n_ids, 1)
        nn.init.zeros_(self.item_bias.weight)

    def forward(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        h = self.enc.history_fields(b["hist_item"], b["hist_label"]).flatten(2)
        # packing: padded steps are never read, whatever they hold
        lengths = b["mask"].sum(1).clamp(min=1).cpu()
        _, state = self.gru(pack_padded_sequence(h, lengths, batch_first=True, enforce_sorted=False))
        t = self.enc.item_fields(b["item"]).flatten(1)
        bias = self.item_bias(self.enc.row_id[b["item"]]).squeeze(-1)
        return (self.out(state[-1]) * t).sum(-1) + bias
