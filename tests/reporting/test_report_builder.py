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
        "gcn_last": {"metrics": {"test": {"auc": 0.64}}, "prompts_per_second": 4.0},
        "zero_shot/none": {"metrics": {"test": {"auc": 0.52}}, "prompts_per_second": 9.0},
        "gcn+ee": {"metrics": {"test": {"auc": 0.66}}, "early_exit": {
            "tau": 0.01, "window": 1, "n_layers": 30,
            "test": {"mean_exit_layer": 21.0, "flops_ratio": 0.7, "auc_full_depth": 0.65}}},
    }})
    _write(r / "eval" / "retrieval_bookcrossing.json", {"layers": {"average": {"hit_rate": 0.0912},
                                                                   "last_layer": {"hit_rate": 0.08}}})
    _write(r / "bench" / "retrieval_bookcrossing.json", {"dataset": "bookcrossing", "gcn_seconds": 2.0,
                                                         "llm_seconds": 50.0})
    _write(r / "bench" / "early_exit.json", {
        "dataset": "bookcrossing", "variant": "gcn", "auc_full": 0.65, "auc_exit": 0.66,
        "mean_exit_layer": 21.0, "n_layers": 30, "flops_ratio": 0.7, "throughput_ratio": 1.25,
        "compaction_efficiency": 0.875,
        "sweeps": {"tau": [{"tau": 0.05, "auc": 0.63, "samples_per_s_estimated": 1.5},
                           {"tau": 0.01, "auc": 0.66, "samples_per_s_estimated": 1.1}]}})
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
    assert _row(text, "bookcrossing", "Average of layers") == "| bookcrossing | Average of layers | 65.00 | 9.12 | 72.51 |"
    assert _row(text, "bookcrossing", "Last layer") == "| bookcrossing | Last layer | 64.00 | 8.00 | 69.45 |"
    assert "the average embedding gives the higher AUC in our run (65.00 vs 64.00)" in text
    lines = text.splitlines()
    assert "| bookcrossing | w/o | w/o | 60.00 | 10.00 | 70.74 (15.77) |" in lines
    assert "| bookcrossing | w/ | w/ | 66.00 | 5.00 | 73.28 (5.59) |" in lines   # 4.0 samples/s x 0.875 / 0.7
    assert "| bookcrossing | w/o | w/ | not run | not run | 53.17 (17.85) |" in lines
    assert ("bookcrossing, gcn scorer: samples/s estimated as its eval rate x the bench's compaction "
            "efficiency 0.88 / the FLOPs ratio 0.70 of its early-exit run") in text
    assert ("bookcrossing, w/ retriever: mean exit layer 21.0 of 30, FLOPs ratio 0.70, AUC without exit "
            "65.00, τ=0.01 m=1 chosen on the valid split") in text
    assert "Retriever w/" not in text   # Table 4's shared cells are compared once, in Table 2
    assert "throughput on bookcrossing by x1.25 in our run (paper on BookCrossing: x1.20)" in text
    # Figures: 2 and 3 drawn from the data, 4 and 5 not run
    assert "| bookcrossing | 2.00 | 50.00 | 25.0x |" in text
    assert (reports / "figures" / "fig2_retrieval_speedup.png").stat().st_size > 1000
    assert (reports / "figures" / "fig3_tau_bookcrossing.png").stat().st_size > 1000
    assert "| threshold τ | AUC | samples/s (estimated) |" in text
    assert "| 0.01 | 66.00 | 1.10 |" in text and "no `sweeps.window`" in text and "no `sweeps.k`" in text
    assert "Seeds (bookcrossing): baselines [0, 1, 2]; LLM evaluation subset 42" in text


def test_no_inputs_means_not_run_everywhere(tmp_path):
    text = build_report(read_inputs(tmp_path, ["bookcrossing"]), ENV, tmp_path / "out")
    table2 = text.split("## Table 2")[1].split("## Table 3")[0]
    ours = [line.split("|")[3].strip() for line in table2.splitlines() if line.startswith("| ") and "Category" not in line]
    assert ours and set(ours) == {"not run"}
    assert "nothing to compare yet" in text and not (tmp_path / "out" / "figures").exists()


def _in_lake(lake: Path, dataset: str, *variants: str) -> None:
    """Prompts partitions and a scorer version of each variant, as the jobs leave them."""
    for v in variants:
        (lake / dataset / "prompts" / f"variant={v}").mkdir(parents=True)
        _write(lake / dataset / "_models" / "scorer" / v / "v1" / "meta.json",
               {"created_at": "2026-11-27", "model_version": "v1"})


def test_plan_trains_only_what_is_missing(tmp_path, reports):
    lake = tmp_path / "lake"
    (lake / "bookcrossing" / "samples" / "_delta_log").mkdir(parents=True)
    _in_lake(lake, "bookcrossing", "none", "gcn", "gcn_last")
    chains = plan(reports, str(lake), ["bookcrossing", "movielens100k"], {"movielens100k": "/raw/ml"}, "all")
    bx, ml = ([" ".join(c[2:]) for c in chain] for chain in chains)
    # bookcrossing has samples, baselines, the none/gcn/gcn_last runs, retrieval quality and
    # time, and the gcn early exit already: the llm run and the none early exit are missing
    assert bx == [
        f"jobs.train_retriever --dataset bookcrossing --lake {lake} --retriever llm",
        f"jobs.build_prompts --dataset bookcrossing --lake {lake} --variant llm",
        f"jobs.train_scorer --dataset bookcrossing --lake {lake} --variant llm",
        f"jobs.evaluate --dataset bookcrossing --lake {lake} --variants llm --no-zero-shot "
        f"--set evaluation.reports_dir={reports / 'eval'}",
        f"jobs.train_exit_heads --dataset bookcrossing --lake {lake} --variant none",
        f"jobs.bench_early_exit --lake {lake} --datasets bookcrossing --variants none --out {reports / 'bench'}",
        # gcn's early-exit run is there; none's follows its new heads
        f"jobs.evaluate_early_exit --dataset bookcrossing --lake {lake} --variants none "
        f"--set evaluation.reports_dir={reports / 'eval'}",
        # no learning curve in reports/bench/tuning.json yet
        f"jobs.bench_tuning --dataset bookcrossing --lake {lake} --variant gcn --sizes 256,1000,4000,all "
        f"--out {reports / 'bench'}",
    ]
    assert ml[0].startswith("jobs.ingest") and "--raw /raw/ml" in ml[0]
    assert ml[1].startswith("jobs.train_baselines") and f"baselines.reports_dir={reports / 'eval'}" in ml[1]
    assert [c.split()[0] for c in ml[2:]] == ["jobs.train_retriever"] * 3 + ["jobs.build_prompts"] * 4 + [
        "jobs.train_scorer"] * 4 + ["jobs.evaluate"] + ["jobs.train_exit_heads"] * 2 + [
        "jobs.bench_early_exit", "jobs.evaluate_early_exit", "jobs.bench_tuning", "jobs.evaluate_retriever",
        "jobs.bench_retrieval"]
    # a run in the eval file whose prompts or scorer are not in this lake is redone (for
    # none also the zero-shot run, which scores the none prompts)
    (lake / "bookcrossing" / "prompts" / "variant=none").rmdir()
    bx = [" ".join(c[2:]) for c in plan(reports, str(lake), ["bookcrossing"], {}, "all")[0]]
    for job in ("build_prompts", "train_scorer", "train_exit_heads"):
        assert f"jobs.{job} --dataset bookcrossing --lake {lake} --variant none" in bx
    assert any(c.startswith("jobs.evaluate") and "--variants none,llm --zero-shot " in c for c in bx)
    only = plan(reports, str(lake), ["movielens100k"], {"movielens100k": "/raw/ml"}, "baselines")
    assert [c[2] for c in only[0]] == ["jobs.ingest", "jobs.train_baselines"]
    assert plan(reports, str(lake), ["movielens100k"], {}, "none") == []


def test_a_test_split_without_negatives_gets_no_llm_runs(tmp_path, reports):
    """amazon All_Beauty's test split has 1 negative: the LLM chain is skipped, and said so."""
    import pyarrow as pa
    from deltalake import write_deltalake

    from optirag.reporting.missing import MIN_TEST_NEGATIVES, llm_skip_reason

    lake = tmp_path / "lake"
    labels = [1] * 40 + [0] * (MIN_TEST_NEGATIVES - 1)
    write_deltalake(str(lake / "amazon" / "samples"), pa.table({
        "split": ["test"] * len(labels) + ["train"] * 50, "label": pa.array(labels + [0] * 50, pa.int32())}))
    reason = llm_skip_reason(str(lake), "amazon")
    assert reason == f"skipped: {MIN_TEST_NEGATIVES - 1} test negatives"
    chains = plan(reports, str(lake), ["amazon"], {}, "all")
    assert [c[2] for c in chains[0]] == ["jobs.train_baselines"]   # and nothing of the LLM
    _write(reports / "eval" / "baselines_amazon.json", {"models": {
        "deepfm": {"auc_mean": 0.98, "auc_std": 0.0, "seeds": {"0": {"auc": 0.98}}},
        "din": {"auc_mean": 0.99, "auc_std": 0.0, "seeds": {"0": {"auc": 0.99}}}}})
    inputs = read_inputs(reports, ["amazon"])
    inputs.llm_skipped = {"amazon": reason}
    text = build_report(inputs, ENV, reports)
    assert f"| Few-shot | GCN-retriever | {reason} | 94.72 |  |" in text   # no LLM run: few-shot label
    assert f"| amazon | w/ | w/ | {reason} | {reason} | 96.37 (4.96) |" in text
    # full-shot baselines are still reported, their difference to the paper flagged
    assert ("- DeepFM on amazon: ours 98.00 vs the paper's 70.05 on Beauty (+27.95; not comparable: "
            f"{MIN_TEST_NEGATIVES - 1} test negatives, too few for an AUC).") in text
    assert "Best full-shot baseline on amazon" not in text
    # one more negative and the dataset is scored
    write_deltalake(str(lake / "amazon" / "samples"), pa.table({"split": ["test"], "label": pa.array([0], pa.int32())}),
                    mode="append")
    assert llm_skip_reason(str(lake), "amazon") is None


def test_report_jobs_log_keeps_every_run(tmp_path, reports):
    from optirag.reporting.jobs_log import JobsLog, read_jobs

    first, idle = JobsLog(reports, "/lake", ["movielens100k"]), JobsLog(reports, "/lake", ["movielens100k"])
    first.run["started_at"] = "2026-11-27T10:00:00Z"
    done = [{"command": "python -m jobs.ingest", "seconds": 1.0, "rc": 0}]
    first.record(done)                        # after each job: a killed run keeps what it did
    done.append({"command": "python -m jobs.train_baselines", "seconds": 60.0, "rc": 0})
    first.record(done)                        # the same entry, rewritten
    idle.record([])                           # nothing ran: nothing logged
    JobsLog(reports, "/lake", ["bookcrossing"]).record(
        [{"command": "python -m jobs.evaluate", "seconds": 120.0, "rc": 1}])
    runs = read_jobs(reports)
    assert [r["datasets"] for r in runs] == [["movielens100k"], ["bookcrossing"]]
    assert [len(r["jobs"]) for r in runs] == [2, 1] and runs[0]["total_seconds"] == 61.0
    text = build_report(read_inputs(reports, ["bookcrossing"]), ENV, reports, runs)
    assert "## Time to regenerate" in text and "| `python -m jobs.evaluate` | 120 | 1 |" in text
    assert "(lake `/lake`): 2 jobs, 1.0 min in all." in text and "(lake `/lake`): 1 job, 2.0 min" in text
    assert "- Lake `/lake`: 2 runs, 3 jobs, 3.0 min in all." in text


def test_auc_standard_error_says_how_big_a_gap_is_chance(reports):
    from optirag.reporting import numbers as N

    run = {"metrics": {"test": {"auc": 0.5, "n": 150, "positive_rate": 0.5}}}
    _write(reports / "eval" / "movielens100k.json", {"runs": {"gcn": run, "gcn_last": {
        "metrics": {"test": {"auc": 0.53, "n": 150, "positive_rate": 0.5}}}}})
    inputs = read_inputs(reports, ["movielens100k"])
    # Hanley-McNeil at A = 0.5, 75 positives and 75 negatives: sqrt(12.583 / 5625) = 4.73 points
    assert N.auc_standard_error(inputs, "movielens100k", "gcn") == pytest.approx(4.73, abs=0.01)
    assert N.auc_standard_error(inputs, "movielens100k", "none") is None
    text = build_report(inputs, ENV, reports)
    assert "LLM rows: 150 test samples each; the standard error of one such AUC is about 4.7 points" in text
    assert ("On movielens100k the last-layer embedding gives the higher AUC in our run (50.00 vs 53.00; "
            "the gap, 3.00 points, is within two standard errors") in text


def _model(folder: Path, **meta) -> None:
    """A model version folder as the registry reads it (meta.json only)."""
    _write(folder / "meta.json", {"created_at": "2026-11-27", "model_version": folder.name, **meta})


def test_plan_adds_seed_replicas_and_redoes_them_with_their_run(tmp_path, reports):
    lake = tmp_path / "lake"
    models = lake / "bookcrossing" / "_models"
    (lake / "bookcrossing" / "samples" / "_delta_log").mkdir(parents=True)
    _in_lake(lake, "bookcrossing", "none", "llm", "gcn", "gcn_last")
    doc = json.loads((reports / "eval" / "bookcrossing.json").read_text())
    doc["runs"]["llm"] = {"metrics": {"test": {"auc": 0.6}}}
    doc["runs"]["none+ee"] = {"metrics": {"test": {"auc": 0.6}}}
    done = {"metrics": {"test": {"auc": 0.6}}}
    for v in ("none", "llm", "gcn", "gcn_last"):   # seed 43 done for all, in the file and the lake
        doc["runs"][f"{v}/seed=43"] = {**done, "model_version": f"{v}-43"}
        _model(models / "scorer_seeds" / v / "seed=43" / f"{v}-43")
    for v in ("gcn", "none"):                       # its exit heads and early-exit runs too
        doc["runs"][f"{v}+ee/seed=43"] = {**done, "model_version": f"{v}-43"}
        _model(models / "exit_heads_seeds" / v / "seed=43" / "h43", model_version=f"{v}-43")
    _write(reports / "eval" / "bookcrossing.json", doc)
    _write(reports / "bench" / "early_exit.json", {"dataset": "bookcrossing", "variant": "gcn", "auc_exit": 0.6,
                                                   "variants": {"none": {"auc_exit": 0.6}}})
    _write(reports / "bench" / "tuning.json", {"datasets": {"bookcrossing": {"variants": {"gcn": {"curve": []}}}}})

    def jobs(n_seeds):
        chains = plan(reports, str(lake), ["bookcrossing"], {}, "all", n_seeds)
        return [" ".join(c[2:]) for chain in chains for c in chain]

    def job(name, variants, seed, *more):
        flag = "--variant" if "," not in variants and name.startswith("train") else "--variants"
        return " ".join([f"jobs.{name} --dataset bookcrossing --lake {lake} {flag} {variants} --seed {seed}", *more])

    to_eval = f"--set evaluation.reports_dir={reports / 'eval'}"
    assert jobs(1) == jobs(2) == []   # everything there, seed 43 included
    # 3 seeds: the config's 42, then 43 (done) and 44 (missing for every run)
    seed44 = [job("train_exit_heads", "gcn", 44), job("train_exit_heads", "none", 44),
              job("evaluate_early_exit", "gcn,none", 44, to_eval)]
    assert jobs(3) == [job("train_scorer", v, 44) for v in ("none", "llm", "gcn", "gcn_last")] + [
        job("evaluate", "none,llm,gcn,gcn_last", 44, "--no-zero-shot", to_eval)] + seed44
    # a killed run resumes: seed 44's scorers are tuned (on the same data and neighbours as
    # their production scorers), only their evaluation and heads are missing
    for v in ("none", "llm", "gcn", "gcn_last"):
        _model(models / "scorer_seeds" / v / "seed=44" / f"{v}-44")
    assert jobs(3) == [job("evaluate", "none,llm,gcn,gcn_last", 44, "--no-zero-shot", to_eval)] + seed44

    # an eval run that scored other prompts (here: other neighbours) than its production run
    # is re-evaluated; its scorer, tuned on today's prompts, is kept
    doc["runs"]["llm/seed=43"]["retriever_version"] = "older"
    _write(reports / "eval" / "bookcrossing.json", doc)
    assert jobs(2) == [job("evaluate", "llm", 43, "--no-zero-shot", to_eval)]
    doc["runs"]["llm/seed=43"].pop("retriever_version")
    _write(reports / "eval" / "bookcrossing.json", doc)
    # a replica tuned on other neighbours than its production scorer is retuned, and its
    # heads and early-exit run follow; heads made for another scorer are retrained
    _model(models / "scorer_seeds" / "gcn" / "seed=43" / "gcn-43", retriever_version="old")
    _model(models / "exit_heads_seeds" / "none" / "seed=43" / "h43", model_version="none-other")
    assert jobs(2) == [job("train_scorer", "gcn", 43), job("evaluate", "gcn", 43, "--no-zero-shot", to_eval),
                       job("train_exit_heads", "gcn", 43), job("train_exit_heads", "none", 43),
                       job("evaluate_early_exit", "gcn,none", 43, to_eval)]
    # new gcn prompts (gcn redone): its seed-43 replica no longer matches and is redone too
    _model(models / "scorer_seeds" / "gcn" / "seed=43" / "gcn-43")
    _model(models / "exit_heads_seeds" / "none" / "seed=43" / "h43", model_version="none-43")
    assert jobs(2) == []
    (lake / "bookcrossing" / "prompts" / "variant=gcn").rmdir()
    redo = jobs(2)
    assert job("train_scorer", "gcn", 43) in redo and job("train_exit_heads", "gcn", 43) in redo
    assert job("train_scorer", "none", 43) not in redo


def test_llm_rows_are_mean_and_std_over_tuning_seeds(reports):
    from optirag.reporting import numbers as N

    def run(auc, retriever="r1", seed=None):
        return {"metrics": {"test": {"auc": auc}}, "retriever_version": retriever, "tuning_seed": seed,
                "mean_prompt_tokens": 190.0}

    _write(reports / "eval" / "bookcrossing.json", {"runs": {
        "gcn": run(0.60, seed=42), "gcn/seed=43": run(0.62, seed=43), "gcn/seed=44": run(0.67, seed=44),
        "gcn_last": run(0.64), "gcn_last/seed=43": run(0.70, retriever="old"),   # other neighbours: left out
        "none/seed=43": run(0.55),                                            # no production run: no row
        "gcn+ee": run(0.61), "gcn+ee/seed=43": run(0.65)}})                   # early exit per seed
    inputs = read_inputs(reports, ["bookcrossing"])
    gcn = N.llm_auc(inputs, "bookcrossing", "gcn")
    assert (gcn.mean, gcn.n) == (pytest.approx(63.0), 3) and gcn.std == pytest.approx(2.944, abs=1e-3)
    assert N.llm_auc(inputs, "bookcrossing", "gcn_last") == N.Value(64.0, None, 1)
    assert N.llm_auc(inputs, "bookcrossing", "none") is None
    text = build_report(inputs, ENV, reports)
    assert "| Few-shot | GCN-retriever | 63.00 ± 2.94 (n=3) | 72.51 | -9.51 |" in text
    assert "| bookcrossing | w/ | w/o | 63.00 ± 2.94 (n=3) |" in text
    assert "| Few-shot | GCN-earlyexit | 63.00 ± 2.00 (n=2) | 73.28 | -10.28 |" in text
    assert "| bookcrossing | w/ | w/ | 63.00 ± 2.00 (n=2) |" in text
    assert "LLM tuning model.tuning.seed + replicas [43, 44]" in text


def test_report_job_builds_from_the_files_alone(tmp_path, reports):
    """jobs.report --train none as `make report REPORT_TRAIN=none` runs it: no job, the skip
    reason read from the lake, a bad --seeds refused."""
    import subprocess
    import sys

    import pyarrow as pa
    from deltalake import write_deltalake

    repo = Path(__file__).resolve().parents[2]
    lake = tmp_path / "lake"
    write_deltalake(str(lake / "amazon" / "samples"), pa.table({
        "split": ["test"] * 30, "label": pa.array([1] * 29 + [0], pa.int32())}))
    cmd = [sys.executable, "-m", "jobs.report", "--lake", str(lake), "--reports", str(reports),
           "--datasets", "bookcrossing,amazon", "--train", "none"]
    bad = subprocess.run([*cmd, "--seeds", "0"], cwd=repo, capture_output=True, text=True)
    assert bad.returncode == 2 and "--seeds must be at least 1" in bad.stderr
    done = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    text = (reports / "REPORT.md").read_text()
    assert "| Few-shot | GCN-retriever | skipped: 1 test negative | 94.72 |  |" in text
    assert "| Few-shot | GCN-retriever | 65.00 | 72.51 |" in text     # bookcrossing, from its file
    assert "amazon: manifest unreadable" in text and "## Time to regenerate" not in text


def test_intervals_paired_differences_and_learning_curve(reports):
    eval_file = reports / "eval" / "bookcrossing.json"
    doc = json.loads(eval_file.read_text())
    doc["runs"]["gcn"].update(train_examples=7747, metrics={"test": {"auc": 0.70, "auc_ci95": [0.67, 0.73]}})
    doc["comparisons"] = {"gcn vs none": {"test": {"n": 969, "diff": 0.012, "ci95": [-0.003, 0.027],
                                                   "excludes_zero": False}},
                          "gcn vs baseline:din": {"test": {"n": 969, "diff": 0.021, "ci95": [0.004, 0.038],
                                                           "excludes_zero": True}}}
    _write(eval_file, doc)
    base = json.loads((reports / "eval" / "baselines_bookcrossing.json").read_text())
    base["split_sizes"]["train"] = 7747
    _write(reports / "eval" / "baselines_bookcrossing.json", base)
    _write(reports / "bench" / "tuning.json", {"datasets": {"bookcrossing": {"variants": {"gcn": {
        "dtype": "bfloat16", "torch_threads": 2, "mean_prompt_tokens": 146.0, "curve": [
            {"n": 256, "test_auc": 0.61, "test_auc_ci95": [0.57, 0.65], "best_epoch": 2,
             "epochs": [{"examples_per_s": 4.0}, {"examples_per_s": 4.2}], "cache_seconds": 30.0,
             "train_seconds": 130.0, "eval_seconds": 100.0, "source": "bench"}]}}}}})
    text = build_report(read_inputs(reports, ["bookcrossing"]), ENV, reports)
    bc = text.split("### bookcrossing")[1].split("## Table 3")[0]
    assert _row(bc, "Full-shot", "GCN-retriever") == "| Full-shot | GCN-retriever | 70.00 [67.0, 73.0] | 72.51 | -2.51 |"
    assert "LLM rows tuned on 7,747 training examples (100% of the train split" in bc
    assert ("- GCN-retriever − TALLRec-style: +1.20 points, paired 95% bootstrap interval [-0.30, +2.70] "
            "on the same 969 test rows (includes 0: not a significant difference).") in bc
    assert "- GCN-retriever − DIN: +2.10 points, paired 95% bootstrap interval [+0.40, +3.80] " in bc
    assert "(excludes 0)." in bc and "Hanley-McNeil" not in bc
    curve = text.split("## Scorer tuning: learning curve")[1].split("## Figure 2")[0]
    assert "### bookcrossing, gcn prompts (bfloat16, 2 threads, 146.0 tokens per prompt)" in curve
    assert "| 256 | 61.00 [57.0, 65.0] | 2 (best 2) | 30.00 | 130.00 | 4.10 | 100.00 | bench |" in curve


def test_the_environment_section_reads_this_machine_and_says_which_dtype_serves(tmp_path):
    from optirag.environment import cpu_has_native_bf16, environment

    env = environment()
    assert env["native_bf16"] is cpu_has_native_bf16()
    text = build_report(read_inputs(tmp_path, ["bookcrossing"]), env, tmp_path / "out")
    section = text[text.index("## Environment"):]
    assert f"- CPU: {env['cpu']} ({env['cores']} cores)" in section
    assert ("serves bf16" if env["native_bf16"] else "serves fp32") in section
    assert f"torch {env['packages']['torch']}" in section


def test_a_bench_measured_on_another_scorer_is_not_combined_with_the_eval(reports):
    eval_doc = json.loads((reports / "eval" / "bookcrossing.json").read_text())
    for run in eval_doc["runs"].values():
        run["model_version"] = "smollm2-lora-aaaaaaaaaaaa"
    _write(reports / "eval" / "bookcrossing.json", eval_doc)
    bench = json.loads((reports / "bench" / "early_exit.json").read_text())
    for scorer, combined in (("smollm2-lora-aaaaaaaaaaaa", True), ("smollm2-lora-bbbbbbbbbbbb", False)):
        _write(reports / "bench" / "early_exit.json", {**bench, "model_version": scorer})
        text = build_report(read_inputs(reports, ["bookcrossing"]), ENV, reports / "out")
        speed = "5.00" if combined else "not run"   # 4.0 samples/s x 0.875 / 0.7, or refused
        assert f"| bookcrossing | w/ | w/ | 66.00 | {speed} | 73.28 (5.59) |" in text.splitlines()
        assert ("| 0.01 | 66.00 | 1.10 |" in text) == combined
        refusal = ("reports/bench/early_exit.json (bookcrossing) was measured on lora-bbbbbbbbbbbb, not on "
                   "the scorers of reports/eval/bookcrossing.json (lora-aaaaaaaaaaaa): not combined")
        assert (refusal in text) != combined
