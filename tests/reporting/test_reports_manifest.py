"""reports/ and its manifest (libs/optirag/reporting/reports_manifest.py) agree, on the real files:

    every file under reports/ is in the manifest, every file it names is there (optional: may be absent)
    reports/README.md is what `make reports-manifest` writes from the files as they are now
    `of record` files were measured on the eval of record's scorers and data (reports/eval/<dataset>.json
      runs), `stale` ones were not
    superseded / historical files are named by the note the manifest cites; commands are committed
and each check catches its violation, on a copy of reports/ with one thing wrong. No Spark, no model.
"""
import json
import shutil
from pathlib import Path

import pytest

from optirag.reporting.inputs import BENCH_PATHS, input_paths
from optirag.reporting.reports_audit import off_record, uncited, uncommitted, unlisted
from optirag.reporting.reports_manifest import FILES, OF_RECORD, STALE, entry_for
from optirag.reporting.reports_readme import FILE, render
from optirag.reporting.versions import of_record

REPO = Path(__file__).resolve().parents[2]
REPORTS = REPO / "reports"
REGENERATE = "reports/README.md is out of date: run `make reports-manifest` (python -m jobs.reports_manifest)"


def test_every_file_under_reports_is_in_the_manifest_and_every_entry_is_there():
    assert unlisted(REPORTS) == []


def test_readme_is_what_the_generator_makes_from_the_current_files():
    assert (REPORTS / FILE).read_text(encoding="utf-8") == render(REPORTS), REGENERATE


def test_files_of_record_are_measured_on_the_scorers_of_record():
    assert of_record(REPORTS).scorers, "the eval of record names no scorer: nothing to check against"
    assert off_record(REPORTS) == []


def test_superseded_and_historical_files_are_cited_and_commands_committed():
    assert uncited(REPORTS) == []
    assert uncommitted(REPO) == []


def test_what_the_report_builder_reads_is_listed_as_of_record_or_stale():
    read = [p.relative_to(REPORTS).as_posix() for d in ("bookcrossing", "movielens100k", "amazon")
            for p in input_paths(REPORTS, d).values() if p.is_file()] + [p.as_posix() for p in BENCH_PATHS.values()]
    assert len(read) == 11
    assert {rel: entry_for(rel)[1].status for rel in read if entry_for(rel)[1].status not in (OF_RECORD, STALE)} == {}


@pytest.fixture
def copy(tmp_path) -> Path:
    """A copy of the real reports/ folder to break one thing in."""
    return Path(shutil.copytree(REPORTS, tmp_path / "reports"))


def test_a_file_not_in_the_manifest_or_a_missing_one_is_caught(copy):
    (copy / "bench" / "stray.json").write_text("{}")
    (copy / "bench" / "tuning.json").unlink()
    assert [p.split(":")[0] for p in unlisted(copy)] == ["reports/bench/stray.json", "reports/bench/tuning.json"]


def test_a_readme_not_regenerated_is_caught(copy):
    assert (copy / FILE).read_text(encoding="utf-8") == render(copy)
    doc = json.loads((copy / "bench" / "tuning.json").read_text())   # a file re-measured on other data
    doc["datasets"]["bookcrossing"]["variants"]["gcn"]["data_version"] = "000000000000"
    (copy / "bench" / "tuning.json").write_text(json.dumps(doc))
    assert (copy / FILE).read_text(encoding="utf-8") != render(copy)


def test_a_file_of_record_on_another_scorer_is_caught(copy):
    path = copy / "bench" / "scoring_prefix_bf16.json"
    path.write_text(path.read_text().replace("lora-05f5242fa672", "lora-8f20eba66a07"))
    assert [p.split(":")[0] for p in off_record(copy)] == ["reports/bench/scoring_prefix_bf16.json",
                                                          "reports/bench/scoring_prefix_bf16.png"]


def test_a_note_that_no_longer_names_its_file_is_caught(copy):
    note = copy / "notes" / "tuning.md"
    note.write_text(note.read_text().replace("tuning_dtype.json", "a dtype bench"))
    assert uncited(copy) == ["reports/bench/tuning_dtype.json: its note reports/notes/tuning.md does not name tuning_dtype.json"]
