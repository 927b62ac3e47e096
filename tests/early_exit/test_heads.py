import json

import pytest
import torch

from optirag.early_exit.config import EarlyExitConfig
from optirag.early_exit.heads import (
    ExitHead,
    ExitHeads,
    load_exit_heads,
    resolve_exit_layers,
    save_exit_heads,
)
from optirag.llm.scoring import encode_prompts
from optirag.llm.tiny import tiny_causal_lm

PROMPTS = ["The user liked Emma. Will the user like Persuasion? Answer:", "Yes?", "No idea."]


def test_resolve_exit_layers():
    assert resolve_exit_layers(EarlyExitConfig(), 30) == [5, 10, 15, 20, 25, 30]
    assert resolve_exit_layers(EarlyExitConfig(exit_stride=4), 10) == [4, 8, 10]
    assert resolve_exit_layers(EarlyExitConfig(exit_layers=[9, 3, 3]), 10) == [3, 9, 10]
    assert resolve_exit_layers(EarlyExitConfig(exit_layers=[]), 6) == [6]  # exits disabled
    with pytest.raises(ValueError, match="outside 1..5"):
        resolve_exit_layers(EarlyExitConfig(exit_layers=[2, 6]), 6)


def _final_layer_output(model, input_ids, attention_mask):
    """Un-normed output of the last decoder layer, captured by a hook on it."""
    captured = {}
    hook = model.get_decoder().layers[-1].register_forward_hook(
        lambda module, args, output: captured.setdefault("h", output))
    try:
        with torch.no_grad():
            logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    finally:
        hook.remove()
    return captured["h"], logits


def test_a_fresh_head_at_the_last_layer_equals_the_models_own_output(tiny_model, tokenizer,
                                                                     answer):
    ids, mask = encode_prompts(tokenizer, PROMPTS[:1])  # one row: HF positions = ours
    hidden, logits = _final_layer_output(tiny_model, ids, mask)
    h_last, logits_last = hidden[:, -1], logits[:, -1]

    binary = ExitHead.from_model(tiny_model, answer)
    full = ExitHead.from_model(tiny_model, answer, full_vocab=True)
    with torch.no_grad():
        torch.testing.assert_close(binary(h_last), logits_last[:, answer.pair])
        torch.testing.assert_close(full(h_last), logits_last)
        # Two rows suffice: the 2-way softmax of the full head = the binary head's score.
        torch.testing.assert_close(full.p_yes(h_last), binary.p_yes(h_last))
        expected = torch.softmax(logits_last[:, [answer.no_id, answer.yes_id]], -1)[:, 1]
        torch.testing.assert_close(binary.p_yes(h_last), expected)


def test_heads_own_their_parameters_and_the_final_head_is_frozen(tiny_model, answer):
    heads = ExitHeads.from_model(tiny_model, answer, EarlyExitConfig(exit_layers=[2, 4]))
    assert heads.exit_layers == [2, 4, 6] and heads.trainable_layers == [2, 4]
    assert not any(p.requires_grad for p in heads[6].parameters())
    assert all(p.requires_grad for p in heads[2].parameters())
    norm = tiny_model.get_decoder().norm.weight
    assert heads[2].norm.weight.data_ptr() != norm.data_ptr()  # a copy, not the model's
    assert heads[2].proj.weight.shape == (2, tiny_model.config.hidden_size)
    full = ExitHeads.from_model(tiny_model, answer,
                                EarlyExitConfig(exit_layers=[2], head_type="full_vocab"))
    assert full.head_type == "full_vocab"
    assert full[2].proj.out_features == tiny_model.config.vocab_size
    assert full[6].proj.out_features == 2  # the final head stays the model's 2 rows


@pytest.mark.parametrize("head_type", ["binary", "full_vocab"])
def test_save_load_round_trip(tmp_path, tiny_model, answer, head_type):
    cfg = EarlyExitConfig(exit_layers=[1, 3], head_type=head_type)
    heads = ExitHeads.from_model(tiny_model, answer, cfg)
    torch.manual_seed(1)
    with torch.no_grad():  # stand-in for training: make the heads differ from their init
        for layer in heads.trainable_layers:
            for p in heads[layer].parameters():
                p.add_(0.1 * torch.randn_like(p))
    meta = save_exit_heads(heads, tmp_path / "heads", model_version="tiny-lora-abc")
    assert json.loads((tmp_path / "heads" / "meta.json").read_text()) == meta
    assert meta["exit_layers"] == [1, 3, 6] and meta["head_type"] == head_type

    loaded = load_exit_heads(tmp_path / "heads", tiny_model, answer, model_version="tiny-lora-abc")
    assert loaded.exit_layers == heads.exit_layers
    h = torch.randn(4, tiny_model.config.hidden_size)
    with torch.no_grad():
        for layer in heads.exit_layers:
            assert torch.equal(loaded[layer].p_yes(h), heads[layer].p_yes(h))

    with pytest.raises(ValueError, match="trained for model"):
        load_exit_heads(tmp_path / "heads", tiny_model, answer, model_version="other")
    deeper = tiny_causal_lm(tiny_model.config.vocab_size, num_layers=8)
    with pytest.raises(ValueError, match="expect 6 layers"):
        load_exit_heads(tmp_path / "heads", deeper, answer)
