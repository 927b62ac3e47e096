"""dataset.train_targets_per_user on a tiny hand-made random_target dataset: the protocol's
functions on real Spark, no job run. The seeded order is read back from `_positions`, the
order the protocol itself uses, and every sample is checked against it."""
from __future__ import annotations

import random

import pytest

from optirag.config import ConfigError, load_config
from optirag.ingest.protocol import _positions, build_samples
from optirag.tables import SAMPLES

SIZES = [2, 3, 4, 5, 10, 20]  # ratings per user: m = min(3, n - 1) is 1, 2 and 3; 20 caps the history


@pytest.fixture(scope="module")
def by_k(spark):
    """{k: (cfg, samples as dicts, held-out pairs)} for k = 1 and 3, and each user's seeded order."""
    rng = random.Random(7)
    rows = [(f"u{u:02d}", f"b{i:02d}", float(r), int(r >= 8), None)
            for u in range(40) for i, r in zip(rng.sample(range(60), SIZES[u % 6]), rng.choices(range(1, 11), k=20))]
    interactions = spark.createDataFrame(
        rows, "user_id string, item_id string, rating double, label int, timestamp bigint")
    out = {}
    for k in (1, 3):
        cfg = load_config("bookcrossing", overrides=[f"dataset.train_targets_per_user={k}"])
        samples, held_out = build_samples(interactions, cfg.dataset, cfg.ingest)
        written = samples.select(*SAMPLES.schema.fieldNames())   # what ingest writes
        out[k] = ([r.asDict(recursive=True) for r in written.collect()],
                  sorted(tuple(r) for r in held_out.collect()))
    order = {}
    for r in _positions(interactions, cfg.dataset, cfg.ingest.seed).orderBy("user_id", "pos").collect():
        order.setdefault(r.user_id, []).append(r.item_id)
    return out, order


def _history(sample):
    return [h["item_id"] for h in sample["history"]]


def test_train_users_get_up_to_k_targets_sharing_a_history_after_them(by_k):
    (samples, _), order = by_k[0][3], by_k[1]
    train = {}
    for s in samples:
        if s["split"] == "train":
            train.setdefault(s["user_id"], []).append(s)
    assert len(train) == 32
    for user, mine in train.items():
        items = order[user]
        m = min(3, len(items) - 1)
        assert sorted(s["item_id"] for s in mine) == sorted(items[:m])
        shared = items[m:m + 15]
        assert all(_history(s) == shared for s in mine)           # one history, in seeded order
        assert not set(items[:m]) & set(shared)                   # showing none of the targets
    assert {len(v) for v in train.values()} == {1, 2, 3}


def test_k_1_is_one_target_at_position_0_and_valid_test_do_not_change_with_k(by_k):
    (one, held_one), (three, held_three) = by_k[0][1], by_k[0][3]
    order = by_k[1]
    assert len(one) == 40 and len({s["user_id"] for s in one}) == 40
    for s in one:
        items = order[s["user_id"]]
        assert s["item_id"] == items[0] and _history(s) == items[1:16]
    key = lambda s: s["sample_id"]  # noqa: E731
    assert sorted((s for s in three if s["split"] != "train"), key=key) == \
        sorted((s for s in one if s["split"] != "train"), key=key)
    assert held_three == held_one and len(held_one) == 8        # the valid/test users' targets
    assert {s["user_id"]: s["split"] for s in three} == {s["user_id"]: s["split"] for s in one}


def test_more_train_targets_is_refused_on_a_chronological_dataset():
    with pytest.raises(ConfigError, match="train_all_positions"):
        load_config("movielens100k", overrides=["dataset.train_targets_per_user=2"])


def test_the_default_keeps_the_data_version_ingest_had_before_the_setting():
    """k = 1 makes the tables of before, so their data version (which models and reports
    of record name) stays; another k names other tables."""
    from optirag.ingest.job import data_version

    digests = [("ratings", "BX_Book_Ratings.csv", "abc")]
    versions = {k: data_version(load_config("bookcrossing", overrides=[f"dataset.train_targets_per_user={k}"]),
                                digests) for k in (1, 3)}
    assert versions[1] == "f0d681310500"   # what the code before the setting gave
    assert versions[3] != versions[1]
