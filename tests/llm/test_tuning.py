import json

import pytest

from optirag.llm.config import ModelConfig, TuningConfig
from optirag.llm.loading import load_model
from optirag.llm.scoring import score_prompts
from optirag.llm.tiny import tiny_causal_lm
from optirag.llm.tuning import load_tuned, mean_answer_loss, save_tuned, tune_lora

GOOD = ["great", "wonderful", "excellent", "lovely"]
BAD = ["awful", "boring", "terrible", "dull"]
TEMPLATE = "The user found the book {}. Will the user like the sequel? Answer:"
EXAMPLES = [(TEMPLATE.format(w), 1) for w in GOOD] + [(TEMPLATE.format(w), 0) for w in BAD]
PROMPTS = [p for p, _ in EXAMPLES]
TOY = TuningConfig(lr=1e-2, epochs=5, batch_size=4, seed=7, progress=False)


def _tiny_cfg(source: str, save: str) -> ModelConfig:
    return ModelConfig(name="tiny", source=source, gguf_file=None,
                       tuning=TOY.model_copy(update={"save": save}))


def test_lora_reduces_the_answer_loss(tiny_model, tokenizer, answer):
    before = mean_answer_loss(tiny_model, tokenizer, EXAMPLES, answer, batch_size=8)
    result = tune_lora(tiny_model, tokenizer, EXAMPLES, TOY, answer)
    after = mean_answer_loss(result.model.get_base_model(), tokenizer, EXAMPLES, answer, 8)
    assert len(result.losses) == TOY.epochs * 2  # 8 examples / batch 4, per epoch
    assert after < 0.5 * before
    trainable = {n for n, p in result.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)  # the base stays frozen


def test_yes_no_loss_is_the_log_loss_of_the_served_ctr(tiny_model, tokenizer, answer):
    import math

    ctr = score_prompts(tiny_model, tokenizer, PROMPTS, 4, answer)
    expected = -sum(math.log(p if y else 1 - p) for p, (_, y) in zip(ctr, EXAMPLES)) / len(EXAMPLES)
    got = mean_answer_loss(tiny_model, tokenizer, EXAMPLES, answer, batch_size=3, loss="yes_no")
    assert got == pytest.approx(expected, rel=1e-4)
    tuned = tune_lora(tiny_model, tokenizer, EXAMPLES, TOY.model_copy(update={"loss": "yes_no"}), answer)
    after = mean_answer_loss(tuned.model.get_base_model(), tokenizer, EXAMPLES, answer, 8, loss="yes_no")
    assert after < 0.5 * got


def test_tuning_is_deterministic_on_cpu(tokenizer, answer):
    runs = []
    for _ in range(2):
        model = tiny_causal_lm(len(tokenizer), initializer_range=0.2,
                               pad_token_id=tokenizer.pad_token_id, seed=0)
        tuning = TOY.model_copy(update={"epochs": 2})
        runs.append(tune_lora(model, tokenizer, EXAMPLES, tuning, answer).losses)
    assert runs[0] == runs[1]


def test_merged_checkpoint_round_trip_gives_identical_scores(tmp_path, tiny_model, tokenizer,
                                                             answer):
    cfg = _tiny_cfg(str(tmp_path / "unused"), "merged")
    result = tune_lora(tiny_model, tokenizer, EXAMPLES, cfg.tuning, answer)
    unmerged = score_prompts(result.model.get_base_model(), tokenizer, PROMPTS, 4, answer)
    merged, meta = save_tuned(result, tokenizer, tmp_path / "tuned", cfg, answer,
                              data_version="samples@v3")
    in_memory = score_prompts(merged, tokenizer, PROMPTS, 4, answer)

    loaded, tok, loaded_meta = load_tuned(tmp_path / "tuned", cfg)
    reloaded = score_prompts(loaded, tok, PROMPTS, 4, answer)
    assert (reloaded == in_memory).all()                       # bit-identical weights
    assert reloaded == pytest.approx(unmerged, abs=1e-5)       # merging = LoRA forward
    assert loaded_meta == meta == json.loads((tmp_path / "tuned" / "meta.json").read_text())
    assert meta["data_version"] == "samples@v3" and meta["format"] == "merged"
    assert meta["model_version"].startswith("tiny-lora-")
    assert meta["base_model"]["name"] == "tiny"
    assert meta["answer"]["yes_id"] == answer.yes_id
    assert list((tmp_path / "tuned").glob("*.safetensors"))
    assert not any(p.name.startswith(".tuned") for p in tmp_path.iterdir())  # no temp left


def test_adapter_checkpoint_round_trip(tmp_path, tiny_model, tokenizer, answer):
    base_dir = tmp_path / "base"
    tiny_model.save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    cfg = _tiny_cfg(str(base_dir), "adapter")
    result = tune_lora(tiny_model, tokenizer, EXAMPLES, cfg.tuning, answer)
    tuned = score_prompts(result.model.get_base_model(), tokenizer, PROMPTS, 4, answer)
    _, meta = save_tuned(result, tokenizer, tmp_path / "tuned", cfg, answer, "samples@v3")
    assert (tmp_path / "tuned" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "tuned" / "model.safetensors").exists()

    loaded, tok, _ = load_tuned(tmp_path / "tuned", cfg)
    assert not any("lora_" in name for name, _ in loaded.named_parameters())  # merged
    assert score_prompts(loaded, tok, PROMPTS, 4, answer) == pytest.approx(tuned, abs=1e-5)
    base = score_prompts(load_model(cfg)[0], tok, PROMPTS, 4, answer)
    assert abs(base - tuned).max() > 1e-3  # the adapter really changed the scores

    other = cfg.model_copy(update={"name": "other"})
    with pytest.raises(ValueError, match="tuned on 'tiny'"):
        load_tuned(tmp_path / "tuned", other)


def test_tuning_rejects_empty_input(tiny_model, tokenizer, answer):
    with pytest.raises(ValueError, match="no tuning examples"):
        tune_lora(tiny_model, tokenizer, [], TOY, answer)


# --- top layers only, frozen bottom cached once, early stopping ------------------------------

def test_layerwise_forward_is_the_scorers_forward(tiny_model, tokenizer, answer):
    """frozen bottom + top layers on right-padded causal rows == the masked HF forward."""
    from optirag.llm.layerwise import frozen_bottom, length_buckets, top_logits
    from optirag.llm.scoring import encode_prompts, yes_probability

    ids, mask = encode_prompts(tokenizer, PROMPTS + ["Short? Answer:"], None)
    rows = [r[: int(n)].tolist() for r, n in zip(ids, mask.sum(1))]
    expected = score_prompts(tiny_model, tokenizer, PROMPTS + ["Short? Answer:"], 3, answer)
    for frozen in (0, 2, 5):
        for batch in length_buckets(rows, 4, tokenizer.pad_token_id):
            p = yes_probability(top_logits(tiny_model, frozen_bottom(tiny_model, batch, frozen),
                                           batch, frozen, answer))
            assert p.detach().double().numpy() == pytest.approx(expected[batch.index.numpy()], abs=1e-6)


def test_adapters_only_on_the_top_layers_and_caching_changes_nothing(tokenizer, answer):
    runs = []
    for cache in (True, False):
        model = tiny_causal_lm(len(tokenizer), initializer_range=0.2,
                               pad_token_id=tokenizer.pad_token_id, seed=0)
        tuning = TOY.model_copy(update={"trainable_from": 4, "cache_frozen": cache, "epochs": 2,
                                        "dropout": 0.0})
        result = tune_lora(model, tokenizer, EXAMPLES, tuning, answer)
        runs.append(result.losses)
        tuned_layers = {int(n.split("layers.")[1].split(".")[0])
                        for n, p in result.model.named_parameters() if p.requires_grad}
        assert tuned_layers == {3, 4, 5}                 # 1-based layers 4..6 of 6
    assert runs[0] == pytest.approx(runs[1], abs=1e-6)


def test_early_stopping_keeps_the_best_valid_epoch(tokenizer, answer):
    from optirag.llm.tuning import TuneResult

    model = tiny_causal_lm(len(tokenizer), initializer_range=0.2,
                           pad_token_id=tokenizer.pad_token_id, seed=0)
    tuning = TOY.model_copy(update={"epochs": 6, "patience": 2, "lr": 5e-2, "warmup_steps": 2,
                                    "schedule": "cosine"})
    # valid labels opposite to training: the valid AUC is best early, then falls
    flipped = [(p, 1 - y) for p, y in EXAMPLES]
    result: TuneResult = tune_lora(model, tokenizer, EXAMPLES, tuning, answer, valid=flipped)
    aucs = [e["valid_auc"] for e in result.epochs]
    assert result.best_epoch == 1 + aucs.index(max(aucs))
    assert len(result.epochs) == min(6, result.best_epoch + 2)   # stopped `patience` epochs later
    kept = score_prompts(result.model.get_base_model(), tokenizer, PROMPTS, 4, answer)
    from sklearn.metrics import roc_auc_score
    assert roc_auc_score([y for _, y in flipped], kept) == pytest.approx(max(aucs), abs=1e-6)


def test_a_shared_bottom_cache_serves_nested_tunings_and_scoring_unchanged(tokenizer, answer):
    """The learning curve's cache: tunings on nested sets give the losses they give alone,
    each distinct row runs the frozen layers once, and the cached scoring of the tuned
    model is the scorer's full forward."""
    from optirag.llm.layerwise import BottomCache
    from optirag.llm.tuning import frozen_batches, top_probabilities

    tuning = TOY.model_copy(update={"trainable_from": 4, "epochs": 2, "dropout": 0.0, "patience": 1})
    cache = BottomCache(3)
    valid = EXAMPLES[::2]
    for n in (4, 8):
        shared, alone = (tune_lora(tiny_causal_lm(len(tokenizer), initializer_range=0.2,
                                                  pad_token_id=tokenizer.pad_token_id, seed=0),
                                   tokenizer, EXAMPLES[:n], tuning, answer, valid, cache=c)
                         for c in (cache, None))
        assert shared.losses == pytest.approx(alone.losses, abs=1e-6)
        assert len(cache) == len(set(PROMPTS[:n]) | {p for p, _ in valid})
    tuned = shared.model.get_base_model()
    batches = frozen_batches(tuned, tokenizer, PROMPTS[::-1], tuning, 3, 64, cache)
    assert len(cache) == len(PROMPTS)      # every prompt was cached already
    expected = score_prompts(tuned, tokenizer, PROMPTS[::-1], 3, answer)
    assert top_probabilities(tuned, batches, 3, answer) == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="cache holds layers 1-3"):
        tune_lora(tiny_causal_lm(len(tokenizer), seed=0, pad_token_id=tokenizer.pad_token_id),
                  tokenizer, EXAMPLES, TOY.model_copy(update={"trainable_from": 2}), answer, cache=cache)
