"""Incremental nights (optirag.scoring.reuse) without a job run: the score key, and the
earlier scores a night reuses, on a real Delta table written by the scoring commit."""
from __future__ import annotations

import copy

import pandas as pd
import pyarrow as pa

from optirag.scoring.reuse import Reuse, earlier_scores, key_versions, score_key

SPEC = {"model_version": "scorer-v1", "early_exit": True, "heads_dir": "/lake/bc/_models/exit_heads/gcn/h1",
        "model_cfg": {"dtype": "float32", "device": "cpu", "attn_implementation": "sdpa",
                      "max_length": 512, "answer": {"yes": "Yes", "no": "No"}, "batch_size": 8},
        "early_exit_cfg": {"rule": "probability", "tau": 0.02, "window": 2, "min_previous": None,
                           "confidence": 0.9, "exit_layers": [2, 4], "training": {"epochs": 3}},
        "torch_threads": 1}
PREFIX, SUFFIX = [1, 50, 60, 70], [80, 90]


def _with(**changes):
    spec = copy.deepcopy(SPEC)
    for path, value in changes.items():
        *outer, last = path.split("__")
        node = spec
        for k in outer:
            node = node[k]
        node[last] = value
    return spec


def _key(spec=SPEC, prefix=PREFIX, suffix=SUFFIX):
    return score_key(key_versions(spec), prefix, suffix)


def test_the_score_key_changes_with_each_input_that_decides_the_score_and_with_nothing_else():
    base = _key()
    assert len(base) == 32 and base == _key(copy.deepcopy(SPEC), list(PREFIX), tuple(SUFFIX))
    changed = {
        "scorer": _key(_with(model_version="scorer-v2")),
        "heads version": _key(_with(heads_dir="/lake/bc/_models/exit_heads/gcn/h2")),
        "rule": _key(_with(early_exit_cfg__rule="confidence")),
        "tau": _key(_with(early_exit_cfg__tau=0.05)),
        "window": _key(_with(early_exit_cfg__window=3)),
        "min_previous": _key(_with(early_exit_cfg__min_previous=1)),
        "full depth": _key(_with(early_exit=False, heads_dir=None)),
        "dtype": _key(_with(model_cfg__dtype="bfloat16")),
        "prefix": _key(prefix=PREFIX[:-1] + [71]),
        "suffix": _key(suffix=[81, 90]),
        "a token moved from suffix to prefix": _key(prefix=PREFIX + SUFFIX[:1], suffix=SUFFIX[1:]),
    }
    assert base not in changed.values() and len(set(changed.values())) == len(changed)
    # what does not decide a score keeps the key: the model store's place, the heads'
    # training settings, scoring batch sizes; and at full depth the exit rule
    same = [_with(heads_dir="/elsewhere/_models/exit_heads/gcn/h1"), _with(early_exit_cfg__training={}),
            _with(model_cfg__batch_size=64), _with(torch_threads=4)]
    assert {_key(s) for s in same} == {base}
    full = _with(early_exit=False, heads_dir=None)
    assert _key(_with(early_exit=False, heads_dir=None, early_exit_cfg__tau=0.5)) == _key(full)


def _stage(cfg, date, rows):
    """`rows` (user, item, score, exit_layer, score_key, scored_on) as a staged run of `date`."""
    from optirag.scoring.commit import staging_dir, stage

    folder = staging_dir(cfg, "scores", date)
    folder.mkdir(parents=True)
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "score", "exit_layer", "score_key", "scored_on"])
    frame = frame.assign(score_date=date, model_version="m", source="popular", sample_id=None,
                         label=None, scored_at=pd.Timestamp.now(tz="UTC"), reason=None)
    stage(folder, 0, frame, "r1")
    return folder


def test_an_old_scores_table_gains_the_key_columns_and_a_night_reuses_the_latest_keyed_date(tmp_path):
    """A table written before keys existed gets score_key / scored_on at the next commit
    (its rows read null); a night reads the latest earlier date that has keys, never its own
    date or a later one, and Reuse copies score, exit_layer and scored_on by key."""
    from deltalake import DeltaTable, write_deltalake

    from optirag.config import load_config
    from optirag.orchestration.lake import read
    from optirag.scoring.commit import commit
    from optirag.tables import SCORES, arrow_schema

    cfg = load_config("bookcrossing", lake=str(tmp_path))
    lake = cfg.dataset_lake()
    old = pa.schema([f for f in arrow_schema(SCORES) if f.name not in ("score_key", "scored_on")])
    write_deltalake(SCORES.path(lake), pa.Table.from_pylist([
        {"score_date": "2026-11-18", "user_id": "u1", "item_id": "i1", "score": 0.3, "exit_layer": 4,
         "model_version": "m", "source": "popular", "scored_at": pd.Timestamp.now(tz="UTC")}], schema=old),
        partition_by=["score_date"])
    assert earlier_scores(lake, "2026-11-20") is None  # no column yet

    commit(cfg, "2026-11-19", _stage(cfg, "2026-11-19", [("u1", "i1", 0.4, 2, "k1", "2026-11-19"),
                                                         ("u1", "i2", 0.5, 4, "k2", "2026-11-17")]))
    commit(cfg, "2026-11-21", _stage(cfg, "2026-11-21", [("u1", "i1", 0.9, 2, "k9", "2026-11-21")]))
    table = read(SCORES, lake).to_pandas().set_index("score_date")
    assert table.loc["2026-11-18", ["score_key", "scored_on"]].isna().all()
    assert table.loc["2026-11-21", "score_key"] == "k9"
    assert {f.name for f in DeltaTable(SCORES.path(lake)).schema().fields} == set(arrow_schema(SCORES).names)

    assert earlier_scores(lake, "2026-11-19") is None  # only the keyless 11-18 is earlier
    for night in ("2026-11-20", "2026-11-21"):
        earlier = earlier_scores(lake, night)
        assert sorted(earlier["score_key"]) == ["k1", "k2"], night

    batch = pd.DataFrame({"score_key": ["k2", "k3", None, "k1"]})
    found = Reuse(earlier_scores(lake, "2026-11-20")).fill(batch)
    assert found.tolist() == [True, False, False, True]
    assert batch["exit_layer"].tolist() == [4, -1, -1, 2]
    assert batch["scored_on"].tolist() == ["2026-11-17", None, None, "2026-11-19"]
    assert batch["score"].iloc[[0, 3]].tolist() == [0.5, 0.4] and batch["score"].iloc[[1, 2]].isna().all()
    assert not Reuse(None).fill(pd.DataFrame({"score_key": ["k1"]})).any()


def test_reuse_counts_only_rows_scored_on_an_earlier_date():
    from optirag.scoring.reuse import reused_rows

    date = "2026-11-20"
    batch = pd.DataFrame({"score_date": date, "reason": [None, None, "unknown_user"],
                          "scored_on": [date, "2026-11-19", None]})
    assert reused_rows(batch) == 1
