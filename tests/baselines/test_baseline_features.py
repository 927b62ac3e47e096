import numpy as np
import pandas as pd
import torch

from optirag.baselines.features import OOV, PAD, build_vocabularies, encode


def _frames():
    items = pd.DataFrame({"item_id": ["a", "b", "c"], "author": ["x", "y", None], "year": [2000.0, np.nan, 0.0],
                          "publisher": [None, "p", "q"], "genres": [["g1", "g2"], None, ["g3"]]})
    samples = pd.DataFrame({
        "sample_id": ["1", "2", "3"], "user_id": ["u1", "u2", "u3"], "item_id": ["a", "b", "zz"],
        "label": [1, 0, 1], "split": ["train", "train", "test"],
        "hist_items": [["b", "a", "b"], ["a"], ["c", "a", "b", "qq"]],
        "hist_labels": [[0, 1, 1], [1], [0, 0, 1, 1]],
    })
    return samples, items


def test_vocabularies_come_from_train_only():
    samples, items = _frames()
    v = build_vocabularies(samples, items, max_genres=1)
    test = encode(samples[samples.split == "test"].reset_index(drop=True), v, history_max=15)
    assert test.user.tolist() == [OOV]                      # u3 never trains
    rows = test.hist_item[0].tolist()                       # c (not in train), a, b, qq (unknown)
    assert v.row_id[rows[0]] == OOV and v.row_id[rows[1]] > OOV and rows[3] == OOV
    # zz: a test target absent from items gets a row (no metadata) but no trained id
    assert test.item[0] > OOV and v.row_id[test.item[0]] == OOV and v.row_author[test.item[0]] == PAD
    # metadata of train items is indexed; c's "q" publisher only appears on a test item
    a = v.item_rows.get_loc("a") + 2
    assert v.row_author[a] > OOV and v.row_publisher[a] == PAD and v.row_year[a] > OOV
    assert v.row_genres.shape[1] == 1 and v.row_genres[a, 0] > OOV
    assert v.row_publisher[v.item_rows.get_loc("c") + 2] == OOV


def test_history_is_left_aligned_and_keeps_the_most_recent():
    samples, items = _frames()
    v = build_vocabularies(samples, items, max_genres=4)
    enc = encode(samples, v, history_max=2)
    assert enc.mask.tolist() == [[True, True], [True, False], [True, True]]
    # sample 1 keeps its last two entries ("a" liked, "b" liked); sample 3 keeps "b", "qq"
    assert enc.hist_label.tolist() == [[2, 2], [2, 0], [2, 2]]
    assert enc.hist_item[0].tolist() == [v.item_rows.get_loc("a") + 2, v.item_rows.get_loc("b") + 2]
    assert enc.hist_item[2, 1].item() == OOV and enc.hist_item[1, 1].item() == PAD
    assert enc.label.dtype == torch.float32 and enc.frame["sample_id"].tolist() == ["1", "2", "3"]
