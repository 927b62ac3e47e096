"""Reading prompts for tuning/evaluation, and the seeded subsets shared by all variants."""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from optirag.config import Config, ConfigError
from optirag.llm.packing import Block, plan_blocks
from optirag.tables import MANIFEST, PROMPTS, SAMPLES, read_table

PROMPT_COLUMNS = ["sample_id", "user_id", "item_id", "label", "split", "retriever_version",
                  "n_tokens", "text", "prefix_chars"]


def retriever_version(prompts: pd.DataFrame) -> str | None:
    """The retriever version the prompts were built with (None: no retrieval, e.g. `none`);
    what an eval run records and what a reuse of that run must match."""
    return next((v for v in prompts["retriever_version"] if isinstance(v, str)), None)


def in_length_order(prompts: pd.DataFrame, score):
    """`score(texts)` on the prompts sorted by token count (batches of similar length waste
    less padding); its row-aligned output, or each of a tuple of them, in the frame's order."""
    order = np.argsort(prompts["n_tokens"].to_numpy(), kind="stable")
    out = score(prompts["text"].to_numpy()[order].tolist())
    back = np.argsort(order)
    return tuple(o[back] for o in out) if isinstance(out, tuple) else out[back]


def _seeded_key(seed: int, sample_id: str) -> str:
    """A sample's place in the seeded order: the same whichever variant's prompts hold it."""
    return hashlib.sha256(f"{seed}:{sample_id}".encode()).hexdigest()


def seeded_subset(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """The first `n` rows by sha256(seed, sample_id): the same samples whichever variant's
    prompts `df` holds; ordered by that hash (a seeded shuffle) either way."""
    keys = df["sample_id"].map(lambda s: _seeded_key(seed, s))
    ordered = df.assign(_k=keys).sort_values(["_k", "sample_id"]).drop(columns="_k")
    return (ordered if n is None else ordered.head(n)).reset_index(drop=True)


def read_prompts(spark: SparkSession, cfg: Config, variant: str, splits: Sequence[str]) -> pd.DataFrame:
    """A variant's prompts of `splits` as pandas (empty when none were built)."""
    try:
        df = read_table(spark, PROMPTS, cfg.dataset_lake())
    except Exception as e:  # no prompts table at all
        if "PATH_NOT_FOUND" in str(e) or "is not a Delta table" in str(e):
            return pd.DataFrame(columns=PROMPT_COLUMNS)
        raise
    rows = df.where((F.col("variant") == variant) & F.col("split").isin(list(splits)))
    if "prefix_chars" not in rows.columns:  # a table built before it was recorded
        rows = rows.withColumn("prefix_chars", F.lit(None).cast("int"))
    return rows.select(*PROMPT_COLUMNS).toPandas()


def tuning_set(spark: SparkSession, cfg: Config, train: pd.DataFrame, n: int | None, seed: int,
               targets_per_prefix: int = 1) -> tuple[pd.DataFrame, list[Block] | None]:
    """(the training prompts a scorer tunes on, their packing or None).

    One target per prefix: the first `n` by the seeded hash (`seeded_subset`). Packed
    (optirag.llm.packing): each user's samples in the protocol's order cut into runs of
    `targets_per_prefix`, the runs in a seeded order, and the first `n` rows of that order
    (the last run cut to fit). Chronological: by the samples' timestamp, then item, so a
    run's shared prefix is at most k - 1 targets old. random_target: by item, and every run's
    samples must already share one prompt prefix (a train user's targets with
    `dataset.train_targets_per_user` > 1 share one history, ingest.protocol); a run whose
    prefixes differ would show a target's rating in another's prompt, and is refused. A
    packed set is thus whole runs of one user's targets rather than k scattered samples; the
    sizes are nested all the same, and the plain path can tune on exactly these rows
    (`blocks` ignored) for comparisons."""
    if targets_per_prefix == 1:
        return seeded_subset(train, n, seed), None
    if cfg.dataset.protocol == "chronological":
        times = read_table(spark, SAMPLES, cfg.dataset_lake()).where("split = 'train'")
        frame = train.merge(times.select("sample_id", "timestamp").toPandas(), on="sample_id",
                            how="left", validate="one_to_one")
        runs = plan_blocks(frame, targets_per_prefix)
    else:
        frame = train
        runs = plan_blocks(frame, targets_per_prefix, order=("item_id",))
        _refuse_unshared(frame, runs, cfg, targets_per_prefix)
    key = [_seeded_key(seed, frame["sample_id"].iat[r.examples[0]]) for r in runs]
    rows, blocks = [], []
    for i in np.argsort(key, kind="stable"):
        take = runs[i].examples[: (n - len(rows)) if n is not None else None]
        if not take:
            break
        blocks.append(Block(runs[i].prefix, runs[i].suffixes[: len(take)],
                            tuple(range(len(rows), len(rows) + len(take)))))
        rows += take
    return frame.iloc[rows][list(train.columns)].reset_index(drop=True), blocks


def _refuse_unshared(frame: pd.DataFrame, runs: list[Block], cfg: Config, k: int) -> None:
    """ConfigError unless each run's prompts all begin with the run's prefix (its first's)."""
    for run in runs:
        for i in run.examples[1:]:
            text, cut = frame["text"].iat[i], int(frame["prefix_chars"].iat[i])
            if text[:cut] != run.prefix:
                raise ConfigError(
                    f"model.tuning.targets_per_prefix {k} needs each run's samples to share one prompt "
                    f"prefix: the chronological protocol, or random_target with "
                    f"dataset.train_targets_per_user > 1 (a train user's targets then share one history); "
                    f"{cfg.dataset.name}'s user {frame['user_id'].iat[i]} has train prompts with different "
                    f"prefixes")


def data_version(spark: SparkSession, cfg: Config) -> str:
    """The ingest data version (from `manifest`) the prompts were built from."""
    found = read_table(spark, MANIFEST, cfg.dataset_lake()).select("data_version").distinct().collect()
    return ",".join(sorted(r[0] for r in found)) or "unknown"


def labelled_pairs(df: pd.DataFrame) -> list[tuple[str, int]]:
    """(prompt text, label) pairs, as tune_lora takes them."""
    return list(zip(df["text"], df["label"].astype(int)))


def early_stopping_pairs(spark: SparkSession, cfg: Config, variant: str, tuning,
                         seed: int) -> list[tuple[str, int]] | None:
    """The (text, label) valid pairs that pick the kept epoch (seeded `tuning.valid_examples`
    subset); None when the recipe does not stop early (`tuning.patience` null) or the
    variant has no valid prompts."""
    if not tuning.patience:
        return None
    valid = seeded_subset(read_prompts(spark, cfg, variant, ["valid"]), tuning.valid_examples, seed)
    return labelled_pairs(valid) or None
