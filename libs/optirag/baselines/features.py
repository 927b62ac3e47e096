"""Samples + items (pandas) -> integer tensors every baseline reads.

Vocabularies are built from the train split only (targets and histories), so a valid/test
user or item never seen in training maps to the shared OOV index, as in production.
Items are addressed by a *row* (0 = padding, 1 = unknown item, 2.. = the items table);
per-row lookup tables give each row's id / author / publisher / year / genre indices,
so an item unseen in training still carries its metadata features.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

PAD, OOV = 0, 1
# history label codes: 0 padding, 1 negative, 2 positive
HIST_LABEL_CODES = 3


def _codes(values: pd.Series | np.ndarray, vocab: pd.Index) -> np.ndarray:
    """Index in vocab + 2 (0 = pad, 1 = OOV); missing values map to PAD."""
    values = pd.Series(values, dtype="object")
    codes = vocab.get_indexer(values.fillna("\0missing")).astype(np.int64)
    out = np.where(codes < 0, OOV, codes + 2)
    return np.where(values.isna().to_numpy(), PAD, out)


def _vocab(values) -> pd.Index:
    s = pd.Series(values, dtype="object").dropna()
    return pd.Index(sorted(set(s)))


@dataclass
class Vocabularies:
    """Sizes and per-item-row lookup tables (the encoder registers them as buffers)."""
    n_users: int
    n_ids: int
    n_authors: int
    n_publishers: int
    n_years: int
    n_genres: int
    row_id: torch.Tensor          # [R] item-id index of each item row
    row_author: torch.Tensor      # [R]
    row_publisher: torch.Tensor   # [R]
    row_year: torch.Tensor        # [R]
    row_genres: torch.Tensor      # [R, G], PAD-filled
    item_rows: pd.Index           # item_id -> row - 2
    users: pd.Index


@dataclass
class Encoded:
    """One split as tensors; hist_* are left-aligned, chronological, PAD after `mask`."""
    user: torch.Tensor        # [N]
    item: torch.Tensor        # [N] item row
    hist_item: torch.Tensor   # [N, L] item rows
    hist_label: torch.Tensor  # [N, L] 0 pad / 1 neg / 2 pos
    mask: torch.Tensor        # [N, L] bool
    label: torch.Tensor       # [N] float
    frame: pd.DataFrame       # sample_id, user_id, item_id, split, label (for the score table)

    def __len__(self) -> int:
        return len(self.label)

    def batch(self, idx: torch.Tensor | slice) -> dict[str, torch.Tensor]:
        return {k: getattr(self, k)[idx] for k in ("user", "item", "hist_item", "hist_label", "mask", "label")}


def build_vocabularies(samples: pd.DataFrame, items: pd.DataFrame, max_genres: int) -> Vocabularies:
    """`samples` has columns user_id, item_id, hist_items (list), split; `items` the items table."""
    train = samples[samples["split"] == "train"]
    train_items = set(train["item_id"]) | set(np.concatenate([np.asarray(h, dtype=object) for h in train["hist_items"]] or [[]]))
    all_items = pd.Index(sorted(set(items["item_id"]) | set(samples["item_id"])))
    meta = items.set_index("item_id").reindex(all_items)
    seen = meta.loc[meta.index.isin(train_items)]
    year = meta["year"].map(lambda y: None if pd.isna(y) or y <= 0 else str(int(y)))
    genres = meta["genres"].map(lambda g: [] if g is None or (not isinstance(g, (list, np.ndarray))) else list(g))
    genre_vocab = _vocab([g for gs in genres[meta.index.isin(train_items)] for g in gs])
    g = np.full((len(all_items), max_genres), PAD, dtype=np.int64)
    for i, gs in enumerate(genres):
        if gs:
            c = _codes(np.asarray(gs[:max_genres], dtype=object), genre_vocab)
            g[i, : len(c)] = c
    id_vocab = pd.Index(sorted(train_items))
    author_vocab, publisher_vocab = _vocab(seen["author"]), _vocab(seen["publisher"])
    year_vocab = _vocab(year[meta.index.isin(train_items)])

    def with_head(a: np.ndarray, width: int | None = None) -> torch.Tensor:
        # rows 0 (pad) and 1 (unknown item) have every feature PAD / OOV
        head = np.zeros((2,) + a.shape[1:], dtype=np.int64)
        head[1] = OOV if width is None else PAD
        return torch.from_numpy(np.concatenate([head, a]))

    return Vocabularies(
        n_users=train["user_id"].nunique() + 2, n_ids=len(id_vocab) + 2,
        n_authors=len(author_vocab) + 2, n_publishers=len(publisher_vocab) + 2,
        n_years=len(year_vocab) + 2, n_genres=len(genre_vocab) + 2,
        row_id=with_head(_codes(all_items.to_numpy(dtype=object), id_vocab)),
        row_author=with_head(_codes(meta["author"], author_vocab)),
        row_publisher=with_head(_codes(meta["publisher"], publisher_vocab)),
        row_year=with_head(_codes(year, year_vocab)),
        row_genres=with_head(g, width=max_genres),
        item_rows=all_items, users=_vocab(train["user_id"]),
    )


def _rows(item_ids, vocab: Vocabularies) -> np.ndarray:
    codes = vocab.item_rows.get_indexer(pd.Index(item_ids, dtype="object"))
    return np.where(codes < 0, OOV, codes + 2).astype(np.int64)


def encode(samples: pd.DataFrame, vocab: Vocabularies, history_max: int) -> Encoded:
    """Encode samples (columns as in build_vocabularies + label, hist_labels, sample_id)."""
    n = len(samples)
    lengths = np.array([min(len(h), history_max) for h in samples["hist_items"]], dtype=np.int64)
    # keep the most recent `history_max` entries (histories are chronological)
    flat_items = [x for h in samples["hist_items"] for x in list(h)[len(h) - min(len(h), history_max):]]
    flat_labels = [x for h in samples["hist_labels"] for x in list(h)[len(h) - min(len(h), history_max):]]
    width = max(int(lengths.max()) if n else 1, 1)
    mask = np.arange(width)[None, :] < lengths[:, None]
    hist_item = np.zeros((n, width), dtype=np.int64)
    hist_label = np.zeros((n, width), dtype=np.int64)
    hist_item[mask] = _rows(flat_items, vocab)
    hist_label[mask] = np.asarray(flat_labels, dtype=np.int64) + 1
    user = vocab.users.get_indexer(pd.Index(samples["user_id"], dtype="object"))
    return Encoded(
        user=torch.from_numpy(np.where(user < 0, OOV, user + 2).astype(np.int64)),
        item=torch.from_numpy(_rows(samples["item_id"], vocab)),
        hist_item=torch.from_numpy(hist_item), hist_label=torch.from_numpy(hist_label),
        mask=torch.from_numpy(mask), label=torch.tensor(samples["label"].to_numpy(), dtype=torch.float32),
        frame=samples[["sample_id", "user_id", "item_id", "split", "label"]].reset_index(drop=True),
    )
