import pytest
from pydantic import ValidationError

from optirag.config import available, load_config
from optirag.early_exit.config import EarlyExitConfig
from optirag.llm.config import ModelConfig


@pytest.mark.parametrize("recipe", ["cpu-small", "gpu-7b"])
def test_recipes_validate_through_the_platform_config(recipe):
    assert recipe in available("models")
    cfg = load_config("bookcrossing", model=recipe)
    model = ModelConfig.model_validate(cfg.model)
    early_exit = EarlyExitConfig.model_validate(cfg.early_exit)
    assert model.answer.yes_word == "Yes" and model.answer.no_word == "No"
    assert early_exit.exit_layers and early_exit.training.lr0 > 0


def test_cpu_recipe_is_the_default_and_gpu_recipe_differs():
    cpu = ModelConfig.model_validate(load_config("bookcrossing", model="cpu-small").model)
    gpu = ModelConfig.model_validate(load_config("bookcrossing", model="gpu-7b").model)
    assert cpu.source == ModelConfig().source and cpu.dtype == "auto" and cpu.device == "cpu"
    assert cpu.tuning.trainable_from and cpu.tuning.patience  # the cached-bottom, early-stopped recipe
    fewshot = ModelConfig.model_validate(load_config("bookcrossing", model="cpu-small-fewshot").model)
    assert fewshot.dtype == "float32" and fewshot.tuning.trainable_from is None  # the paper's setting
    assert gpu.gguf_file is None and gpu.dtype == "bfloat16" and gpu.device == "cuda"


def test_overrides_and_unknown_keys():
    cfg = load_config("bookcrossing", model="cpu-small",
                      overrides=["model.tuning.rank=4", "early_exit.tau=0.1"])
    assert ModelConfig.model_validate(cfg.model).tuning.rank == 4
    assert EarlyExitConfig.model_validate(cfg.early_exit).tau == 0.1
    with pytest.raises(ValidationError):
        ModelConfig.model_validate({"tuning": {"rnak": 4}})
    with pytest.raises(ValidationError):
        ModelConfig.model_validate({"dtype": "float8"})


def test_recipes_stack_left_to_right():
    """`cpu-small+demo`: the demo's cuts over the default recipe, the rest kept."""
    stacked = ModelConfig.model_validate(load_config("bookcrossing", model="cpu-small+demo").model)
    full = ModelConfig.model_validate(load_config("bookcrossing", model="cpu-small").model)
    assert stacked.tuning.trainable_from > full.tuning.trainable_from
    assert stacked.tuning.target_modules == full.tuning.target_modules and stacked.dtype == full.dtype
    with pytest.raises(Exception, match="unknown model recipe"):
        load_config("bookcrossing", model="cpu-small+nope")


def test_full_recipe_has_exit_heads_inside_its_tuned_block_on_one_scale_and_the_demo_keeps_the_papers():
    """Heads below layer 21 read untuned states; the demo tunes only 25-30 and was measured raw."""
    cfg = load_config("bookcrossing", model="cpu-small")
    tuned_from = ModelConfig.model_validate(cfg.model).tuning.trainable_from
    full = EarlyExitConfig.model_validate(cfg.early_exit)
    assert full.calibration.platt and sum(layer >= tuned_from for layer in full.exit_layers) >= 3
    demo = EarlyExitConfig.model_validate(load_config("bookcrossing", model="cpu-small+demo").early_exit)
    assert not demo.calibration.platt and demo.exit_layers == [5, 10, 15, 20, 25]


def test_a_recipe_adjusts_itself_per_dataset_and_names_only_known_datasets(tmp_path):
    """per_dataset.<dataset> of a recipe merges over it for that dataset only, before a later
    recipe layer and the command line; a dataset name the conf does not know is an error."""
    import shutil

    from optirag.config import CONF_DIR, ConfigError

    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    (conf / "models" / "adjusted.yaml").write_text(
        "model: {tuning: {rank: 8}}\n"
        "per_dataset:\n  movielens100k: {model: {tuning: {rank: 4, epochs: 3}}}\n")
    (conf / "models" / "later.yaml").write_text("model: {tuning: {epochs: 5}}\n")

    def tuning(dataset, model, overrides=()):
        cfg = load_config(dataset, model=model, overrides=list(overrides), conf_dir=conf)
        return ModelConfig.model_validate(cfg.model).tuning

    assert tuning("bookcrossing", "cpu-small+adjusted").rank == 8
    assert (tuning("movielens100k", "cpu-small+adjusted").rank, tuning("movielens100k", "cpu-small+adjusted").epochs) == (4, 3)
    assert tuning("movielens100k", "cpu-small+adjusted+later").epochs == 5
    assert tuning("movielens100k", "cpu-small+adjusted", ["model.tuning.rank=2"]).rank == 2
    (conf / "models" / "typo.yaml").write_text("per_dataset:\n  moivelens: {model: {tuning: {rank: 4}}}\n")
    with pytest.raises(ConfigError, match="unknown dataset.*moivelens"):
        load_config("bookcrossing", model="typo", conf_dir=conf)
