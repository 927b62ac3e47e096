"""Run :class:`~optirag.quality.suites.Check` lists through great-expectations and report."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

import great_expectations as gx

from optirag.quality.suites import Check

_SHOWN = ("observed_value", "unexpected_count", "element_count", "partial_unexpected_list")


@dataclass
class Outcome:
    check: str
    expectation: str
    kwargs: dict
    success: bool
    result: dict


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return all(o.success for o in self.outcomes)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success]

    def render(self) -> str:
        lines = []
        for o in self.outcomes:
            args = ", ".join(f"{k}={v}" for k, v in o.kwargs.items() if k not in ("batch_id",))
            detail = ", ".join(f"{k}={o.result[k]}" for k in _SHOWN if k in o.result and o.result[k] not in (None, []))
            lines.append(f"{'PASS' if o.success else 'FAIL'}  {o.check:<15} {o.expectation}({args})  {detail}")
        n_fail = len(self.failures)
        lines.append(f"expectations met: {len(self.outcomes) - n_fail} of {len(self.outcomes)} ({n_fail} failing)")
        return "\n".join(lines)

    def to_json(self, path: str) -> None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"success": self.success, "outcomes": [asdict(o) for o in self.outcomes]}, f,
                      indent=2, default=str)


def run_checks(checks: list[Check], source_name: str = "optirag") -> Report:
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    source = context.data_sources.add_spark(name=source_name)
    report = Report()
    for check in checks:
        batch = (source.add_dataframe_asset(name=check.name)
                 .add_batch_definition_whole_dataframe("whole")
                 .get_batch(batch_parameters={"dataframe": check.frame}))
        suite = gx.ExpectationSuite(name=check.name, expectations=check.expectations)
        result = batch.validate(suite)
        for r in result.results:
            config = r.expectation_config
            report.outcomes.append(Outcome(
                check=check.name, expectation=config.type,
                kwargs={k: v for k, v in config.kwargs.items() if k != "batch_id"},
                success=bool(r.success), result=dict(r.result or {}),
            ))
    return report
