"""DeepFM (Guo et al., 2017): first-order + FM pairwise interactions + DNN, sharing embeddings.

Fields: user, the target item's 5 fields, and the history's 5 fields mean-pooled over
the valid positions (the usual treatment of a sequence feature in a field model).
"""
from __future__ import annotations

import torch
from torch import nn

from optirag.baselines.config import BaselinesConfig
from optirag.baselines.encoder import FeatureEncoder, masked_mean, mlp
from optirag.baselines.features import Vocabularies


class DeepFM(nn.Module):
    def __init__(self, vocab: Vocabularies, cfg: BaselinesConfig):
        super().__init__()
        self.enc = FeatureEncoder(vocab, cfg.emb_dim)
        self.first = FeatureEncoder(vocab, 1)      # w_i of the linear term
        n_fields = 1 + 2 * FeatureEncoder.n_item_fields
        self.dnn = mlp(n_fields * cfg.emb_dim, cfg.hidden)
        self.bias = nn.Parameter(torch.zeros(1))

    @staticmethod
    def _fields(enc: FeatureEncoder, b: dict[str, torch.Tensor]) -> torch.Tensor:
        hist = masked_mean(enc.history_fields(b["hist_item"], b["hist_label"]), b["mask"])
        return torch.cat([enc.user(b["user"]).unsqueeze(1), enc.item_fields(b["item"]), hist], dim=1)

    def forward(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        f = self._fields(self.enc, b)                                  # [B, n_fields, d]
        fm = 0.5 * (f.sum(1).pow(2) - f.pow(2).sum(1)).sum(1)          # sum_{i<j} <v_i, v_j>
        linear = self._fields(self.first, b).sum((1, 2))
        return self.bias + linear + fm + self.dnn(f.flatten(1)).squeeze(-1)
