"""The early-exit engine: a decoder forward, layer by layer, where each row of a batch may
leave at an exit layer and the rows that stay run on as a smaller batch.

Reads top to bottom:

    ExitOutput            what a forward returns (scores, exit layers, work counters)
    early_exit_forward    embed -> [decoder layer -> (exit layer? head, rule, compact)]*
    score_prompts_early_exit  the same over a list of prompt strings, in batches

It drives the model's own modules (embed_tokens, rotary_emb, layers[i]) with exactly the
arguments HF's LlamaModel/Qwen2Model.forward passes them in transformers 5.x, so with exits
disabled it computes what `optirag.llm.scoring.score_prompts` computes. Only the last real
token of each row is decoded, by that exit layer's head (2 LM-head rows; see heads.py).

Compaction. When rows exit at layer l, every per-row tensor is indexed down to the rows
that stay: hidden states, position ids, rotary cos/sin, the 4-D attention masks, the last-
token index, the rule's P(Yes) history, the original row ids (and the KV cache, if any).
Then trailing columns that no remaining row needs are cut: in a causal model a row's last
token never reads a later column, so only columns 0..max(last) matter.

KV prefix (the scorer's shared user prefix, optirag.scoring.prefix). `past_key_values` may
hold an already computed prefix of P columns for every row (right-padded when rows have
prefixes of different lengths); `attention_mask` then covers prefix + new tokens, as in HF,
and each row's positions continue after its own real prefix tokens. The cache is consumed:
extended layer by layer and row-selected in place.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import Cache, PreTrainedModel, PreTrainedTokenizerBase
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

from optirag.early_exit.heads import ExitHeads
from optirag.early_exit.rules import Rule
from optirag.llm.scoring import encode_prompts, last_token_index, position_ids_from_mask

MASK_BUILDERS = {
    "full_attention": create_causal_mask,
    "sliding_attention": create_sliding_window_causal_mask,
}


@dataclass
class ExitOutput:
    p_yes: torch.Tensor             # (B,) float32 CPU: the CTR score of the head that answered
    exit_layer: torch.Tensor        # (B,) long: its 1-based layer; num_layers = no early exit
    rows_per_layer: list[int]       # rows each decoder layer actually ran on
    tokens_per_layer: list[int]     # rows x columns each decoder layer actually ran on
    num_layers: int

    @property
    def layers_executed(self) -> torch.Tensor:
        """Decoder layers each sample ran through: a row leaving at layer l ran 1..l."""
        return self.exit_layer

    @property
    def layer_flops_ratio(self) -> float:
        """Decoder-layer work done / work of a full forward, counted in (row, layer) units."""
        total = len(self.p_yes) * self.num_layers
        return sum(self.rows_per_layer) / total if total else 0.0

    @staticmethod
    def concat(outputs: Sequence["ExitOutput"]) -> "ExitOutput":
        width = outputs[0].num_layers
        return ExitOutput(
            p_yes=torch.cat([o.p_yes for o in outputs]),
            exit_layer=torch.cat([o.exit_layer for o in outputs]),
            rows_per_layer=[sum(o.rows_per_layer[i] for o in outputs) for i in range(width)],
            tokens_per_layer=[sum(o.tokens_per_layer[i] for o in outputs) for i in range(width)],
            num_layers=width,
        )


def _check_supported(model: PreTrainedModel) -> None:
    decoder = model.get_decoder()
    needed = ("embed_tokens", "layers", "rotary_emb", "norm")
    missing = [name for name in needed if not hasattr(decoder, name)]
    if missing:
        raise TypeError(f"{type(decoder).__name__} lacks {missing}: the engine supports "
                        "Llama-style decoders (Llama, Qwen2, Mistral, ...)")
    impl = model.config._attn_implementation
    if impl not in ("sdpa", "eager"):
        # flex/flash masks are not row-indexable tensors, so compaction cannot slice them
        raise ValueError(f"attention implementation {impl!r} is not supported; use sdpa or eager")


@torch.no_grad()
def early_exit_forward(
    model: PreTrainedModel,
    heads: ExitHeads,
    rule: Rule,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    past_key_values: Cache | None = None,
) -> ExitOutput:
    """Score a tokenized batch with per-sample early exit. `attention_mask` is (B, P + T)."""
    _check_supported(model)
    config, decoder = model.config, model.get_decoder()
    num_layers = config.num_hidden_layers
    layer_types = getattr(config, "layer_types", None) or ["full_attention"] * num_layers
    batch = input_ids.shape[0]
    prefix = past_key_values.get_seq_length() if past_key_values is not None else 0
    new_mask = attention_mask[:, prefix:]  # the new tokens' part decides positions and last

    # --- embed, positions, masks and rotary tables, once for the whole batch -----------------
    hidden = decoder.embed_tokens(input_ids)
    # Positions count real tokens over prefix + new columns, so a row whose cached prefix
    # is right-padded (prefixes of different users share one cache) continues at its own length.
    position_ids = position_ids_from_mask(attention_mask)[:, prefix:]
    masks = {
        kind: MASK_BUILDERS[kind](
            config=config, inputs_embeds=hidden, attention_mask=attention_mask,
            past_key_values=past_key_values, position_ids=position_ids,
            allow_is_causal_skip=False,  # always a (B, 1, T, P + T) tensor: rows can be indexed
        )
        for kind in set(layer_types)
    }
    cos, sin = decoder.rotary_emb(hidden, position_ids=position_ids)
    last = last_token_index(new_mask)

    # --- per-row state of the rows still running ---------------------------------------------
    rows = torch.arange(batch, device=hidden.device)                 # original row ids
    history = torch.zeros(batch, 0, device=hidden.device)           # P(Yes) at exits so far
    p_yes = torch.zeros(batch, device=hidden.device)
    exit_layer = torch.full((batch,), num_layers, dtype=torch.long, device=hidden.device)
    rows_per_layer, tokens_per_layer = [0] * num_layers, [0] * num_layers

    for index, layer in enumerate(decoder.layers[:num_layers]):
        depth = index + 1
        hidden = layer(
            hidden,
            attention_mask=masks[layer_types[index]],
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=past_key_values is not None,
            position_embeddings=(cos, sin),
        )
        rows_per_layer[index] = hidden.shape[0]
        tokens_per_layer[index] = hidden.shape[0] * hidden.shape[1]
        if depth not in heads.exit_layers:
            continue

        # --- decode the last token with this layer's head, ask the rule who leaves -----------
        running = torch.arange(hidden.shape[0], device=hidden.device)
        p = heads[depth].p_yes(hidden[running, last])
        history = torch.cat([history, p[:, None]], dim=1)
        if depth == num_layers:  # the model's own head answers for everyone left
            leave = torch.ones_like(p, dtype=torch.bool)
        else:
            leave = rule(history)
        p_yes[rows[leave]] = p[leave]
        exit_layer[rows[leave]] = depth
        if leave.all():
            break
        if not leave.any():
            continue

        # --- compaction: keep only the rows that stay ----------------------------------------
        keep = (~leave).nonzero().squeeze(1)
        hidden, position_ids, cos, sin = hidden[keep], position_ids[keep], cos[keep], sin[keep]
        last, rows, history = last[keep], rows[keep], history[keep]
        masks = {kind: mask[keep] for kind, mask in masks.items()}
        if past_key_values is not None:
            past_key_values.batch_select_indices(keep)
        width = int(last.max()) + 1  # columns after every remaining last token are unused
        if width < hidden.shape[1]:
            hidden, position_ids = hidden[:, :width], position_ids[:, :width]
            cos, sin = cos[:, :width], sin[:, :width]
            masks = {kind: mask[:, :, :width, : prefix + width] for kind, mask in masks.items()}

    return ExitOutput(
        p_yes=p_yes.float().cpu(), exit_layer=exit_layer.cpu(),
        rows_per_layer=rows_per_layer, tokens_per_layer=tokens_per_layer, num_layers=num_layers,
    )


def score_prompts_early_exit(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    heads: ExitHeads,
    rule: Rule,
    prompts: Sequence[str],
    batch_size: int,
    max_length: int | None = None,
) -> ExitOutput:
    """`early_exit_forward` over prompt strings in batches; outputs in prompt order."""
    device = next(model.parameters()).device
    outputs = []
    for start in range(0, len(prompts), batch_size):
        input_ids, attention_mask = encode_prompts(
            tokenizer, prompts[start: start + batch_size], max_length, device
        )
        outputs.append(early_exit_forward(model, heads, rule, input_ids, attention_mask))
    if not outputs:
        raise ValueError("no prompts to score")
    return ExitOutput.concat(outputs)
