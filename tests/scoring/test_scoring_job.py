"""The nightly scoring path on a small real lake: candidates (Spark), scores (Ray Data
actors, tiny real-architecture model, trained-from-model exit heads), Delta partitions."""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from optirag.config import load_config
from optirag.reporting.night import night_dir, write_night_report
from optirag.tables import CANDIDATES, SAMPLES, SCORE_REJECTS, SCORES, read_table

REPO = Path(__file__).resolve().parents[2]
# EARLIER is scored after DAY1 but dated before it: DAY1's re-run reuses its rows
EARLIER, DAY1, NEXT = "2026-11-19", "2026-11-20", "2026-11-21"
# one row scored in other batches (other rows beside it): 6.6e-7 at most measured (fp32, tiny)
NOISE = 5e-6
OVERRIDES = ["candidates.per_user=6", "scoring.scorer_version=base", "scoring.batch_size=8",
             "scoring.block_rows=64", "scoring.progress_seconds=1", "scoring.actor_num_cpus=0.5"]


def _cfg(lake, *extra):
    return load_config("bookcrossing", model="tiny", lake=lake, overrides=OVERRIDES + list(extra))


@pytest.fixture(scope="module")
def scoring_lake(spark, small_lake):
    """small_lake + day 1's candidates + exit heads for the tiny base model."""
    from optirag import registry
    from optirag.early_exit.heads import ExitHeads, save_exit_heads
    from optirag.early_exit.job import early_exit_config, load_variant_scorer
    from optirag.scoring.candidates import write_candidates

    cfg = _cfg(small_lake)
    write_candidates(spark, cfg, DAY1)
    model, _, answer, version = load_variant_scorer(cfg, "gcn", "base")
    # heads initialised from the model's own norm + answer rows: a real (untrained) head set
    heads = ExitHeads.from_model(model, answer, early_exit_config(cfg))
    save_exit_heads(heads, registry.version_dir(cfg, "exit_heads/gcn", "h0"), version,
                    extra={"created_at": dt.datetime.now(dt.timezone.utc).isoformat()})
    return small_lake


def _run(lake, day, *extra, faults: str | None = None):
    """jobs.score in a child process; `faults` arms optirag.faults points (OPTIRAG_FAULTS)
    and then the run must end at the fault: its result is returned, not checked."""
    cmd = [sys.executable, "-m", "jobs.score", "--dataset", "bookcrossing", "--lake", lake,
           "--model", "tiny", "--date", day] + [a for o in OVERRIDES + list(extra) for a in ("--set", o)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTIRAG_FAULTS")}
    env.update(PYTHONPATH=str(REPO), **({"OPTIRAG_FAULTS": faults} if faults else {}))
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=900)
    finally:
        # A job killed at a fault point leaves its local Ray processes (same session) behind.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    result = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    if faults is None:
        assert result.returncode == 0, out[-3000:] + err[-3000:]
    return result


def _scores(spark, lake, day):
    dl = f"{lake}/bookcrossing"
    return read_table(spark, SCORES, dl).where(F.col("score_date") == day)


def test_candidates_exclude_seen_items_and_carry_the_eval_samples(spark, scoring_lake):
    dl = f"{scoring_lake}/bookcrossing"
    cand = read_table(spark, CANDIDATES, dl).where(F.col("score_date") == DAY1)
    seen = read_table(spark, "interactions", dl).select("user_id", "item_id")
    fresh = cand.where("source != 'eval'")
    assert fresh.count() > 0
    assert fresh.join(seen, ["user_id", "item_id"]).count() == 0
    assert fresh.groupBy("user_id").count().agg(F.max("count")).first()[0] <= 6
    assert fresh.groupBy("user_id", "item_id").count().where("count > 1").count() == 0
    evals = read_table(spark, SAMPLES, dl).where("split IN ('valid', 'test')")
    got = sorted(r.sample_id for r in cand.where("source = 'eval'").collect())
    assert got == sorted(r.sample_id for r in evals.collect())
    assert {r.source for r in fresh.select("source").distinct().collect()} <= {"neighbour", "popular"}


def _bad_candidates(spark, lake, day) -> None:
    """`day`'s candidates: five good rows of DAY1 and two whose user / item is unknown."""
    from optirag.tables import write_table

    dl = f"{lake}/bookcrossing"
    good = read_table(spark, CANDIDATES, dl).where(F.col("score_date") == DAY1).limit(5)
    bad = spark.createDataFrame(
        [("no-such-user", good.first().item_id), (good.first().user_id, "no-such-item")],
        "user_id string, item_id string")
    rows = (good.select("user_id", "item_id", "source", "sample_id", "label")
            .unionByName(bad.select("user_id", "item_id", F.lit("popular").alias("source"),
                                    F.lit(None).cast("string").alias("sample_id"),
                                    F.lit(None).cast("int").alias("label")))
            .withColumn("score_date", F.lit(day)))
    write_table(rows, CANDIDATES, dl, replace_where=f"score_date = '{day}'")


def _changed_candidates(spark, lake, day, users: set[str]) -> set[tuple[str, str]]:
    """`day`'s candidates: DAY1's, but two of `users` swap one candidate item each (new
    rows, new keys); returns the two changed (user, item) rows."""
    from optirag.tables import write_table

    dl = f"{lake}/bookcrossing"
    cand = read_table(spark, CANDIDATES, dl).where(F.col("score_date") == DAY1).drop("score_date")
    pairs = {(r.user_id, r.item_id) for r in cand.select("user_id", "item_id").collect()}
    fresh = sorted((r.user_id, r.item_id) for r in cand.where("source != 'eval'").collect() if r.user_id in users)
    (a, ia), (b, ib) = next(((x, y) for x in fresh for y in fresh
                             if x[0] < y[0] and (x[0], y[1]) not in pairs and (y[0], x[1]) not in pairs))
    swap = F.when((F.col("user_id") == a) & (F.col("item_id") == ia), F.lit(ib)).when(
        (F.col("user_id") == b) & (F.col("item_id") == ib), F.lit(ia)).otherwise(F.col("item_id"))
    write_table(cand.withColumn("item_id", swap).withColumn("score_date", F.lit(day)), CANDIDATES, dl,
                replace_where=f"score_date = '{day}'")
    return {(a, ib), (b, ia)}


def _summary(out) -> dict:
    return json.loads(out.stdout.strip().splitlines()[-1])


def _rows(spark, lake, day) -> dict[tuple[str, str], dict]:
    cols = ["score", "exit_layer", "score_key", "scored_on"]
    return {(r.user_id, r.item_id): {c: r[c] for c in cols}
            for r in _scores(spark, lake, day).select("user_id", "item_id", *cols).collect()}


def test_scoring_writes_every_candidate_once_faulted_runs_commit_nothing_a_rerun_replaces_only_its_date_and_a_night_rescores_only_changed_rows(
        spark, scoring_lake):
    """One lake, six job runs (each ~2 min of CI: one test, not four): score day 1; an
    earlier day with bad candidate rows fails just before its commit, then is scored without
    prefix sharing (bad rows recorded, not fatal); an (incremental) day-1 re-run is killed
    mid-way (nothing committed); day 1 re-run to completion, reusing the earlier day's five
    rows: equal to the first, full, run row for row; the next day, where two rows changed
    item, re-scores exactly those two."""
    from deltalake import DeltaTable

    out = first_out = _run(scoring_lake, DAY1)
    assert "rows/s" in out.stdout  # progress lines
    dl = f"{scoring_lake}/bookcrossing"
    cand = read_table(spark, CANDIDATES, dl).where(F.col("score_date") == DAY1)
    scores = _scores(spark, scoring_lake, DAY1)
    keys = ["user_id", "item_id", "source"]
    n = cand.count()
    assert scores.count() == n
    assert scores.select(*keys).exceptAll(cand.select(*keys)).count() == 0
    row = scores.agg(F.min("score"), F.max("score"), F.countDistinct("model_version"),
                     F.min("exit_layer"), F.max("exit_layer")).first()
    assert 0 < row[0] <= row[1] < 1 and row[2] == 1 and 2 <= row[3] <= row[4] <= 6
    first = _rows(spark, scoring_lake, DAY1)  # nothing earlier in the lake: a full night
    assert {k: v for k, v in _summary(out).items() if k in ("rows", "scored", "reused")} == {
        "rows": n, "scored": n, "reused": 0}
    assert {r["scored_on"] for r in first.values()} == {DAY1}
    # rows of equal token ids (e.g. two items of the same text) share a key, and a score
    same = {}
    for r in first.values():
        same.setdefault(r["score_key"], []).append(r["score"])
    assert {len(k) for k in same} == {32} and max(max(v) - min(v) for v in same.values()) < NOISE

    # A run that fails just before its Delta commit (every row staged) says so and commits
    # nothing; the next run clears its staged rows and commits, rejecting the bad rows.
    _bad_candidates(spark, scoring_lake, EARLIER)
    failed = _run(scoring_lake, EARLIER, faults="scoring.before_commit=raise")
    assert failed.returncode != 0 and "FaultInjected: fault point scoring.before_commit" in failed.stderr
    assert list(Path(dl, "_staging", "scores", EARLIER).glob("*.parquet"))
    assert _scores(spark, scoring_lake, EARLIER).count() == 0
    out = _run(scoring_lake, EARLIER, "scoring.shared_prefix=false")
    assert {k: _summary(out)[k] for k in ("rows", "scored", "reused", "rejected")} == {
        "rows": 7, "scored": 5, "reused": 0, "rejected": 2}
    rejects = read_table(spark, SCORE_REJECTS, dl).where(F.col("score_date") == EARLIER)
    assert sorted(r.reason for r in rejects.collect()) == ["unknown_item", "unknown_user"]
    # scored without prefix sharing: same model, same prompts, same keys and scores as day 1's
    earlier = _rows(spark, scoring_lake, EARLIER)
    assert len(earlier) == 5
    assert all(earlier[k]["score_key"] == first[k]["score_key"] for k in earlier)
    assert max(abs(r["score"] - first[k]["score"]) for k, r in earlier.items()) < 1e-4

    # A re-run of day 1 SIGKILLed at the fault point right after its first rows were staged
    # (optirag.faults: deterministic, however fast the job stages and commits).
    before = DeltaTable(SCORES.path(dl)).version()
    staging = Path(dl, "_staging", "scores", DAY1)
    killed = _run(scoring_lake, DAY1, faults="scoring.after_staged_rows=kill:1")
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-3000:] + killed.stderr[-3000:]
    assert list(staging.glob("*.parquet"))  # it died mid-way: rows staged ...
    assert DeltaTable(SCORES.path(dl)).version() == before  # ... and nothing committed

    # The re-run completes: same rows, not appended; the earlier day untouched. Incremental:
    # the rows whose key the earlier day holds (its five, and any of equal token ids) are
    # copied (score, exit layer, the day they were scored on), the rest scored again in
    # other batches than the first run's: the same scores to float reassociation.
    out = _run(scoring_lake, DAY1)
    by_key = {r["score_key"]: r for r in earlier.values()}
    copied = {k for k, r in first.items() if r["score_key"] in by_key}
    assert len(copied) >= 5
    assert {k: _summary(out)[k] for k in ("rows", "scored", "reused")} == {
        "rows": n, "scored": n - len(copied), "reused": len(copied)}
    again = _rows(spark, scoring_lake, DAY1)
    assert again.keys() == first.keys()
    assert all(again[k]["score_key"] == first[k]["score_key"] for k in first)
    assert all(again[k]["exit_layer"] == first[k]["exit_layer"] for k in first)
    assert all(again[k] == by_key[again[k]["score_key"]] for k in copied)
    assert {k for k, r in again.items() if r["scored_on"] == DAY1} == first.keys() - copied
    assert max(abs(again[k]["score"] - r["score"]) for k, r in first.items() if k not in copied) < NOISE
    assert _rows(spark, scoring_lake, EARLIER) == earlier
    assert not staging.exists()

    # The next night two rows changed item: exactly those are scored, the rest copied from
    # day 1 with the day each was scored on (the earlier day's: that day). The two users
    # share no key with another row (so no other user has their prefix).
    shared = {r["score_key"] for r in again.values() if len(same[r["score_key"]]) > 1}
    alone = {u for u, _ in again} - {u for (u, _), r in again.items() if r["score_key"] in shared}
    changed = _changed_candidates(spark, scoring_lake, NEXT, alone)
    out = _run(scoring_lake, NEXT, "scoring.block_rows=8", "scoring.max_block_mb=0.002")   # blocks stream
    assert {k: _summary(out)[k] for k in ("rows", "scored", "reused")} == {"rows": n, "scored": 2, "reused": n - 2}
    assert _summary(out)["blocks"] > max(1, _summary(first_out)["blocks"])   # default 1 MiB: fewer
    nxt = _rows(spark, scoring_lake, NEXT)
    assert {k for k, r in nxt.items() if r["scored_on"] == NEXT} == changed
    # (a key several rows share is copied from one of them: equal to float reassociation)
    assert nxt.keys() - changed == again.keys() & nxt.keys()
    assert all(nxt[k]["score_key"] == again[k]["score_key"] and nxt[k]["scored_on"] == again[k]["scored_on"]
               and nxt[k]["exit_layer"] == again[k]["exit_layer"]
               and abs(nxt[k]["score"] - again[k]["score"]) < NOISE for k in nxt.keys() - changed)
    assert not {nxt[k]["score_key"] for k in changed} & {r["score_key"] for r in again.values()}
    # the printed summary is kept for the night's page, which reads these tables (day 1 before)
    kept = json.loads((night_dir(_cfg(scoring_lake), NEXT) / "score_summary.json").read_text())
    assert kept == _summary(out)
    page = write_night_report(_cfg(scoring_lake), NEXT).read_text().splitlines()
    assert {"| scored | 2 |", f"| reused | {n - 2} |", "| rejected | 0 |"} <= set(page)
    assert any(line.startswith(f"| {DAY1} | {n:,} |") for line in page) and "## Speed" in page


def test_analyst_queries(spark, scoring_lake):
    from optirag import analytics

    cfg = _cfg(scoring_lake)
    if _scores(spark, scoring_lake, DAY1).count() == 0:
        _run(scoring_lake, DAY1)
    db = "analyst_test"
    names = analytics.register_tables(spark, cfg, db)
    assert {"scores", "items", "candidates"} <= set(names)
    top = analytics.run(spark, "top_n_per_user", db, score_date=DAY1, n=3).collect()
    assert top and max(r.rank for r in top) <= 3 and all(r.title for r in top)
    per_user = {}
    for r in top:
        per_user.setdefault(r.user_id, []).append(r.score)
    assert all(s == sorted(s, reverse=True) for s in per_user.values())
    dist = {r.score_date: r for r in analytics.run(spark, "score_distribution", db).collect()}
    assert dist[DAY1].rows == _scores(spark, scoring_lake, DAY1).count()
    hist = analytics.run(spark, "exit_layer_histogram", db).where(F.col("score_date") == DAY1).collect()
    assert abs(sum(r.share for r in hist) - 1) < 1e-9
    assert analytics.run(spark, "eval_rows", db, score_date=DAY1).count() > 0


def test_the_nightly_scorer_serves_the_rule_chosen_with_its_heads(tmp_path, caplog):
    """scoring.rule_from: heads (default) serves the (tau, m) chosen on valid and saved in the
    heads' meta by jobs.train_exit_heads; heads without one, or rule_from=config, serve the
    config's rule, and the first case says so in the log."""
    from optirag.early_exit.config import EarlyExitConfig
    from optirag.scoring.config import scoring_config
    from optirag.scoring.resolve import serving_rule

    cfg = _cfg(str(tmp_path))
    configured = EarlyExitConfig.model_validate(cfg.early_exit)
    chosen = {"calibration": {"rule": {"rule": "probability", "tau": 0.1, "window": 1, "min_previous": 1},
                              "chosen_on": "valid"}}
    served, source = serving_rule(cfg, scoring_config(cfg), "h1", chosen)
    assert source == "heads" and (served["tau"], served["window"], served["min_previous"]) == (0.1, 1, 1)
    assert served["exit_layers"] == configured.exit_layers   # the rest is the config's
    assert (configured.tau, configured.window) != (0.1, 1)

    as_configured = _cfg(str(tmp_path), "scoring.rule_from=config")
    served, source = serving_rule(as_configured, scoring_config(as_configured), "h1", chosen)
    assert source == "config" and (served["tau"], served["window"]) == (configured.tau, configured.window)

    with caplog.at_level("WARNING", logger="optirag.scoring.resolve"):
        served, source = serving_rule(cfg, scoring_config(cfg), "h0", {"model_version": "m"})
    assert source == "config" and served["tau"] == configured.tau
    assert "carry no rule chosen on valid" in caplog.text
    with pytest.raises(Exception, match="rule_from"):
        scoring_config(_cfg(str(tmp_path), "scoring.rule_from=valid"))


def test_a_scorer_is_not_served_prompts_laid_out_otherwise_than_its_training_prompts(tmp_path, caplog):
    """The scorer's meta keeps its training prompts' config (jobs.train_scorer): a nightly run
    whose prompts.* would change the text (here the target's item text) is refused before any
    actor starts; sampling settings (which training rows got prompts) do not matter."""
    from optirag.config import ConfigError
    from optirag.prompts.config import prompts_config
    from optirag.scoring.resolve import check_prompt_layout

    cfg = _cfg(str(tmp_path), "prompts.target_item=full")
    tuned_on = {"prompts_config": prompts_config(cfg).model_dump()}
    check_prompt_layout(cfg, "s1", tuned_on)
    check_prompt_layout(_cfg(str(tmp_path), "prompts.target_item=full", "prompts.train_max=10",
                             "prompts.seed=7"), "s1", tuned_on)
    older = {"prompts_config": {k: v for k, v in tuned_on["prompts_config"].items() if k != "target_item"}}
    check_prompt_layout(cfg, "s1", older)            # a key added since: its default ('full'), as then
    with pytest.raises(ConfigError, match=r"prompts.target_item: tuned on 'full', tonight 'short'"):
        check_prompt_layout(_cfg(str(tmp_path), "prompts.target_item=short"), "s1", tuned_on)
    with caplog.at_level("WARNING", logger="optirag.scoring.resolve"):
        check_prompt_layout(cfg, "s0", {"model_version": "m"})
    assert "does not record its training prompts' config" in caplog.text


def test_a_replica_tuned_after_a_prompt_setting_was_added_still_matches_its_scorer():
    """Seed replicas compare prompt settings as today's settings: a key the production
    scorer's meta predates counts as its default; a real difference still counts."""
    from optirag.prompts.config import PromptsConfig
    from optirag.reporting.missing import _same_prompts

    now = {"prompts_config": PromptsConfig(target_item="full").model_dump()}
    before = {"prompts_config": {k: v for k, v in now["prompts_config"].items() if k != "target_item"}}
    assert _same_prompts(before, now) and _same_prompts(now, now)
    assert not _same_prompts(before, {"prompts_config": PromptsConfig(target_item="short").model_dump()})
    assert not _same_prompts({}, now) and _same_prompts({}, {})
