"""LLM-retriever baseline with a tiny randomly initialised Llama and an offline tokenizer."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from optirag.retrieval.llm_retriever import embed_texts, history_prompt, llm_neighbours
from optirag.retrieval.neighbours import NEIGHBOURS_SCHEMA, to_arrow

WORDS = ("the user interacted with following items : ; . \" dune emma ulysses hamlet odyssey "
         "beloved dracula walden inferno candide persuasion").split()


@pytest.fixture(scope="module")
def tiny_lm():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(dict.fromkeys(WORDS))}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    # words and runs of punctuation; anything unseen (e.g. '";') is [UNK], as in real vocabularies
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")  # no pad token
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    model = LlamaForCausalLM(cfg).eval()
    return model, tokenizer


def test_history_prompt_keeps_the_latest_items():
    p = history_prompt(["A", "B", "C"], max_items=2)
    assert p == 'The user interacted with the following items: "B"; "C".'


def test_mean_pooling_and_batch_invariance(tiny_lm):
    model, tok = tiny_lm
    texts = ["dune emma", "the user interacted with dune hamlet odyssey beloved dracula", "walden"]
    batched = embed_texts(texts, model, tok, batch_size=3)
    alone = np.concatenate([embed_texts([t], model, tok) for t in texts])
    np.testing.assert_allclose(batched, alone, atol=1e-5)  # right padding: no batch effect
    ids = torch.tensor([tok(texts[1])["input_ids"]])
    with torch.no_grad():
        h = model.base_model(input_ids=ids).last_hidden_state[0]
    np.testing.assert_allclose(batched[1], h.mean(0).numpy(), atol=1e-5)
    assert not np.allclose(batched[0], batched[2])


def test_truncation_keeps_the_end(tiny_lm):
    model, tok = tiny_lm
    long = "dune emma ulysses hamlet odyssey beloved dracula walden"
    np.testing.assert_allclose(embed_texts([long], model, tok, max_length=3),
                               embed_texts(["beloved dracula walden"], model, tok), atol=1e-5)
    assert not np.allclose(embed_texts([long], model, tok), embed_texts(["beloved dracula walden"], model, tok))


def test_llm_neighbours_rows(tiny_lm):
    model, tok = tiny_lm
    histories = {
        "a": ["dune", "emma"], "a_twin": ["dune", "emma"],
        "b": ["hamlet", "odyssey", "inferno"], "b_twin": ["hamlet", "odyssey", "inferno"],
        "c": ["walden"], "d": ["candide", "persuasion"], "e": ["dracula"], "empty": [],
    }
    df, stats = llm_neighbours(histories, ["a", "b", "empty", "ghost"], model, tok, k=3,
                               model_version="llm-test")
    assert stats["n_users_embedded"] == 7 and stats["n_cold"] == 2
    top = df[df["rank"] == 1].set_index("user_id")
    assert top.loc["a", "neighbour_user_id"] == "a_twin" and top.loc["b", "neighbour_user_id"] == "b_twin"
    assert top.loc["a", "similarity"] == pytest.approx(1.0, abs=1e-6)
    assert (df.loc[~df["is_cold"]].groupby("user_id").size() == 3).all()
    assert sorted(df.loc[df["is_cold"], "user_id"]) == ["empty", "ghost"]
    assert "empty" not in set(df["neighbour_user_id"].dropna())
    assert set(df["retriever"]) == {"llm"}
    assert to_arrow(df).schema == NEIGHBOURS_SCHEMA
