"""Shared fixtures: one real local Spark session with Delta per test run, the shared data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("OPTIRAG_SHARED_DATA", REPO.parent / "shared" / "data"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared datasets not found at {SHARED_DATA} (set OPTIRAG_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def spark():
    from optirag.config import load_config
    from optirag.spark import get_spark

    session = get_spark(load_config("bookcrossing"))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def session_lake(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("lake"))


# --- LLM fixtures (tests/llm, tests/early_exit): the real SmolLM2 tokenizer from the
# prepared cache, and tiny random causal LMs over its vocabulary. Imports are lazy so the
# Spark-only tests do not pay for torch/transformers.

@pytest.fixture(scope="session")
def model_cfg():
    import torch

    from optirag.llm.config import model_config_from_recipe

    # Tiny models on a 2-core box: thread hand-offs cost more than the math
    # (one thread runs these tests ~10-30x faster).
    torch.set_num_threads(1)
    return model_config_from_recipe("cpu-small")


@pytest.fixture(scope="session")
def prepared_dir(model_cfg):
    from optirag.llm.loading import prepare_model

    return prepare_model(model_cfg)  # converts once (about half a minute), then cached


@pytest.fixture(scope="session")
def tokenizer(prepared_dir):
    from optirag.llm.loading import load_tokenizer

    return load_tokenizer(prepared_dir)


@pytest.fixture(scope="session")
def answer(tokenizer, model_cfg):
    from optirag.llm.scoring import answer_tokens

    return answer_tokens(tokenizer, model_cfg.answer)


@pytest.fixture
def tiny_model(tokenizer):
    import torch

    from optirag.llm.tiny import tiny_causal_lm

    torch.manual_seed(0)
    return tiny_causal_lm(len(tokenizer), initializer_range=0.2,
                          pad_token_id=tokenizer.pad_token_id, seed=0)
