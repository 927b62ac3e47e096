import pytest

from optirag.prompts.builder import available_variants, build_prompts
from optirag.tables import PROMPTS, read_table


@pytest.fixture(scope="module")
def built(spark, rag_lake, prepared_dir):
    cfg, lake = rag_lake
    summaries = {v: build_prompts(spark, cfg, v, tokenizer_dir=str(prepared_dir))
                 for v in ("none", "gcn")}
    rows = read_table(spark, PROMPTS, lake).toPandas()
    return cfg, summaries, {(r.variant, r.sample_id): r for r in rows.itertuples()}


def test_every_sample_gets_one_prompt_per_variant(built):
    cfg, summaries, rows = built
    per_variant = {v: sorted(s for (vv, s) in rows if vv == v) for v in ("none", "gcn")}
    assert per_variant["none"] == per_variant["gcn"] and len(per_variant["none"]) == 9 + 2 + 3
    assert summaries["gcn"]["retriever_version"] == "gcn-v1"
    assert {(v, r.retriever_version if isinstance(r.retriever_version, str) else None)
            for (v, _), r in rows.items()} == {("gcn", "gcn-v1"), ("none", None)}
    assert all(r.text.endswith("Answer:\n") and r.n_tokens > 0 for r in rows.values())
    assert summaries["none"]["splits"]["test"]["n"] == 3


def test_no_held_out_target_reaches_any_prompt(built):
    _, _, rows = built
    for (variant, sample_id), r in rows.items():
        context = r.text.split("Target:")[0]
        assert "SECRET" not in context, (variant, sample_id)


def test_valid_test_history_is_the_allowed_interactions(built):
    _, _, rows = built
    # v1's second target (E) would see D in samples.history; D is held out, so both of v1's
    # prompts show exactly A, B, C and share one prefix.
    d, e = rows[("none", "v1-SECRET-vD")], rows[("none", "v1-SECRET-vE")]
    assert d.text.split("Target:")[0] == e.text.split("Target:")[0]
    assert d.n_history == e.n_history == 3
    context = d.text.split("Target:")[0]
    assert context.index("Title of vA") < context.index("Title of vB") < context.index("Title of vC")


def test_train_history_only_has_earlier_items(built):
    _, _, rows = built
    r = rows[("none", "t1-t1-i4")]
    context = r.text.split("Target:")[0]
    assert all(f"Title of t1-i{p} " in context for p in range(4))
    assert "t1-i5" not in r.text and r.n_history == 4


def test_similar_raters_of_the_target_in_the_suffix(built):
    from tiny_rag_lake import RATERS_OF_SI

    _, _, rows = built
    r = rows[("gcn", "s1-SECRET-sI")]
    # s1's raters of I: t1, t2, t3 (three raters); none of its own. The line is the test
    # lake's dataset layout (conf/datasets/movielens100k.yaml: mean and count, k = 20).
    ratings = [RATERS_OF_SI[u] for u in ("t1", "t2", "t3")]
    line = f"Similar users: {sum(ratings) / 3:.1f} (3 ratings)"
    assert r.text.split("Target:")[1].split("\n")[1] == line and r.n_neighbours == 3
    assert "Similar users: none" in rows[("gcn", "s1-SECRET-sJ")].text
    assert "Similar users" not in rows[("none", "s1-SECRET-sI")].text   # no retrieval
    # the prefix is the user's own evidence only: the same for both variants
    assert r.text.split("Target:")[0] == rows[("none", "s1-SECRET-sI")].text.split("Target:")[0]


def test_paper_style_neighbour_blocks_follow_rank_and_show_allowed_items(spark, built, prepared_dir):
    from optirag.prompts.builder import prompt_frame

    cfg, _, _ = built
    paper = cfg.model_copy(update={"prompts": {**cfg.prompts, "style": "paper", "context_item": "full"}})
    frame, _ = prompt_frame(spark, paper, "gcn", tokenizer_dir=str(prepared_dir))
    rows = {r.sample_id: r for r in frame.toPandas().itertuples()}
    r = rows["s1-SECRET-sI"]
    context = r.text.split("Target:")[0]
    assert r.n_neighbours == 2
    # User A = v1 (rank 1): its newest allowed items (C, B); its held-out D/E never show.
    a, b = context.index("User A:"), context.index("User B:")
    assert a < context.index("Title of vC") < context.index("Title of vB") < b
    assert "Title of vA" not in context  # items_per_neighbour = 2, newest first
    assert context.index("Title of t1-i5") > b  # User B = t1
    assert "Will the user like the target item?" in r.text.split("Target:")[1]


def test_cold_user_gets_a_valid_prompt(built):
    cfg, _, rows = built
    for variant in ("none", "gcn"):
        r = rows[(variant, "c1-SECRET-cK")]
        assert (r.n_history, r.n_neighbours) == (0, 0)
        assert "This user has no ratings yet." in r.text and r.text.endswith("Answer:\n")
        assert "Title of SECRET-cK" in r.text.split("Target:")[1]


def test_rebuild_is_deterministic_and_replaces_only_its_variant(spark, built, prepared_dir):
    cfg, _, rows = built
    build_prompts(spark, cfg, "gcn", tokenizer_dir=str(prepared_dir))
    again = read_table(spark, PROMPTS, cfg.dataset_lake()).toPandas()
    assert len(again) == len(rows)
    for r in again.itertuples():
        old = rows[(r.variant, r.sample_id)]
        assert (r.text, r.n_tokens, r.n_history, r.n_neighbours) == \
            (old.text, old.n_tokens, old.n_history, old.n_neighbours)


def test_few_shot_pool_is_a_seeded_subset(spark, rag_lake):
    from optirag.prompts.builder import select_samples
    from optirag.prompts.config import prompts_config

    cfg, lake = rag_lake
    small = prompts_config(cfg).model_copy(update={"train_max": 4})
    picked = [sorted(r.sample_id for r in select_samples(spark, lake, small, ["train", "test"])
                     .where("split = 'train'").collect()) for _ in range(2)]
    assert len(picked[0]) == 4 and picked[0] == picked[1]
    other = small.model_copy(update={"seed": 7})
    assert sorted(r.sample_id for r in select_samples(spark, lake, other, ["train"]).collect()) \
        != picked[0]


def test_missing_neighbours_is_a_clear_error(spark, built, prepared_dir):
    cfg, _, _ = built
    assert available_variants(spark, cfg) == ["none", "gcn"]
    with pytest.raises(FileNotFoundError, match="retriever='llm'"):
        build_prompts(spark, cfg, "llm", tokenizer_dir=str(prepared_dir))
