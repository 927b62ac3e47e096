"""One typed configuration for the whole platform.

A run's config is built by deep-merging YAML layers, later layers winning:

    conf/base.yaml  <  conf/datasets/<dataset>.yaml  <  conf/env/<env>.yaml (``a+b``: a, then b)
                    <  conf/models/<model>.yaml, each followed by its ``per_dataset.<dataset>``
                       block (``a+b``: a, a's block, b, b's block)
                    <  command-line ``--set a.b=c`` overrides  <  ``--lake``

(:func:`config_layers` lists them, named, in that order) and validated into :class:`Config`
(pydantic, unknown keys rejected, so a typo in a YAML key or an override fails loudly instead
of being ignored). The sections owned by a stage stay dicts in :class:`Config`, but each is
validated at load by its owner's model (:data:`STAGE_SECTIONS`). Code defaults fill what no
layer sets; base.yaml repeats them (tests/test_config_defaults.py keeps the two equal), and
``python -m jobs.config`` prints the result. YAML is read with ``yaml.safe_load`` only.
Paths, thresholds and seeds live here, never in code.
"""
from __future__ import annotations

import argparse
import copy
import datetime as dt
import importlib
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator



def _conf_dir() -> Path:
    """$OPTIRAG_CONF_DIR, else conf/ beside the code (a checkout), else ./conf: where code is
    shipped without the repo around it (spark-submit --py-files optirag.zip, a Ray job's
    py_modules) the job runs in a copy of the repo (its working dir) that holds conf/."""
    if os.environ.get("OPTIRAG_CONF_DIR"):
        return Path(os.environ["OPTIRAG_CONF_DIR"])
    beside = Path(__file__).resolve().parents[2] / "conf"
    return beside if beside.is_dir() else Path.cwd() / "conf"


CONF_DIR = _conf_dir()


class ConfigError(ValueError):
    """A config that cannot be loaded or validated; the message is one readable line."""


class Section(BaseModel):
    """A block of the config: unknown keys are errors (the base of every section model)."""
    model_config = ConfigDict(extra="forbid")


class SparkConfig(Section):
    master: str = "local[2]"
    app_name: str = "optirag"
    # cache: jars fetched by `make setup` into jars_dir; packages: spark.jars.packages
    # (needs Maven Central at start); provided: the cluster ships Delta (Databricks, EMR).
    delta_jars: Literal["cache", "packages", "provided"] = "cache"
    jars_dir: str = "~/.cache/optirag/jars"
    scala_suffix: str = "4.1_2.13"
    conf: dict[str, str] = Field(default_factory=dict)


# Per raw format: the role (key of dataset.files) of its interactions file, which every
# dataset needs, and of its item-metadata file; and its field delimiter (JSON lines: none).
FORMAT_FILES = {"bookcrossing": ("ratings", "books"), "recbole": ("inter", "item"), "amazon": ("reviews", "meta")}
FORMAT_DELIMITERS = {"bookcrossing": ",", "recbole": "\t", "amazon": None}


class DatasetConfig(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # its folder in the lake
    format: Literal["bookcrossing", "recbole", "amazon"]
    # logical name -> file name (or glob for optional files) inside --raw
    files: dict[str, str]
    optional_files: list[str] = Field(default_factory=list)
    # null: the format's (bookcrossing ",", recbole tab); the original BX release uses ";"
    delimiter: str | None = None
    rating_min: float
    rating_max: float
    # label = 1 iff rating >= positive_threshold
    positive_threshold: float
    protocol: Literal["random_target", "chronological"]
    # samples need at least this many earlier/other interactions of the user
    min_history: int = 0
    # chronological only: train users also yield a sample at every earlier position
    train_all_positions: bool = True
    # random_target only: a train user's first k seeded positions are targets, sharing one
    # history (valid/test users keep one target); chronological has train_all_positions
    train_targets_per_user: int = Field(default=1, ge=1)
    # chronological only: a valid/test user's last N eligible interactions are targets
    heldout_last_n: int = Field(default=1, ge=1)
    missing_title: str = "Unknown item {item_id}"

    @model_validator(mode="after")
    def _fits_its_format(self) -> "DatasetConfig":
        roles = FORMAT_FILES[self.format]
        unknown = sorted(set(self.files) - set(roles))
        if unknown:
            raise ValueError(f"files: {unknown} is not a file of format {self.format} (its files: {list(roles)})")
        if not (self.files.get(roles[0]) or "").strip():
            raise ValueError(f"files.{roles[0]} (the interactions file of format {self.format}) is required")
        empty = [role for role, pattern in self.files.items() if not (pattern or "").strip()]
        if empty:
            raise ValueError(f"files.{empty[0]} is empty")
        if self.delimiter is None:
            self.delimiter = FORMAT_DELIMITERS[self.format]
        elif FORMAT_DELIMITERS[self.format] is None:
            raise ValueError(f"delimiter: format {self.format} is JSON lines and has none")
        if not self.rating_min < self.rating_max:
            raise ValueError(f"rating_min {self.rating_min:g} must be below rating_max {self.rating_max:g}")
        if not self.rating_min < self.positive_threshold <= self.rating_max:
            raise ValueError(f"positive_threshold {self.positive_threshold:g} leaves a class empty: it must be "
                             f"in ({self.rating_min:g}, {self.rating_max:g}]")
        if self.train_targets_per_user > 1 and self.protocol != "random_target":
            raise ValueError(f"train_targets_per_user {self.train_targets_per_user} is for the random_target "
                             f"protocol; a {self.protocol} dataset's train users already give a sample at every "
                             f"eligible position (train_all_positions)")
        return self


class SplitConfig(Section):
    train: float = 0.8
    valid: float = 0.1
    test: float = 0.1

    @model_validator(mode="after")
    def _sums_to_one(self) -> "SplitConfig":
        if abs(self.train + self.valid + self.test - 1.0) > 1e-9:
            raise ValueError("split ratios must sum to 1")
        return self


class IngestConfig(Section):
    history_max: int = 15
    seed: int = 42
    split: SplitConfig = Field(default_factory=SplitConfig)


class QualityConfig(Section):
    # absolute tolerance on each split's share of users
    split_tolerance: float = 0.02
    reports_dir: str = "reports/checks"
    # ingest warns (log + report) when a metadata column is empty for more than this share
    # of the items of the metadata file: prompts and baselines would silently lack it
    metadata_max_empty_share: float = Field(0.5, ge=0, le=1)


class RayConfig(Section):
    address: str | None = None  # None: local ray.init(); "auto" on a cluster
    num_cpus: int | None = None
    include_dashboard: bool = False


class Config(Section):
    env: str = "local"
    lake: str | None = None
    # Model versions (retriever, scorer, exit heads); None: `<lake>/<dataset>/_models`.
    models_dir: str | None = None
    dataset: DatasetConfig
    spark: SparkConfig = Field(default_factory=SparkConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    # Sections owned by later stages: dicts here, each validated at load by its owner's model
    # (STAGE_SECTIONS); a stage reads its own as that model.
    retriever: dict[str, Any] = Field(default_factory=dict)
    model: dict[str, Any] = Field(default_factory=dict)
    early_exit: dict[str, Any] = Field(default_factory=dict)
    scoring: dict[str, Any] = Field(default_factory=dict)
    prompts: dict[str, Any] = Field(default_factory=dict)
    candidates: dict[str, Any] = Field(default_factory=dict)
    evaluation: dict[str, Any] = Field(default_factory=dict)
    baselines: dict[str, Any] = Field(default_factory=dict)
    orchestration: dict[str, Any] = Field(default_factory=dict)
    localcluster: dict[str, Any] = Field(default_factory=dict)  # optirag.localcluster (env localcluster)

    def dataset_lake(self) -> str:
        """`<lake>/<dataset>`: where every table of this dataset lives."""
        if not self.lake:
            raise ConfigError("no lake path: pass --lake PATH or set `lake:` in the env config")
        return f"{self.lake.rstrip('/')}/{self.dataset.name}"

    def model_store(self) -> Path:
        """Root of this dataset's model versions (see optirag.registry)."""
        root = self.models_dir or f"{self.dataset_lake()}/_models"
        return Path(os.path.expandvars(os.path.expanduser(root)))


# The model that owns each stage section of Config ("module:Class"). Imported only when a
# config is loaded: those modules import this one, and a stage's schema lives beside its code.
STAGE_SECTIONS = {
    "retriever": "optirag.retrieval.config:RetrieverConfig",
    "model": "optirag.llm.config:ModelConfig",
    "early_exit": "optirag.early_exit.config:EarlyExitConfig",
    "scoring": "optirag.scoring.config:ScoringConfig",
    "prompts": "optirag.prompts.config:PromptsConfig",
    "candidates": "optirag.scoring.config:CandidatesConfig",
    "evaluation": "optirag.evaluation.config:EvaluationConfig",
    "baselines": "optirag.baselines.config:BaselinesConfig",
    "orchestration": "optirag.orchestration.config:OrchestrationConfig",
    "localcluster": "optirag.localcluster:LocalClusterConfig",
}


def stage_model(name: str) -> type[BaseModel]:
    module, _, cls = STAGE_SECTIONS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def _problems(e: ValidationError, prefix: str = "") -> str:
    return "; ".join(f"{prefix}{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())


def section(model: type[BaseModel], data: Any, name: str,
            error: type[ConfigError] = ConfigError) -> Any:
    """Validate one stage-owned section `Config.<name>` with its owner's pydantic model.
    `data` may be the dict, the whole Config, or an already validated model (passed
    through). Problems become one `error` line naming the keys."""
    if isinstance(data, model):
        return data
    if data is not None and not isinstance(data, dict) and hasattr(data, name):
        data = getattr(data, name)
    try:
        return model.model_validate(data or {})
    except ValidationError as e:
        raise error(f"invalid config: {_problems(e, f'{name}.')}") from None


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid YAML in {path}: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(item: str) -> dict[str, Any]:
    """`a.b.c=value` -> {"a": {"b": {"c": value}}}; the value is parsed as YAML (safe)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} is not of the form key.path=value")
    value = yaml.safe_load(raw) if raw.strip() else None
    node: dict[str, Any] = {}
    cursor = node
    parts = key.strip().split(".")
    for part in parts[:-1]:
        cursor[part] = {}
        cursor = cursor[part]
    cursor[parts[-1]] = value
    return node


def available(kind: str, conf_dir: Path | None = None) -> list[str]:
    folder = (conf_dir or CONF_DIR) / kind
    return sorted(p.stem for p in folder.glob("*.yaml"))


# One layer of a run's config: (where it comes from, what it sets), e.g. ("base.yaml", {...}).
Layer = tuple[str, dict[str, Any]]


def recipe_layers(recipe: dict[str, Any], name: str, dataset: str, conf_dir: Path) -> list[Layer]:
    """A model recipe, then its ``per_dataset.<dataset>`` block: a recipe is tuned per dataset
    where one setting does not fit all (the recipe file says why), and the dataset's YAML
    cannot do it, being an earlier layer."""
    recipe = dict(recipe)
    per_dataset = recipe.pop("per_dataset", None) or {}
    unknown = sorted(set(per_dataset) - set(available("datasets", conf_dir)))
    if unknown:
        raise ConfigError(f"conf/models/{name}.yaml: per_dataset names unknown dataset(s) {unknown}")
    layers = [(f"models/{name}.yaml", recipe)]
    if per_dataset.get(dataset):
        layers.append((f"models/{name}.yaml per_dataset.{dataset}", per_dataset[dataset]))
    return layers


def config_layers(
    dataset: str,
    env: str = "local",
    model: str | None = None,
    overrides: list[str] | None = None,
    lake: str | None = None,
    conf_dir: Path | None = None,
) -> list[Layer]:
    """The layers of a run's config, named, in merge order (the module docstring)."""
    conf_dir = conf_dir or CONF_DIR
    if dataset not in available("datasets", conf_dir):
        raise ConfigError(
            f"unknown dataset {dataset!r}; known: {', '.join(available('datasets', conf_dir))}"
        )
    # An env may stack layers, merged left to right: `demo+localcluster` = the demo's sizes
    # on the local clusters (the later layer's master and Ray address win).
    for layer in env.split("+"):
        if layer not in available("env", conf_dir):
            raise ConfigError(f"unknown env {layer!r}; known: {', '.join(available('env', conf_dir))}")
    layers: list[Layer] = [("base.yaml", read_yaml(conf_dir / "base.yaml")),
                           (f"datasets/{dataset}.yaml", read_yaml(conf_dir / "datasets" / f"{dataset}.yaml"))]
    layers += [(f"env/{layer}.yaml", read_yaml(conf_dir / "env" / f"{layer}.yaml")) for layer in env.split("+")]
    layers.append(("--env", {"env": env}))
    # Recipes stack the same way: `cpu-small+demo` = cpu-small with the demo's short tuning.
    for layer in (model.split("+") if model else []):
        if layer not in available("models", conf_dir):
            raise ConfigError(
                f"unknown model recipe {layer!r}; known: {', '.join(available('models', conf_dir))}"
            )
        layers += recipe_layers(read_yaml(conf_dir / "models" / f"{layer}.yaml"), layer, dataset, conf_dir)
    layers += [("--set", parse_override(item)) for item in overrides or []]
    if lake:
        layers.append(("--lake", {"lake": lake}))
    return layers


def config_from_layers(layers: list[Layer], dataset: str) -> Config:
    """Merge `layers` (later wins) and validate the result, the stage sections included."""
    data: dict[str, Any] = {}
    for _, layer in layers:
        data = deep_merge(data, layer)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"invalid config: {_problems(e)}") from None
    if cfg.dataset.name != dataset:  # a copied YAML would otherwise write into the original's tables
        raise ConfigError(f"invalid config: dataset.name is {cfg.dataset.name!r} in conf/datasets/{dataset}.yaml; "
                          f"it must be the file's name, {dataset!r}")
    # A typo in a stage's section fails every job now, not hours later in the stage that reads it.
    for name in STAGE_SECTIONS:
        section(stage_model(name), getattr(cfg, name), name)
    return cfg


def load_config(
    dataset: str,
    env: str = "local",
    model: str | None = None,
    overrides: list[str] | None = None,
    lake: str | None = None,
    conf_dir: Path | None = None,
) -> Config:
    return config_from_layers(config_layers(dataset, env, model, overrides, lake, conf_dir), dataset)


def parse_date(value: str) -> str:
    """YYYY-MM-DD, validated: the partition value of every per-date table."""
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise ConfigError(f"date {value!r} is not of the form YYYY-MM-DD") from None


def default_env() -> str:
    """The env a job runs in unless --env says: $OPTIRAG_ENV, else local."""
    return os.environ.get("OPTIRAG_ENV", "local")


def default_model() -> str:
    """The model recipe a job uses unless --model says: $OPTIRAG_MODEL, else cpu-small."""
    return os.environ.get("OPTIRAG_MODEL", "cpu-small")


def add_common_args(parser: argparse.ArgumentParser, need_lake: bool = True,
                    date: bool = False) -> None:
    """The arguments every job shares: dataset, lake, env, model recipe, overrides (and the
    score date for the per-date jobs, validated by argparse)."""
    if date:
        parser.add_argument("--date", required=True, type=parse_date, help="score date, YYYY-MM-DD")
    parser.add_argument("--dataset", required=True, help="dataset config name (conf/datasets/)")
    parser.add_argument("--lake", required=need_lake, help="lake root path or URI")
    parser.add_argument("--env", default=default_env())
    parser.add_argument("--model", default=default_model(),
                        help="model recipe (conf/models/); default cpu-small")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="config override, e.g. --set ingest.seed=7 (repeatable)",
    )


def config_from_args(args: argparse.Namespace, dataset: str | None = None) -> Config:
    """The config the job's arguments ask for (of `dataset`, for a job over several)."""
    return load_config(
        dataset=dataset or args.dataset, env=args.env, model=getattr(args, "model", None),
        overrides=args.overrides, lake=getattr(args, "lake", None),
    )
