"""A tiny, randomly initialised causal LM over a real tokenizer's vocabulary.

For fast tests and smoke runs of the scoring/tuning/early-exit code paths: it has the same
architecture classes as the real model (Llama or Qwen2 decoder layers, rotary embeddings,
GQA, tied embeddings), so anything that runs on it runs on the real model, in seconds.
"""
from __future__ import annotations

from typing import Literal

import torch
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    Qwen2Config,
    Qwen2ForCausalLM,
)


def tiny_causal_lm(
    vocab_size: int,
    *,
    family: Literal["llama", "qwen2"] = "llama",
    num_layers: int = 6,
    hidden_size: int = 64,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 128,
    max_positions: int = 2048,
    initializer_range: float = 0.02,
    pad_token_id: int | None = None,
    seed: int = 0,
    attn_implementation: str = "sdpa",
) -> PreTrainedModel:
    """A float32 model in eval mode; `initializer_range` larger than the usual 0.02 spreads
    the Yes/No logits so that random models give scores away from 0.5."""
    kwargs = dict(
        vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads, max_position_embeddings=max_positions,
        initializer_range=initializer_range, tie_word_embeddings=True,
        pad_token_id=pad_token_id,
    )
    config = LlamaConfig(**kwargs) if family == "llama" else Qwen2Config(**kwargs)
    config._attn_implementation = attn_implementation
    torch.manual_seed(seed)
    cls = LlamaForCausalLM if family == "llama" else Qwen2ForCausalLM
    return cls(config).float().eval()
