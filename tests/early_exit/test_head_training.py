import math

import pytest
import torch

from optirag.early_exit.config import EarlyExitConfig, HeadTrainingConfig
from optirag.early_exit.heads import ExitHeads
from optirag.early_exit.training import (
    build_head_optimizer,
    collect_exit_features,
    exit_hidden_states,
    exit_probabilities,
    fit_heads,
    heads_loss,
)
from optirag.llm.scoring import encode_prompts

LIKED = ["great", "wonderful", "excellent", "lovely", "superb", "brilliant", "moving", "fun"]
DISLIKED = ["awful", "boring", "terrible", "dull", "bad", "tedious", "weak", "silly"]
TEMPLATE = "The user found the book {}. Will the user like the sequel? Answer:"
EXAMPLES = [(TEMPLATE.format(w), 1) for w in LIKED] + [(TEMPLATE.format(w), 0) for w in DISLIKED]


def test_per_head_learning_rates_decay_with_depth(tiny_model, answer):
    heads = ExitHeads.from_model(tiny_model, answer, EarlyExitConfig(exit_layers=[1, 3, 5]))
    training = HeadTrainingConfig(lr0=0.01, beta=2.0, depth="normalized")
    groups = build_head_optimizer(heads, training).param_groups
    assert [g["layer"] for g in groups] == [1, 3, 5]  # the final head has no group
    for g in groups:
        assert g["lr"] == pytest.approx(0.01 * math.exp(-2.0 * g["layer"] / 6))
        assert g["depth"] == pytest.approx(g["layer"] / 6)
    lrs = [g["lr"] for g in groups]
    assert lrs == sorted(lrs, reverse=True) and lrs[0] > lrs[-1]

    by_index = build_head_optimizer(heads, training.model_copy(update={"depth": "layer"}))
    assert by_index.param_groups[1]["lr"] == pytest.approx(0.01 * math.exp(-2.0 * 3))


def test_features_are_the_hidden_states_after_each_exit_layer(tiny_model, tokenizer):
    prompts = [p for p, _ in EXAMPLES[:3]]
    features, p_final = collect_exit_features(tiny_model, tokenizer, prompts, [2, 4], batch_size=2)
    assert p_final is None  # no answer tokens given: no distillation target
    captured = []
    hooks = [tiny_model.get_decoder().layers[i - 1].register_forward_hook(
        lambda m, a, out: captured.append(out)) for i in (2, 4)]
    try:
        for i, prompt in enumerate(prompts):  # one prompt at a time: no padding involved
            captured.clear()
            ids, mask = encode_prompts(tokenizer, [prompt])
            with torch.no_grad():
                tiny_model(input_ids=ids, attention_mask=mask)
            torch.testing.assert_close(features[i], torch.stack([c[0, -1] for c in captured]))
    finally:
        for hook in hooks:
            hook.remove()
    with pytest.raises(ValueError, match="exit layers must be in"):
        exit_hidden_states(tiny_model, ids, mask, [6])


def test_training_reduces_the_loss_of_every_head_and_touches_nothing_else(tiny_model, tokenizer,
                                                                          answer):
    heads = ExitHeads.from_model(tiny_model, answer, EarlyExitConfig(exit_layers=[2, 4]))
    training = HeadTrainingConfig(lr0=0.05, beta=1.0, epochs=15, batch_size=8, seed=3,
                                  progress=False)
    features, _ = collect_exit_features(tiny_model, tokenizer, [p for p, _ in EXAMPLES], [2, 4], 8)
    labels = torch.tensor([y for _, y in EXAMPLES])
    model_state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    final_state = {k: v.clone() for k, v in heads[6].state_dict().items()}
    with torch.no_grad():
        total_before, per_head_before = heads_loss(heads, features, labels)

    losses = fit_heads(heads, features, labels, None, training)

    with torch.no_grad():
        total_after, per_head_after = heads_loss(heads, features, labels)
    assert len(losses) == training.epochs * 2
    assert total_after < 0.5 * total_before
    assert all(a < b for a, b in zip(per_head_after, per_head_before))
    assert all(torch.equal(v, tiny_model.state_dict()[k]) for k, v in model_state.items())
    assert all(torch.equal(v, heads[6].state_dict()[k]) for k, v in final_state.items())


def test_full_vocab_heads_train_with_the_vocabulary_loss(tiny_model, tokenizer, answer):
    heads = ExitHeads.from_model(tiny_model, answer,
                                 EarlyExitConfig(exit_layers=[3], head_type="full_vocab"))
    training = HeadTrainingConfig(lr0=0.02, epochs=5, batch_size=8, progress=False)
    features, _ = collect_exit_features(tiny_model, tokenizer, [p for p, _ in EXAMPLES], [3], 8)
    labels = torch.tensor([y for _, y in EXAMPLES])
    with torch.no_grad():
        before = heads_loss(heads, features, labels)[0]
        logits = heads[3](features[:, 0])
        targets = torch.where(labels.bool(), answer.yes_id, answer.no_id)
        assert before == pytest.approx(torch.nn.functional.cross_entropy(logits, targets).item())
    fit_heads(heads, features, labels, None, training)
    with torch.no_grad():
        assert heads_loss(heads, features, labels)[0] < before


def test_distilled_heads_learn_to_answer_as_the_full_model(tiny_model, tokenizer, answer):
    """distill = 1: the target is the model's own final P(Yes) (the same as its last-layer
    head gives), and training moves every head towards it, labels unused."""
    prompts = [p for p, _ in EXAMPLES]
    heads = ExitHeads.from_model(tiny_model, answer, EarlyExitConfig(exit_layers=[2, 4]))
    features, p_final = collect_exit_features(tiny_model, tokenizer, prompts, [2, 4], 8,
                                              answer=answer)
    ids, mask = encode_prompts(tokenizer, prompts)
    torch.testing.assert_close(p_final, exit_probabilities(tiny_model, heads, ids, mask)[:, -1])

    def gap() -> float:   # mean |P_head - P_final| over heads and rows
        with torch.no_grad():
            return float(torch.stack([(heads[layer].p_yes(features[:, j]) - p_final).abs()
                                      for j, layer in enumerate([2, 4])]).mean())

    labels = torch.tensor([y for _, y in EXAMPLES])
    before = gap()   # wrong labels below: only the distillation counts
    fit_heads(heads, features, 1 - labels, p_final,
              HeadTrainingConfig(lr0=0.05, epochs=20, batch_size=8, distill=1.0, progress=False))
    assert gap() < 0.5 * before
    with pytest.raises(ValueError, match="p_final"):
        heads_loss(heads, features.float(), labels, None, distill=0.5)
