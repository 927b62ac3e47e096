import json

import pytest
import torch

from optirag.llm.config import ModelConfig
from optirag.llm.loading import MARKER, load_model, prepare_model
from optirag.llm.scoring import score_prompts


def test_prepared_gguf_folder_is_a_plain_fp32_safetensors_model(prepared_dir, model_cfg):
    assert prepared_dir == model_cfg.conversion_dir()
    config = json.loads((prepared_dir / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["dtype"] == "float32"
    assert (prepared_dir / "model.safetensors").is_file()
    assert (prepared_dir / "tokenizer.json").is_file()
    marker = json.loads((prepared_dir / MARKER).read_text())
    assert marker["gguf_file"] == model_cfg.gguf_file and len(marker["gguf_sha256"]) == 64


def test_prepare_is_idempotent(prepared_dir, model_cfg):
    weights = prepared_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert prepare_model(model_cfg) == prepared_dir
    assert weights.stat().st_mtime_ns == before  # not converted again


def test_a_local_hf_folder_is_used_in_place(tmp_path, tiny_model, tokenizer):
    tiny_model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    cfg = ModelConfig(name="tiny", source=str(tmp_path), gguf_file=None)
    assert prepare_model(cfg) == tmp_path
    model, tok = load_model(cfg)
    assert not model.training and model.dtype == torch.float32
    assert model.config._attn_implementation == cfg.attn_implementation
    prompts = ["Will the user like it? Answer:", "Hi"]
    torch.testing.assert_close(
        torch.from_numpy(score_prompts(model, tok, prompts, 2)),
        torch.from_numpy(score_prompts(tiny_model, tokenizer, prompts, 2)),
    )


def test_bad_sources_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such local folder"):
        prepare_model(ModelConfig(source=str(tmp_path / "missing"), gguf_file=None))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        prepare_model(ModelConfig(source=str(tmp_path), gguf_file=None))
    with pytest.raises(FileNotFoundError, match="not installed"):
        prepare_model(ModelConfig(source="python-package:no_such_package_xyz"))
    with pytest.raises(FileNotFoundError, match="GGUF file not found"):
        prepare_model(ModelConfig(source=str(tmp_path), gguf_file="absent.gguf"))
