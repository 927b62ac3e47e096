import numpy as np
import pytest

from optirag.llm.config import AnswerConfig
from optirag.llm.scoring import AnswerTokenError
from optirag.prompts.config import PromptsConfig
from optirag.prompts.text import (
    Interaction, RatingScale, SuffixBuilder, build_prefix, build_suffix, check_answer_boundary,
    context_item_text, count_tokens, item_text, raters_line, render_prefix, target_item_text,
    trim_steps,
)
from optirag.scoring.prefix import encode_pairs, fold_shared_lead

CFG = PromptsConfig(style="paper",
                    instruction="Predict whether the user will like the target item. Ratings are "
                                "out of {rating_max:g}.")
EVIDENCE = PromptsConfig(item_noun="book")
TEN, FIVE = RatingScale(10, 8), RatingScale(5, 4)
HISTORY = [Interaction(f"History book {n} (Author {n}, {1990 + n})", float(n % 10 + 1), n % 2)
           for n in range(15)]                       # oldest first
BLOCKS = [[Interaction(f"Neighbour {u} item {j} (Writer, 2001)", 8.0, 1) for j in range(3)]
          for u in range(4)]                          # nearest first, newest item first


def test_item_text_books_movies_and_missing_fields():
    assert item_text({"title": "Dune", "author": "Frank Herbert", "year": 1965}) == \
        "Dune (Frank Herbert, 1965)"
    assert item_text({"title": "Toy Story", "author": None, "year": 1995.0,
                      "genres": ["Animation", "Comedy"]}) == "Toy Story (1995; Animation, Comedy)"
    assert item_text({"title": "X", "author": " ", "year": float("nan"), "genres": []}) == "X"
    assert item_text({"title": "Y", "year": 0}) == "Y"  # BX uses 0 for an unknown year
    long = {"title": "A" * 100, "author": "B"}
    assert item_text(long, title_chars=20) == "A" * 17 + "... (B)"
    assert item_text(long).startswith("A" * 100)


def test_prompt_is_prefix_plus_suffix_and_prefix_ignores_target(tokenizer):
    prefix = build_prefix(HISTORY, BLOCKS, CFG, tokenizer, TEN)
    assert prefix.text == build_prefix(HISTORY, BLOCKS, CFG, tokenizer, TEN).text  # deterministic
    for target in ["Dune (Frank Herbert, 1965)", "Emma (Jane Austen, 1815)"]:
        suffix = build_suffix(target, CFG)
        prompt = prefix.text + suffix
        assert suffix.startswith(f"Target: {target}\n") and prompt.endswith("Answer:\n")
        assert target not in prefix.text
        # the scoring job caches the prefix's tokens: they must be the prompt's first tokens
        full = tokenizer(prompt)["input_ids"]
        assert full == tokenizer(prefix.text)["input_ids"] + \
            tokenizer(suffix, add_special_tokens=False)["input_ids"]
        check_answer_boundary(tokenizer, prompt, AnswerConfig())


def test_bad_answer_cue_is_rejected(tokenizer):
    cfg = CFG.model_copy(update={"answer_cue": "Answer: "})  # " Yes" would merge with the space
    prompt = build_prefix([], [], cfg, tokenizer, TEN).text + build_suffix("Dune", cfg)
    with pytest.raises(AnswerTokenError, match="answer_cue"):
        check_answer_boundary(tokenizer, prompt, AnswerConfig())


def test_untrimmed_prefix_has_everything_in_order(tokenizer):
    cfg = CFG.model_copy(update={"token_budget": 4000, "items_per_neighbour": 3})
    prefix = build_prefix(HISTORY, BLOCKS, cfg, tokenizer, TEN)
    assert (prefix.n_history, prefix.n_neighbours) == (15, 4)
    assert prefix.n_tokens == count_tokens(tokenizer, prefix.text)
    text = prefix.text
    assert text.index("User A:") < text.index("User D:") < text.index(cfg.history_header)
    assert text.index("History book 0 ") < text.index("History book 14 ")
    assert "- History book 3 (Author 3, 1993): 4/10, liked\n" in text


def test_trim_order_is_least_useful_first():
    cfg = CFG.model_copy(update={"items_per_neighbour": 3})
    states = list(trim_steps(HISTORY, BLOCKS, cfg))
    shape = [(len(h), [len(b) for b in bs], h[0].text if h else None) for h, bs in states]
    assert shape[0] == (15, [3, 3, 3, 3], HISTORY[0].text)
    # 1. oldest own history, down to history_keep = 5 newest
    assert [s[0] for s in shape[1:11]] == list(range(14, 4, -1))
    assert shape[10] == (5, [3, 3, 3, 3], HISTORY[10].text)
    # 2. farthest neighbours, down to neighbours_keep = 1
    assert [s[1] for s in shape[11:14]] == [[3, 3, 3], [3, 3], [3]]
    # 3. the kept neighbour's older items, then 4. the rest of the history, 5. the rest
    assert [s[1] for s in shape[14:16]] == [[2], [1]]
    assert [s[0] for s in shape[16:21]] == [4, 3, 2, 1, 0]
    assert shape[21:] == [(0, [], None)]
    kept_block = states[15][1][0]
    assert kept_block == BLOCKS[0][:1]  # the nearest neighbour's newest item survives longest


def test_budget_takes_the_first_state_that_fits(tokenizer):
    cfg = CFG.model_copy(update={"items_per_neighbour": 3})
    states = list(trim_steps(HISTORY, BLOCKS, cfg))
    sizes = [count_tokens(tokenizer, render_prefix(h, b, cfg, TEN)) for h, b in states]
    assert sizes == sorted(sizes, reverse=True)  # every step drops something
    for target in (3, 10, 12, 15, 18, 21):
        budget = cfg.model_copy(update={"token_budget": sizes[target] + cfg.suffix_reserve})
        p = build_prefix(HISTORY, BLOCKS, budget, tokenizer, TEN)
        first_fit = next(i for i, n in enumerate(sizes) if n <= sizes[target])
        assert p.text == render_prefix(*states[first_fit], cfg, TEN)
        assert p.n_tokens == sizes[first_fit] <= budget.prefix_budget()
        assert p.n_history == len(states[first_fit][0])


def test_target_is_never_cut(tokenizer):
    cfg = CFG.model_copy(update={"token_budget": 120, "suffix_reserve": 40})
    prefix = build_prefix(HISTORY, BLOCKS, cfg, tokenizer, TEN)
    target = "A Very Long Title " * 20
    prompt = prefix.text + build_suffix(target, cfg)
    assert target in prompt and prompt.endswith("Answer:\n")
    assert prefix.n_tokens <= cfg.prefix_budget() < count_tokens(tokenizer, prompt)


def test_instruction_alone_over_budget_is_kept_whole(tokenizer):
    cfg = CFG.model_copy(update={"token_budget": 40, "suffix_reserve": 32})
    p = build_prefix(HISTORY, BLOCKS, cfg, tokenizer, TEN)
    assert p.text.startswith(cfg.instruction.format(rating_max=10, liked_from=8, noun="item"))
    assert (p.n_history, p.n_neighbours) == (0, 0) and p.n_tokens > cfg.prefix_budget()


def test_cold_users_get_a_valid_prompt(tokenizer):
    for history, blocks in [([], []), ([], BLOCKS), (HISTORY[:2], [])]:
        p = build_prefix(history, blocks, CFG, tokenizer, FIVE)
        prompt = p.text + build_suffix("Toy Story (1995)", CFG)
        check_answer_boundary(tokenizer, prompt, AnswerConfig())
        assert (CFG.no_history in p.text) == (not history)
        assert (CFG.neighbours_header in p.text) == bool(blocks)
    assert "Ratings are out of 5." in render_prefix([], [], CFG, FIVE)


def test_caps_on_history_and_neighbours(tokenizer):
    cfg = CFG.model_copy(update={"token_budget": 4000, "history_max": 3, "k": 2,
                                 "items_per_neighbour": 1})
    p = build_prefix(HISTORY, BLOCKS, cfg, tokenizer, TEN)
    kept = [n for n in range(15) if f"History book {n} " in p.text]
    assert kept == [12, 13, 14] and p.n_neighbours == 2
    assert "Neighbour 1 item 0" in p.text and "Neighbour 0 item 1" not in p.text


# --- evidence style (the default) ----------------------------------------------------------

def test_context_item_styles():
    row = {"title": "Angels &amp; Demons: A Very Long Novel Title", "author": "Dan BROWN", "year": 2000}
    short = EVIDENCE.model_copy(update={"context_item": "short", "context_title_chars": 20})
    assert context_item_text(row, short) == "Angels & Demons:... (Brown)"   # entity decoded, surname
    assert context_item_text(row, short.model_copy(update={"context_item": "author"})) == "Brown"
    assert context_item_text(row, short.model_copy(update={"context_item": "full"})) == \
        "Angels & Demons:... (Dan BROWN, 2000)"
    movie = {"title": "Toy Story", "author": None, "year": 1995, "genres": ["Comedy"]}
    assert context_item_text(movie, short.model_copy(update={"context_item": "author"})) == "Toy Story"
    # Spark -> pandas hands a missing author over as NaN, not None (it read "Nan" once)
    nan_author = {**movie, "author": float("nan")}
    assert context_item_text(nan_author, short.model_copy(update={"context_item": "author"})) == "Toy Story"
    assert target_item_text(nan_author, short.model_copy(update={"target_item": "short"})) == "Toy Story"


def test_a_short_target_keeps_the_whole_title_and_a_compact_suffix_ends_at_the_cue(tokenizer):
    row = {"title": "Angels &amp; Demons: A Very Long Novel Title", "author": "Dan BROWN", "year": 2000}
    short = EVIDENCE.model_copy(update={"target_item": "short", "context_title_chars": 20,
                                        "raters_line": "Similar users: {average:.1f}"})
    assert target_item_text(row, EVIDENCE) == item_text(row) == \
        "Angels & Demons: A Very Long Novel Title (Dan BROWN, 2000)"
    assert target_item_text(row, short) == "Angels & Demons: A Very Long Novel Title (Brown)"  # never cut
    assert target_item_text({"title": "Toy Story", "author": None}, short) == "Toy Story"
    compact = build_suffix(target_item_text(row, short), short, [9.0, 7.0, 8.0])
    assert compact == "Target: Angels & Demons: A Very Long Novel Title (Brown)\nSimilar users: 8.0\nAnswer:\n"
    full = build_suffix(target_item_text(row, EVIDENCE), EVIDENCE, [9.0, 7.0, 8.0])
    assert count_tokens(tokenizer, compact) < count_tokens(tokenizer, full) - 10
    check_answer_boundary(tokenizer, build_prefix(HISTORY, [], short, tokenizer, TEN).text + compact,
                          AnswerConfig())


def test_an_author_target_after_the_raters_leaves_a_suffix_of_a_few_tokens(tokenizer):
    row = {"title": "Angels &amp; Demons: A Very Long Novel Title", "author": "Dan BROWN", "year": 2000}
    lead = "Similar users' rating of the target:"
    cfg = EVIDENCE.model_copy(update={"target_item": "author", "raters_first": True,
                                      "raters_line": lead + " {average:.1f}", "no_raters": lead + " none"})
    assert target_item_text(row, cfg) == "Brown"
    assert target_item_text({"title": "Toy Story", "author": None}, cfg) == "Toy Story"
    rated = build_suffix(target_item_text(row, cfg), cfg, [9.0, 7.0])
    assert rated == lead + " 8.0\nTarget: Brown\nAnswer:\n"
    assert build_suffix("Brown", cfg, []) == lead + " none\nTarget: Brown\nAnswer:\n"
    assert build_suffix("Brown", cfg) == "Target: Brown\nAnswer:\n"      # no retrieval: no raters line
    prefix = build_prefix(HISTORY, [], cfg, tokenizer, TEN).text
    check_answer_boundary(tokenizer, prefix + rated, AnswerConfig())
    # the words every candidate's suffix starts with move into the user's prefix
    p_ids, s_ids = encode_pairs(tokenizer, [prefix], [rated, build_suffix("Grisham", cfg, [])])
    folded_p, folded_s = fold_shared_lead(p_ids, s_ids, np.zeros(2, dtype=int))
    assert tokenizer.decode(folded_p[0]).endswith(lead)
    assert max(len(s) for s in folded_s) <= 13


def test_evidence_prefix_summarises_and_groups_the_history(tokenizer):
    history = [Interaction("Dune (Herbert)", 9.0, 1), Interaction("Ulysses (Joyce)", 4.0, 0),
               Interaction("Emma (Austen)", 8.0, 1)]
    cfg = EVIDENCE.model_copy(update={"token_budget": 4000})
    p = build_prefix(history, BLOCKS, cfg, tokenizer, TEN)
    assert p.text == (
        "Predict whether the user will like the target book (ratings out of 10; 8 or more = "
        "liked). Answer Yes or No.\n"
        "User's ratings: average 7.0, 2/3 liked\n"
        "Liked: Dune (Herbert) 9; Emma (Austen) 8\n"
        "Disliked: Ulysses (Joyce) 4\n")
    assert (p.n_history, p.n_neighbours) == (3, 0)   # neighbours' blocks: paper style only
    assert build_prefix([], [], cfg, tokenizer, TEN).text.endswith(cfg.no_history + "\n")


def test_evidence_suffix_shows_the_similar_raters_only_with_retrieval(tokenizer):
    assert raters_line([9.0, 7.0, 10.0], EVIDENCE) == "Similar users rated it: 9, 7, 10 (average 8.7)"
    assert raters_line([], EVIDENCE) == EVIDENCE.no_raters
    counted = EVIDENCE.model_copy(update={"raters_line": "Similar users: {average:.1f} ({count} ratings)"})
    assert raters_line([4.0, 5.0, 3.0], counted) == "Similar users: 4.0 (3 ratings)"
    assert build_suffix("Dune (Frank Herbert, 1965)", EVIDENCE) == "Target: Dune (Frank Herbert, 1965)\nAnswer:\n"
    with_raters = build_suffix("Dune", EVIDENCE, [9.0, 7.0])
    assert with_raters == "Target: Dune\nSimilar users rated it: 9, 7 (average 8.0)\nAnswer:\n"
    prefix = build_prefix(HISTORY, [], EVIDENCE, tokenizer, TEN)
    for suffix in (with_raters, build_suffix("Dune", EVIDENCE, [])):
        prompt = prefix.text + suffix
        check_answer_boundary(tokenizer, prompt, AnswerConfig())
        assert tokenizer(prompt)["input_ids"] == tokenizer(prefix.text)["input_ids"] + \
            tokenizer(suffix, add_special_tokens=False)["input_ids"]


class _Raters:
    """A stand-in index with SimilarRaters' interface (its real tests: tests/retrieval)."""
    def top_k(self, user_id, item_id, k):
        return [(9.0, 0.9), (6.0, 0.8), (8.0, 0.7)][:k] if (user_id, item_id) == ("u1", "i1") else []


def test_suffix_builder_asks_the_raters_per_user_and_item():
    plain = SuffixBuilder(EVIDENCE)
    assert not plain.per_user and plain("u1", "i1", "Dune") == ("Target: Dune\nAnswer:\n", None)
    built = SuffixBuilder(EVIDENCE.model_copy(update={"k": 2}), _Raters())
    assert built.per_user
    assert built("u1", "i1", "Dune") == ("Target: Dune\nSimilar users rated it: 9, 6 (average 7.5)\nAnswer:\n", 2)
    assert built("u2", "i1", "Dune") == ("Target: Dune\nNo similar user rated it.\nAnswer:\n", 0)
