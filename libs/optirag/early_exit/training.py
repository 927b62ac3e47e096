"""Training the exit heads on the frozen, tuned model (paper 5.2).

The model is frozen, so each exit layer's input to its head -- the hidden state of the last
prompt token after that layer -- never changes during head training. It is collected once
with one forward pass per batch (`output_hidden_states` restricted to the exit layers) and
cached (in the model dtype, on CPU); the epochs then run over the cache, which costs only
the heads' own matmuls.

Loss: the sum over heads of each head's mean CE (L_exit^(l) = -log p^(l)(y|x)); over
(No, Yes) for binary heads, over the full vocabulary for full_vocab heads. With
``distill`` = a > 0 each head's loss is (1 - a) * that CE + a * the CE of its (No, Yes)
softmax against the model's own final P(Yes) on the same row (self-distillation, as in
FastBERT): a head then learns to answer as the full model does, which is what an exit must
do to cost no AUC, and the same forward pass that collects the features gives the target.
Each head is its own optimizer parameter group with lambda_n = lr0 * exp(-beta * d_n),
where d_n is the head's depth: layer / num_layers ("normalized", default) or the 1-based
layer index ("layer").
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from optirag.early_exit.config import HeadTrainingConfig
from optirag.early_exit.heads import ExitHeads
from optirag.llm.scoring import (
    AnswerTokens,
    answer_logits,
    encode_prompts,
    last_token_index,
    position_ids_from_mask,
    yes_probability,
)


def exit_hidden_states(
    model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
    layers: Sequence[int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """One full forward: ((B, len(layers), H) un-normed last-token states after each of
    `layers` (each < N), (B, H) final normed last-token state)."""
    num_layers = model.config.num_hidden_layers
    if any(not 1 <= layer < num_layers for layer in layers):
        raise ValueError(f"exit layers must be in 1..{num_layers - 1}, got {list(layers)}")
    out = model.get_decoder()(
        input_ids=input_ids, attention_mask=attention_mask,
        position_ids=position_ids_from_mask(attention_mask), use_cache=False,
        output_hidden_states=list(layers),  # hidden_states[l] = output of decoder layer l
    )
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)
    last = last_token_index(attention_mask)
    per_layer = [out.hidden_states[layer][rows, last] for layer in layers]
    stacked = torch.stack(per_layer, dim=1) if per_layer else out.last_hidden_state[:, :0]
    return stacked, out.last_hidden_state[rows, last]


@torch.no_grad()
def exit_probabilities(
    model: PreTrainedModel, heads: ExitHeads, input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
) -> torch.Tensor:
    """P(Yes) of every exit layer's head for every row, (B, K), from one full forward: the
    reference the engine is tested against, and the input for calibrating exit rules."""
    states, final = exit_hidden_states(model, input_ids, attention_mask, heads.trainable_layers)
    # The final layer answers with the model's own norm + head (`final` is already normed).
    return stack_exit_probabilities(heads, states, yes_probability(answer_logits(model, final, heads.answer)))


def stack_exit_probabilities(heads: ExitHeads, states: torch.Tensor, p_final: torch.Tensor) -> torch.Tensor:
    """(B, K) P(Yes): each trainable head on its layer's states (B, K - 1, H), then the
    model's own final P(Yes) (B,), each through its head's Platt rescaling."""
    columns = [heads[layer].p_yes(states[:, j]) for j, layer in enumerate(heads.trainable_layers)]
    return torch.stack(columns + [heads[heads.num_layers].rescale(p_final)], dim=1)


@torch.no_grad()
def collect_exit_features(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str],
    layers: Sequence[int], batch_size: int, max_length: int | None = None,
    progress: bool = False, answer: AnswerTokens | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """((n, len(layers), H) last-token hidden states at the exit layers, on CPU, model
    dtype; (n,) the model's own final P(Yes), the distillation target, when `answer` is
    given, else None)."""
    device = next(model.parameters()).device
    chunks, finals = [], []
    starts = range(0, len(prompts), batch_size)
    for start in tqdm(starts, desc="exit features", disable=not progress):
        input_ids, attention_mask = encode_prompts(
            tokenizer, prompts[start: start + batch_size], max_length, device
        )
        states, final = exit_hidden_states(model, input_ids, attention_mask, layers)
        chunks.append(states.cpu())
        if answer is not None:
            finals.append(yes_probability(answer_logits(model, final, answer)).cpu())
    return torch.cat(chunks), torch.cat(finals) if finals else None


def head_depth(layer: int, num_layers: int, training: HeadTrainingConfig) -> float:
    return layer / num_layers if training.depth == "normalized" else float(layer)


def build_head_optimizer(heads: ExitHeads, training: HeadTrainingConfig) -> torch.optim.AdamW:
    """AdamW with one parameter group per trainable head, lr = lr0 * exp(-beta * depth)."""
    groups = []
    for layer in heads.trainable_layers:
        depth = head_depth(layer, heads.num_layers, training)
        groups.append({
            "params": list(heads[layer].parameters()),
            "lr": training.lr0 * math.exp(-training.beta * depth),
            "layer": layer,          # extra keys are kept in the group: visible to callers
            "depth": depth,
        })
    if not groups:
        raise ValueError("no trainable exit heads (only the model's own head is configured)")
    return torch.optim.AdamW(groups, lr=training.lr0, weight_decay=training.weight_decay)


def heads_loss(
    heads: ExitHeads, features: torch.Tensor, labels: torch.Tensor,
    p_final: torch.Tensor | None = None, distill: float = 0.0,
) -> tuple[torch.Tensor, list[float]]:
    """(sum over heads of their mean loss, per-head mean loss) for features (B, K, H),
    labels (B,); with `distill` > 0, mixed with the CE against `p_final` (B,)."""
    if distill and p_final is None:
        raise ValueError("distill > 0 needs the model's final P(Yes) (p_final)")
    total = features.new_zeros((), dtype=torch.float32)
    per_head = []
    soft = None if not distill else torch.stack([1 - p_final, p_final], dim=1).float()
    for j, layer in enumerate(heads.trainable_layers):
        head = heads[layer]
        logits = head(features[:, j])
        if head.full_vocab:
            targets = torch.where(labels.bool(), heads.answer.yes_id, heads.answer.no_id)
        else:
            targets = labels  # binary logits are ordered (No, Yes)
        loss = torch.nn.functional.cross_entropy(logits, targets)
        if soft is not None:
            pair = torch.nn.functional.cross_entropy(logits[:, head.pair_index], soft)
            loss = (1 - distill) * loss + distill * pair
        total = total + loss
        per_head.append(loss.item())
    return total, per_head


def fit_heads(heads: ExitHeads, features: torch.Tensor, labels: torch.Tensor,
              p_final: torch.Tensor | None, training: HeadTrainingConfig) -> list[float]:
    """The epochs over cached features (n, K, H): heads trained in place with the per-head
    learning rates; returns the loss of every step."""
    device = next(heads.parameters()).device
    torch.manual_seed(training.seed)
    optimizer = build_head_optimizer(heads, training)
    generator = torch.Generator().manual_seed(training.seed)

    losses: list[float] = []
    heads.train()
    for epoch in range(training.epochs):
        order = torch.randperm(len(labels), generator=generator)
        batches = [order[i: i + training.batch_size]
                   for i in range(0, len(labels), training.batch_size)]
        bar = tqdm(batches, desc=f"exit heads epoch {epoch + 1}/{training.epochs}",
                   disable=not training.progress)
        for idx in bar:
            loss, _ = heads_loss(heads, features[idx].to(device).float(), labels[idx].to(device),
                                 None if p_final is None else p_final[idx].to(device),
                                 training.distill)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
    heads.eval()
    return losses


def epoch_mean_losses(losses: Sequence[float], epochs: int) -> list[float]:
    """The mean step loss of each epoch of `fit_heads` (every epoch has the same steps)."""
    if not losses:
        return []
    per = len(losses) // epochs
    return [sum(losses[i: i + per]) / per for i in range(0, len(losses), per)]
