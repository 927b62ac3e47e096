"""Promote a newly trained scorer only if its valid AUC is not worse than the promoted one's.

Valid AUC comes from ``eval_scores`` (jobs.evaluate writes run_id ``<variant>/<version>``),
computed here from the stored scores and labels, so the decision never depends on a
report file's format. The candidate is the newest ``scorer/<variant>`` version; the exit
heads trained for it (``exit_heads/<variant>``, meta model_version) are promoted with it;
without such heads (while the variant has heads) it is not promoted.
"""
from __future__ import annotations

from optirag import registry
from optirag.config import Config
from optirag.evaluation.metrics import auc_or_none
from optirag.orchestration import lake
from optirag.orchestration.config import orchestration_config
from optirag.tables import EVAL_SCORES


class NotEvaluatedError(FileNotFoundError):
    """A version to compare has no valid scores; the message says what to run."""


def valid_auc(cfg: Config, variant: str, version: str) -> float:
    run_id = f"{variant}/{version}"
    rows = lake.read(EVAL_SCORES, cfg.dataset_lake(), columns=["label", "score"],
                     filters=[("run_id", "=", run_id), ("split", "=", "valid")])
    if rows is None or rows.num_rows == 0:
        raise NotEvaluatedError(f"no valid scores for {run_id} in eval_scores; run jobs.evaluate")
    auc = auc_or_none(rows["label"].to_pylist(), rows["score"].to_pylist())
    if auc is None:
        raise NotEvaluatedError(f"valid scores of {run_id} hold one class only: AUC undefined")
    return auc


def _heads_for(cfg: Config, variant: str, scorer_version: str) -> str | None:
    """Newest exit-heads version trained on this scorer version (None: no heads)."""
    kind = f"exit_heads/{variant}"
    found = [v for v in registry.versions(cfg, kind)
             if registry.read_meta(registry.version_dir(cfg, kind, v)).get("model_version") == scorer_version]
    return found[-1] if found else None


def promote_if_better(cfg: Config, variant: str | None = None) -> dict:
    ocfg = orchestration_config(cfg)
    variant = variant or ocfg.variant
    kind = f"scorer/{variant}"
    found = registry.versions(cfg, kind)
    if not found:
        raise registry.ModelNotFoundError(f"no {kind} version under {registry.kind_dir(cfg, kind)}; "
                                          "run jobs.train_scorer")
    new = found[-1]
    current = registry.promoted(cfg, kind)
    out = {"kind": kind, "candidate": new, "promoted_before": current and current["version"],
           "tolerance": ocfg.promote_tolerance}
    if current and current["version"] == new:
        return {**out, "promoted": False, "reason": f"{new} is already the promoted version"}
    out["candidate_valid_auc"] = new_auc = valid_auc(cfg, variant, new)
    if current:
        out["promoted_valid_auc"] = old_auc = valid_auc(cfg, variant, current["version"])
        if new_auc < old_auc - ocfg.promote_tolerance:
            return {**out, "promoted": False, "reason": (
                f"valid AUC {new_auc:.4f} of {new} is worse than {old_auc:.4f} of "
                f"{current['version']} by more than {ocfg.promote_tolerance}")}
    heads = _heads_for(cfg, variant, new)
    if heads is None and registry.versions(cfg, f"exit_heads/{variant}"):
        # Promoting the scorer alone would pair it with heads trained on another model.
        return {**out, "promoted": False,
                "reason": f"no exit_heads/{variant} version trained on {new}; run jobs.train_exit_heads"}
    registry.promote(cfg, kind, new, valid_auc=new_auc)
    if heads:
        registry.promote(cfg, f"exit_heads/{variant}", heads, valid_auc=new_auc, model_version=new)
    reason = "first promoted version" if not current else "valid AUC within tolerance or better"
    return {**out, "promoted": True, "exit_heads": heads, "reason": reason}
