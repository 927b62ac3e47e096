"""Our numbers per report cell, pulled from the stage JSON files (None where not run)."""
from __future__ import annotations

from dataclasses import dataclass

from optirag.reporting.inputs import ReportInputs, for_dataset, pick


@dataclass(frozen=True)
class Value:
    """An AUC in points (x100) with its spread over seeds; n = number of seeds."""
    mean: float
    std: float | None = None
    n: int = 1


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
    auc = points(pick(llm_run(inputs, dataset, run), "metrics.test.auc"))
    return None if auc is None else Value(auc)


def llm_speed(inputs: ReportInputs, dataset: str, run: str) -> float | None:
    return pick(llm_run(inputs, dataset, run), "prompts_per_second", "samples_per_second")


def early_exit(inputs: ReportInputs, dataset: str, variant: str = "gcn") -> dict | None:
    """The early-exit result for one prompt variant (a file may hold `variants.<v>`)."""
    ee = for_dataset(inputs.early_exit, dataset)
    if not ee:
        return None
    if isinstance(ee.get("variants"), dict):
        return ee["variants"].get(variant)
    return ee if ee.get("variant", "gcn") == variant else None


def early_exit_auc(inputs: ReportInputs, dataset: str, variant: str = "gcn") -> Value | None:
    auc = points(pick(early_exit(inputs, dataset, variant), "auc_exit"))
    return None if auc is None else Value(auc)


def early_exit_speed(inputs: ReportInputs, dataset: str, variant: str, base_run: str) -> tuple[float | None, str]:
    """Samples/s with early exit: measured if the file has it, else the scorer's measured
    rate times the benchmark's throughput_ratio (said so in the note)."""
    ee = early_exit(inputs, dataset, variant)
    direct = pick(ee, "samples_per_s", "samples_per_second", "throughput_exit")
    if direct is not None:
        return float(direct), ""
    ratio, base = pick(ee, "throughput_ratio"), llm_speed(inputs, dataset, base_run)
    if ratio is not None and base is not None:
        return float(base) * float(ratio), (f"{dataset}: samples/s estimated as the scorer's eval rate x "
                                            f"throughput_ratio {float(ratio):.2f}")
    return None, ""


def retrieval_layers(inputs: ReportInputs, dataset: str) -> dict[str, float | None]:
    r = inputs.retrieval.get(dataset)
    return {
        "average": points(pick(r, "average.auc", "layer_average.auc", "runs.average.auc", "auc_average")),
        "last_layer": points(pick(r, "last_layer.auc", "last.auc", "runs.last_layer.auc", "auc_last_layer")),
    }


def retrieval_seconds(inputs: ReportInputs, dataset: str) -> dict[str, float | None]:
    b = for_dataset(inputs.bench_retrieval, dataset)
    return {r: pick(b, f"{r}.seconds", f"{r}_seconds", f"{r}.retrieval_seconds", f"retrievers.{r}.seconds")
            for r in ("gcn", "llm")}


SPEED_KEYS = ("samples_per_s", "throughput", "rps", "throughput_ratio")


def sweep(inputs: ReportInputs, dataset: str, param: str) -> list[dict[str, float]]:
    """[{x, auc, speed, speed_kind}] of one early-exit sweep (tau, window or k), sorted by x."""
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
