"""The ``prompts:`` section of the platform config, validated by its owner."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from optirag.config import Config, Section, section
from optirag.retrieval.config import RETRIEVERS

# none: no retrieval (TALLRec-style); else the NEIGHBOURS.retriever whose neighbours it shows
VARIANTS = ("none", *RETRIEVERS)


class PromptsConfig(Section):
    # evidence: summary + liked/disliked groups, similar users' ratings of the target in the
    # suffix; paper: the paper's layout (see optirag.prompts.text).
    style: Literal["evidence", "paper"] = "evidence"
    # {rating_max}, {liked_from} (dataset.positive_threshold) and {noun} are filled in.
    instruction: str = ("Predict whether the user will like the target {noun} (ratings out of "
                        "{rating_max:g}; {liked_from:g} or more = liked). Answer Yes or No.")
    item_noun: str = "item"                        # "book", "movie": set per dataset
    # How history/neighbour items are shown: full (title, author, year), short (title +
    # author surname) or author (surname only; the title where there is no author).
    context_item: Literal["full", "short", "author"] = "author"
    # The target's text in the suffix: full (item_text), short (title + author surname; the
    # title is never cut) or author (the surname alone, as context_item author shows the
    # history; the title where there is no author). Every suffix token is paid once per
    # candidate.
    target_item: Literal["full", "short", "author"] = "full"
    raters_line: str = "Similar users rated it: {ratings} (average {average:.1f})"
    no_raters: str = "No similar user rated it."
    # The raters line before the target line: with a raters_line / no_raters that start alike
    # ("Similar users' rating of the target: ..."), those words are the same for every
    # candidate and the scorer runs them once per user (optirag.scoring.prefix.fold_shared_lead).
    raters_first: bool = False
    neighbours_header: str = "Similar users' ratings:"
    history_header: str = "This user's ratings, oldest first:"
    no_history: str = "This user has no ratings yet."
    target_line: str = "Target: {item}"
    # The suffix ends with answer_cue; the next token must be the answer word (checked
    # against the tokenizer by `check_answer_boundary`). The question: paper style only
    # (the evidence instruction asks it once, in the prefix).
    question: str = "Will the user like the target item? Answer Yes or No."
    answer_cue: str = "Answer:\n"
    # What an interaction line shows: the rating, the binarised label, or both.
    show: Literal["both", "rating", "label"] = "both"
    k: int = Field(4, ge=0)                        # similar users shown (paper: four)
    items_per_neighbour: int = Field(2, ge=1)      # paper style; most recent first
    history_max: int = Field(15, ge=0)             # paper: up to 15 items
    # Titles of context items (history, neighbours) are shortened to this many characters;
    # the target's text is never cut.
    context_title_chars: int = Field(24, ge=8)
    # Budget: prefix <= token_budget - suffix_reserve tokens (see text.fit_prefix).
    token_budget: int = Field(256, ge=32)
    suffix_reserve: int = Field(64, ge=8)
    # Trim floors: stage 1 keeps this many newest own items, stage 2 this many neighbours.
    history_keep: int = Field(5, ge=0)
    neighbours_keep: int = Field(1, ge=0)
    # Which training samples get prompts: a seeded subset (hash of seed and sample_id) of
    # min(train_max, ceil(train_fraction * n_train)) samples; valid/test get all. Default:
    # every training sample (the paper's few-shot pool: train_fraction < 0.1).
    train_fraction: float = Field(1.0, gt=0, le=1)
    train_max: int | None = Field(None, ge=1)
    seed: int = 42

    @model_validator(mode="after")
    def _reserve_fits(self) -> "PromptsConfig":
        if self.suffix_reserve >= self.token_budget:
            raise ValueError("suffix_reserve must be smaller than token_budget")
        return self

    def prefix_budget(self) -> int:
        return self.token_budget - self.suffix_reserve


def prompts_config(cfg: Config | dict[str, Any]) -> PromptsConfig:
    return section(PromptsConfig, cfg, "prompts")


# Settings that choose which training samples get prompts, not what a prompt says.
_SAMPLING = {"train_fraction", "train_max", "seed"}


def saved_prompts_config(saved: dict[str, Any]) -> PromptsConfig:
    """A model meta's `prompts_config` as today's settings: keys it predates count as their
    default, so adding a setting does not make every saved model look different."""
    return PromptsConfig.model_validate({k: v for k, v in saved.items() if k in PromptsConfig.model_fields})


def layout_differences(saved: dict[str, Any], current: PromptsConfig) -> dict[str, tuple[Any, Any]]:
    """{key: (saved, current)} for the text-shaping settings where a scorer's training
    prompts (its meta's `prompts_config`) differ from `current`."""
    then = saved_prompts_config(saved)
    return {k: (getattr(then, k), getattr(current, k)) for k in PromptsConfig.model_fields
            if k not in _SAMPLING and getattr(then, k) != getattr(current, k)}
