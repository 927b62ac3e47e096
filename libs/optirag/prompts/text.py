"""Pure prompt text functions: item text, the per-user prefix, the per-candidate suffix.

A prompt is ``prefix + suffix``; the prefix never depends on the target, so a scoring job
builds it once per user and reuses it (and its KV cache) for every candidate item. The
prompt ends exactly where the next token is the answer word (:func:`check_answer_boundary`).
Two styles (``prompts.style``):

``evidence`` (default: what a small model learns from)::

    prefix  instruction (scale, what "liked" means, "Answer Yes or No.")
            User's ratings: average 7.6, 9/15 liked          <- the history's summary
            Liked: Dune (Herbert) 9; Emma (Austen) 8; ...     <- oldest first per group
            Disliked: Ulysses (Joyce) 4; ...
    suffix  Target: <full item text>
            Similar users rated it: 9, 8, 10, 6 (average 8.2) <- retrieval variants only
            Answer:

  The similar users are the target's raters closest to the user in the retriever's
  embedding (:mod:`optirag.retrieval.raters`), so their line depends on the candidate and
  sits in the suffix; the `none` variant (no retrieval) has no such line.

``paper`` (the paper's layout, for its few-shot setting)::

    prefix  instruction; "Similar users' ratings:" User A: - item: 8/10, liked ...
            (the k nearest users' newest items); the user's history, one line per item
    suffix  Target: <item>; the question; Answer:

Token budget (:func:`fit_prefix`): the prefix is kept within ``token_budget -
suffix_reserve`` tokens of the real tokenizer by dropping the least useful parts first:

1. the oldest own history items, down to ``history_keep`` newest ones;
2. the farthest neighbours, down to ``neighbours_keep``;
3. the older items of the remaining neighbours (farthest first), down to one each;
4. the rest of the own history, oldest first;
5. the rest of the neighbours' items, farthest first.

The instruction and the target are never cut (a suffix longer than its reserve makes the
prompt exceed the budget; the builder reports how many do).
"""
from __future__ import annotations

import html
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from transformers import PreTrainedTokenizerBase

from optirag.llm.config import AnswerConfig
from optirag.llm.scoring import AnswerTokenError, answer_tokens
from optirag.prompts.config import PromptsConfig

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class Interaction:
    """One rated item as a prompt shows it (`text` from :func:`item_text`)."""
    text: str
    rating: float | None = None
    label: int | None = None


def interactions(rows: Sequence[Mapping] | None) -> list[Interaction]:
    """Interactions from Spark array<struct<text, rating, label>> rows (as pandas gives
    them: missing rating/label arrive as NaN or None)."""
    def value(v, cast):
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else cast(v)
    return [Interaction(e["text"], value(e["rating"], float), value(e["label"], int))
            for e in (rows if rows is not None else [])]


class RatingScale(NamedTuple):
    """The dataset's rating scale as prompts state it: out of `rating_max`, liked from
    `liked_from` (= dataset.positive_threshold, the label's own rule)."""
    rating_max: float
    liked_from: float

    @classmethod
    def of(cls, dataset: Any) -> "RatingScale":
        return cls(float(dataset.rating_max), float(dataset.positive_threshold))


class Prefix(NamedTuple):
    text: str
    n_tokens: int
    n_history: int
    n_neighbours: int


def _present(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, float) and math.isnan(value):
        return False
    return not (isinstance(value, str) and not value.strip())


def _title(row: Mapping[str, Any], title_chars: int | None) -> str:
    # raw titles carry HTML entities ("Angels &amp; Demons"): spend no tokens on them
    title = html.unescape(str(row["title"])).strip()
    if title_chars is not None and len(title) > title_chars:
        title = title[: title_chars - 3].rstrip() + "..."
    return title


def item_text(row: Mapping[str, Any], title_chars: int | None = None) -> str:
    """`Title (Author, Year; Genre, Genre)` from an `items` row; absent fields are left out.
    `title_chars` shortens the title (context items only, never the target)."""
    title = _title(row, title_chars)
    parts = []
    if _present(row.get("author")):
        parts.append(str(row["author"]).strip())
    year = row.get("year")
    if _present(year) and int(year) > 0:
        parts.append(str(int(year)))
    genres = row.get("genres")
    genre_text = ", ".join(str(g) for g in genres) if genres is not None and len(genres) else ""
    inside = ", ".join(parts)
    if genre_text:
        inside = f"{inside}; {genre_text}" if inside else genre_text
    return f"{title} ({inside})" if inside else title


def _short_text(row: Mapping[str, Any], title_chars: int | None, surname_only: bool = False) -> str:
    """`Title (Surname)`, or the surname alone; the title where there is no author."""
    title = _title(row, title_chars)
    # a missing author arrives from Spark/pandas as None or NaN (str(nan) would be "nan")
    author = html.unescape(str(row["author"])).split() if _present(row.get("author")) else []
    surname = author[-1].title() if author else ""
    if not surname:
        return title
    return surname if surname_only else f"{title} ({surname})"


def context_item_text(row: Mapping[str, Any], cfg: PromptsConfig) -> str:
    """How a history or neighbour item is shown (`prompts.context_item`): `full` (item_text
    with a shortened title), `short` (shortened title + the author's surname) or `author`
    (the surname alone; the shortened title for items without an author)."""
    if cfg.context_item == "full":
        return item_text(row, cfg.context_title_chars)
    return _short_text(row, cfg.context_title_chars, surname_only=cfg.context_item == "author")


def target_item_text(row: Mapping[str, Any], cfg: PromptsConfig) -> str:
    """How the target is shown (`prompts.target_item`): item_text, the uncut title + the
    author's surname (`short`) or the surname alone (`author`; the title without an author)."""
    if cfg.target_item == "full":
        return item_text(row)
    return _short_text(row, None, surname_only=cfg.target_item == "author")


def interaction_line(it: Interaction, cfg: PromptsConfig, rating_max: float) -> str:
    shown = []
    if cfg.show in ("both", "rating") and it.rating is not None:
        shown.append(f"{it.rating:g}/{rating_max:g}")
    if cfg.show in ("both", "label") and it.label is not None:
        shown.append("liked" if it.label else "disliked")
    return f"- {it.text}: {', '.join(shown)}" if shown else f"- {it.text}"


def instruction(cfg: PromptsConfig, scale: RatingScale) -> str:
    return cfg.instruction.format(rating_max=scale.rating_max, liked_from=scale.liked_from,
                                  noun=cfg.item_noun)


def _liked(it: Interaction, scale: RatingScale) -> bool:
    return bool(it.label) if it.label is not None else (it.rating or 0) >= scale.liked_from


def _evidence_lines(history: Sequence[Interaction], scale: RatingScale) -> list[str]:
    """The history's summary line, then the liked and the disliked items (oldest first)."""
    if not history:
        return []
    rated = [it.rating for it in history if it.rating is not None]
    liked = [it for it in history if _liked(it, scale)]
    summary = f"{len(liked)}/{len(history)} liked"
    if rated:
        summary = f"average {sum(rated) / len(rated):.1f}, {summary}"
    lines = [f"User's ratings: {summary}"]
    for head, group in (("Liked", liked), ("Disliked", [it for it in history if not _liked(it, scale)])):
        if group:
            lines.append(f"{head}: " + "; ".join(
                it.text if it.rating is None else f"{it.text} {it.rating:g}" for it in group))
    return lines


def _prefix_lines(history: Sequence[Interaction], blocks: Sequence[Sequence[Interaction]],
                  cfg: PromptsConfig, scale: RatingScale) -> list[str]:
    lines = [instruction(cfg, scale)]
    rating_max = scale.rating_max
    if cfg.style == "evidence":
        return lines + (_evidence_lines(history, scale) or [cfg.no_history])
    blocks = [b for b in blocks if b]
    if blocks:
        lines.append(cfg.neighbours_header)
        for letter, block in zip(LETTERS, blocks):
            lines.append(f"User {letter}:")
            lines.extend(interaction_line(it, cfg, rating_max) for it in block)
    if history:
        lines.append(cfg.history_header)
        lines.extend(interaction_line(it, cfg, rating_max) for it in history)
    else:
        lines.append(cfg.no_history)
    return lines


def render_prefix(history: Sequence[Interaction], blocks: Sequence[Sequence[Interaction]],
                  cfg: PromptsConfig, scale: RatingScale) -> str:
    """The prefix text, untrimmed; every line ends with a newline."""
    return "".join(line + "\n" for line in _prefix_lines(history, blocks, cfg, scale))


def raters_line(ratings: Sequence[float], cfg: PromptsConfig) -> str:
    """The similar users' ratings of the target, most similar first, their mean and count
    (`prompts.raters_line` picks which of {ratings}, {average}, {count} it shows)."""
    if not ratings:
        return cfg.no_raters
    shown = ", ".join(f"{r:g}" for r in ratings)
    return cfg.raters_line.format(ratings=shown, average=sum(ratings) / len(ratings),
                                  count=len(ratings))


def build_suffix(target_text: str, cfg: PromptsConfig, raters: Sequence[float] | None = None) -> str:
    """The candidate-dependent end of the prompt: the target line, (evidence style) the
    similar users' ratings of it when `raters` is given (None: a variant without
    retrieval; before the target line with `raters_first`), (paper style) the question,
    then the answer cue."""
    lines = [cfg.target_line.format(item=target_text)]
    if cfg.style == "evidence":
        if raters is not None:
            lines.insert(0 if cfg.raters_first else 1, raters_line(raters, cfg))
    else:
        lines.append(cfg.question)
    return "\n".join(lines) + "\n" + cfg.answer_cue


@dataclass(frozen=True)
class SuffixBuilder:
    """The suffix of a (user, candidate) pair, for evaluation prompts and nightly scoring
    alike. `raters` (optirag.retrieval.raters.SimilarRaters; evidence style with a
    retriever) adds the user's most similar raters of the candidate; None adds nothing."""
    cfg: PromptsConfig
    raters: Any = None

    @property
    def per_user(self) -> bool:
        """True when the suffix depends on the user, not only on the candidate item."""
        return self.raters is not None

    def __call__(self, user_id: str, item_id: str, target_text: str) -> tuple[str, int | None]:
        """(suffix text, similar users shown; None without retrieval)."""
        if self.raters is None:
            return build_suffix(target_text, self.cfg), None
        shown = [rating for rating, _ in self.raters.top_k(user_id, item_id, self.cfg.k)]
        return build_suffix(target_text, self.cfg, shown), len(shown)


def trim_steps(history: Sequence[Interaction], blocks: Sequence[Sequence[Interaction]],
               cfg: PromptsConfig) -> Iterator[tuple[list[Interaction], list[list[Interaction]]]]:
    """The untrimmed (history, blocks), then each state after one more least-useful drop,
    in the order of the module docstring, ending with nothing left but the instruction."""
    hist = list(history)
    blks = [list(b) for b in blocks if b]
    yield list(hist), [list(b) for b in blks]

    def state():
        return list(hist), [list(b) for b in blks]

    while len(hist) > cfg.history_keep:            # 1. oldest own items
        hist.pop(0)
        yield state()
    while len(blks) > cfg.neighbours_keep:         # 2. farthest neighbours
        blks.pop()
        yield state()
    for block in reversed(blks):                   # 3. neighbours' older items
        while len(block) > 1:
            block.pop()
            yield state()
    while hist:                                    # 4. the rest of the own history
        hist.pop(0)
        yield state()
    while blks:                                    # 5. the rest of the neighbours
        blks[-1].pop()
        if not blks[-1]:
            blks.pop()
        yield state()


def count_tokens(tokenizer: PreTrainedTokenizerBase, text: str) -> int:
    """Tokens the scorer sees for `text` (with the tokenizer's special tokens, e.g. BOS)."""
    return len(tokenizer(text, add_special_tokens=True)["input_ids"])


def build_prefix(history: Sequence[Interaction], neighbour_blocks: Sequence[Sequence[Interaction]],
                 cfg: PromptsConfig, tokenizer: PreTrainedTokenizerBase,
                 scale: RatingScale) -> Prefix:
    """The prefix within ``cfg.prefix_budget()`` tokens (see the module docstring).

    `history` is oldest first and already capped at `history_max` by the caller's
    leakage-safe selection (only the newest `history_max` are kept here again);
    `neighbour_blocks` is nearest user first, each user's items most recent first (paper
    style only: the evidence style shows similar users in the suffix instead).
    Line token counts are summed to skip quickly past states that cannot fit; every
    accepted state is then counted exactly on the rendered text.
    """
    history = list(history)[-cfg.history_max:] if cfg.history_max else []
    blocks = ([] if cfg.style == "evidence" else
              [list(b)[: cfg.items_per_neighbour] for b in neighbour_blocks[: cfg.k]])
    limit = cfg.prefix_budget()
    special = count_tokens(tokenizer, "")
    cache: dict[str, int] = {}

    def estimate(lines: list[str]) -> int:
        todo = [ln for ln in lines if ln not in cache]
        if todo:
            ids = tokenizer([ln + "\n" for ln in todo], add_special_tokens=False)["input_ids"]
            cache.update({ln: len(x) for ln, x in zip(todo, ids)})
        return special + sum(cache[ln] for ln in lines)

    last = None
    for hist, blks in trim_steps(history, blocks, cfg):
        last = (hist, blks)
        if estimate(_prefix_lines(hist, blks, cfg, scale)) > limit:
            continue
        text = render_prefix(hist, blks, cfg, scale)
        n = count_tokens(tokenizer, text)
        if n <= limit:
            return Prefix(text, n, len(hist), sum(1 for b in blks if b))
    hist, blks = last  # only the instruction left and still over: keep it, report the size
    text = render_prefix(hist, blks, cfg, scale)
    return Prefix(text, count_tokens(tokenizer, text), 0, 0)


def check_answer_boundary(tokenizer: PreTrainedTokenizerBase, prompt: str,
                          answer: AnswerConfig) -> None:
    """Fail clearly unless `prompt` + each answer word tokenizes as prompt's tokens + one
    answer token: the scorer reads P(Yes) at the prompt's last position."""
    ids = answer_tokens(tokenizer, answer)
    space = " " if answer.leading_space else ""
    base = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    for word, token in ((answer.yes_word, ids.yes_id), (answer.no_word, ids.no_id)):
        full = tokenizer(prompt + space + word, add_special_tokens=True)["input_ids"]
        if full != base + [token]:
            raise AnswerTokenError(
                f"the prompt's answer cue {prompt[-20:]!r} followed by {space + word!r} does not "
                "tokenize as the cue + one answer token; change prompts.answer_cue or "
                "model.answer.leading_space")
