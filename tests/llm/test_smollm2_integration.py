"""The real SmolLM2-135M: a fresh GGUF conversion, then scoring (about a minute)."""
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from optirag.early_exit.config import EarlyExitConfig
from optirag.early_exit.engine import score_prompts_early_exit
from optirag.early_exit.heads import ExitHeads
from optirag.early_exit.rules import never_exit
from optirag.llm.loading import MARKER, load_model, prepare_model, source_dir
from optirag.llm.scoring import answer_tokens, score_prompts

PROMPTS = [
    "The user enjoyed 'Dune' and 'Foundation'. Will the user like 'Hyperion'? "
    "Answer Yes or No.\nAnswer:",
    "Question: Is Paris the capital of France? Answer Yes or No.\n",
    "<|im_start|>user\nWill a reader of cookbooks click on a thriller? Yes or No?<|im_end|>\n"
    "<|im_start|>assistant\n",
]


@pytest.mark.slow
def test_real_smollm2_conversion_and_scores(tmp_path, model_cfg):
    cfg = model_cfg.model_copy(update={"cache_dir": str(tmp_path), "dtype": "float32"})
    folder = prepare_model(cfg)  # a fresh conversion, not the shared cache
    assert folder == tmp_path / cfg.name and (folder / MARKER).is_file()
    assert [p.name for p in tmp_path.iterdir()] == [cfg.name]  # no temp folder left behind

    model, tokenizer = load_model(cfg)
    answer = answer_tokens(tokenizer, cfg.answer)
    assert model.config.num_hidden_layers == 30 and model.dtype == torch.float32
    scores = score_prompts(model, tokenizer, PROMPTS, batch_size=2, answer=answer,
                           max_length=cfg.max_length)
    assert ((scores > 0) & (scores < 1)).all()

    gguf = AutoModelForCausalLM.from_pretrained(source_dir(cfg), gguf_file=cfg.gguf_file,
                                                local_files_only=True).eval()
    for prompt, score in zip(PROMPTS, scores):
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            logits = model(ids).logits[0, -1]
            torch.testing.assert_close(logits, gguf(ids).logits[0, -1])  # lossless conversion
        yes, no = logits[answer.yes_id].item(), logits[answer.no_id].item()
        assert score == pytest.approx(np.exp(yes) / (np.exp(yes) + np.exp(no)), abs=1e-5)

    heads = ExitHeads.from_model(model, answer, EarlyExitConfig())  # 5, 10, ..., 25 + 30
    out = score_prompts_early_exit(model, tokenizer, heads, never_exit, PROMPTS, batch_size=2)
    np.testing.assert_allclose(out.p_yes.double().numpy(), scores, atol=1e-5)


@pytest.mark.slow
def test_bf16_scores_follow_fp32_and_early_exit_is_exact_in_bf16(model_cfg):
    """The recipe's dtype `auto` serves bf16 on a CPU with native bf16: its scores stay
    within 0.03 of fp32 (bf16 keeps 8 bits of mantissa; measured here: see the assert), and
    the engine with exits off reproduces the bf16 forward it runs on."""
    from optirag.llm.loading import resolve_dtype

    fp32, tokenizer = load_model(model_cfg.model_copy(update={"dtype": "float32"}))
    bf16, _ = load_model(model_cfg.model_copy(update={"dtype": "bfloat16"}))
    assert bf16.dtype == torch.bfloat16
    assert resolve_dtype("auto", "cpu") in ("bfloat16", "float32") and resolve_dtype("auto", "cuda") == "bfloat16"
    answer = answer_tokens(tokenizer, model_cfg.answer)
    ref = score_prompts(fp32, tokenizer, PROMPTS, batch_size=3, answer=answer)
    half = score_prompts(bf16, tokenizer, PROMPTS, batch_size=3, answer=answer)
    assert np.abs(half - ref).max() < 0.03
    heads = ExitHeads.from_model(bf16, answer, EarlyExitConfig())
    out = score_prompts_early_exit(bf16, tokenizer, heads, never_exit, PROMPTS, batch_size=3)
    np.testing.assert_allclose(out.p_yes.double().numpy(), half, atol=1e-3)
