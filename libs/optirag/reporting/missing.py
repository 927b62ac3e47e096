"""What `make report` must train first: one `python -m jobs.X ...` command per missing input.

Each command is the same job a user would run by hand; the report runs them as
subprocesses (one JVM / model load each, as in production) and records wall time and
exit status. A failed step stops the rest of its dataset's chain; the report still builds.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

from optirag.reporting.inputs import BENCH_PATHS, input_paths

# The shared data's folder per dataset (as in the Makefile's ingest target); --raw overrides.
RAW_FOLDERS = {"bookcrossing": "bookcrossing", "movielens100k": "movielens-100k", "amazon": "amazon-beauty"}
SCORER_VARIANTS = ("none", "llm", "gcn")


def _job(name: str, *args: str) -> list[str]:
    return [sys.executable, "-m", f"jobs.{name}", *args]


def _has_table(lake: str, dataset: str, table: str) -> bool:
    if "://" in lake and not lake.startswith("file://"):
        return True   # remote lake: let the job itself say what is missing
    root = lake.removeprefix("file://")
    return (Path(root) / dataset / table / "_delta_log").is_dir()


def plan(reports: Path, lake: str, datasets: list[str], raw: dict[str, str], what: str = "all") -> list[list[list[str]]]:
    """Chains of commands (a chain stops at its first failure); what = all | baselines | none."""
    if what == "none":
        return []
    chains = []
    for d in datasets:
        common = ["--dataset", d, "--lake", lake]
        chain = []
        if not _has_table(lake, d, "samples"):
            if d not in raw:
                continue   # reported as not run; nothing to ingest from
            chain.append(_job("ingest", *common, "--raw", raw[d]))
        paths = input_paths(reports, d)
        if not paths["baselines"].is_file():
            chain.append(_job("train_baselines", *common))
        if what == "all" and not paths["llm_eval"].is_file():
            chain += [_job("train_retriever", *common, "--retriever", r) for r in ("gcn", "llm")]
            chain.append(_job("build_prompts", *common, "--variant", "all"))
            chain += [_job("train_scorer", *common, "--variant", v) for v in SCORER_VARIANTS]
            chain.append(_job("evaluate", *common))
        if chain:
            chains.append(chain)
    if what == "all":
        for kind, rel in BENCH_PATHS.items():
            module = "bench_retrieval" if kind == "bench_retrieval" else "bench_early_exit"
            if not (reports / rel).is_file() and importlib.util.find_spec(f"jobs.{module}"):
                chains.append([_job(module, "--lake", lake)])
    return chains


def run_chains(chains: list[list[list[str]]], log=print) -> tuple[list[dict], list[str]]:
    """Run each chain in order; returns (jobs run with seconds and exit code, problems)."""
    done, problems = [], []
    for chain in chains:
        for cmd in chain:
            shown = " ".join(["python", *cmd[1:]])
            log(f"report: running {shown}")
            start = time.perf_counter()
            rc = subprocess.run(cmd).returncode
            done.append({"command": shown, "seconds": time.perf_counter() - start, "rc": rc})
            if rc != 0:
                problems.append(f"`{shown}` exited {rc}; the rest of its chain was skipped")
                break
    return done, problems
