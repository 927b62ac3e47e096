"""One source for defaults: what conf/base.yaml sets equals the typed models' defaults.

A section's defaults live in its pydantic model (they fill whatever no layer sets, e.g. all of
`scoring:`); base.yaml may repeat them for the reader, but a value there that differs from the
model's default is two answers to one question. The few deliberate differences are listed.
"""
from typing import get_origin

import pytest
from pydantic import BaseModel

from optirag.config import CONF_DIR, STAGE_SECTIONS, Config, read_yaml, stage_model
from optirag.effective_config import leaves

# {key path in base.yaml: why base.yaml sets what the model does not default to}
DELIBERATE = {
    "spark.conf": "Spark settings for this machine; the model's default is no settings",
    "orchestration.timeout_minutes": "per-job data, read by the DAGs straight from base.yaml "
                                     "(they do not import optirag); the model's default is none",
    "orchestration.launchers": "per-env launch commands, read by the DAGs as above",
    "orchestration.engines": "which engine runs each job, read by the DAGs as above",
}

BASE = read_yaml(CONF_DIR / "base.yaml")


def _model(name):
    """The pydantic model of Config.<name>: a stage's own, or Config's typed field."""
    if name in STAGE_SECTIONS:
        return stage_model(name)
    return Config.model_fields[name].annotation


def _default(tree, path):
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return "<not a field>"
        tree = tree[key]
    return tree


def test_every_config_section_is_typed():
    """A section that Config keeps as a dict has an owner's model (validated at load)."""
    dicts = {name for name, field in Config.model_fields.items() if get_origin(field.annotation) is dict}
    assert dicts == set(STAGE_SECTIONS)
    assert all(issubclass(stage_model(name), BaseModel) for name in STAGE_SECTIONS)


@pytest.mark.parametrize("name", [name for name, value in BASE.items() if isinstance(value, dict)])
def test_base_yaml_equals_the_model_defaults(name):
    defaults = _model(name)().model_dump(mode="json")
    differ = {".".join((name, *path)): (value, _default(defaults, path))
              for path, value in leaves(BASE[name])
              if value != _default(defaults, path)
              and not any(".".join((name, *path)).startswith(f"{key}.") for key in DELIBERATE)}
    assert differ == {}, "base.yaml value vs model default"


@pytest.mark.parametrize("name", [name for name, value in BASE.items() if not isinstance(value, dict)])
def test_base_yaml_top_level_values_equal_config_defaults(name):
    assert BASE[name] == Config.model_fields[name].default


def test_deliberate_differences_are_still_there():
    """An entry whose difference went away is stale: remove it."""
    for key in DELIBERATE:
        name, *path = key.split(".")
        assert _default(BASE[name], path) != _default(_model(name)().model_dump(mode="json"), path), key
