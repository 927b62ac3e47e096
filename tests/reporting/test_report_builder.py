"""The report builder on small hand-made stage outputs (no Spark, no training)."""
import json
from pathlib import Path

import pytest

from optirag.reporting.build import build_report
from optirag.reporting.inputs import read_inputs
from optirag.reporting.missing import plan

ENV = {"cpu": "test cpu", "cores": 2, "ram_gib": 8.0, "gpu": "none", "os": "linux", "python": "3.11",
       "packages": {"torch": "x"}}


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


@pytest.fixture
def reports(tmp_path):
    r = tmp_path / "reports"
    _write(r / "eval" / "baselines_bookcrossing.json", {
        "seeds": [0, 1, 2], "split_sizes": {"test": 200}, "test_positive_rate": 0.6, "models": {
        "deepfm": {"auc_mean": 0.70, "auc_std": 0.01,
                   "seeds": {"0": {"auc": 0.69}, "1": {"auc": 0.70}, "2": {"auc": 0.71}}},
        "din": {"auc_mean": 0.7117, "auc_std": 0.002, "seeds": {"0": {"auc": 0.7097}, "1": {"auc": 0.7137}}},
    }})
    _write(r / "eval" / "bookcrossing.json", {"evaluation": {"seed": 42}, "runs": {
        "none": {"metrics": {"test": {"auc": 0.60}}, "prompts_per_second": 10.0},
        "gcn": {"metrics": {"test": {"auc": 0.65}}, "prompts_per_second": 4.0},
    }})
    _write(r / "eval" / "retrieval_bookcrossing.json", {"average": {"auc": 0.66}, "last_layer": {"auc": 0.64}})
    _write(r / "bench" / "retrieval.json", {"datasets": {"bookcrossing": {"gcn": {"seconds": 2.0},
                                                                          "llm": {"seconds": 50.0}}}})
    _write(r / "bench" / "early_exit.json", {
        "dataset": "bookcrossing", "variant": "gcn", "auc_full": 0.65, "auc_exit": 0.66,
        "mean_exit_layer": 21.0, "n_layers": 30, "flops_ratio": 0.7, "throughput_ratio": 1.25,
        "sweeps": {"tau": [{"tau": 0.05, "auc": 0.63, "throughput_ratio": 1.5},
                           {"tau": 0.01, "auc": 0.66, "throughput_ratio": 1.1}]}})
    return r


def _row(text: str, *cells: str) -> str:
    hits = [line for line in text.splitlines() if all(f"| {c} |" in line for c in cells)]
    assert len(hits) == 1, (cells, hits)
    return hits[0]


def test_tables_figures_and_sentences_come_from_the_inputs(reports):
    text = build_report(read_inputs(reports, ["bookcrossing", "movielens100k"]), ENV, reports)
    assert (reports / "REPORT.md").read_text() == text
    # Table 2: mean ± std over the seeds present, paper value, difference
    bc = text.split("### bookcrossing")[1].split("### movielens100k")[0]
    assert "Test split: 200 samples, 60.0% positive (80 negatives)." in bc
    assert _row(bc, "Full-shot", "DeepFM") == "| Full-shot | DeepFM | 70.00 ± 1.00 (n=3) | 71.15 | -1.15 |"
    assert "| DIN | 71.17 ± 0.20 (n=2) | 71.17 | +0.00 |" in _row(bc, "Full-shot", "DIN")
    assert _row(bc, "Full-shot", "SIM") == "| Full-shot | SIM | not run | 68.10 |  |"
    assert "| GCN-earlyexit | 66.00 | 73.28 | -7.28 |" in _row(bc, "GCN-earlyexit")
    assert "DeepFM on bookcrossing: ours 70.00 vs the paper's 71.15 on BookCrossing (-1.15; 1.15 points below the paper)." in text
    assert "DIN on bookcrossing: ours 71.17 vs the paper's 71.17 on BookCrossing (+0.00; within one standard deviation" in text
    assert "Best full-shot baseline on bookcrossing: DIN (71.17) in our run, the same model as the paper (DIN, 71.17)." in text
    # movielens100k has no input and no paper counterpart: not run, never a number
    ml = text.split("### movielens100k")[1].split("## Table 3")[0]
    assert ml.count("not run") == 9 and "—" in ml
    # Table 3 and 4
    assert _row(text, "bookcrossing", "Average of layers") == "| bookcrossing | Average of layers | 66.00 | 72.51 |"
    assert "the average embedding gives the higher AUC in our run (66.00 vs 64.00)" in text
    lines = text.splitlines()
    assert "| bookcrossing | w/o | w/o | 60.00 | 10.00 | 70.74 (15.77) |" in lines
    assert "| bookcrossing | w/ | w/ | 66.00 | 5.00 | 73.28 (5.59) |" in lines   # 4.0 samples/s x 1.25
    assert "| bookcrossing | w/o | w/ | not run | not run | 53.17 (17.85) |" in lines
    assert "bookcrossing: samples/s estimated as the scorer's eval rate x throughput_ratio 1.25" in text
    assert "bookcrossing: mean exit layer 21.0 of 30, FLOPs ratio 0.70, AUC without exit 65.00" in text
    assert "Retriever w/" not in text   # Table 4's shared cells are compared once, in Table 2
    assert "throughput on bookcrossing by x1.25 in our run (paper on BookCrossing: x1.20)" in text
    # Figures: 2 and 3 drawn from the data, 4 and 5 not run
    assert "| bookcrossing | 2.00 | 50.00 | 25.0x |" in text
    assert (reports / "figures" / "fig2_retrieval_speedup.png").stat().st_size > 1000
    assert (reports / "figures" / "fig3_tau_bookcrossing.png").stat().st_size > 1000
    assert "| 0.01 | 66.00 | 1.10 |" in text and "no `sweeps.window`" in text and "no `sweeps.k`" in text
    assert "Seeds (bookcrossing): baselines [0, 1, 2]; LLM evaluation subset 42" in text


def test_no_inputs_means_not_run_everywhere(tmp_path):
    text = build_report(read_inputs(tmp_path, ["bookcrossing"]), ENV, tmp_path / "out")
    table2 = text.split("## Table 2")[1].split("## Table 3")[0]
    ours = [line.split("|")[3].strip() for line in table2.splitlines() if line.startswith("| ") and "Category" not in line]
    assert ours and set(ours) == {"not run"}
    assert "nothing to compare yet" in text and not (tmp_path / "out" / "figures").exists()


def test_plan_trains_only_what_is_missing(tmp_path, reports):
    lake = tmp_path / "lake"
    (lake / "bookcrossing" / "samples" / "_delta_log").mkdir(parents=True)
    chains = plan(reports, str(lake), ["bookcrossing", "movielens100k"], {"movielens100k": "/raw/ml"}, "all")
    flat = [" ".join(c[1:]) for chain in chains for c in chain]
    # bookcrossing has samples, baselines and the LLM evaluation already
    assert not any("--dataset bookcrossing" in c for c in flat)
    ml = [c for c in flat if "--dataset movielens100k" in c]
    assert ml[0].startswith("-m jobs.ingest") and "--raw /raw/ml" in ml[0]
    assert ml[1].startswith("-m jobs.train_baselines") and ml[-1].startswith("-m jobs.evaluate")
    only = plan(reports, str(lake), ["movielens100k"], {"movielens100k": "/raw/ml"}, "baselines")
    assert [c[2] for c in only[0]] == ["jobs.ingest", "jobs.train_baselines"]
    assert plan(reports, str(lake), ["movielens100k"], {}, "none") == []
