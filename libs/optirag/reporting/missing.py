"""What `make report` must train first: one `python -m jobs.X ...` command per missing input.

Each command is the same job a user would run by hand; the report runs them as
subprocesses (one JVM / model load each, as in production) and records wall time and
exit status. Per dataset, the data chain (ingest, baselines) runs first; the model chain
(retrievers, prompts, scorers, evaluation, exit heads, benches) is planned after it, from
what the reports folder then holds, and is skipped when the test split has too few
negatives for an AUC to mean anything. A failed step stops the rest of its dataset's
chain; the report still builds and says which step failed.
"""
from __future__ import annotations

import functools
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

from optirag.evaluation.replicas import (exit_run_key, heads_kind, report_seeds, run_key, same_prompts,
                                        scorer_kind)
from optirag.reporting.inputs import ReportInputs, input_paths, load_json, pick
from optirag.reporting.numbers import early_exit
from optirag.retrieval.config import RETRIEVERS

# The shared data's folder per dataset (as in the Makefile's ingest target); --raw overrides.
RAW_FOLDERS = {"bookcrossing": "bookcrossing", "movielens100k": "movielens-100k", "amazon": "amazon-beauty"}
# jobs.evaluate runs the report reads: Table 2 (none, llm, gcn), Table 3 (gcn vs gcn_last)
LLM_RUNS = ("none", "llm", "gcn", "gcn_last")
ZERO_SHOT_RUN = "zero_shot/none"
# Table 4's early-exit rows: with (gcn) and without (none) a retriever
EXIT_VARIANTS = ("gcn", "none")
# An AUC over fewer test negatives than this is noise (amazon All_Beauty: 1): the LLM chain,
# hours on a CPU, is not run, and the report says why.
MIN_TEST_NEGATIVES = 20
RETRIEVAL_BENCH_USERS = "200"   # users both retrievers embed for Figure 2 (LLM: ~1 user/s/core)
CURVE_SIZES = "256,1000,4000,all"   # the scorer's learning curve (jobs.bench_tuning)


def _job(name: str, *args: str) -> list[str]:
    return [sys.executable, "-m", f"jobs.{name}", *args]


def _local_root(lake: str) -> Path | None:
    if "://" in lake and not lake.startswith("file://"):
        return None   # remote lake: let the jobs themselves say what is missing
    return Path(lake.removeprefix("file://"))


def _has_table(lake: str, dataset: str, table: str) -> bool:
    root = _local_root(lake)
    return True if root is None else (root / dataset / table / "_delta_log").is_dir()


def test_negatives(lake: str, dataset: str) -> int | None:
    """Negatives in the test split of `samples` (None: no local table to read; the jobs
    then say what is wrong with it)."""
    root = _local_root(lake)
    if root is None or not _has_table(lake, dataset, "samples"):
        return None
    import pyarrow.compute as pc
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError

    try:
        t = DeltaTable(str(root / dataset / "samples")).to_pyarrow_table(columns=["split", "label"])
    except DeltaError:
        return None
    return int(pc.sum(pc.and_(pc.equal(t["split"], "test"), pc.equal(t["label"], 0))).as_py() or 0)


def llm_skip_reason(lake: str, dataset: str) -> str | None:
    n = test_negatives(lake, dataset)
    if n is not None and n < MIN_TEST_NEGATIVES:
        return f"skipped: {n} test negative{'s' if n != 1 else ''}"
    return None


@functools.lru_cache(maxsize=None)
def _config(lake: str, dataset: str):
    from optirag.config import default_env, load_config

    return load_config(dataset, env=default_env(), lake=lake)


def replica_seeds(lake: str, dataset: str, n_seeds: int) -> list[int]:
    """Tuning seeds of the replicas for n_seeds in all (the config's own seed is the first)."""
    from optirag.llm.config import ModelConfig

    return report_seeds(ModelConfig.model_validate(_config(lake, dataset).model).tuning.seed, n_seeds)


def in_lake(lake: str, dataset: str, variant: str, seed: int | None = None) -> bool:
    """The variant's prompts and a tuned scorer (or its seed replica) exist in this lake. An
    eval file can hold a run made on another lake; exit heads need the scorer and prompts
    here, and Table 4 compares numbers of one scorer, so such a run is redone."""
    root = _local_root(lake)
    if root is None:
        return True
    from optirag.registry import versions

    return ((root / dataset / "prompts" / f"variant={variant}").is_dir()
            and bool(versions(_config(lake, dataset), scorer_kind(variant, seed))))


def _meta(lake: str, dataset: str, kind: str) -> dict | None:
    """The meta of a model kind's resolved version (promoted, else newest) in this lake."""
    from optirag import registry

    try:
        return registry.read_meta(registry.resolve(_config(lake, dataset), kind))
    except registry.ModelNotFoundError:
        return None


# What a seed replica must share with its production scorer to stand beside it (and the
# prompt settings, compared as today's settings: keys added since count as their default)
REPLICA_MATCH = ("data_version", "retriever_version")


def _same_prompts(run: dict, replica: dict) -> bool:
    from optirag.prompts.config import saved_prompts_config

    a, b = run.get("prompts_config"), replica.get("prompts_config")
    return a == b if a is None or b is None else saved_prompts_config(a) == saved_prompts_config(b)


def replica_current(lake: str, dataset: str, variant: str, seed: int) -> bool:
    """The replica scorer is in this lake and was tuned on what its production scorer was
    (data, neighbours, prompt settings): at most its evaluation is missing."""
    if _local_root(lake) is None:
        return True
    run, replica = _meta(lake, dataset, scorer_kind(variant)), _meta(lake, dataset, scorer_kind(variant, seed))
    return (in_lake(lake, dataset, variant, seed) and bool(run and replica)
            and all(run.get(k) == replica.get(k) for k in REPLICA_MATCH) and _same_prompts(run, replica))


def scorer_version(lake: str, dataset: str, variant: str, seed: int | None = None) -> str | None:
    """The scorer version jobs would use here (None: none, or a lake the report cannot read)."""
    return None if _local_root(lake) is None else (_meta(lake, dataset, scorer_kind(variant, seed)) or {}).get("model_version")


def heads_current(lake: str, dataset: str, variant: str, seed: int | None = None) -> bool:
    """The resolved exit heads belong to the scorer (or replica) they would run on."""
    if _local_root(lake) is None:
        return True
    heads = _meta(lake, dataset, heads_kind(variant, seed))
    return bool(heads) and heads.get("model_version") == scorer_version(lake, dataset, variant, seed)


def exit_eval_todo(evaluated: dict | None, variants, ran_heads: list[str], current: dict[str, str | None],
                   seed: int | None = None) -> list[str]:
    """Variants whose heads were just (re)trained (`ran_heads`), or whose early-exit run the
    eval file lacks or made with another scorer than `current` (variant -> scorer version;
    None: unknown, trusted)."""
    def stale(v):
        run = pick(evaluated, f"runs.{exit_run_key(v, seed)}")
        return (pick(run, "metrics.test.auc") is None
                or (current.get(v) is not None and run.get("model_version") != current[v]))
    return [v for v in variants if v in ran_heads or stale(v)]


def data_chain(reports: Path, lake: str, dataset: str, raw: dict[str, str]) -> list[list[str]] | None:
    """Ingest (empty lake) and the full-shot baselines; None when there is nothing to ingest."""
    common = ["--dataset", dataset, "--lake", lake]
    chain = []
    if not _has_table(lake, dataset, "samples"):
        if dataset not in raw:
            return None   # reported as not run
        chain.append(_job("ingest", *common, "--raw", raw[dataset]))
    if not input_paths(reports, dataset)["baselines"].is_file():
        chain.append(_job("train_baselines", *common, "--set", f"baselines.reports_dir={reports / 'eval'}"))
    return chain


def model_chain(reports: Path, lake: str, dataset: str, n_seeds: int = 1) -> list[list[str]]:
    """Retrievers, prompts, scorers and evaluation for the runs the eval file lacks, then
    exit heads + early-exit bench, retrieval quality and the retrieval-time bench, then the
    seed replicas (n_seeds in all per LLM run) for the spread of Tables 2-4."""
    common = ["--dataset", dataset, "--lake", lake]
    paths = input_paths(reports, dataset)
    evaluated = load_json(paths["llm_eval"])
    missing = [v for v in LLM_RUNS
               if pick(evaluated, f"runs.{v}.metrics.test.auc") is None or not in_lake(lake, dataset, v)]
    # the untuned model scores the none prompts: rebuilt prompts, new zero-shot numbers
    zero_shot = pick(evaluated, f"runs.{ZERO_SHOT_RUN}.metrics.test.auc") is None or "none" in missing
    chain = [_job("train_retriever", *common, "--retriever", r) for r in RETRIEVERS if r in missing]
    chain += [_job("build_prompts", *common, "--variant", v) for v in missing]
    chain += [_job("train_scorer", *common, "--variant", v) for v in missing]
    if missing or zero_shot:
        chain.append(_job("evaluate", *common, "--variants", ",".join(missing or ["none"]),
                          "--zero-shot" if zero_shot else "--no-zero-shot",
                          "--set", f"evaluation.reports_dir={reports / 'eval'}"))
    inputs = ReportInputs([dataset], early_exit=load_json(reports / "bench" / "early_exit.json"))
    # a scorer trained above needs new heads and a new bench even if old numbers exist
    exits = [v for v in EXIT_VARIANTS if v in missing or early_exit(inputs, dataset, v) is None]
    chain += [_job("train_exit_heads", *common, "--variant", v) for v in exits]
    if exits:
        chain.append(_job("bench_early_exit", "--lake", lake, "--datasets", dataset,
                          "--variants", ",".join(exits), "--out", str(reports / "bench")))
    # the early-exit rows of Tables 2 and 4: on the eval rows, with the scorer the file has
    ee = exit_eval_todo(evaluated, EXIT_VARIANTS, exits,
                        {v: pick(evaluated, f"runs.{v}.model_version") for v in EXIT_VARIANTS})
    if ee:
        chain.append(_exit_eval(reports, common, ee))
    # the learning curve: after the gcn run, whose scorer is its `all` point
    if "gcn" in missing or pick(load_json(reports / "bench" / "tuning.json"),
                                f"datasets.{dataset}.variants.gcn.curve") is None:
        chain.append(_job("bench_tuning", *common, "--variant", "gcn", "--sizes", CURVE_SIZES,
                          "--out", str(reports / "bench")))
    if not paths["retrieval"].is_file():
        chain.append(_job("evaluate_retriever", *common, "--out", str(reports / "eval")))
    if not paths["bench_retrieval"].is_file() and importlib.util.find_spec("jobs.bench_retrieval"):
        chain.append(_job("bench_retrieval", *common, "--users", RETRIEVAL_BENCH_USERS,
                          "--out", str(reports / "bench")))
    return chain + replica_chain(reports, lake, dataset, n_seeds, evaluated, missing)


def _exit_eval(reports: Path, common: list[str], variants: list[str], *seed: str) -> list[str]:
    return _job("evaluate_early_exit", *common, "--variants", ",".join(variants), *seed,
                "--set", f"evaluation.reports_dir={reports / 'eval'}")


def replica_chain(reports: Path, lake: str, dataset: str, n_seeds: int, evaluated: dict | None,
                  redone: list[str]) -> list[list[str]]:
    """Per replica seed: train_scorer --seed where the replica is missing or was tuned on
    other data / neighbours / prompts than its production scorer (or that scorer is redone);
    evaluate --seed where its eval run is missing, stale (other prompts) or retrained; then
    the same for the exit heads of EXIT_VARIANTS and their early-exit runs."""
    common = ["--dataset", dataset, "--lake", lake]
    chain = []
    for seed in replica_seeds(lake, dataset, n_seeds) if n_seeds > 1 else []:
        flag = ["--seed", str(seed)]
        train = [v for v in LLM_RUNS if v in redone or not replica_current(lake, dataset, v, seed)]
        evals = [v for v in LLM_RUNS if v in train
                 or pick(evaluated, f"runs.{run_key(v, seed)}.metrics.test.auc") is None
                 or not same_prompts(pick(evaluated, f"runs.{v}"), pick(evaluated, f"runs.{run_key(v, seed)}"))]
        heads = [v for v in EXIT_VARIANTS if v in train or not heads_current(lake, dataset, v, seed)]
        ee = exit_eval_todo(evaluated, EXIT_VARIANTS, heads,
                            {v: scorer_version(lake, dataset, v, seed) for v in EXIT_VARIANTS}, seed)
        chain += [_job("train_scorer", *common, "--variant", v, *flag) for v in train]
        if evals:
            chain.append(_job("evaluate", *common, "--variants", ",".join(evals), *flag,
                              "--no-zero-shot", "--set", f"evaluation.reports_dir={reports / 'eval'}"))
        chain += [_job("train_exit_heads", *common, "--variant", v, *flag) for v in heads]
        if ee:
            chain.append(_exit_eval(reports, common, ee, *flag))
    return chain


def plan(reports: Path, lake: str, datasets: list[str], raw: dict[str, str], what: str = "all",
         n_seeds: int = 1) -> list[list[list[str]]]:
    """The chains as they stand now (what = all | baselines | none), one per dataset.

    The model chain here is planned from the current reports; :func:`run_missing`
    re-plans it after the data chain ran, and skips it for a dataset without negatives.
    """
    if what == "none":
        return []
    chains = []
    for d in datasets:
        chain = data_chain(reports, lake, d, raw)
        if chain is None:
            continue
        if what == "all" and llm_skip_reason(lake, d) is None:
            chain += model_chain(reports, lake, d, n_seeds)
        if chain:
            chains.append(chain)
    return chains


def run_chain(chain: list[list[str]], done: list[dict], problems: list[str], log=print,
              on_job=None) -> bool:
    """Run commands in order until one fails; appends to done / problems (and calls
    on_job(done) after each command); True if all passed."""
    for cmd in chain:
        shown = " ".join(["python", *cmd[1:]])
        log(f"report: running {shown}")
        start = time.perf_counter()
        rc = subprocess.run(cmd).returncode
        done.append({"command": shown, "seconds": time.perf_counter() - start, "rc": rc})
        if on_job:
            on_job(done)
        if rc != 0:
            problems.append(f"`{shown}` exited {rc}; the rest of its chain was skipped")
            return False
    return True


def run_missing(reports: Path, lake: str, datasets: list[str], raw: dict[str, str], what: str = "all",
                log=print, n_seeds: int = 1, on_job=None) -> tuple[list[dict], list[str], dict[str, str]]:
    """Produce what is missing, dataset by dataset; returns (jobs run, problems, the LLM
    skip reason per dataset that has one); on_job(jobs run so far) after every job."""
    done, problems, skipped = [], [], {}
    for d in datasets:
        if what != "none":
            chain = data_chain(reports, lake, d, raw)
            if chain is None or not run_chain(chain, done, problems, log, on_job):
                continue
        reason = llm_skip_reason(lake, d)
        if reason:
            skipped[d] = reason
            log(f"report: {d}: LLM runs {reason}")
        elif what == "all":
            run_chain(model_chain(reports, lake, d, n_seeds), done, problems, log, on_job)
    return done, problems, skipped
