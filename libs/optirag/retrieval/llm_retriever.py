r"""The paper's LLM-retriever baseline (Sec. 6, Q2): users embedded by a causal LM.

Each user's history (item titles, most recent last) becomes a prompt
(:func:`history_prompt`); the prompt goes through the decoder stack of a Hugging Face
causal LM, and the user vector is the mean of the last hidden states over the real
(non-pad) tokens:

.. math::
    \mathbf{e}_u = \frac{\sum_{t} m_t\, \mathbf{h}^{(L)}_t}{\sum_t m_t},
    \qquad m_t = \text{attention mask}.

Neighbours are then found with the same exact blocked cosine top-k as the GCN retriever
and written as NEIGHBOURS rows with ``retriever = "llm"``. Users with an empty history
are cold (flagged, never returned), mirroring the GCN side.

Why these choices:

* Padding is done here, on the right, with an attention mask: with right padding the
  real tokens keep positions 0..L-1 whatever else is in the batch, so a user's vector does
  not depend on batch composition (tested), and tokenizers without a pad token work.
* Only the base model (``model.base_model``) runs: the LM head's [B, L, V] logits are
  never needed, and they are the largest tensor of a forward pass.
* Prompts are sorted by token length before batching (less padding), results are put
  back in input order.
* Prompts are truncated to ``max_length`` tokens keeping the *end* of the history (the
  most recent items; a leading BOS token is kept), which is the truncation the paper
  points out as a weakness of LLM retrievers.
* The model runs in eval mode under ``torch.inference_mode`` (its previous mode is
  restored), so dropout never makes embeddings random.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from optirag.retrieval.neighbours import neighbours_frame
from optirag.retrieval.topk import cosine_topk

log = logging.getLogger(__name__)

PROMPT_TEMPLATE = "The user interacted with the following items: {items}."


def history_prompt(titles: Sequence[str], max_items: int | None = None,
                   template: str = PROMPT_TEMPLATE) -> str:
    """Prompt text of one user's history (the last ``max_items`` titles, in order)."""
    titles = [str(t) for t in titles]
    if max_items is not None:
        titles = titles[-max_items:] if max_items > 0 else []
    return template.format(items="; ".join(f'"{t}"' for t in titles))


@torch.inference_mode()
def embed_texts(
    texts: Sequence[str],
    model: Any,
    tokenizer: Any,
    batch_size: int = 16,
    max_length: int = 512,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Mean-pooled last hidden states of each text, float32 [n, hidden]."""
    base = getattr(model, "base_model", model)
    device = next(model.parameters()).device
    enc = tokenizer(list(texts), add_special_tokens=True, truncation=False)["input_ids"]
    bos = getattr(tokenizer, "bos_token_id", None)

    def clip(x: list[int]) -> list[int]:
        # keep the end of long prompts (the most recent history items) and the BOS token
        if len(x) <= max_length:
            return list(x)
        if bos is not None and x[0] == bos and max_length > 1:
            return [bos] + list(x[-(max_length - 1):])
        return list(x[-max_length:])

    ids = [clip(x) for x in enc]
    if any(len(x) == 0 for x in ids):
        raise ValueError("a text tokenised to zero tokens; nothing to pool")
    order = np.argsort([len(x) for x in ids], kind="stable")
    hidden = int(getattr(base.config, "hidden_size"))
    out = np.zeros((len(ids), hidden), dtype=np.float32)
    n_batches = (len(ids) + batch_size - 1) // batch_size
    was_training = model.training
    model.eval()  # no dropout in the embeddings; the caller's mode is restored below
    try:
        _embed_batches(base, ids, order, batch_size, device, out, progress, n_batches)
    finally:
        model.train(was_training)
    return out


def _embed_batches(base: Any, ids: list[list[int]], order: np.ndarray, batch_size: int, device: Any,
                   out: np.ndarray, progress: Callable[[int, int], None] | None, n_batches: int) -> None:
    for b, start in enumerate(range(0, len(ids), batch_size)):
        sel = order[start:start + batch_size]
        longest = max(len(ids[i]) for i in sel)
        input_ids = torch.zeros((len(sel), longest), dtype=torch.long)  # pad id irrelevant: masked
        mask = torch.zeros((len(sel), longest), dtype=torch.long)
        for r, i in enumerate(sel):
            input_ids[r, :len(ids[i])] = torch.tensor(ids[i], dtype=torch.long)
            mask[r, :len(ids[i])] = 1
        h = base(input_ids=input_ids.to(device), attention_mask=mask.to(device)).last_hidden_state
        m = mask.to(device=h.device, dtype=torch.float32).unsqueeze(-1)
        pooled = (h.float() * m).sum(1) / m.sum(1)
        out[sel] = pooled.cpu().numpy()
        if progress is not None:
            progress(b + 1, n_batches)


def embed_histories(
    histories: Mapping[str, Sequence[str]],
    model: Any,
    tokenizer: Any,
    max_items: int | None = 15,
    batch_size: int = 16,
    max_length: int = 512,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(user_ids, warm mask, embeddings [n, hidden]) of every user in ``histories``.

    A user with an empty history is not embedded (zero row, warm = false).
    """
    user_ids = [str(u) for u in histories]
    warm = np.array([len(histories[u]) > 0 for u in histories], dtype=bool)
    emb = np.zeros((len(user_ids), 1), dtype=np.float32)
    if warm.any():
        texts = [history_prompt(histories[u], max_items) for u, w in zip(user_ids, warm) if w]
        vecs = embed_texts(texts, model, tokenizer, batch_size, max_length, progress)
        emb = np.zeros((len(user_ids), vecs.shape[1]), dtype=np.float32)
        emb[warm] = vecs
    return user_ids, warm, emb


def embedding_neighbours(
    user_ids: Sequence[str],
    emb: np.ndarray,
    warm: np.ndarray,
    sample_users: Sequence[str],
    k: int,
    model_version: str,
    retriever: str = "llm",
    block_size: int = 1024,
    candidate_block_size: int = 4096,
) -> pd.DataFrame:
    """NEIGHBOURS rows of ``sample_users`` by exact cosine top-k over the warm users.

    A sample user absent from ``user_ids`` or not warm is cold (one null row).
    """
    pos = {u: i for i, u in enumerate(user_ids)}
    q_ids = list(dict.fromkeys(str(u) for u in sample_users))
    q_idx = np.array([pos.get(u, -1) for u in q_ids], dtype=np.int64)
    known = q_idx >= 0
    neigh = np.full((len(q_ids), k), -1, dtype=np.int64)
    sim = np.full((len(q_ids), k), np.nan, dtype=np.float32)
    is_cold = np.ones(len(q_ids), dtype=bool)
    if known.any():
        n, s, c = cosine_topk(emb, k, q_idx[known], warm, block_size, candidate_block_size)
        neigh[known], sim[known], is_cold[known] = n, s, c
    return neighbours_frame(retriever, model_version, q_ids, neigh, sim, is_cold, list(user_ids))


def llm_neighbours(
    histories: Mapping[str, Sequence[str]],
    sample_users: Sequence[str],
    model: Any,
    tokenizer: Any,
    k: int = 4,
    model_version: str = "llm",
    max_items: int | None = 15,
    batch_size: int = 16,
    max_length: int = 512,
    block_size: int = 1024,
    candidate_block_size: int = 4096,
    retriever: str = "llm",
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """NEIGHBOURS rows for ``sample_users`` with LLM history embeddings.

    histories: user_id -> item titles (most recent last) for every candidate user; the
    candidates are all users with a non-empty history. A sample user without one (or
    absent) is cold. Returns (frame, stats with timings: the Q2 speed comparison).
    """
    t0 = time.perf_counter()
    user_ids, warm, emb = embed_histories(histories, model, tokenizer, max_items, batch_size, max_length)
    t_embed = time.perf_counter() - t0
    t1 = time.perf_counter()
    df = embedding_neighbours(user_ids, emb, warm, sample_users, k, model_version, retriever,
                              block_size, candidate_block_size)
    t_search = time.perf_counter() - t1
    n_queries = int(df["user_id"].nunique())
    n_cold = int(df.loc[df["is_cold"], "user_id"].nunique())
    stats = {"n_users_embedded": int(warm.sum()), "embed_seconds": t_embed,
             "search_seconds": t_search, "n_queries": n_queries, "n_cold": n_cold}
    log.info("llm retriever: %s", stats)
    return df, stats


def save_llm_embeddings(folder: str | Path, user_ids: Sequence[str], emb: np.ndarray, warm: np.ndarray,
                        meta: dict[str, Any]) -> Path:
    """Registry folder of an LLM-retriever run: ``embeddings.safetensors`` (user_embedding
    [n, hidden], warm [n]) + ``meta.json`` (``meta`` + user_ids + created_at), atomically."""
    from safetensors.torch import save_file

    from optirag.artifacts import atomic_folder
    from optirag.retrieval.embeddings import EMBEDDINGS_FILE, META_FILE, utc_now

    if emb.shape[0] != len(user_ids) or warm.shape[0] != len(user_ids):
        raise ValueError("user_ids, embeddings and warm disagree on the user count")
    folder = Path(folder)
    with atomic_folder(folder) as tmp:
        save_file({"user_embedding": torch.from_numpy(np.ascontiguousarray(emb, dtype=np.float32)),
                   "warm": torch.from_numpy(np.ascontiguousarray(warm, dtype=bool))},
                  str(tmp / EMBEDDINGS_FILE),
                  metadata={"model_version": str(meta["model_version"]),
                            "data_version": str(meta["data_version"])})
        full = {**meta, "created_at": utc_now(), "n_users": len(user_ids),
                "user_ids": [str(u) for u in user_ids]}
        (tmp / META_FILE).write_text(json.dumps(full), encoding="utf-8")
    return folder
