"""The model a scoring run serves: resolved on the driver, loaded in each scorer actor.

    resolve_models       which scorer (scoring.scorer_version: promoted, else newest, or the
                         untuned base) and which exit heads (scoring.heads_version, trained for
                         that scorer) a run uses, checked before any actor starts
    check_prompt_layout  the scorer is only served prompts laid out as those it was tuned on
    serving_rule         the exit rule chosen with the heads, else the config's
    load_scorer          (model, tokenizer, heads, rule) from resolve_models' spec, in an actor
"""
from __future__ import annotations

import logging
from typing import Any

from optirag.config import Config, ConfigError
from optirag.scoring.config import ScoringConfig

log = logging.getLogger(__name__)


def resolve_models(cfg: Config, scfg: ScoringConfig) -> dict[str, Any]:
    """Folders and versions of the scorer and heads, checked on the driver (clear errors
    before any actor starts)."""
    from optirag import registry
    from optirag.llm.config import ModelConfig
    from optirag.llm.loading import prepare_model

    model_cfg = ModelConfig.model_validate(cfg.model)
    spec: dict[str, Any] = {"model_cfg": model_cfg.model_dump(), "early_exit_cfg": cfg.early_exit,
                            "early_exit": scfg.early_exit}
    if scfg.scorer_version == "base":
        spec.update(scorer_dir=None, base_dir=str(prepare_model(model_cfg)),
                    model_version=f"{model_cfg.name}-base")
    else:
        folder = registry.resolve(cfg, f"scorer/{scfg.variant}", scfg.scorer_version)
        scorer_meta = registry.read_meta(folder)
        check_prompt_layout(cfg, folder, scorer_meta)
        spec.update(scorer_dir=str(folder), model_version=scorer_meta["model_version"])
    spec["heads_dir"] = None
    if scfg.early_exit:
        heads = registry.resolve(cfg, f"exit_heads/{scfg.variant}", scfg.heads_version)
        meta = registry.read_meta(heads)
        if meta["model_version"] != spec["model_version"]:
            raise ConfigError(
                f"exit heads {heads} were trained for scorer {meta['model_version']!r}, but the "
                f"scorer is {spec['model_version']!r}: run jobs.train_exit_heads --variant "
                f"{scfg.variant} (or --set scoring.early_exit=false)")
        spec["heads_dir"] = str(heads)
        spec["early_exit_cfg"], spec["rule_from"] = serving_rule(cfg, scfg, heads, meta)
    return spec


def check_prompt_layout(cfg: Config, scorer_dir, meta: dict) -> None:
    """A scorer reads the prompts it was tuned on: refuse to serve it prompts laid out
    otherwise (a changed suffix or item text would score silently worse). Scorers saved
    before their meta kept the prompt config are served with a warning."""
    from optirag.prompts.config import layout_differences, prompts_config

    saved = meta.get("prompts_config")
    if saved is None:
        log.warning("scorer %s does not record its training prompts' config: cannot check "
                    "that tonight's prompts are laid out the same way", scorer_dir)
        return
    differ = layout_differences(saved, prompts_config(cfg))
    if differ:
        shown = "; ".join(f"prompts.{k}: tuned on {a!r}, tonight {b!r}" for k, (a, b) in differ.items())
        raise ConfigError(f"scorer {scorer_dir} was tuned on differently laid-out prompts ({shown}): "
                          "set those prompts.* back, or rebuild the prompts and retrain the scorer "
                          "(jobs.build_prompts, jobs.train_scorer)")


def serving_rule(cfg: Config, scfg: ScoringConfig, heads_dir, meta: dict) -> tuple[dict, str]:
    """(early_exit config to serve, where its rule came from): the heads' calibrated rule,
    unless scoring.rule_from says config or the heads carry none (then said in the log)."""
    from optirag.early_exit.config import EarlyExitConfig
    from optirag.early_exit.heads import calibrated_rule

    base = EarlyExitConfig.model_validate(cfg.early_exit)
    rule = calibrated_rule(meta, base) if scfg.rule_from == "heads" else None
    if rule is None and scfg.rule_from == "heads":
        reason = (meta.get("calibration") or {}).get("reason", "trained before rules were saved with heads")
        log.warning("exit heads %s carry no rule chosen on valid (%s): serving the config's "
                    "tau=%s, m=%s; retrain them with jobs.train_exit_heads", heads_dir, reason,
                    base.tau, base.window)
    source = "heads" if rule is not None else "config"
    rule = rule or base
    log.info("exit rule from %s: %s tau=%s m=%s min_previous=%s", source, rule.rule, rule.tau,
             rule.window, rule.required_previous)
    return rule.model_dump(mode="json"), source


def load_scorer(spec: dict[str, Any]):
    """(model, tokenizer, heads, rule) in eval mode, as `spec` (from resolve_models) says, on
    spec["torch_threads"] threads: the caller sets them from the actor's size
    (optirag.scoring.sizing)."""
    import torch

    from optirag.early_exit.config import EarlyExitConfig
    from optirag.early_exit.heads import ExitHeads, load_exit_heads
    from optirag.early_exit.rules import build_rule, never_exit
    from optirag.llm.config import ModelConfig
    from optirag.llm.loading import load_model_from
    from optirag.llm.scoring import answer_tokens
    from optirag.llm.tuning import load_tuned

    torch.set_num_threads(spec["torch_threads"])
    model_cfg = ModelConfig.model_validate(spec["model_cfg"])
    if spec["scorer_dir"] is None:
        model, tokenizer = load_model_from(spec["base_dir"], model_cfg)
    else:
        model, tokenizer, _ = load_tuned(spec["scorer_dir"], model_cfg)
    answer = answer_tokens(tokenizer, model_cfg.answer)
    ee_cfg = EarlyExitConfig.model_validate(spec["early_exit_cfg"])
    if spec["heads_dir"]:
        heads = load_exit_heads(spec["heads_dir"], model, answer, spec["model_version"])
        rule = build_rule(ee_cfg)
    else:  # full depth: only the model's own head at the last layer
        heads, rule = ExitHeads.final_only(model, answer), never_exit
    return model, tokenizer, heads, rule
