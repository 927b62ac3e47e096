"""Yes/No CTR scoring (paper section 3): CTR = softmax over the logits of "Yes" and "No"
at the position that predicts the answer token, i.e. the prompt's last real token.

Only that position is decoded: the base model gives the final (normed) hidden state, which
is projected onto the two LM-head rows only (2 x H instead of V x H per sample).

Batches are right-padded and the last real position is gathered per row; position ids come
from the attention mask, so a prompt scores the same alone or in a padded batch.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from optirag.llm.config import AnswerConfig


class AnswerTokenError(ValueError):
    """An answer word that is not exactly one token in this tokenizer."""


@dataclass(frozen=True)
class AnswerTokens:
    """Vocabulary ids of the two answer words. `pair` is ordered (No, Yes) so that index 1
    is "Yes": a 2-way CE target is then the click label itself."""
    yes_id: int
    no_id: int

    @property
    def pair(self) -> list[int]:
        return [self.no_id, self.yes_id]


def _single_token(tokenizer: PreTrainedTokenizerBase, text: str) -> int:
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        pieces = tokenizer.convert_ids_to_tokens(ids)
        raise AnswerTokenError(
            f"answer word {text!r} encodes to {len(ids)} tokens {pieces} in this tokenizer; "
            "it must be exactly one. Change model.answer.yes_word/no_word or "
            "model.answer.leading_space."
        )
    return ids[0]


def answer_tokens(
    tokenizer: PreTrainedTokenizerBase, answer: AnswerConfig | None = None
) -> AnswerTokens:
    """Look up the Yes/No token ids (never hard-coded); fail clearly if not single tokens."""
    answer = answer or AnswerConfig()
    space = " " if answer.leading_space else ""
    yes_id = _single_token(tokenizer, space + answer.yes_word)
    no_id = _single_token(tokenizer, space + answer.no_word)
    if yes_id == no_id:
        raise AnswerTokenError(
            f"answer words {answer.yes_word!r} and {answer.no_word!r} share token {yes_id}"
        )
    return AnswerTokens(yes_id=yes_id, no_id=no_id)


def encode_prompts(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], max_length: int | None = None,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), right-padded. Prompts over `max_length` tokens lose their
    beginning (after a BOS, which is kept), never their end: the end holds the question."""
    if isinstance(prompts, str):
        raise TypeError("prompts must be a sequence of strings, not one string")
    rows = tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
    empty = [i for i, ids in enumerate(rows) if not ids]
    if empty:
        raise ValueError(f"prompts {empty} encode to no tokens")
    bos = tokenizer.bos_token_id
    if max_length is not None:
        cut = []
        for ids in rows:
            if len(ids) > max_length:
                keep_bos = bos is not None and ids[0] == bos
                ids = ids[:1] + ids[len(ids) - max_length + 1:] if keep_bos else ids[-max_length:]
            cut.append(ids)
        rows = cut
    width = max(len(ids) for ids in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, ids in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[i, : len(ids)] = 1
    return input_ids.to(device), attention_mask.to(device)


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last real token; right or left padding alike."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (positions * attention_mask.bool()).argmax(dim=1)


def position_ids_from_mask(attention_mask: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """0, 1, 2, ... over real tokens (+ `offset`, e.g. a cached prefix length). HF's default
    is arange over all columns, which would shift left-padded rows."""
    return (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0) + offset


def last_hidden(
    model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """Final (normed) hidden state at each row's last real token, shape (B, H)."""
    out = model.get_decoder()(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids_from_mask(attention_mask),
        use_cache=False,
    )
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)
    return out.last_hidden_state[rows, last_token_index(attention_mask)]


def answer_logits(
    model: PreTrainedModel, hidden: torch.Tensor, answer: AnswerTokens
) -> torch.Tensor:
    """Logits of (No, Yes) from the LM head's two rows only, shape (B, 2)."""
    head = model.get_output_embeddings()
    ids = torch.tensor(answer.pair, device=hidden.device)
    bias = head.bias[ids] if getattr(head, "bias", None) is not None else None
    return torch.nn.functional.linear(hidden, head.weight[ids], bias)


def yes_probability(pair_logits: torch.Tensor) -> torch.Tensor:
    """P(Yes) from (No, Yes) logits: the 2-way softmax of paper section 3, in fp32."""
    return torch.softmax(pair_logits.float(), dim=-1)[..., 1]


@torch.no_grad()
def score_prompts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    batch_size: int,
    answer: AnswerTokens | None = None,
    max_length: int | None = None,
    progress: str | None = None,
) -> np.ndarray:
    """CTR scores P(Yes) in (0, 1), one per prompt, float64 array (full forward).
    `progress`: a label shows a progress bar (prompts done, rate, ETA)."""
    from tqdm.auto import tqdm

    answer = answer or answer_tokens(tokenizer)
    device = next(model.parameters()).device
    scores = []
    bar = tqdm(total=len(prompts), desc=progress, unit="prompt", disable=progress is None)
    for start in range(0, len(prompts), batch_size):
        input_ids, attention_mask = encode_prompts(
            tokenizer, prompts[start: start + batch_size], max_length, device
        )
        hidden = last_hidden(model, input_ids, attention_mask)
        scores.append(yes_probability(answer_logits(model, hidden, answer)).cpu())
        bar.update(input_ids.shape[0])
    bar.close()
    if not scores:
        return np.zeros(0, dtype=np.float64)
    return torch.cat(scores).double().numpy()
