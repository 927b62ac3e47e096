"""Few-shot LoRA instruction tuning for Yes/No CTR (paper 5.2, L_CE = -log p(y|x)).

The loss is the cross-entropy at the answer position (the prompt's last real token) with
target token "Yes" (label 1) or "No" (label 0); only that position's logits are computed.
`loss: full_vocab` is the paper's -log p(y|x) over the whole vocabulary; `loss: yes_no` is
the same cross-entropy over the two answer logits only, i.e. the log loss of the CTR that is
served: with a few hundred CPU examples it spends no steps learning the answer format.
fp32 on CPU (seeded, deterministic), bf16 autocast on CUDA.

A tuned model is saved into one folder: weights (merged, or the LoRA adapter only) as
safetensors, the tokenizer, and `meta.json` (model version, data version, base model,
answer tokens, configs). `load_tuned` gives back a plain model that scores identically.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import peft
import torch
import transformers
from peft import LoraConfig, PeftModel, TaskType, get_peft_model
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from optirag.artifacts import atomic_folder
from optirag.llm.config import ModelConfig, TuningConfig
from optirag.llm.loading import load_model_from, prepare_model
from optirag.llm.scoring import AnswerTokens, answer_logits, encode_prompts, last_hidden

META_FILE = "meta.json"


@contextlib.contextmanager
def _quiet_peft():
    """peft 0.21 reads `is_gradient_checkpointing`, which transformers 5.x deprecates."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing",
                                category=FutureWarning)
        yield


def answer_loss(
    model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
    labels: torch.Tensor, answer: AnswerTokens, loss: str = "full_vocab",
) -> torch.Tensor:
    """Mean CE at the answer position, target Yes (1) / No (0), over the full vocabulary
    (`full_vocab`) or over the two answer logits (`yes_no`)."""
    hidden = last_hidden(model, input_ids, attention_mask)
    if loss == "yes_no":  # the scorer's own (No, Yes) logits: class 1 = Yes
        return torch.nn.functional.cross_entropy(answer_logits(model, hidden, answer).float(), labels)
    logits = model.get_output_embeddings()(hidden)  # (B, V): last position only
    targets = torch.where(labels.bool(), answer.yes_id, answer.no_id)
    return torch.nn.functional.cross_entropy(logits.float(), targets)


@dataclass
class TuneResult:
    model: PeftModel          # the LoRA-wrapped model, in eval mode
    losses: list[float]       # one per optimizer step


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=generator)
    return [order[i: i + batch_size] for i in range(0, n, batch_size)]


def tune_lora(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[tuple[str, int]],
    tuning: TuningConfig,
    answer: AnswerTokens,
) -> TuneResult:
    """LoRA-tune `model` (modified in place: adapters are injected) on (prompt, label) pairs."""
    if not examples:
        raise ValueError("no tuning examples")
    torch.manual_seed(tuning.seed)  # LoRA A init and dropout masks
    lora = LoraConfig(
        r=tuning.rank, lora_alpha=tuning.alpha, lora_dropout=tuning.dropout,
        target_modules=list(tuning.target_modules), bias="none", task_type=TaskType.CAUSAL_LM,
    )
    with _quiet_peft():
        peft_model = get_peft_model(model, lora)  # adapters in fp32 even on a bf16 base
    inner = peft_model.get_base_model()       # the causal LM with LoRA layers inside
    device = next(inner.parameters()).device
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=tuning.lr, weight_decay=tuning.weight_decay)
    generator = torch.Generator().manual_seed(tuning.seed)
    prompts = [p for p, _ in examples]
    labels = torch.tensor([int(y) for _, y in examples], dtype=torch.long)
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                              enabled=device.type == "cuda")

    losses: list[float] = []
    peft_model.train()
    for epoch in range(tuning.epochs):
        batches = _batches(len(examples), tuning.batch_size, generator)
        bar = tqdm(batches, desc=f"lora epoch {epoch + 1}/{tuning.epochs}",
                   disable=not tuning.progress)
        optimizer.zero_grad(set_to_none=True)
        window = 0.0
        for step, idx in enumerate(bar, start=1):
            input_ids, attention_mask = encode_prompts(
                tokenizer, [prompts[i] for i in idx], tuning.max_length, device
            )
            with autocast:
                loss = answer_loss(inner, input_ids, attention_mask, labels[idx].to(device), answer,
                                   tuning.loss)
            (loss / tuning.grad_accum_steps).backward()
            window += loss.item() / tuning.grad_accum_steps
            if step % tuning.grad_accum_steps == 0 or step == len(batches):
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(window)
                bar.set_postfix(loss=f"{window:.4f}")
                window = 0.0
    peft_model.eval()
    return TuneResult(model=peft_model, losses=losses)


@torch.no_grad()
def mean_answer_loss(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[tuple[str, int]], answer: AnswerTokens, batch_size: int,
    max_length: int | None = None, loss: str = "full_vocab",
) -> float:
    """Mean L_CE over `examples` (eval mode, no grad): for validation and tests."""
    device = next(model.parameters()).device
    total = 0.0
    for start in range(0, len(examples), batch_size):
        chunk = examples[start: start + batch_size]
        input_ids, attention_mask = encode_prompts(
            tokenizer, [p for p, _ in chunk], max_length, device
        )
        labels = torch.tensor([int(y) for _, y in chunk], device=device)
        total += answer_loss(model, input_ids, attention_mask, labels, answer, loss).item() * len(chunk)
    return total / len(examples)


def _sha256_files(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def save_tuned(
    result: TuneResult,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: str | Path,
    model_cfg: ModelConfig,
    answer: AnswerTokens,
    data_version: str,
    model_version: str | None = None,
    extra_meta: dict | None = None,
) -> tuple[PreTrainedModel, dict]:
    """Write the tuned model to `out_dir` (replaced atomically); returns (scoring model, meta).

    save=merged folds LoRA into the weights (the PEFT wrapper is consumed; the returned plain
    model is the one saved); save=adapter writes only the adapter and returns the wrapped model.
    `model_version` defaults to `<name>-lora-<sha256 of the saved weights, 12 hex>`.
    """
    out_dir = Path(out_dir)
    with atomic_folder(out_dir) as tmp:
        fmt = model_cfg.tuning.save
        if fmt == "merged":
            model = result.model.merge_and_unload()
            model.save_pretrained(tmp, safe_serialization=True)
        else:
            model = result.model
            model.save_pretrained(tmp, safe_serialization=True)  # adapter_model.safetensors
        tokenizer.save_pretrained(tmp)
        weights = list(tmp.glob("*.safetensors"))
        digest = _sha256_files(weights)[:12]
        meta = {
            "model_version": model_version or f"{model_cfg.name}-lora-{digest}",
            "data_version": data_version,
            "format": fmt,
            "base_model": {"name": model_cfg.name, "source": model_cfg.source,
                           "gguf_file": model_cfg.gguf_file},
            "answer": {"yes_id": answer.yes_id, "no_id": answer.no_id,
                       **model_cfg.answer.model_dump()},
            "model_config": model_cfg.model_dump(),
            "versions": {"transformers": transformers.__version__, "peft": peft.__version__,
                         "torch": torch.__version__},
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            **(extra_meta or {}),  # e.g. the prompts config and retriever version it was tuned on
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return model, meta


def read_meta(folder: str | Path) -> dict:
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a tuned-model folder (no {META_FILE})")
    return json.loads(path.read_text())


def load_tuned(
    folder: str | Path, model_cfg: ModelConfig
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, dict]:
    """(plain model in eval mode, tokenizer, meta) from a `save_tuned` folder. An adapter is
    merged onto the base model that `model_cfg` prepares (its name must match the meta)."""
    meta = read_meta(folder)
    if meta["format"] == "merged":
        model, tokenizer = load_model_from(folder, model_cfg)
        return model, tokenizer, meta
    if meta["base_model"]["name"] != model_cfg.name:
        raise ValueError(
            f"adapter in {folder} was tuned on {meta['base_model']['name']!r}, "
            f"but the configured base model is {model_cfg.name!r}"
        )
    base, tokenizer = load_model_from(prepare_model(model_cfg), model_cfg)
    with _quiet_peft():
        model = PeftModel.from_pretrained(base, str(folder), is_trainable=False)
    model = model.merge_and_unload()
    return model.eval(), tokenizer, meta
