"""The shared embedding layer: users, items (id + metadata fields), history sequences."""
from __future__ import annotations

import torch
from torch import nn

from optirag.baselines.features import HIST_LABEL_CODES, PAD, Vocabularies

ITEM_FIELDS = ("id", "author", "publisher", "year", "genres")


class FeatureEncoder(nn.Module):
    """Embeds every field at `dim`; DeepFM builds a second one at dim=1 for its linear term."""

    n_item_fields = len(ITEM_FIELDS)

    def __init__(self, vocab: Vocabularies, dim: int):
        super().__init__()
        self.dim = dim
        for name in ("row_id", "row_author", "row_publisher", "row_year", "row_genres"):
            self.register_buffer(name, getattr(vocab, name).clone(), persistent=False)
        emb = lambda n: nn.Embedding(n, dim, padding_idx=PAD)  # noqa: E731
        self.user = emb(vocab.n_users)
        self.id, self.author, self.publisher = emb(vocab.n_ids), emb(vocab.n_authors), emb(vocab.n_publishers)
        self.year, self.genre = emb(vocab.n_years), emb(vocab.n_genres)
        # the history entry's own label (liked / not liked): added to each of its fields
        self.hist_label = emb(HIST_LABEL_CODES)
        for e in self.modules():
            if isinstance(e, nn.Embedding):
                nn.init.normal_(e.weight, std=0.05)
                with torch.no_grad():
                    e.weight[PAD].zero_()

    def item_fields(self, rows: torch.Tensor) -> torch.Tensor:
        """[...] item rows -> [..., F, dim] (genres mean-pooled over the non-pad slots)."""
        g = self.row_genres[rows]
        g_n = (g != PAD).sum(-1, keepdim=True).clamp(min=1)
        genres = self.genre(g).sum(-2) / g_n
        return torch.stack([
            self.id(self.row_id[rows]), self.author(self.row_author[rows]),
            self.publisher(self.row_publisher[rows]), self.year(self.row_year[rows]), genres,
        ], dim=-2)

    def history_fields(self, hist_item: torch.Tensor, hist_label: torch.Tensor) -> torch.Tensor:
        """[B, L] -> [B, L, F, dim]; padded positions are exactly zero."""
        h = self.item_fields(hist_item) + self.hist_label(hist_label).unsqueeze(-2)
        return h * (hist_item != PAD).unsqueeze(-1).unsqueeze(-1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over dim 1 of [B, L, ...] where mask [B, L] is true; 0 for an empty row."""
    m = mask.to(x.dtype).reshape(mask.shape + (1,) * (x.dim() - 2))
    return (x * m).sum(1) / m.sum(1).clamp(min=1)


class Dice(nn.Module):
    """DIN's data-adaptive activation: p(x)*x + (1-p(x))*alpha*x, p = sigmoid(BN(x))."""

    def __init__(self, dim: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim, affine=False, eps=1e-8)
        self.alpha = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        p = torch.sigmoid(self.bn(flat)).reshape(x.shape)
        return p * x + (1 - p) * self.alpha * x


def mlp(in_dim: int, hidden: list[int], out_dim: int | None = 1, act: str = "relu") -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(in_dim, h), Dice(h) if act == "dice" else nn.ReLU()]
        in_dim = h
    if out_dim is not None:
        layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)
