"""Target-aware retrieval: of the users who rated an item, the k most similar to a user.

    retriever model folder: user_embedding, user_ids ──┐
    graph edges: (user, item, rating) ─> item -> raters ┴─> SimilarRaters.top_k(user, item, k)
                                                             -> [(rating, similarity), ...]

The GCN-Retriever (paper Sec. 4) ranks users by the cosine similarity of their averaged
LightGCN embeddings; the paper's prompt then shows what the similar users rated ("User A
rated Book X with 5 stars"). For a CTR question about one target item, the similar users'
ratings *of that item* are the evidence that bears on it, so the search runs over the
target's raters only: this is user-based collaborative filtering with the retriever's
embedding as the similarity. A user's top-k over all users (the ``neighbours`` table) rarely
contains a rater of the target on sparse data such as BookCrossing.

Leakage: the raters come from the graph's edges, which never hold a valid/test target; the
user itself is never its own rater (a training sample's own rating of its target is an
edge). Users without a usable embedding (cold, or outside an LLM retriever's embedded
pool) neither get raters nor count as raters.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from optirag.retrieval.embeddings import EMBEDDINGS_FILE, META_FILE


class SimilarRaters:
    """Item -> raters (CSR over the graph's edges) + unit-norm user embeddings. Plain numpy
    and dicts, so it pickles cheaply into Spark tasks and Ray actors."""

    def __init__(self, user_ids: Sequence[str], embedding: np.ndarray, edges: pd.DataFrame):
        emb = np.asarray(embedding, dtype=np.float32)
        norms = np.linalg.norm(emb, axis=1)
        usable = norms > 0
        self.unit = emb / np.where(usable, norms, 1.0)[:, None]
        self.user_pos = {str(u): i for i, u in enumerate(user_ids) if usable[i]}
        rater = edges["user_id"].astype(str).map(self.user_pos)
        known = rater.notna().to_numpy()
        frame = pd.DataFrame({"item": edges["item_id"].astype(str).to_numpy()[known],
                              "rater": rater.to_numpy()[known].astype(np.int64),
                              "rating": edges["rating"].to_numpy(dtype=np.float32)[known]})
        frame = frame.sort_values(["item", "rater"], kind="stable")
        items, starts = np.unique(frame["item"].to_numpy(), return_index=True)
        self.item_pos = {it: i for i, it in enumerate(items.tolist())}
        self.starts = np.append(starts, len(frame))
        self.raters = frame["rater"].to_numpy()
        self.ratings = frame["rating"].to_numpy()

    @classmethod
    def from_folder(cls, folder: str | Path, edges: pd.DataFrame) -> "SimilarRaters":
        """From a retriever model folder (GCN or LLM: both store `user_embedding` and the
        meta's `user_ids`) and the graph's (user_id, item_id, rating) edges."""
        from safetensors.numpy import load_file

        folder = Path(folder)
        meta = json.loads((folder / META_FILE).read_text())
        tensors = load_file(str(folder / EMBEDDINGS_FILE))
        emb = tensors["user_embedding"]
        if "warm" in tensors:  # LLM retriever: users with an empty history have no embedding
            emb = np.where(tensors["warm"][:, None], emb, 0.0)
        return cls(meta["user_ids"], emb, edges)

    def top_k(self, user_id: str, item_id: str, k: int) -> list[tuple[float, float]]:
        """(rating, similarity) of the user's k most similar raters of the item, most
        similar first (ties: the rater's position); [] for a cold user or unrated item."""
        u, it = self.user_pos.get(str(user_id)), self.item_pos.get(str(item_id))
        if u is None or it is None or k <= 0:
            return []
        lo, hi = self.starts[it], self.starts[it + 1]
        raters, ratings = self.raters[lo:hi], self.ratings[lo:hi]
        others = raters != u
        raters, ratings = raters[others], ratings[others]
        if not len(raters):
            return []
        sims = self.unit[raters] @ self.unit[u]
        top = np.lexsort((raters, -sims))[:k]
        return [(float(ratings[j]), float(sims[j])) for j in top]
