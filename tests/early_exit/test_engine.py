import pytest
import torch

from optirag.early_exit.config import EarlyExitConfig
from optirag.early_exit.engine import early_exit_forward, score_prompts_early_exit
from optirag.early_exit.heads import ExitHeads
from optirag.early_exit.rules import build_rule, never_exit, simulate_exits
from optirag.early_exit.training import exit_probabilities
from optirag.llm.scoring import encode_prompts, score_prompts
from optirag.llm.tiny import tiny_causal_lm

ITEMS = ["Dune", "Emma", "It", "The Name of the Rose", "Ulysses", "Beloved", "Solaris",
         "Middlemarch and the very long subtitle of a long book", "Kindred", "Gilead",
         "Possession", "Atonement"]
PROMPTS = [f"The user read {' and '.join(ITEMS[: i % 4 + 1])}. Will the user like {item}? Answer:"
           for i, item in enumerate(ITEMS)]
ALL_LAYERS = EarlyExitConfig(exit_layers=[1, 2, 3, 4, 5])


def _model(tokenizer, family="llama", attn="sdpa"):
    return tiny_causal_lm(len(tokenizer), family=family, attn_implementation=attn,
                          initializer_range=0.2, pad_token_id=tokenizer.pad_token_id, seed=0)


@pytest.mark.parametrize("family,attn", [("llama", "sdpa"), ("llama", "eager"), ("qwen2", "sdpa")])
def test_exits_disabled_equals_the_full_hf_forward(tokenizer, answer, family, attn):
    model = _model(tokenizer, family, attn)
    reference = score_prompts(model, tokenizer, PROMPTS, batch_size=5, answer=answer)
    for cfg, rule in [(ALL_LAYERS, never_exit), (EarlyExitConfig(exit_layers=[]), never_exit)]:
        heads = ExitHeads.from_model(model, answer, cfg)
        out = score_prompts_early_exit(model, tokenizer, heads, rule, PROMPTS, batch_size=5)
        torch.testing.assert_close(out.p_yes.double(), torch.from_numpy(reference),
                                   atol=1e-5, rtol=0)
        assert out.exit_layer.tolist() == [6] * len(PROMPTS)
        assert out.rows_per_layer == [len(PROMPTS)] * 6 and out.layer_flops_ratio == 1.0


def _mixed_rules(p):
    """Rules with thresholds taken from the data, so that rows exit at different layers."""
    confidence = torch.maximum(p, 1 - p)[:, 0].median().item()  # ~half leave at the 1st exit
    d = (p[:, 1:] - p[:, :-1]).abs()
    tau = (d[:, 1] - d[:, 0]).abs().median().item() + 1e-6
    return [
        build_rule(EarlyExitConfig(rule="confidence", confidence=min(max(confidence, 0.5), 1.0))),
        build_rule(EarlyExitConfig(rule="probability", tau=tau, window=1, min_previous=1)),
    ]


@pytest.mark.parametrize("rule_index", [0, 1])
def test_each_sample_gets_its_own_heads_score_at_its_exit_layer(tiny_model, tokenizer, answer,
                                                                 rule_index):
    heads = ExitHeads.from_model(tiny_model, answer, ALL_LAYERS)
    ids, mask = encode_prompts(tokenizer, PROMPTS)
    p = exit_probabilities(tiny_model, heads, ids, mask)  # every head, one full HF forward
    rule = _mixed_rules(p)[rule_index]

    out = early_exit_forward(tiny_model, heads, rule, ids, mask)

    expected = simulate_exits(p, rule)
    assert out.exit_layer.tolist() == [heads.exit_layers[i] for i in expected]
    assert len(set(out.exit_layer.tolist())) >= 2  # a real mix: some leave, some stay
    torch.testing.assert_close(out.p_yes, p[torch.arange(len(PROMPTS)), expected],
                               atol=1e-5, rtol=0)


def _forward_recording_shapes(model, heads, rule, ids, mask):
    """early_exit_forward, plus the (rows, columns) each decoder layer really received."""
    shapes = []
    hooks = [layer.register_forward_pre_hook(lambda m, args: shapes.append(args[0].shape[:2]))
             for layer in model.get_decoder().layers]
    try:
        return early_exit_forward(model, heads, rule, ids, mask), shapes
    finally:
        for hook in hooks:
            hook.remove()


def test_compaction_removes_exited_rows_and_unused_columns(tiny_model, tokenizer, answer):
    heads = ExitHeads.from_model(tiny_model, answer, ALL_LAYERS)
    ids, mask = encode_prompts(tokenizer, PROMPTS)
    p = exit_probabilities(tiny_model, heads, ids, mask)
    rule = _mixed_rules(p)[0]
    out, shapes = _forward_recording_shapes(tiny_model, heads, rule, ids, mask)

    lengths = mask.sum(1)
    for layer in range(1, 7):
        running = out.exit_layer >= layer
        if not running.any():
            assert len(shapes) < layer  # everyone left: later layers never ran
            assert out.rows_per_layer[layer - 1] == 0
            continue
        rows, cols = shapes[layer - 1]
        assert rows == int(running.sum()) == out.rows_per_layer[layer - 1]
        assert cols == int(lengths[running].max())  # trailing unused columns were cut
        assert out.tokens_per_layer[layer - 1] == rows * cols
    assert out.rows_per_layer[0] == len(PROMPTS) > out.rows_per_layer[-1]
    assert out.layer_flops_ratio == pytest.approx(out.exit_layer.double().mean().item() / 6)
    assert out.layer_flops_ratio < 1.0


def test_columns_shrink_when_the_longest_row_leaves(tiny_model, tokenizer, answer):
    heads = ExitHeads.from_model(tiny_model, answer, ALL_LAYERS)
    ids, mask = encode_prompts(tokenizer, PROMPTS)
    lengths = mask.sum(1)
    longest = int(lengths.argmax())
    p_longest = exit_probabilities(tiny_model, heads, ids, mask)[longest, 0]

    def longest_leaves_first(history):  # a rule that picks out exactly that row at layer 1
        return (history[:, 0] == p_longest) if history.shape[1] == 1 else never_exit(history)

    out, shapes = _forward_recording_shapes(tiny_model, heads, longest_leaves_first, ids, mask)
    assert out.exit_layer[longest] == 1 and (out.exit_layer == 6).sum() == len(PROMPTS) - 1
    second = int(lengths[torch.arange(len(PROMPTS)) != longest].max())
    assert second < ids.shape[1]
    assert shapes == [(len(PROMPTS), ids.shape[1])] + [(len(PROMPTS) - 1, second)] * 5
    reference = score_prompts(tiny_model, tokenizer, PROMPTS, len(PROMPTS), answer)
    keep = torch.arange(len(PROMPTS)) != longest
    torch.testing.assert_close(out.p_yes[keep].double(), torch.from_numpy(reference)[keep],
                               atol=1e-5, rtol=0)


def test_a_precomputed_prefix_cache_gives_the_same_result(tiny_model, tokenizer, answer):
    heads = ExitHeads.from_model(tiny_model, answer, ALL_LAYERS)
    prefix = tokenizer("The user rated these books highly: Dune, Emma, Kindred.",
                       return_tensors="pt").input_ids
    suffix_ids, suffix_mask = encode_prompts(
        tokenizer, [f" Will the user like {item}? Answer:" for item in ITEMS])
    batch, width = suffix_ids.shape[0], prefix.shape[1]
    full_ids = torch.cat([prefix.expand(batch, -1), suffix_ids], dim=1)
    full_mask = torch.cat([torch.ones(batch, width, dtype=torch.long), suffix_mask], dim=1)
    rule = _mixed_rules(exit_probabilities(tiny_model, heads, full_ids, full_mask))[0]

    reference = early_exit_forward(tiny_model, heads, rule, full_ids, full_mask)
    with torch.no_grad():
        cache = tiny_model(prefix, use_cache=True).past_key_values
    cache.batch_repeat_interleave(batch)
    out = early_exit_forward(tiny_model, heads, rule, suffix_ids, full_mask, past_key_values=cache)

    assert len(set(reference.exit_layer.tolist())) >= 2
    assert out.exit_layer.tolist() == reference.exit_layer.tolist()
    torch.testing.assert_close(out.p_yes, reference.p_yes, atol=1e-5, rtol=0)


def test_unsupported_attention_is_refused(tokenizer, answer):
    model = _model(tokenizer)
    model.config._attn_implementation = "flex_attention"
    heads = ExitHeads.from_model(model, answer, ALL_LAYERS)
    ids, mask = encode_prompts(tokenizer, PROMPTS[:2])
    with pytest.raises(ValueError, match="not supported"):
        early_exit_forward(model, heads, never_exit, ids, mask)
