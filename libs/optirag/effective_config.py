"""A run's effective config, every default filled in, and the layer each key came from:
what ``python -m jobs.config`` prints.

    config_layers()  --merge, validate-->  Config  --effective()-->  tree: every section as its
          |                                                        pydantic model dumps it
          +---- sources(): per leaf of the tree, the last layer that sets it,
                           else "default (code)"
                                        |
                render(tree, sources)  -->  YAML text, ``# <layer>`` after each leaf (--explain)

The output parses as YAML either way (the layer names are comments).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import yaml

from optirag.config import (
    STAGE_SECTIONS, Config, Layer, config_from_layers, config_layers, section, stage_model,
)

CODE_DEFAULT = "default (code)"
COMMENT_COLUMN = 56  # layer comments line up here, or follow a longer line

KeyPath = tuple[str, ...]  # ("prompts", "k")


def effective(cfg: Config) -> dict[str, Any]:
    """`cfg` as plain data; each stage section (a dict in Config) as its owner's model dumps
    it, so the defaults that live only in code show too."""
    tree = cfg.model_dump(mode="json")
    for name in STAGE_SECTIONS:
        tree[name] = section(stage_model(name), getattr(cfg, name), name).model_dump(mode="json")
    return tree


def leaves(tree: dict[str, Any], path: KeyPath = ()) -> Iterator[tuple[KeyPath, Any]]:
    """(path, value) of every leaf: a scalar, a list or an empty mapping (layers replace lists
    whole, so a list is one setting)."""
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from leaves(value, (*path, key))
        else:
            yield (*path, key), value


def _sets(layer: dict[str, Any], path: KeyPath) -> bool:
    node: Any = layer
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def sources(layers: list[Layer], tree: dict[str, Any]) -> dict[KeyPath, str]:
    """{leaf path: the name of the last layer that sets it, else CODE_DEFAULT}."""
    return {path: next((name for name, layer in reversed(layers) if _sets(layer, path)), CODE_DEFAULT)
            for path, _ in leaves(tree)}


def _inline(value: Any) -> str:
    """One key or value as one line of YAML (quoted only where YAML needs it)."""
    # A string with a newline is written "a\n", not as a quoted scalar over two lines.
    style = '"' if isinstance(value, str) and "\n" in value else None
    text = yaml.safe_dump(value, default_flow_style=True, default_style=style,
                          width=float("inf"), allow_unicode=True, sort_keys=False)
    return text.removesuffix("...\n").strip()  # a bare scalar is dumped as a document: "x\n...\n"


def render(tree: dict[str, Any], where: dict[KeyPath, str] | None = None) -> str:
    """`tree` as block YAML with one leaf a line; `where`: a ``# <layer>`` comment per leaf."""
    lines: list[str] = []

    def walk(node: dict[str, Any], path: KeyPath) -> None:
        for key, value in node.items():
            head = f"{'  ' * len(path)}{_inline(key)}:"
            if isinstance(value, dict) and value:
                lines.append(head)
                walk(value, (*path, key))
            elif where is None:
                lines.append(f"{head} {_inline(value)}")
            else:
                lines.append(f"{f'{head} {_inline(value)}':<{COMMENT_COLUMN}}  # {where[(*path, key)]}")

    walk(tree, ())
    return "\n".join(lines) + "\n"


def show_config(dataset: str, env: str = "local", model: str | None = None,
                overrides: list[str] | None = None, lake: str | None = None,
                explain: bool = False, conf_dir: Path | None = None) -> str:
    """The effective config as YAML; `explain`: each leaf names the layer that set it, and a
    first comment lists the layers in merge order."""
    layers = config_layers(dataset, env, model, overrides, lake, conf_dir)
    tree = effective(config_from_layers(layers, dataset))
    if not explain:
        return render(tree)
    order = " < ".join(dict.fromkeys(name for name, _ in layers))  # one --set entry for many
    return f"# layers, later wins: {CODE_DEFAULT} < {order}\n" + render(tree, sources(layers, tree))
