"""LoRA instruction tuning for Yes/No CTR (paper 5.2, L_CE = -log p(y|x)).

    prompts -> length buckets -> [frozen layers, once] -> LoRA layers -> (No, Yes) logits
            -> CE -> AdamW (warm-up, schedule) -> per epoch: valid AUC -> keep the best

The loss is the cross-entropy at the answer position (the prompt's last real token) with
target token "Yes" (label 1) or "No" (label 0); only that position's logits are computed.
`loss: full_vocab` is the paper's -log p(y|x) over the whole vocabulary; `loss: yes_no` is
the same cross-entropy over the two answer logits only, i.e. the log loss of the CTR that is
served: it spends no steps learning the answer format. The model trains in the dtype it was
loaded in (bf16 on a CPU with native bf16, see optirag.llm.loading), adapters in fp32;
seeded and deterministic on CPU.

A tuned model is saved into one folder: weights (merged, or the LoRA adapter only) as
safetensors, the tokenizer, and `meta.json` (model version, data version, base model,
answer tokens, configs). `load_tuned` gives back a plain model that scores identically.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import peft
import torch
import transformers
from peft import (
    LoraConfig, PeftModel, TaskType, get_peft_model, get_peft_model_state_dict,
    set_peft_model_state_dict,
)
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from optirag.artifacts import atomic_folder
from optirag.llm.config import ModelConfig, TuningConfig
from optirag.llm.layerwise import BottomCache, frozen_bottom, length_buckets, top_logits
from optirag.llm.loading import load_model_from, prepare_model
from optirag.llm.packing import Block, packed_batches
from optirag.llm.scoring import (
    AnswerTokens, answer_logits, encode_prompts, last_hidden, yes_probability,
)

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
    epochs: list[dict] = field(default_factory=list)   # per epoch: loss, valid AUC, seconds
    best_epoch: int | None = None    # the epoch kept (early stopping on the valid AUC)
    cache_seconds: float = 0.0       # the frozen layers' one pass over train + valid
    train_cache_seconds: float = 0.0  # the part of it over the training examples


def _schedule(tuning: TuningConfig, total_steps: int):
    """Linear warm-up over `warmup_steps`, then constant or cosine decay to 0 at the end."""
    def factor(step: int) -> float:
        if tuning.warmup_steps and step < tuning.warmup_steps:
            return (step + 1) / tuning.warmup_steps
        if tuning.schedule == "cosine":
            done = (step - tuning.warmup_steps) / max(1, total_steps - tuning.warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, done)))
        return 1.0
    return factor


def _unpadded(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], max_length: int):
    """Token ids as the scorer sees them (a prompt over max_length loses its beginning)."""
    input_ids, mask = encode_prompts(tokenizer, prompts, max_length)
    for row, n in zip(input_ids, mask.sum(1)):
        yield row[: int(n)].tolist()


def tune_lora(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[tuple[str, int]],
    tuning: TuningConfig,
    answer: AnswerTokens,
    valid: Sequence[tuple[str, int]] | None = None,
    cache: BottomCache | None = None,
    blocks: Sequence[Block] | None = None,
) -> TuneResult:
    """LoRA-tune `model` (modified in place: adapters are injected) on (prompt, label) pairs.

    Adapters go on the layers from `tuning.trainable_from` up; the frozen layers below run
    once per example when `cache_frozen` (optirag.llm.layerwise), and once per row across
    tunings of the same base model when they share a `cache`. Batches are length
    buckets in a seeded order. With `valid` pairs and `tuning.patience`, the valid AUC is
    measured after every epoch and the best epoch's adapters are kept (early stopping).
    With `blocks` (optirag.llm.packing: each example once), the training examples are
    packed several to a shared prefix, about `tuning.batch_size` targets a batch; `valid`
    is scored as prompts of its own either way."""
    from optirag.evaluation.metrics import auc_or_none

    if not examples:
        raise ValueError("no tuning examples")
    if blocks is not None and sorted(i for b in blocks for i in b.examples) != list(range(len(examples))):
        raise ValueError("the blocks must hold every tuning example exactly once")
    num_layers = model.config.num_hidden_layers
    frozen = (tuning.trainable_from or 1) - 1
    if frozen >= num_layers:
        raise ValueError(f"tuning.trainable_from {tuning.trainable_from} leaves none of the "
                         f"model's {num_layers} layers to tune")
    torch.manual_seed(tuning.seed)  # LoRA A init and dropout masks
    lora = LoraConfig(
        r=tuning.rank, lora_alpha=tuning.alpha, lora_dropout=tuning.dropout,
        target_modules=list(tuning.target_modules), bias="none", task_type=TaskType.CAUSAL_LM,
        layers_to_transform=list(range(frozen, num_layers)) if frozen else None,
    )
    with _quiet_peft():
        peft_model = get_peft_model(model, lora)  # adapters in fp32 even on a bf16 base
    inner = peft_model.get_base_model()       # the causal LM with LoRA layers inside
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=tuning.lr, weight_decay=tuning.weight_decay)
    generator = torch.Generator().manual_seed(tuning.seed)
    labels = torch.tensor([int(y) for _, y in examples], dtype=torch.long)
    full_vocab = tuning.loss == "full_vocab"
    targets = torch.where(labels.bool(), answer.yes_id, answer.no_id) if full_vocab else labels

    if cache is not None and cache.frozen != frozen:
        raise ValueError(f"the cache holds layers 1-{cache.frozen}, tuning freezes 1-{frozen}")

    def buckets(pairs, label):
        return frozen_batches(inner, tokenizer, [p for p, _ in pairs], tuning, frozen,
                              tuning.max_length, cache, label)

    started = time.time()
    if blocks is None:
        batches = buckets(examples, "train")
    else:
        batches = packed_frozen_batches(inner, tokenizer, blocks, tuning, frozen)
    train_cache_seconds = time.time() - started
    valid_batches = buckets(valid, "valid") if valid and tuning.patience else None
    cache_seconds = time.time() - started
    steps_per_epoch = math.ceil(len(batches) / tuning.grad_accum_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(tuning, tuning.epochs * steps_per_epoch))

    def logits(batch):
        bottom = batch.bottom if batch.bottom is not None else frozen_bottom(inner, batch, frozen)
        return top_logits(inner, bottom, batch, frozen, answer, full_vocab)

    @torch.no_grad()
    def valid_auc() -> float | None:
        y = np.array([int(v) for _, v in valid])
        if np.unique(y).size < 2:   # AUC undefined: spare the forward pass
            return None
        peft_model.eval()
        p = top_probabilities(inner, valid_batches, frozen, answer)
        peft_model.train()
        return auc_or_none(y, p)

    losses: list[float] = []
    epochs: list[dict] = []
    best: tuple[float, int, dict] | None = None
    peft_model.train()
    for epoch in range(tuning.epochs):
        epoch_started = time.time()
        order = torch.randperm(len(batches), generator=generator).tolist()
        bar = tqdm(order, desc=f"lora epoch {epoch + 1}/{tuning.epochs}", disable=not tuning.progress)
        optimizer.zero_grad(set_to_none=True)
        window, total = 0.0, 0.0
        for step, b in enumerate(bar, start=1):
            batch = batches[b]
            device = next(inner.parameters()).device
            loss = torch.nn.functional.cross_entropy(logits(batch), targets[batch.index].to(device))
            (loss / tuning.grad_accum_steps).backward()
            window += loss.item() / tuning.grad_accum_steps
            total += loss.item() * len(batch.index)
            if step % tuning.grad_accum_steps == 0 or step == len(order):
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(window)
                bar.set_postfix(loss=f"{window:.4f}")
                window = 0.0
        seconds = time.time() - epoch_started
        record = {"epoch": epoch + 1, "loss": round(total / len(examples), 5),
                  "seconds": round(seconds, 1), "examples_per_s": round(len(examples) / seconds, 2)}
        if valid_batches is not None:
            record["valid_auc"] = auc = valid_auc()
            if auc is not None and (best is None or auc > best[0]):
                best = (auc, epoch + 1, {k: v.detach().clone() for k, v in
                                         get_peft_model_state_dict(peft_model).items()})
        epochs.append(record)
        if tuning.progress:
            print(f"lora epoch {epoch + 1}: {record}", flush=True)
        if best is not None and epoch + 1 - best[1] >= tuning.patience:
            break
    if best is not None and best[1] != len(epochs):
        set_peft_model_state_dict(peft_model, best[2])
    peft_model.eval()
    return TuneResult(model=peft_model, losses=losses, epochs=epochs,
                      best_epoch=best[1] if best else len(epochs), cache_seconds=round(cache_seconds, 1),
                      train_cache_seconds=round(train_cache_seconds, 1))


def frozen_batches(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str],
                   tuning: TuningConfig, frozen: int, max_length: int, cache: BottomCache | None = None,
                   label: str = "rows") -> list:
    """Length buckets of `prompts`, each with its frozen bottom's output when `cache_frozen`
    (from `cache` where it has the row, which then keeps it)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batches = length_buckets(list(_unpadded(tokenizer, prompts, max_length)), tuning.batch_size, pad)
    return _with_bottoms(model, batches, tuning, frozen, cache, f"{label}: layers 1-{frozen} (frozen, once)")


def packed_frozen_batches(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                          blocks: Sequence[Block], tuning: TuningConfig, frozen: int) -> list:
    """Packed batches of `blocks` (optirag.llm.packing), each with its frozen bottom's
    output when `cache_frozen`: one bottom pass per block, not per example. (No
    BottomCache: it keys plain causal rows by their ids, and a packed row is not one.)"""
    batches = packed_batches(tokenizer, blocks, tuning.batch_size, tuning.max_length)
    return _with_bottoms(model, batches, tuning, frozen, None,
                         f"train: layers 1-{frozen} (frozen, once per prefix)")


def _with_bottoms(model: PreTrainedModel, batches: list, tuning: TuningConfig, frozen: int,
                  cache: BottomCache | None, desc: str) -> list:
    """`batches`, each given its frozen bottom's output when there are frozen layers and
    `cache_frozen` (else the tuning computes it per step)."""
    if frozen and tuning.cache_frozen:
        for b in tqdm(batches, desc=desc, disable=not tuning.progress):
            b.bottom = frozen_bottom(model, b, frozen) if cache is None else cache.bottom(model, b)
    return batches


@torch.no_grad()
def top_probabilities(model: PreTrainedModel, batches: Sequence, frozen: int,
                      answer: AnswerTokens) -> np.ndarray:
    """P(Yes) per row of `batches` (in the rows' original order), the bottom from the batch
    when cached, through the top layers: the scorer's answer for the same rows."""
    p = np.empty(sum(len(b.index) for b in batches))
    for b in batches:
        bottom = b.bottom if b.bottom is not None else frozen_bottom(model, b, frozen)
        p[b.index.numpy()] = yes_probability(top_logits(model, bottom, b, frozen, answer)).double().numpy()
    return p


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
            model = _merged_fp32(result.model, model_cfg)
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


def _merged_fp32(peft_model: PeftModel, model_cfg: ModelConfig) -> PreTrainedModel:
    """The adapters folded into fp32 weights. A base tuned in bf16 was rounded when loaded:
    the adapters are merged into a fresh fp32 copy of it instead, so the saved weights are
    the original ones plus the learned update, whatever dtype serves them later."""
    base = peft_model.get_base_model()
    if next(base.parameters()).dtype == torch.float32:
        return peft_model.merge_and_unload()
    fp32_cfg = model_cfg.model_copy(update={"dtype": "float32", "device": "cpu"})
    fresh, _ = load_model_from(prepare_model(fp32_cfg), fp32_cfg)
    adapter = get_peft_model_state_dict(peft_model)
    with _quiet_peft():
        fresh = get_peft_model(fresh, peft_model.peft_config["default"])
    set_peft_model_state_dict(fresh, {k: v.float() for k, v in adapter.items()})
    return fresh.merge_and_unload()


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
