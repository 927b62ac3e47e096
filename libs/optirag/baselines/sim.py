"""SIM (Pi et al., 2020; cited by the paper as a user-behaviour model): two-stage search.

General search unit (soft search): every behaviour's relevance to the target is an inner
product of projected embeddings; the top-k relevant behaviours are kept. Exact search
unit: multi-head target attention over the kept ones, then an MLP over
[user, target, interest]. The paper's auxiliary soft-search loss and time-interval
embeddings are left out at this scale (histories hold at most 15 behaviours).
"""
from __future__ import annotations

import torch
from torch import nn

from optirag.baselines.config import BaselinesConfig
from optirag.baselines.encoder import FeatureEncoder, mlp
from optirag.baselines.features import Vocabularies


def general_search(rel: torch.Tensor, mask: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices [B, k'] of the k most relevant valid behaviours and whether each is valid."""
    k = min(k, rel.shape[1])
    rel = rel.masked_fill(~mask, float("-inf"))
    idx = rel.topk(k, dim=1).indices
    return idx, mask.gather(1, idx)


class SIM(nn.Module):
    def __init__(self, vocab: Vocabularies, cfg: BaselinesConfig):
        super().__init__()
        self.enc = FeatureEncoder(vocab, cfg.emb_dim)
        d = FeatureEncoder.n_item_fields * cfg.emb_dim
        self.k, self.heads = cfg.sim_top_k, cfg.sim_heads
        self.gsu_q, self.gsu_k = nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False)
        self.q, self.kv = nn.Linear(d, d), nn.Linear(d, 2 * d)
        self.tower = mlp(cfg.emb_dim + 2 * d, cfg.hidden)

    def forward(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        t = self.enc.item_fields(b["item"]).flatten(1)                                # [B, D]
        h = self.enc.history_fields(b["hist_item"], b["hist_label"]).flatten(2)       # [B, L, D]
        rel = (self.gsu_k(h) * self.gsu_q(t).unsqueeze(1)).sum(-1)
        idx, keep = general_search(rel, b["mask"], self.k)
        sel = h.gather(1, idx.unsqueeze(-1).expand(-1, -1, h.shape[-1]))             # [B, k, D]
        B, K, D = sel.shape
        q = self.q(t).view(B, self.heads, 1, D // self.heads)
        key, val = self.kv(sel).view(B, K, 2, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        logits = (q @ key.transpose(-1, -2)).squeeze(-2) / (D // self.heads) ** 0.5  # [B, H, K]
        att = logits.masked_fill(~keep.unsqueeze(1), -1e9).softmax(-1) * keep.unsqueeze(1)
        interest = (att.unsqueeze(-1) * val).sum(-2).reshape(B, D)   # empty history -> zeros
        return self.tower(torch.cat([self.enc.user(b["user"]), t, interest], dim=1)).squeeze(-1)
