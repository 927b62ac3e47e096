"""Paired comparisons between evaluation runs on the same rows (the eval file's
``comparisons``): AUC(a) - AUC(b) per split with its paired bootstrap interval.

    eval_scores (run_id -> sample_id, split, label, score) -> rows both runs scored
        -> optirag.evaluation.metrics.paired_auc_difference

A side is a run key of the eval file (``gcn``, ``none``, ``gcn+ee``, ``zero_shot/none``)
or ``baseline:<model>`` (every seed of a full-shot baseline in eval_scores; the difference
is then to the seeds' mean AUC, as Table 2 reports it). Pairs with a side not run yet are
left out.
"""
from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from optirag.config import Config
from optirag.evaluation.metrics import paired_auc_difference
from optirag.tables import EVAL_SCORES, read_table

BASELINE = "baseline:"


def _run_ids(side: str, runs: dict, present: set[str]) -> list[str]:
    if side.startswith(BASELINE):
        model = side[len(BASELINE):]
        return sorted(r for r in present if r.startswith(f"baseline/{model}/seed"))
    run_id = (runs.get(side) or {}).get("run_id")
    return [run_id] if run_id in present else []


def compare_runs(spark: SparkSession, cfg: Config, runs: dict, pairs: list[list[str]],
                 splits: list[str]) -> dict:
    """{"<a> vs <b>": {split: {n, diff, ci95, excludes_zero}}} for the pairs that can be made."""
    if not pairs:
        return {}
    scores = read_table(spark, EVAL_SCORES, cfg.dataset_lake())
    present = {r[0] for r in scores.select("run_id").distinct().collect()}
    sides = {side: _run_ids(side, runs, present) for pair in pairs for side in pair}
    wanted = sorted({r for ids in sides.values() for r in ids})
    if not wanted:
        return {}
    frame = (scores.where(F.col("run_id").isin(wanted) & F.col("split").isin(splits))
             .select("run_id", "sample_id", "split", "label", "score").toPandas())
    wide = frame.pivot_table(index=["split", "sample_id", "label"], columns="run_id",
                             values="score").reset_index()
    out = {}
    for a, b in pairs:
        if not sides[a] or not sides[b]:
            continue
        rows = wide.dropna(subset=sides[a] + sides[b])
        per_split = {}
        for split in splits:
            part = rows[rows["split"] == split]
            if len(part):
                per_split[split] = paired_auc_difference(
                    part["label"].to_numpy(), [part[r].to_numpy() for r in sides[a]],
                    [part[r].to_numpy() for r in sides[b]])
        if per_split:
            out[f"{a} vs {b}"] = per_split
    return out
