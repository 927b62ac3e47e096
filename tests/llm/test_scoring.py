import numpy as np
import pytest
import torch

from optirag.llm.config import AnswerConfig
from optirag.llm.scoring import (
    AnswerTokenError,
    answer_tokens,
    encode_prompts,
    last_hidden,
    score_prompts,
)

PROMPTS = [
    "The user liked Dune and Foundation. Will the user like Hyperion? Answer:",
    "Yes or no?",
    "A user who rated many cookbooks highly is shown a thriller novel about a detective "
    "in Oslo. Will the user click on it? Answer:",
    "Short.",
]


def test_answer_tokens_are_looked_up_in_the_tokenizer(tokenizer):
    plain = answer_tokens(tokenizer, AnswerConfig(leading_space=False))
    spaced = answer_tokens(tokenizer, AnswerConfig(leading_space=True))
    assert tokenizer.decode([plain.yes_id]) == "Yes"
    assert tokenizer.decode([plain.no_id]) == "No"
    assert tokenizer.decode([spaced.yes_id]) == " Yes"
    assert tokenizer.decode([spaced.no_id]) == " No"
    assert plain.yes_id != spaced.yes_id
    assert plain.pair == [plain.no_id, plain.yes_id]  # index 1 is Yes: CE target = label


def test_answer_tokens_fail_clearly_on_multi_token_words(tokenizer):
    with pytest.raises(AnswerTokenError, match="exactly one"):
        answer_tokens(tokenizer, AnswerConfig(yes_word="Definitely-affirmative"))
    with pytest.raises(AnswerTokenError, match="share token"):
        answer_tokens(tokenizer, AnswerConfig(yes_word="No", no_word="No"))


def test_score_equals_manual_softmax_of_the_two_logits(tiny_model, tokenizer, answer):
    scores = score_prompts(tiny_model, tokenizer, PROMPTS, batch_size=3, answer=answer)
    assert scores.shape == (len(PROMPTS),) and scores.dtype == np.float64
    for prompt, score in zip(PROMPTS, scores):
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            logits = tiny_model(ids).logits[0, -1]  # the plain HF full-vocabulary path
        yes, no = logits[answer.yes_id].item(), logits[answer.no_id].item()
        manual = np.exp(yes) / (np.exp(yes) + np.exp(no))
        assert score == pytest.approx(manual, abs=1e-6)
    assert ((scores > 0) & (scores < 1)).all()
    assert scores.std() > 0.01  # a random model with spread logits: the rows really differ


def test_padding_invariance(tiny_model, tokenizer, answer):
    alone = score_prompts(tiny_model, tokenizer, PROMPTS[1:2], batch_size=1, answer=answer)
    batched = score_prompts(tiny_model, tokenizer, PROMPTS, batch_size=4, answer=answer)
    assert batched[1] == pytest.approx(alone[0], abs=1e-5)

    # Left padding gives the same last-token state: positions follow the mask, not columns.
    ids, mask = encode_prompts(tokenizer, PROMPTS)
    lengths = mask.sum(1)
    left_ids, left_mask = torch.full_like(ids, tokenizer.pad_token_id), torch.zeros_like(mask)
    for i, n in enumerate(lengths.tolist()):
        left_ids[i, ids.shape[1] - n:] = ids[i, :n]
        left_mask[i, ids.shape[1] - n:] = 1
    with torch.no_grad():
        right = last_hidden(tiny_model, ids, mask)
        left = last_hidden(tiny_model, left_ids, left_mask)
    torch.testing.assert_close(left, right, atol=1e-5, rtol=1e-5)


def test_encode_right_pads_and_truncates_from_the_left(tokenizer):
    ids, mask = encode_prompts(tokenizer, PROMPTS, max_length=8)
    assert ids.shape == (len(PROMPTS), 8)
    full = tokenizer(PROMPTS[2])["input_ids"]
    assert ids[2].tolist() == full[-8:]  # the end (the question) survives
    short = tokenizer(PROMPTS[3])["input_ids"]
    assert mask[3].tolist() == [1] * len(short) + [0] * (8 - len(short))
    assert (ids[3, len(short):] == tokenizer.pad_token_id).all()
    with pytest.raises(TypeError):
        encode_prompts(tokenizer, "one string")
