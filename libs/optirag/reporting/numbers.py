"""Our numbers per report cell, pulled from the stage JSON files (None where not run)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optirag.evaluation.replicas import exit_run_key, runs_of, same_prompts
from optirag.reporting.inputs import ReportInputs, for_dataset, pick


@dataclass(frozen=True)
class Value:
    """An AUC in points (x100) with its spread over seeds (n = number of seeds) or, for a
    single run, its 95% bootstrap interval over the test rows."""
    mean: float
    std: float | None = None
    n: int = 1
    ci: tuple[float, float] | None = None


def points(x: float | None) -> float | None:
    """AUC in points; stage files write [0, 1], a value above 1 is already in points."""
    if x is None:
        return None
    return float(x) * 100 if abs(float(x)) <= 1 else float(x)


BASELINES = (("DeepFM", "deepfm"), ("DIN", "din"), ("SIM", "sim"), ("GRU4Rec", "gru4rec"))
# Table 2's LLM rows: (paper name, jobs.evaluate run key)
LLM_RUNS = (("TALLRec", "none"), ("LLM-retriever", "llm"), ("GCN-retriever", "gcn"))


def baseline_auc(inputs: ReportInputs, dataset: str, model: str) -> Value | None:
    m = pick(inputs.baselines.get(dataset), f"models.{model}")
    if not m or m.get("auc_mean") is None:
        return None
    n = len([s for s in (m.get("seeds") or {}).values() if s.get("auc") is not None]) or 1
    return Value(points(m["auc_mean"]), points(m.get("auc_std")), n)


def llm_run(inputs: ReportInputs, dataset: str, run: str) -> dict | None:
    return pick(inputs.llm_eval.get(dataset), f"runs.{run}")


def llm_auc(inputs: ReportInputs, dataset: str, run: str) -> Value | None:
    """Test AUC of a run, mean ± std (population, as the baselines) over the production run
    and its seed replicas that scored the same prompts."""
    main = llm_run(inputs, dataset, run)
    if points(pick(main, "metrics.test.auc")) is None:
        return None
    runs = runs_of(pick(inputs.llm_eval.get(dataset), "runs") or {}, run)
    aucs = [points(r["metrics"]["test"]["auc"]) for r in runs.values()
            if pick(r, "metrics.test.auc") is not None and same_prompts(main, r)]
    ci = pick(main, "metrics.test.auc_ci95")
    return Value(float(np.mean(aucs)), float(np.std(aucs)) if len(aucs) > 1 else None, len(aucs),
                 (points(ci[0]), points(ci[1])) if ci and len(aucs) == 1 else None)


def train_share(inputs: ReportInputs, dataset: str, run: str) -> float | None:
    """The run's training examples as a share of the train split (baselines' split size)."""
    n = pick(llm_run(inputs, dataset, run), "train_examples")
    total = pick(inputs.baselines.get(dataset), "split_sizes.train")
    return n / total if n and total else None


# Paired differences Table 2 lists (eval file `comparisons`): (label, key)
PAIRS = (("GCN-retriever − TALLRec-style", "gcn vs none"), ("GCN-retriever − LLM-retriever", "gcn vs llm"),
         ("GCN-retriever − DIN", "gcn vs baseline:din"), ("TALLRec-style − DIN", "none vs baseline:din"),
         ("GCN-earlyexit − GCN-retriever", "gcn+ee vs gcn"), ("TALLRec-style − zero-shot", "none vs zero_shot/none"))


def paired_differences(inputs: ReportInputs, dataset: str) -> list[tuple[str, dict]]:
    """(label, {n, diff, ci95, excludes_zero} on test) of the comparisons the eval file holds."""
    comparisons = pick(inputs.llm_eval.get(dataset), "comparisons") or {}
    return [(label, comparisons[key]["test"]) for label, key in PAIRS
            if pick(comparisons, f"{key}.test.diff") is not None]


def auc_standard_error(inputs: ReportInputs, dataset: str, run: str) -> float | None:
    """Hanley & McNeil (1982) standard error of a run's test AUC, in points: how far apart two
    AUCs on this many test samples can be by chance."""
    r = llm_run(inputs, dataset, run)
    auc, n, pos = (pick(r, f"metrics.test.{k}") for k in ("auc", "n", "positive_rate"))
    if auc is None or not n or pos is None:
        return None
    n_pos, n_neg = round(n * pos), n - round(n * pos)
    if n_pos < 1 or n_neg < 1:
        return None
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    return 100 * var ** 0.5


def llm_speed(inputs: ReportInputs, dataset: str, run: str) -> float | None:
    return pick(llm_run(inputs, dataset, run), "prompts_per_second", "samples_per_second")


def early_exit(inputs: ReportInputs, dataset: str, variant: str = "gcn") -> dict | None:
    """The early-exit result for one prompt variant: datasets.<d> is the gcn run, other
    variants sit under datasets.<d>.variants.<v> (jobs.bench_early_exit)."""
    ee = for_dataset(inputs.early_exit, dataset)
    if not ee:
        return None
    if ee.get("variant", "gcn") == variant and "auc_exit" in ee:
        return ee
    return (ee.get("variants") or {}).get(variant)


def early_exit_run(inputs: ReportInputs, dataset: str, variant: str = "gcn") -> dict | None:
    """The variant's scorer with early exit on the eval rows (jobs.evaluate_early_exit)."""
    return llm_run(inputs, dataset, exit_run_key(variant))


def early_exit_auc(inputs: ReportInputs, dataset: str, variant: str = "gcn") -> Value | None:
    """Test AUC with early exit, mean ± std over the production scorer and its seed replicas
    (each with its own heads and its own rule chosen on valid), on the full-depth rows."""
    return llm_auc(inputs, dataset, exit_run_key(variant))


def bench_scorer_mismatch(inputs: ReportInputs, dataset: str) -> str | None:
    """Why the early-exit bench must not be combined with the eval of `dataset`: it names a
    scorer (lora-<hex>) that none of the eval's runs used. None when they agree, or when
    either names none (nothing to compare)."""
    from optirag.reporting.versions import SCORER, of_json

    bench = of_json(for_dataset(inputs.early_exit, dataset) or {}).scorers
    runs = pick(inputs.llm_eval.get(dataset), "runs") or {}
    evaluated = {v for r in runs.values() if isinstance(r, dict)
                 for v in SCORER.findall(str(r.get("model_version", "")))}
    if not bench or not evaluated or bench <= evaluated:
        return None
    return (f"reports/bench/early_exit.json ({dataset}) was measured on {', '.join(sorted(bench - evaluated))}, "
            f"not on the scorers of reports/eval/{dataset}.json ({', '.join(sorted(evaluated))}): "
            "not combined; re-run `make bench-early-exit`")


def early_exit_speed(inputs: ReportInputs, dataset: str, variant: str) -> tuple[float | None, str]:
    """Samples/s with early exit, estimated: the scorer's measured eval rate x the bench's
    compaction efficiency (measured speed-up / ideal speed-up) / the run's test FLOPs ratio;
    the note says so. None (and the note says why) when the bench measured another scorer."""
    mismatch = bench_scorer_mismatch(inputs, dataset)
    if mismatch:
        return None, mismatch
    ratio = pick(early_exit_run(inputs, dataset, variant), "early_exit.test.flops_ratio")
    eff = pick(early_exit(inputs, dataset, variant), "compaction_efficiency")
    base = llm_speed(inputs, dataset, variant)
    if not ratio or eff is None or base is None:
        return None, ""
    return float(base) * float(eff) / float(ratio), (
        f"{dataset}, {variant} scorer: samples/s estimated as its eval rate x the bench's compaction "
        f"efficiency {float(eff):.2f} / the FLOPs ratio {float(ratio):.2f} of its early-exit run")


# Table 3: the scorer tuned on prompts retrieved with each GCN embedding (jobs.evaluate runs)
LAYER_RUNS = (("average", "gcn"), ("last_layer", "gcn_last"))


def retrieval_layers(inputs: ReportInputs, dataset: str) -> dict[str, Value | None]:
    return {layer: llm_auc(inputs, dataset, run) for layer, run in LAYER_RUNS}


def retrieval_hit_rate(inputs: ReportInputs, dataset: str, layer: str) -> float | None:
    """Held-out hit rate of the k neighbours' items (jobs.evaluate_retriever), in %."""
    rate = pick(inputs.retrieval.get(dataset), f"layers.{layer}.hit_rate")
    return None if rate is None else 100 * float(rate)


def retrieval_seconds(inputs: ReportInputs, dataset: str) -> dict[str, float | None]:
    b = inputs.bench_retrieval.get(dataset)
    return {r: pick(b, f"{r}.seconds", f"{r}_seconds", f"{r}.retrieval_seconds", f"retrievers.{r}.seconds")
            for r in ("gcn", "llm")}


# samples_per_s_estimated: the measured full-depth rate scaled by each point's FLOPs ratio
SPEED_KEYS = ("samples_per_s", "samples_per_s_estimated", "throughput", "rps", "throughput_ratio")


def sweep(inputs: ReportInputs, dataset: str, param: str) -> list[dict[str, float]]:
    """[{x, auc, speed, speed_kind}] of one early-exit sweep (tau, window or k), sorted by x;
    none when the bench measured another scorer than the eval's (bench_scorer_mismatch)."""
    if bench_scorer_mismatch(inputs, dataset):
        return []
    ee = for_dataset(inputs.early_exit, dataset)
    points_ = []
    for e in pick(ee, f"sweeps.{param}", f"variants.gcn.sweeps.{param}") or []:
        x = pick(e, param, "value", "x")
        if x is None:
            continue
        kind = next((k for k in SPEED_KEYS if e.get(k) is not None), None)
        points_.append({"x": float(x), "auc": points(pick(e, "auc", "auc_exit")),
                        "speed": e.get(kind) if kind else None, "speed_kind": kind})
    return sorted(points_, key=lambda p: p["x"])
