"""DIN (Zhou et al., 2018): target attention over the history with the activation unit.

The activation unit scores each behaviour from [h, t, h - t, h * t] through a Dice MLP;
weights are not softmax-normalised (the paper keeps the intensity of interest).
"""
from __future__ import annotations

import torch
from torch import nn

from optirag.baselines.config import BaselinesConfig
from optirag.baselines.encoder import FeatureEncoder, mlp
from optirag.baselines.features import Vocabularies


class ActivationUnit(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = mlp(4 * dim, [hidden], act="dice")

    def forward(self, hist: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        t = target.unsqueeze(1).expand_as(hist)
        w = self.net(torch.cat([hist, t, hist - t, hist * t], dim=-1)).squeeze(-1)
        return w * mask.to(w.dtype)                                      # [B, L]


class DIN(nn.Module):
    def __init__(self, vocab: Vocabularies, cfg: BaselinesConfig):
        super().__init__()
        self.enc = FeatureEncoder(vocab, cfg.emb_dim)
        item_dim = FeatureEncoder.n_item_fields * cfg.emb_dim
        self.attention = ActivationUnit(item_dim, cfg.attention_hidden)
        self.tower = mlp(cfg.emb_dim + 2 * item_dim, cfg.hidden, act="dice")

    def forward(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        t = self.enc.item_fields(b["item"]).flatten(1)                    # [B, D]
        h = self.enc.history_fields(b["hist_item"], b["hist_label"]).flatten(2)  # [B, L, D]
        w = self.attention(h, t, b["mask"])
        interest = (w.unsqueeze(-1) * h).sum(1)
        return self.tower(torch.cat([self.enc.user(b["user"]), t, interest], dim=1)).squeeze(-1)
