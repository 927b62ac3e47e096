from __future__ import annotations

import pytest

from optirag.config import Config, ConfigError
from optirag.retrieval.config import RetrieverConfig, retriever_config
from optirag.retrieval.training import model_version


def test_defaults_follow_the_papers():
    cfg = retriever_config({})
    assert cfg.k == 4                      # OptiRAG: four retrieved examples
    assert cfg.layer_average and not cfg.include_layer0  # mean over layers 1..K (Sec. 4)
    assert (cfg.embedding_dim, cfg.num_layers, cfg.l2_reg) == (64, 3, 1e-4)  # LightGCN


def test_unknown_and_invalid_keys_fail_loudly():
    with pytest.raises(ConfigError, match="retriever.epoc"):
        retriever_config({"epoc": 3})
    with pytest.raises(ConfigError, match="retriever.k"):
        retriever_config({"k": 0})
    with pytest.raises(ConfigError, match="train_edges"):
        retriever_config({"train_edges": "likes"})


def test_accepts_the_platform_config_section():
    cfg = Config.model_validate({
        "dataset": {"name": "x", "format": "recbole", "files": {"inter": "*.inter"}, "rating_min": 1, "rating_max": 5,
                    "positive_threshold": 4, "protocol": "chronological"},
        "retriever": {"k": 6, "layer_average": False},
    })
    r = retriever_config(cfg)
    assert r.k == 6 and r.layer_average is False
    assert retriever_config(r) is r


def test_model_version_is_stable_and_sensitive():
    a = model_version(RetrieverConfig(), "v1")
    assert a == model_version(RetrieverConfig(), "v1")
    assert len(a) == 12 and int(a, 16) >= 0
    assert a != model_version(RetrieverConfig(seed=1), "v1")
    assert a != model_version(RetrieverConfig(), "v2")
    assert a != model_version(RetrieverConfig(layer_average=False), "v1")


@pytest.mark.parametrize("env", ["local", "cluster"])
def test_the_repo_config_layers_validate(env):
    from optirag.config import available, load_config

    for dataset in available("datasets"):
        retriever_config(load_config(dataset, env=env))  # raises on a bad retriever: key


def test_init_ray_reuses_a_running_runtime(ray_runtime):
    from optirag.config import RayConfig
    from optirag.ray_session import init_ray

    assert init_ray(RayConfig(address="auto")) is ray_runtime and ray_runtime.is_initialized()
