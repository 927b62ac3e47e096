import numpy as np
import pytest
import torch

from optirag.baselines.config import BaselinesConfig
from optirag.baselines.features import build_vocabularies, encode
from optirag.baselines.models import MODELS, build_model
from optirag.baselines.training import predict, train
from optirag.evaluation.metrics import auc_or_none

CFG = BaselinesConfig(emb_dim=8, hidden=[16], attention_hidden=8, gru_hidden=8, sim_top_k=3,
                      epochs=12, patience=12, lr=1e-2, batch_size=32)


@pytest.fixture(scope="module")
def data(toy):
    torch.set_num_threads(1)
    samples, items = toy
    vocab = build_vocabularies(samples, items, CFG.max_genres)
    return vocab, {s: encode(samples[samples.split == s].reset_index(drop=True), vocab, 15)
                   for s in ("train", "valid", "test")}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_shape_masking_and_history_use(name, data):
    vocab, split = data
    torch.manual_seed(0)
    model = build_model(name, vocab, CFG).eval()
    b = split["train"].batch(slice(0, 16))
    out = model(b)
    assert out.shape == (16,) and torch.isfinite(out).all()
    # padded positions may hold anything: the scores must not move
    noisy = dict(b)
    pad = ~b["mask"]
    assert pad.any()
    noisy["hist_item"] = torch.where(pad, torch.randint(2, len(vocab.row_id), b["mask"].shape), b["hist_item"])
    noisy["hist_label"] = torch.where(pad, torch.full_like(b["hist_label"], 2), b["hist_label"])
    assert torch.allclose(model(noisy), out, atol=1e-6)
    # ...while the valid history does move them
    flipped = dict(b)
    flipped["hist_label"] = torch.where(b["mask"], 3 - b["hist_label"], b["hist_label"])
    assert not torch.allclose(model(flipped), out, atol=1e-6)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_training_learns_the_toy_rule(name, data):
    vocab, split = data
    res = train(name, vocab, split["train"], split["valid"], CFG, seed=0)
    assert res.train_loss[-1] < 0.5 * res.train_loss[0]
    assert auc_or_none(split["test"].label.numpy(), predict(res.model, split["test"], 256)) > 0.9


@pytest.mark.parametrize("name", ["din", "sim"])
def test_same_seed_same_scores(name, data):
    vocab, split = data
    cfg = CFG.model_copy(update={"epochs": 2})
    runs = [predict(train(name, vocab, split["train"], split["valid"], cfg, seed=s).model, split["test"], 256)
            for s in (3, 3, 4)]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])
