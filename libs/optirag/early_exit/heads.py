"""Exit heads: one per exit layer, each = final norm + projection onto the answer tokens.

Why two LM-head rows are enough. The CTR score is the 2-way softmax over the logits of
"Yes" (a) and "No" (b): P = exp(s_a) / (exp(s_a) + exp(s_b)) with s = W norm(h). Only rows
W_a and W_b enter it, so norm + W[[b, a]] gives exactly the score that the full LM head
followed by the 2-way softmax gives, at 2/V of the cost. A head initialised from the model's
own final norm and those rows is the "logit lens" at that layer; at the last layer it *is*
the model's own head, which is how the final layer answers.

head_type=full_vocab keeps a full V x H projection instead (trained with CE over the whole
vocabulary, as L_exit in paper 5.2); the score still takes the (No, Yes) pair of its logits.

Each head also carries a Platt rescaling (a, b) of its answer logit, P = sigmoid(a * logit + b),
identity until ``early_exit.job`` fits it on valid: heads at different depths answer on
different scales, and rows leaving at different layers are ranked together (one AUC, one CTR
column), so the rule mixes them only once they share one scale (``early_exit.platt``). The
model's own head carries one too, which changes its scores but not their order.

Layers are 1-based decoder-layer outputs: exit layer l reads the hidden state after decoder
layer l (HF `hidden_states[l]`); layer N (the last) reads the model's final hidden state.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel

from optirag.artifacts import atomic_folder
from optirag.early_exit.config import EarlyExitConfig
from optirag.early_exit.platt import IDENTITY, rescale
from optirag.llm.scoring import AnswerTokens, yes_probability

WEIGHTS_FILE = "heads.safetensors"
META_FILE = "meta.json"


def resolve_exit_layers(cfg: EarlyExitConfig, num_layers: int) -> list[int]:
    """Sorted exit layers, always ending with the model's own head at `num_layers`."""
    if cfg.exit_layers is not None:
        layers = sorted(set(cfg.exit_layers))
        bad = [layer for layer in layers if not 1 <= layer < num_layers]
        if bad:
            raise ValueError(
                f"exit layers {bad} are outside 1..{num_layers - 1} (the model has {num_layers} "
                "layers; its own head at the last layer is always added)"
            )
    else:
        layers = list(range(cfg.exit_stride, num_layers, cfg.exit_stride))
    return layers + [num_layers]


class ExitHead(nn.Module):
    """norm(h) -> logits over (No, Yes), or over the full vocabulary."""

    def __init__(self, norm: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None,
                 pair_index: list[int]):
        super().__init__()
        self.norm = norm
        self.proj = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None,
                              device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            self.proj.weight.copy_(weight)
            if bias is not None:
                self.proj.bias.copy_(bias)
        # Columns of the output that hold (No, Yes): [0, 1] for a binary head, the token ids
        # for a full-vocabulary head.
        self.register_buffer("pair_index", torch.tensor(pair_index, device=weight.device),
                             persistent=False)
        self.register_buffer("platt", IDENTITY.clone().to(weight.device))  # float32 (a, b)

    @classmethod
    def from_model(cls, model: PreTrainedModel, answer: AnswerTokens,
                   full_vocab: bool = False, dtype: torch.dtype = torch.float32) -> "ExitHead":
        """A copy of the model's final norm and LM head (rows No, Yes, or all) in `dtype`:
        float32 for a head that trains; the model's own dtype for its last-layer head, so
        that it computes exactly what the model's forward computes (in bf16 the two differ
        by up to 0.01 in P(Yes) otherwise)."""
        norm = copy.deepcopy(model.get_decoder().norm).to(dtype)
        head = model.get_output_embeddings()
        weight = head.weight.detach().to(dtype)
        bias = head.bias.detach().to(dtype) if getattr(head, "bias", None) is not None else None
        if full_vocab:
            return cls(norm, weight, bias, answer.pair)
        rows = torch.tensor(answer.pair, device=weight.device)
        return cls(norm, weight[rows], None if bias is None else bias[rows], [0, 1])

    @property
    def full_vocab(self) -> bool:
        return self.proj.out_features > 2

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, H) hidden states of any dtype -> (B, 2 or V) float32 logits."""
        return self.proj(self.norm(hidden.to(self.proj.weight.dtype))).float()

    def pair_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self(hidden)[:, self.pair_index]

    def p_yes(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.rescale(yes_probability(self.pair_logits(hidden)))

    def rescale(self, p_yes: torch.Tensor) -> torch.Tensor:
        """This head's Platt rescaling of a raw P(Yes) (identity until fitted)."""
        return rescale(p_yes, self.platt)


class ExitHeads(nn.Module):
    """The heads of all exit layers. The last one (layer N) is the model's own head: frozen,
    never trained or saved, rebuilt from the model when loading."""

    def __init__(self, heads: dict[int, ExitHead], num_layers: int, answer: AnswerTokens):
        super().__init__()
        layers = sorted(heads)
        if layers[-1] != num_layers:
            raise ValueError(f"the last exit layer must be the model's last layer {num_layers}")
        self.exit_layers = layers
        self.num_layers = num_layers
        self.answer = answer
        self.heads = nn.ModuleDict({str(layer): heads[layer] for layer in layers})
        self.heads[str(num_layers)].requires_grad_(False)

    @classmethod
    def from_model(cls, model: PreTrainedModel, answer: AnswerTokens,
                   cfg: EarlyExitConfig) -> "ExitHeads":
        num_layers = model.config.num_hidden_layers
        full = cfg.head_type == "full_vocab"
        own = model.get_output_embeddings().weight.dtype
        heads = {layer: ExitHead.from_model(model, answer, full_vocab=full and layer < num_layers,
                                            dtype=own if layer == num_layers else torch.float32)
                 for layer in resolve_exit_layers(cfg, num_layers)}
        return cls(heads, num_layers, answer)

    @classmethod
    def final_only(cls, model: PreTrainedModel, answer: AnswerTokens) -> "ExitHeads":
        """Only the model's own head at its last layer: full depth, no early exit."""
        return cls.from_model(model, answer, EarlyExitConfig(exit_layers=[]))

    @property
    def trainable_layers(self) -> list[int]:
        return self.exit_layers[:-1]

    @property
    def head_type(self) -> str:
        trainable = self.trainable_layers
        return "full_vocab" if trainable and self[trainable[0]].full_vocab else "binary"

    def __getitem__(self, layer: int) -> ExitHead:
        return self.heads[str(layer)]

    @property
    def platt(self) -> dict[int, list[float]]:
        return {layer: [round(x, 6) for x in self[layer].platt.tolist()] for layer in self.exit_layers}

    def set_platt(self, fits: dict[int, torch.Tensor]) -> None:
        """Install Platt fits (a, b) by exit layer; layers not given go back to identity."""
        for layer in self.exit_layers:
            self[layer].platt.copy_(fits.get(layer, IDENTITY))


def save_exit_heads(heads: ExitHeads, out_dir: str | Path, model_version: str,
                    extra: dict | None = None) -> dict:
    """heads.safetensors (the trainable heads, and the Platt fit of the model's own head) +
    meta.json, replacing `out_dir` atomically. `extra` (data version, training figures,
    created_at...) is stored in the meta too."""
    out_dir = Path(out_dir)
    tensors = {f"layer_{layer}.{name}": t.detach().contiguous().cpu()
               for layer in heads.trainable_layers
               for name, t in heads[layer].state_dict().items()}
    tensors[f"layer_{heads.num_layers}.platt"] = heads[heads.num_layers].platt.detach().cpu().clone()
    meta = {
        "model_version": model_version,
        "exit_layers": heads.exit_layers,
        "num_layers": heads.num_layers,
        "head_type": heads.head_type,
        "answer": {"yes_id": heads.answer.yes_id, "no_id": heads.answer.no_id},
        **(extra or {}),
    }
    with atomic_folder(out_dir) as tmp:
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"model_version": model_version})
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def calibrated_rule(meta: dict, base: EarlyExitConfig) -> EarlyExitConfig | None:
    """`base` with the exit rule chosen on valid when these heads were trained (meta
    "calibration", see early_exit.job); None for heads saved without one."""
    rule = (meta.get("calibration") or {}).get("rule")
    return None if rule is None else EarlyExitConfig.model_validate({**base.model_dump(), **rule})


def load_exit_heads(folder: str | Path, model: PreTrainedModel, answer: AnswerTokens,
                    model_version: str | None = None) -> ExitHeads:
    """Heads saved by `save_exit_heads`, checked against the model they will run on."""
    folder = Path(folder)
    meta = json.loads((folder / META_FILE).read_text())
    if model_version is not None and meta["model_version"] != model_version:
        raise ValueError(f"heads in {folder} were trained for model {meta['model_version']!r}, "
                         f"not {model_version!r}")
    if meta["num_layers"] != model.config.num_hidden_layers:
        raise ValueError(f"heads in {folder} expect {meta['num_layers']} layers, the model has "
                         f"{model.config.num_hidden_layers}")
    if meta["answer"] != {"yes_id": answer.yes_id, "no_id": answer.no_id}:
        raise ValueError(f"heads in {folder} use answer tokens {meta['answer']}, not {answer}")
    cfg = EarlyExitConfig(exit_layers=meta["exit_layers"][:-1], head_type=meta["head_type"])
    heads = ExitHeads.from_model(model, answer, cfg)
    state = load_file(str(folder / WEIGHTS_FILE))
    for layer in heads.trainable_layers:
        prefix = f"layer_{layer}."
        heads[layer].load_state_dict({"platt": IDENTITY,   # heads saved before Platt fits had none
                                      **{k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}})
    heads[heads.num_layers].platt.copy_(state.get(f"layer_{heads.num_layers}.platt", IDENTITY))
    return heads.to(next(model.parameters()).device)
