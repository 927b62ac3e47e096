"""Seed replicas of a tuned scorer: the same few-shot tuning (same prompts, same training
subset) with another tuning seed (LoRA init, dropout, example order), for the spread of an
LLM row's AUC over seeds (the report's mean ± std).

A replica lives apart from the production line, under ``scorer_seeds/<variant>/seed=<n>``
(its exit heads under ``exit_heads_seeds/<variant>/seed=<n>``), so scoring, the production
exit heads and promotion never pick it up; its evaluation run key is ``<variant>/seed=<n>``
(``<variant>+ee/seed=<n>`` with early exit). The config's own tuning seed is the production
scorer itself.
"""
from __future__ import annotations

from optirag.llm.config import ModelConfig

SEP = "/seed="
EXIT = "+ee"


def replica_seed(mcfg: ModelConfig, seed: int | None) -> int | None:
    """`seed` when it makes a replica; None for no seed or the config's own tuning seed."""
    return None if seed is None or seed == mcfg.tuning.seed else int(seed)


def with_seed(mcfg: ModelConfig, seed: int | None) -> ModelConfig:
    if seed is None:
        return mcfg
    return mcfg.model_copy(update={"tuning": mcfg.tuning.model_copy(update={"seed": seed})})


def tuning_seed(meta: dict) -> int | None:
    """The tuning seed a saved scorer was tuned with, from its meta.json."""
    return ((meta.get("model_config") or {}).get("tuning") or {}).get("seed")


def scorer_kind(variant: str, seed: int | None = None) -> str:
    return f"scorer/{variant}" if seed is None else f"scorer_seeds/{variant}/seed={seed}"


def heads_kind(variant: str, seed: int | None = None) -> str:
    return f"exit_heads/{variant}" if seed is None else f"exit_heads_seeds/{variant}/seed={seed}"


def run_key(variant: str, seed: int | None = None) -> str:
    return variant if seed is None else f"{variant}{SEP}{seed}"


def exit_run_key(variant: str, seed: int | None = None) -> str:
    """The eval-file key of a variant's scorer with early exit (jobs.evaluate_early_exit)."""
    return run_key(f"{variant}{EXIT}", seed)


def runs_of(runs: dict[str, dict], variant: str) -> dict[str, dict]:
    """The production run of `variant` and its seed replicas, from an eval file's runs."""
    return {k: r for k, r in runs.items() if k == variant or k.startswith(variant + SEP)}


def replica_seeds(runs: dict[str, dict]) -> list[int]:
    """The seeds of the replicas among an eval file's runs."""
    return sorted({int(k.split(SEP, 1)[1]) for k in runs if SEP in k})


def same_prompts(run: dict | None, replica: dict | None) -> bool:
    """A replica's eval run scored the prompts its production run scored (same retriever
    version, same mean prompt length): else it is stale, e.g. after new neighbours."""
    keys = ("retriever_version", "mean_prompt_tokens")
    return bool(run and replica) and all(run.get(k) == replica.get(k) for k in keys)


def report_seeds(base_seed: int, n: int) -> list[int]:
    """The replica seeds for n seeds in all: the config's seed plus the next n - 1."""
    return [base_seed + i for i in range(1, max(1, n))]
