"""What each file under reports/ is: the table behind reports/README.md.

    FILES (below: path -> status, command, citing note)     the files under reports/
         |                                                        |
         |            versions.py: scorer + data versions read from the files
         v                                                        v
    reports_audit.problems(): unlisted / missing / off-record / uncited  -> tests/reporting/test_reports_manifest.py
    reports_readme.render():  reports/README.md  <- python -m jobs.reports_manifest (make reports-manifest, make report)

Only what a person must say is typed here: the committed command that makes a file, its
status, the note that cites it; the versions it was measured on are read from the file (a PNG
or a figure: from the JSON it is drawn from, `source`). A new file is one line in FILES.
(Not to be confused with reporting/manifest.py: the lake's `manifest` table of data checksums.)
"""
from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

OF_RECORD, STALE, SUPERSEDED, HISTORICAL, DOC = "of record", "stale", "superseded", "historical", "doc"
STATUSES = {
    OF_RECORD: "describes the served models (the scorers and data of the eval of record); "
               "its command regenerates it",
    STALE: "made by a committed command, but measured on another scorer or data than the eval of "
           "record: re-run its command",
    SUPERSEDED: "an earlier measurement a newer file replaces; kept because a note cites it",
    HISTORICAL: "a one-off or side experiment (often on a scorer or recipe no longer served); "
                "kept because a note cites it, not regenerated",
    DOC: "hand-written notes, and this index",
}
# The eval of record: its runs' model_version / data_version are the versions of record.
EVAL_OF_RECORD = ("eval/bookcrossing.json", "eval/movielens100k.json")
# Local or scratch files that are not results (gitignored): not listed, not checked.
NOT_RESULTS = ("checks/*", "*.tmp", ".*", "*/.*")


@dataclass(frozen=True)
class Entry:
    status: str
    command: str | None = None  # the committed command that makes it; None: a one-off not in the repo
    note: str = ""              # the note(s) under reports/ that cite it, comma-separated
    source: str = ""            # what a PNG is drawn from (its versions): "path[:dotted.key]", comma-separated
    why: str = ""               # one line for the reader: what replaced it, why it is stale
    optional: bool = False      # may be absent (a bench that has not landed yet)


REPORT, EE, BENCH_SCORING, PEERS = "make report", "make bench-early-exit", "make bench-scoring", "make bench-peers"
EVALUATE, BASELINES = REPORT + " (jobs.evaluate, jobs.evaluate_early_exit)", REPORT + " (jobs.train_baselines)"
RETRIEVER, OLD_PNG = REPORT + " (jobs.evaluate_retriever)", "drawn 2026-11-27, older than its JSON"
PREFIX_BF16 = ("python -m jobs.bench_scoring --dataset bookcrossing --lake L --job-rows 0 --memory-rows '' "
               "--set scoring.torch_threads=2 --repeats 5 --out reports/bench/scoring_prefix_bf16.json")
PEERS_LORA16 = ("python -m jobs.bench_peers --dataset bookcrossing --lake L --llama-cpp-src DIR --set scoring.rule_from=config "
                "--set early_exit.tau=0.05 --set early_exit.window=1 --set early_exit.min_previous=1 "
                "--out reports/bench/peers_lora16_budget_rule.json (L: the lora16 recipe's lake)")

FILES: dict[str, Entry] = {
    "README.md": Entry(DOC, "make reports-manifest"),
    "notes/*.md": Entry(DOC),
    "REPORT.md": Entry(OF_RECORD, REPORT),
    "report_jobs.json": Entry(OF_RECORD, REPORT, note="notes/runs.md"),
    # make report's inputs (reporting/inputs.py) and figures
    "eval/bookcrossing.json": Entry(OF_RECORD, EVALUATE, note="notes/eval.md"),
    "eval/movielens100k.json": Entry(OF_RECORD, EVALUATE, note="notes/eval.md"),
    "eval/baselines_bookcrossing.json": Entry(OF_RECORD, BASELINES),
    "eval/baselines_movielens100k.json": Entry(OF_RECORD, BASELINES),
    "eval/baselines_amazon.json": Entry(OF_RECORD, BASELINES),
    "eval/retrieval_bookcrossing.json": Entry(OF_RECORD, RETRIEVER),
    "eval/retrieval_movielens100k.json": Entry(STALE, RETRIEVER, why="an older MovieLens lake (data and GCN retriever)"),
    "bench/retrieval_bookcrossing.json": Entry(OF_RECORD, "make bench-retrieval"),
    "bench/retrieval_bookcrossing.png": Entry(OF_RECORD, "make bench-retrieval", source="bench/retrieval_bookcrossing.json"),
    "bench/retrieval_movielens100k.json": Entry(OF_RECORD, "make bench-retrieval"),
    "bench/retrieval_movielens100k.png": Entry(OF_RECORD, "make bench-retrieval", source="bench/retrieval_movielens100k.json"),
    "bench/early_exit.json": Entry(STALE, EE, why="BookCrossing's 2026-12-03 scorer, MovieLens' few-shot ones"),
    "bench/early_exit_k.png": Entry(STALE, EE, source="bench/early_exit.json", why=OLD_PNG),
    "bench/early_exit_tau.png": Entry(STALE, EE, source="bench/early_exit.json", why=OLD_PNG),
    "bench/early_exit_window.png": Entry(STALE, EE, source="bench/early_exit.json", why=OLD_PNG),
    "bench/tuning.json": Entry(OF_RECORD, "make bench-tuning", note="notes/tuning.md"),
    "figures/fig2_retrieval_speedup.png": Entry(OF_RECORD, REPORT, source="bench/retrieval_bookcrossing.json, "
                                                                      "bench/retrieval_movielens100k.json"),
    **{f"figures/fig{n}_{kind}_{d}.png": Entry(STALE, REPORT, source=f"bench/early_exit.json:datasets.{d}")
       for n, kind in ((3, "tau"), (4, "window"), (5, "k")) for d in ("bookcrossing", "movielens100k")},
    # other benches of record
    "bench/scoring.json": Entry(STALE, BENCH_SCORING, note="notes/scoring.md", why="BookCrossing's 2026-12-02 scorer"),
    "bench/scoring.png": Entry(STALE, BENCH_SCORING, source="bench/scoring.json"),
    "bench/peers.json": Entry(STALE, PEERS, note="notes/scoring.md", why="the bf16 recipe's scorer"),
    "bench/peers.png": Entry(STALE, PEERS, source="bench/peers.json"),
    "bench/scoring_device.json": Entry(STALE, "python -m jobs.bench_device --bundle B --device cuda --dtype bfloat16 "
                                              "(on a GPU box; B from jobs.bench_scoring --device-bundle B)",
                                       why="a scorer of 2026-11-27"),
    "bench/scoring_prefix_bf16.json": Entry(OF_RECORD, PREFIX_BF16, note="notes/scoring.md"),
    "bench/scoring_prefix_bf16.png": Entry(OF_RECORD, PREFIX_BF16, source="bench/scoring_prefix_bf16.json"),
    # measured on fresh tunings of the base model, not on a stored scorer
    "bench/tuning_paths.json": Entry(OF_RECORD, "make bench-tuning-paths (runs.n384_speed); runs.n2000: "
                                     "python -m jobs.bench_tuning_paths --dataset movielens100k --lake L "
                                     "--variant gcn --n 2000 --targets-per-prefix 8 --set evaluation.torch_threads=1",
                                     note="notes/tuning.md"),
    "bench/nightly_scale.json": Entry(STALE, "make bench-nightly NIGHTLY_USERS=1722 NIGHTLY_DATE=2026-12-03 (runs), "
                                      "make bench-nightly-drop (incremental), make bench-nightly-sizing",
                                      optional=True,
                                      why="make demo's scorer: what the nightly job costs, not its accuracy"),
    # superseded: a newer file of record replaces them
    "bench/tuning_bookcrossing_1202.json": Entry(SUPERSEDED, "python -m jobs.bench_tuning --dataset bookcrossing --lake L "
                                                 "--variant gcn --sizes 256,1000,4000,all --set model.tuning.epochs=1",
                                                 note="notes/tuning.md", why="by bench/tuning.json (2026-12-04 recipe)"),
    "eval/bookcrossing_fewshot.json": Entry(SUPERSEDED, None, note="notes/eval.md", why="by eval/bookcrossing.json (whole split)"),
    "eval/movielens100k_fewshot.json": Entry(SUPERSEDED, None, note="notes/eval.md", why="by eval/movielens100k.json"),
    "eval/bookcrossing_gcn_2000_prompts.json": Entry(SUPERSEDED, None, note="notes/eval.md", why="by eval/bookcrossing.json"),
    # historical: side experiments a note cites
    "bench/early_exit_scales_demo_scorer.json": Entry(HISTORICAL, "python -m jobs.bench_early_exit --lake L --datasets "
                                                      "bookcrossing (L: make cluster-demo's lake; written as early_exit.json)",
                                                      note="notes/early-exit.md", why="backs conf/models/demo.yaml's raw scale"),
    "bench/exit_head_recipes.json": Entry(HISTORICAL, "python -m jobs.bench_early_exit --lake L --datasets bookcrossing "
                                          "--head-recipes lr0=1e-3,1e-2 epochs=3,30 distill=0,0.5",
                                          note="notes/early-exit.md, notes/recipes.md"),
    "bench/exit_rule_selection.json": Entry(HISTORICAL, None, note="notes/early-exit.md"),
    "bench/exit_platt_scales.json": Entry(HISTORICAL, None, note="notes/early-exit.md, notes/recipes.md"),
    "bench/exit_layers_dense_bookcrossing.json": Entry(HISTORICAL, None, note="notes/early-exit.md"),
    "bench/exit_layers_dense_movielens100k.json": Entry(HISTORICAL, None, note="notes/early-exit.md"),
    "bench/exit_frontier_bookcrossing_lora16.json": Entry(HISTORICAL, None, note="notes/early-exit.md"),
    "bench/exit_agreement_bookcrossing.json": Entry(HISTORICAL, None, note="notes/early-exit.md, notes/recipes.md"),
    "bench/prefix_engine.json": Entry(HISTORICAL, None, note="notes/scoring.md"),
    "bench/scoring_profile.json": Entry(HISTORICAL, None, note="notes/scoring.md"),
    "bench/int8_dynamic.json": Entry(HISTORICAL, None, note="notes/scoring.md"),
    "bench/peers_lora16_budget_rule.json": Entry(HISTORICAL, PEERS_LORA16, note="notes/scoring.md"),
    "bench/peers_lora16_budget_rule.png": Entry(HISTORICAL, PEERS_LORA16, note="notes/scoring.md",
                                                source="bench/peers_lora16_budget_rule.json"),
    "bench/suffix_layouts.json": Entry(HISTORICAL, None, note="notes/prompts.md, notes/scoring.md, notes/recipes.md"),
    "bench/tuning_1000x4epochs.json": Entry(HISTORICAL, "python -m jobs.bench_tuning --dataset bookcrossing --lake L "
                                            "--variant gcn --sizes 1000 --set model.tuning.epochs=4 "
                                            "--set model.tuning.patience=4", note="notes/tuning.md"),
    "bench/tuning_dtype.json": Entry(HISTORICAL, None, note="notes/tuning.md"),
    "eval/bookcrossing_bf16_recipe.json": Entry(HISTORICAL, None, note="notes/tuning.md, notes/eval.md"),
    "eval/bookcrossing_lora16_recipe.json": Entry(HISTORICAL, None, note="notes/early-exit.md, notes/eval.md"),
    "eval/movielens100k_evidence_ceiling.json": Entry(HISTORICAL, None, note="notes/eval.md, notes/tuning.md"),
}


def is_result(rel: str) -> bool:
    return not any(fnmatch(rel, p) for p in NOT_RESULTS)


def files_on_disk(reports: Path) -> list[str]:
    """Every file under reports/ (relative, posix), scratch and local ones left out."""
    return sorted(rel for p in Path(reports).rglob("*") if p.is_file()
                  and is_result(rel := p.relative_to(reports).as_posix()))


def entry_for(rel: str) -> tuple[str, Entry] | None:
    """(the FILES key, its entry) that names a file: its own path, else a glob."""
    if rel in FILES:
        return rel, FILES[rel]
    return next(((k, e) for k, e in FILES.items() if any(c in k for c in "*?[") and fnmatch(rel, k)), None)
