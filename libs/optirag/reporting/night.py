"""The night's page: what one nightly run scored, how fast, and whether its gate passed.

    score_summary.json (jobs.score, in the page's folder)      rows reused, seconds per stage
    scores[date], score_rejects[date]        row counts, exit layers, AUC of the eval rows
    scores[latest earlier scored date]       the score distribution to compare with
    <quality.reports_dir>/<dataset>-scores-<date>.json (jobs.check)   the gate's outcomes
      -> <lake>/<dataset>/_reports/nightly/<date>/  report.md + exit_layers.png + scores.png

The tables are read through delta-rs (optirag.orchestration.lake), only the columns the
page shows: no Spark. What is missing is said on the page ("gate not run", "no scores"),
never raised: the nightly DAG writes the page whatever the gate said (trigger rule
all_done), so a failed night gets one too. The folder lives in the lake, beside the tables
and the model store, so it travels with them.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from optirag.config import Config
from optirag.evaluation.metrics import ctr_metrics, write_report
from optirag.orchestration import lake
from optirag.quality import gate_report_path
from optirag.tables import SCORE_REJECTS, SCORES, arrow_schema

SUMMARY_FILE = "score_summary.json"
PAGE_FILE = "report.md"
EXIT_FIGURE, SCORES_FIGURE = "exit_layers.png", "scores.png"
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def night_dir(cfg: Config, score_date: str) -> Path:
    return Path(cfg.dataset_lake()) / "_reports" / "nightly" / score_date


def write_score_summary(cfg: Config, summary: dict[str, Any]) -> Path:
    """jobs.score's summary, atomically: a page drawn meanwhile reads the old or the new one."""
    return write_report(night_dir(cfg, summary["score_date"]) / SUMMARY_FILE, summary)


def previous_scored_date(dataset_lake: str, score_date: str) -> str | None:
    """The latest date before `score_date` with rows in `scores` (from the Delta log)."""
    earlier = [d for d in lake.partition_values(SCORES, dataset_lake, "score_date") if d < score_date]
    return earlier[-1] if earlier else None


def write_night_report(cfg: Config, score_date: str) -> Path:
    """Read the night's inputs, write report.md and its figures into night_dir; its path."""
    from optirag.reporting import figures  # matplotlib: only when a page is drawn

    folder = night_dir(cfg, score_date)
    folder.mkdir(parents=True, exist_ok=True)
    dataset_lake = cfg.dataset_lake()
    summary = _json(folder / SUMMARY_FILE)
    scores = _date(SCORES, dataset_lake, score_date, ["score", "exit_layer", "label", "model_version"])
    rejects = _date(SCORE_REJECTS, dataset_lake, score_date, ["reason"])
    previous = previous_scored_date(dataset_lake, score_date)
    before = _date(SCORES, dataset_lake, previous, ["score"]) if previous else None
    gate_path = Path(gate_report_path(cfg, f"scores-{score_date}"))

    lines = [f"# Night of {score_date}: {cfg.dataset.name}", "", *_versions(scores, summary), ""]
    lines += _rows(score_date, scores, rejects, summary)
    lines += _speed(summary, folder / SUMMARY_FILE)
    if scores.num_rows:
        exits = {int(k): int(n) for k, n in zip(*np.unique(scores["exit_layer"].to_numpy(), return_counts=True))}
        lines += _exit_layers(exits)
        figures.exit_layer_histogram(exits, folder / EXIT_FIGURE)
        dates = {score_date: scores["score"].to_numpy()}
        if before is not None:
            dates[previous] = before["score"].to_numpy()
        lines += _distributions(dates, previous)
        figures.score_distributions(dates, folder / SCORES_FIGURE)
    else:   # a re-run of the page after the date lost its scores: no stale figures
        for name in (EXIT_FIGURE, SCORES_FIGURE):
            (folder / name).unlink(missing_ok=True)
    lines += _gate(gate_path, folder / SUMMARY_FILE)
    lines += _eval(scores)
    page = folder / PAGE_FILE
    page.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return page


# --- inputs ----------------------------------------------------------------------------

def _json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _date(table, dataset_lake: str, score_date: str, columns: list[str]) -> pa.Table:
    """The date's rows (only `columns`); no rows when the table does not exist yet."""
    rows = lake.read(table, dataset_lake, filters=[("score_date", "=", score_date)], columns=columns)
    if rows is None:
        schema = arrow_schema(table)
        rows = pa.Table.from_pylist([], schema=pa.schema([schema.field(c) for c in columns]))
    return rows


# --- sections: each returns its Markdown lines ---------------------------------------------

def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(str(c) for c in r) + " |" for r in rows), ""]


def _versions(scores: pa.Table, summary: dict | None) -> list[str]:
    models = sorted(set(scores["model_version"].to_pylist()))
    words = [f"scorer {', '.join(models) or 'none'}"]
    if summary:
        words.append(f"retriever {summary.get('retriever_version')} (variant {summary.get('variant')})")
        words.append(f"early exit {'on' if summary.get('early_exit') else 'off'}, "
                     f"shared prefix {'on' if summary.get('shared_prefix') else 'off'}")
    return ["Models: " + "; ".join(words) + "."]


def _rows(score_date: str, scores: pa.Table, rejects: pa.Table, summary: dict | None) -> list[str]:
    lines = ["## Rows", ""]
    if not scores.num_rows and not rejects.num_rows:
        return lines + [f"No scores for {score_date}: the score job did not run or failed "
                        "(see its task log).", ""]
    # `reused` rows were copied from an earlier night into this date's partition
    reused = int((summary or {}).get("reused") or 0)
    reasons = sorted(zip(*np.unique(rejects["reason"].to_numpy(zero_copy_only=False), return_counts=True)))
    why = ", ".join(f"{r}: {n}" for r, n in reasons)
    lines += _table(["rows", "count"], [["scored", f"{scores.num_rows - reused:,}"], ["reused", f"{reused:,}"],
                                        ["rejected", f"{rejects.num_rows:,}" + (f" ({why})" if why else "")],
                                        ["candidates", f"{scores.num_rows + rejects.num_rows:,}"]])
    return lines + [f"scored + reused = the rows of scores[{score_date}]; rejected = those of "
                    f"score_rejects[{score_date}]; reused as the score job's summary says.", ""]


def _speed(summary: dict | None, path: Path) -> list[str]:
    lines = ["## Speed", ""]
    if summary is None:
        return lines + [f"No score summary (`{path}`): the score job did not finish.", ""]
    stages = summary.get("stages") or {"context": summary["context_seconds"],
                                       "scoring": summary["scoring_seconds"]}
    rows = summary["rows"]
    table = [[name, f"{s:,.1f}", f"{rows / s:,.1f}" if s > 0 else "-"]
             for name, s in [*stages.items(), ("wall", summary["wall_seconds"])]]
    return lines + _table(["stage", "seconds", "rows/s"], table) + [
        f"rows/s: the night's {rows:,} candidate rows over the stage's seconds.", ""]


def _exit_layers(exits: dict[int, int]) -> list[str]:
    total = sum(exits.values())
    mean = sum(k * n for k, n in exits.items()) / total
    return (["## Exit layers", ""]
            + _table(["exit layer", "rows", "share"],
                     [[k, f"{n:,}", f"{100 * n / total:.1f}%"] for k, n in sorted(exits.items())])
            + [f"Mean exit layer {mean:.2f}.", "", f"![rows per exit layer]({EXIT_FIGURE})", ""])


def _distributions(dates: dict[str, np.ndarray], previous: str | None) -> list[str]:
    head = ["## Scores against the previous scored date", ""]
    if previous is None:
        head += ["No earlier scored date in `scores`: nothing to compare with.", ""]
    rows = [[d, f"{len(v):,}", f"{v.mean():.4f}", *(f"{q:.4f}" for q in np.quantile(v, QUANTILES))]
            for d, v in dates.items()]
    quantiles = [f"p{round(100 * q)}" for q in QUANTILES]
    return head + _table(["date", "rows", "mean", *quantiles], rows) + [
        f"![score distributions]({SCORES_FIGURE})", ""]


def _gate(path: Path, summary: Path) -> list[str]:
    lines = ["## Quality gate", ""]
    report = _json(path)
    if report is None:
        return lines + [f"Gate not run: no `{path}`.", ""]
    outcomes = report["outcomes"]
    failing = [o for o in outcomes if not o["success"]]
    verdict = "PASSED" if report["success"] else "FAILED"
    lines.append(f"{verdict}: {len(outcomes) - len(failing)} of {len(outcomes)} expectations met "
                 f"({len(failing)} failing); `{path}`.")
    if summary.is_file() and path.stat().st_mtime < summary.stat().st_mtime:
        lines.append("That report is older than the score run's summary: it checked an earlier run.")
    lines.append("")
    for o in failing:
        args = ", ".join(f"{k}={v}" for k, v in o["kwargs"].items())
        seen = o["result"].get("observed_value", o["result"].get("unexpected_count"))
        lines.append(f"- FAIL {o['check']}.{o['expectation']}({args}): observed {seen}")
    return lines + ([""] if failing else [])


def _eval(scores: pa.Table) -> list[str]:
    lines = ["## Eval rows", ""]
    labelled = scores.filter(scores["label"].is_valid())
    if not labelled.num_rows:
        return lines + ["No eval rows: no scored row has a label.", ""]
    try:
        m = ctr_metrics(labelled["label"].to_numpy(), labelled["score"].to_numpy())
    except ValueError as e:   # scores outside [0, 1]: what the gate is there to catch
        return lines + [f"No AUC: {e} (see the quality gate).", ""]
    auc = "undefined (one class only)" if m["auc"] is None else f"{m['auc']:.4f}"
    if m["auc_ci95"]:
        auc += f", 95% bootstrap interval [{m['auc_ci95'][0]:.4f}, {m['auc_ci95'][1]:.4f}]"
    return lines + [f"{m['n']:,} rows with a label, {100 * m['positive_rate']:.1f}% positive: "
                    f"AUC {auc}; log loss {m['logloss']:.4f}.", ""]
