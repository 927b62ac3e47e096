"""`python -m jobs.config`: the effective config of a run as YAML, and which layer set each key.
Run as a user runs it (a subprocess, the real conf/ files)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DEMO_RUN = ["--dataset", "movielens100k", "--env", "demo", "--model", "cpu-small+demo"]


def run_config(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "libs"), str(REPO)])}
    return subprocess.run([sys.executable, "-m", "jobs.config", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def explained() -> str:
    done = run_config(*DEMO_RUN, "--set", "scoring.batch_size=8", "--explain")
    assert done.returncode == 0, done.stderr
    return done.stdout


def layer_of(text: str, *path: str) -> str:
    """The `# layer` comment of the leaf at `path` in --explain output (indentation = depth)."""
    depth = 0
    for line in text.splitlines():
        if line.startswith("  " * depth + f"{path[depth]}:"):
            if depth == len(path) - 1:
                return line.split("  # ", 1)[1]
            depth += 1
    raise AssertionError(f"{'.'.join(path)} not in the output")


def test_prints_the_merged_config_with_every_default():
    done = run_config(*DEMO_RUN)
    assert done.returncode == 0, done.stderr
    cfg = yaml.safe_load(done.stdout)
    assert cfg["env"] == "demo" and cfg["dataset"]["name"] == "movielens100k"
    # cpu-small's per_dataset.movielens100k: a model layer, so it wins over env/demo.yaml's 1000
    assert cfg["evaluation"]["train_examples"] == 12000
    assert cfg["evaluation"]["max_per_split"] == 300         # env/demo.yaml
    assert cfg["model"]["tuning"]["trainable_from"] == 25    # models/demo.yaml over cpu-small's 21
    assert cfg["model"]["tuning"]["epochs"] == 2             # models/demo.yaml over per_dataset's 1
    assert cfg["early_exit"]["exit_layers"] == [5, 10, 15, 20, 25]   # models/demo.yaml
    assert cfg["early_exit"]["training"]["lr0"] == 0.01      # models/cpu-small.yaml
    assert cfg["prompts"]["k"] == 20                         # datasets/movielens100k.yaml
    assert cfg["scoring"]["block_rows"] == 100               # env/demo.yaml
    assert cfg["scoring"]["shared_prefix"] is True           # code default: base.yaml has `scoring: {}`
    assert cfg["prompts"]["answer_cue"] == "Answer:\n"       # a newline survives the round trip


def test_explain_names_the_layer_of_each_key(explained):
    assert yaml.safe_load(explained)["scoring"]["batch_size"] == 8   # comments do not break YAML
    assert layer_of(explained, "ingest", "history_max") == "base.yaml"
    assert layer_of(explained, "dataset", "heldout_last_n") == "datasets/movielens100k.yaml"
    assert layer_of(explained, "retriever", "epochs") == "env/demo.yaml"
    assert layer_of(explained, "model", "tuning", "rank") == "models/cpu-small.yaml"
    assert layer_of(explained, "model", "tuning", "trainable_from") == "models/demo.yaml"
    assert layer_of(explained, "evaluation", "train_examples") == "models/cpu-small.yaml per_dataset.movielens100k"
    assert layer_of(explained, "evaluation", "max_per_split") == "env/demo.yaml"
    assert layer_of(explained, "scoring", "batch_size") == "--set"
    assert layer_of(explained, "scoring", "shared_prefix") == "default (code)"
    assert layer_of(explained, "models_dir") == "default (code)"
    first = explained.splitlines()[0]
    assert re.fullmatch(r"# layers, later wins: default \(code\) < base.yaml < datasets/movielens100k.yaml"
                        r" < env/demo.yaml < .*models/cpu-small.yaml < .*models/demo.yaml < --set", first)


def test_every_leaf_has_one_layer_comment(explained):
    leaves = [line for line in explained.splitlines()[1:] if not line.rstrip().endswith(":")]
    assert leaves and all(re.search(r"\S\s{2,}# [^#]+$", line) for line in leaves)


def test_a_bad_config_is_one_line_and_exit_2():
    done = run_config("--dataset", "movielens100k", "--set", "scoring.batch_sise=8")
    assert done.returncode == 2 and done.stdout == ""
    assert "scoring.batch_sise" in done.stderr and len(done.stderr.strip().splitlines()) == 1
