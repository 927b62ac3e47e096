"""The Ray Data actors of the scoring job (optirag.scoring.job wires them):

    AttachPrompts  CPU stage: each user's prefix ids and each item's suffix ids, tokenized
                   once per actor; unknown users/items get a reject reason; each row's
                   score_key, and the earlier night's score where the key is known
                   (optirag.scoring.reuse)
    ExitScorer     the scorer and exit heads loaded once per actor (optirag.scoring.resolve);
                   scores its batches' rows that have no score yet with shared user
                   prefixes and per-sample early exit
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from optirag import faults
from optirag.scoring.resolve import load_scorer
from optirag.scoring.reuse import Reuse, score_key


def _get(value: Any) -> Any:
    import ray
    return ray.get(value) if isinstance(value, ray.ObjectRef) else value


class AttachPrompts:
    """CPU stage: user prefix ids and candidate suffix ids per row, or a reject reason. The
    suffix comes from the evaluation prompts' SuffixBuilder (per item, or per (user, item)
    when it shows the user's similar raters of the candidate). Each row gets its score_key;
    a row whose key `earlier` holds (incremental nights) gets that score here."""

    def __init__(self, prefixes: Any, targets: Any, suffix: Any, tokenizer_dir: str, score_date: str,
                 key_versions: str, earlier: Any = None, counter: Any = None):
        from optirag.llm.loading import load_tokenizer

        self.counter = counter
        prefixes, targets = _get(prefixes), _get(targets)
        self.prefix = dict(zip(prefixes["user_id"].to_pylist(), prefixes["prefix"].to_pylist()))
        self.target = dict(zip(targets["item_id"].to_pylist(), targets["text"].to_pylist()))
        self.suffix = _get(suffix)
        self.tokenizer = load_tokenizer(tokenizer_dir)
        self.score_date = score_date
        self.key_versions, self.reuse = key_versions, Reuse(_get(earlier))
        self.prefix_ids: dict[str, list[int]] = {}
        self.suffix_ids: dict[Any, list[int]] = {}

    def _ids(self, cache: dict | None, keys: list, text, specials: bool) -> list[list[int]]:
        """Token ids of `keys`' texts; `cache` (None: no caching) keeps them across batches."""
        if cache is None:
            return self.tokenizer([text(k) for k in keys], add_special_tokens=specials)["input_ids"] if keys else []
        if len(cache) > 200_000:  # bounded memory on huge candidate sets (users arrive sorted)
            cache.clear()
        todo = sorted({k for k in keys if k not in cache})
        if todo:
            encoded = self.tokenizer([text(k) for k in todo], add_special_tokens=specials)["input_ids"]
            cache.update(zip(todo, encoded))
        return [cache[k] for k in keys]

    def _suffix_text(self, key: Any) -> str:
        user, item = key if self.suffix.per_user else (None, key)
        return self.suffix(user, item, self.target[item])[0]

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        started = time.perf_counter()
        batch = self._attach(batch)
        if self.counter is not None:
            self.counter.add.remote(0, {"prompts": time.perf_counter() - started})
        return batch

    def _attach(self, batch: pd.DataFrame) -> pd.DataFrame:
        users, items = batch["user_id"], batch["item_id"]
        reason = np.where(users.isna() | items.isna(), "null_id",
                          np.where(~users.isin(self.prefix.keys()), "unknown_user",
                                   np.where(~items.isin(self.target.keys()), "unknown_item", None)))
        ok = pd.isna(reason)
        ok_users = users[ok].tolist()
        prefix_ids = iter(self._ids(self.prefix_ids, ok_users, self.prefix.__getitem__, True))
        # a suffix showing the user's similar raters is one row's own: nothing to reuse
        keys, cache = ((list(zip(ok_users, items[ok].tolist())), None) if self.suffix.per_user
                       else (items[ok].tolist(), self.suffix_ids))
        suffix_ids = iter(self._ids(cache, keys, self._suffix_text, False))
        batch = batch.copy()
        batch["score_date"] = self.score_date
        batch["reason"] = pd.Series(reason, index=batch.index, dtype=object)
        prefix_ids = [next(prefix_ids) if o else [] for o in ok]
        suffix_ids = [next(suffix_ids) if o else [] for o in ok]
        batch["score_key"] = [score_key(self.key_versions, p, s) if o else None
                              for o, p, s in zip(ok, prefix_ids, suffix_ids)]
        reused = self.reuse.fill(batch)
        # a reused row goes through the scorer untouched: no ids to ship
        batch["prefix_ids"] = [[] if r else p for r, p in zip(reused, prefix_ids)]
        batch["suffix_ids"] = [[] if r else s for r, s in zip(reused, suffix_ids)]
        return batch


class ExitScorer:
    """Actor stage: the scorer + heads loaded once; scores its batches' rows that have no
    score yet (prefix-shared)."""

    def __init__(self, spec: dict[str, Any], batch_size: int, shared_prefix: bool,
                 counter: Any = None):
        started = time.perf_counter()
        self.model, self.tokenizer, self.heads, self.rule = load_scorer(spec)
        self.model_version = spec["model_version"]
        self.batch_size, self.shared_prefix = batch_size, shared_prefix
        self.counter = counter
        self.batches = 0
        if counter is not None:
            counter.add.remote(0, {"model_load": time.perf_counter() - started})

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        from optirag.scoring.prefix import score_independent, score_shared_prefix

        started = time.perf_counter()
        batch = batch.copy()
        # rows AttachPrompts filled from an earlier night pass through as they are
        ok = (batch["reason"].isna() & batch["score"].isna()).to_numpy()
        if ok.any():
            rows = batch[ok]
            _, first, group = np.unique(rows["user_id"].to_numpy(dtype=object),
                                        return_index=True, return_inverse=True)
            prefixes = [list(rows["prefix_ids"].iloc[i]) for i in first]
            suffixes = [list(s) for s in rows["suffix_ids"]]
            score = score_shared_prefix if self.shared_prefix else score_independent
            out = score(self.model, self.heads, self.rule, prefixes, suffixes, group,
                        self.batch_size, self.tokenizer.pad_token_id)
            batch.loc[ok, "score"] = out.p_yes.double().numpy()
            batch.loc[ok, "exit_layer"] = out.exit_layer.numpy()
            batch.loc[ok, "scored_on"] = batch.loc[ok, "score_date"]
        batch["model_version"] = self.model_version
        batch["scored_at"] = pd.Timestamp.now(tz="UTC")
        if self.counter is not None:
            self.counter.add.remote(len(batch), {"model": time.perf_counter() - started})
        self.batches += 1
        faults.point("scoring.scorer_batch", self.batches)
        return batch.drop(columns=["prefix_ids", "suffix_ids"])
