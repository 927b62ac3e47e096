"""Every bad-input class on small hand-made raw files: nothing crashes, nothing is lost."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pytest

from optirag.config import load_config
from optirag.ingest.job import run_ingest
from optirag.ingest.raw import RawInputError
from optirag.tables import read_table

BX_RATINGS = (
    b"User_ID,ISBN,Book_Rating\n"
    b"1,A,8\n"              # 2 ok
    b'1,"B,5\n'             # 3 broken quoting
    b"2,A,abc\n"            # 4 non-numeric rating
    b"2,B,11\n"             # 5 out of range
    b",C,5\n"               # 6 empty user id
    b"3,A,9\n"              # 7 duplicate: the later line 8 wins
    b"3,A,7\n"              # 8 ok
    b"1,\xff\xfe,5\n"       # 9 not UTF-8
    b"\n"                   # 10 empty line
    b"4,Z,9\n"              # 11 ok, item Z has no metadata row
    b"1,B,4,extra\n"        # 12 too many fields
    b'2,"C",6\n'            # 13 ok (quoted field)
    b"4,A,2\n"              # 14 ok
    b"2,  ,6\n"             # 15 blank item id
)
BX_BOOKS = (
    b"ISBN,Book_Title,Book_Author,Year_Of_Publication,Publisher\n"
    b'A,"Title, with comma",Ann,1999,P\n'  # 2
    b"B,Second,Bob,0,Q\n"                   # 3 (year 0 = unknown)
    b"A,Again,Ann,2001,P\n"                 # 4 duplicate item
    b",NoIsbn,X,2000,P\n"                   # 5 empty id
    b"C,Third,Cy,2005,R\n"                  # 6
)


def _ingest(spark, tmp_path, dataset, files, *overrides):
    raw = tmp_path / "raw"
    raw.mkdir(exist_ok=True)
    for name, content in files.items():
        (raw / name).write_bytes(content)
    cfg = load_config(dataset, lake=str(tmp_path / "lake"), overrides=list(overrides))
    return cfg, run_ingest(spark, cfg, str(raw))


def _quarantine(spark, cfg):
    rows = read_table(spark, "quarantine", cfg.dataset_lake()).collect()
    return {(r.source_file.rsplit("/", 1)[-1], r.line_number): r.reason for r in rows}


def test_bookcrossing_bad_lines_are_quarantined_with_line_and_reason(spark, tmp_path):
    cfg, s = _ingest(spark, tmp_path, "bookcrossing",
                     {"BX_Book_Ratings.csv": BX_RATINGS, "BX_Books.csv": BX_BOOKS}, "dataset.min_history=0")
    assert _quarantine(spark, cfg) == {
        ("BX_Book_Ratings.csv", 3): "malformed_row",
        ("BX_Book_Ratings.csv", 4): "non_numeric_rating",
        ("BX_Book_Ratings.csv", 5): "rating_out_of_range",
        ("BX_Book_Ratings.csv", 6): "empty_id",
        ("BX_Book_Ratings.csv", 7): "duplicate_rating",
        ("BX_Book_Ratings.csv", 9): "invalid_utf8",
        ("BX_Book_Ratings.csv", 10): "empty_line",
        ("BX_Book_Ratings.csv", 12): "malformed_row",
        ("BX_Book_Ratings.csv", 15): "empty_id",
        ("BX_Books.csv", 4): "duplicate_item",
        ("BX_Books.csv", 5): "empty_id",
    }
    assert s["files"]["BX_Book_Ratings.csv"] == {"raw": 14, "accepted": 5, "quarantined": 9}
    assert s["files"]["BX_Books.csv"] == {"raw": 5, "accepted": 3, "quarantined": 2}
    lake = cfg.dataset_lake()
    ratings = {(r.user_id, r.item_id): r.rating for r in read_table(spark, "interactions", lake).collect()}
    assert ratings == {("1", "A"): 8.0, ("3", "A"): 7.0, ("4", "Z"): 9.0, ("2", "C"): 6.0, ("4", "A"): 2.0}
    items = {r.item_id: r for r in read_table(spark, "items", lake).collect()}
    assert items["A"].title == "Title, with comma" and items["A"].year == 1999
    assert items["B"].year is None
    assert items["Z"].title == "Unknown book (ISBN Z)" and not items["Z"].has_metadata
    assert s["items_without_metadata"] == 1


def test_empty_metadata_file_and_rerun(spark, tmp_path):
    cfg, s = _ingest(spark, tmp_path, "bookcrossing",
                     {"BX_Book_Ratings.csv": BX_RATINGS, "BX_Books.csv": b""}, "dataset.min_history=0")
    assert s["files"]["BX_Books.csv"] == {"raw": 0, "accepted": 0, "quarantined": 0}
    assert s["items"] == s["items_without_metadata"] == 3


def test_missing_required_file_is_a_clear_error(spark, tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "BX_Books.csv").write_bytes(BX_BOOKS)
    cfg = load_config("bookcrossing", lake=str(tmp_path / "lake"))
    with pytest.raises(RawInputError, match="required ratings file 'BX_Book_Ratings.csv' not found"):
        run_ingest(spark, cfg, str(tmp_path / "raw"))


def test_wrong_header_is_a_clear_error(spark, tmp_path):
    with pytest.raises(RawInputError, match="lacks column"):
        _ingest(spark, tmp_path, "bookcrossing",
                {"BX_Book_Ratings.csv": b"user,isbn\n1,A\n", "BX_Books.csv": BX_BOOKS})


def _review(user, item, rating, ts):
    return json.dumps({"reviewerID": user, "asin": item, "overall": rating, "unixReviewTime": ts})


def test_amazon_bad_json_and_optional_meta(spark, tmp_path):
    lines = [_review("u1", f"i{k}", 5.0, 100 + k) for k in range(5)]  # 1-5 ok
    lines += [
        "{not json",                            # 6 bad json
        _review("", "i1", 4.0, 1),              # 7 empty id
        _review("u2", "i1", "five", 1),         # 8 non-numeric
        _review("u2", "i2", 4.0, "yesterday"),  # 9 bad timestamp
        _review("u2", "i3", 0.5, 1),            # 10 out of range
    ]
    reviews = gzip.compress(("\n".join(lines) + "\n").encode())
    meta = (json.dumps({"asin": "i0", "title": "Soap", "brand": "B", "category": ["Beauty"]}) + "\n{oops\n").encode()
    cfg, s = _ingest(spark, tmp_path, "amazon", {"Test_5.json.gz": reviews, "meta_Test.json": meta},
                     "dataset.min_history=2")
    assert _quarantine(spark, cfg) == {
        ("Test_5.json.gz", 6): "bad_json", ("Test_5.json.gz", 7): "empty_id",
        ("Test_5.json.gz", 8): "non_numeric_rating", ("Test_5.json.gz", 9): "bad_timestamp",
        ("Test_5.json.gz", 10): "rating_out_of_range", ("meta_Test.json", 2): "bad_json",
    }
    assert s["files"]["Test_5.json.gz"] == {"raw": 10, "accepted": 5, "quarantined": 5}
    items = {r.item_id: r for r in read_table(spark, "items", cfg.dataset_lake()).collect()}
    assert items["i0"].title == "Soap" and items["i0"].genres == ["Beauty"] and items["i0"].has_metadata
    assert items["i4"].title == "Amazon product i4"
    samples = read_table(spark, "samples", cfg.dataset_lake()).collect()
    # one user, 5 reviews, min_history 2: samples at positions 2, 3, 4
    assert sorted(r.item_id for r in samples) == ["i2", "i3", "i4"]


def test_recbole_wrong_field_count_and_duplicates(spark, tmp_path):
    inter = (b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
             b"1\t10\t4\t100\n1\t11\t5\t101\n1\t12\t2\n1\t13\t3\t103\n1\t13\t5\t99\n1\t14\t1\t104\n")
    item = b"item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n10\tToy Story\t1995\tAnimation Comedy\n"
    cfg, s = _ingest(spark, tmp_path, "movielens100k", {"x.inter": inter, "x.item": item}, "dataset.min_history=1")
    # line 4 has 3 fields; (1,13) rated twice: the later timestamp (line 5, t=103) wins
    assert _quarantine(spark, cfg) == {("x.inter", 4): "malformed_row", ("x.inter", 6): "duplicate_rating"}
    rows = read_table(spark, "samples", cfg.dataset_lake()).collect()
    history = {r.item_id: [h.item_id for h in r.history] for r in rows}
    assert history["14"] == ["10", "11", "13"]


def test_metadata_column_empty_for_most_items_is_a_warning_in_the_report(spark, tmp_path):
    inter = b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t10\t4\t100\n1\t11\t5\t101\n"
    item = (b"item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
            b"10\tToy Story\t1995\t\n11\tHeat\t1995\tCrime\n12\tAlien\t1979\t \n")
    _, s = _ingest(spark, tmp_path, "movielens100k", {"x.inter": inter, "x.item": item})
    assert s["metadata_empty_share"] == {"title": 0.0, "year": 0.0, "genres": 0.6667}
    assert s["warnings"] == ["items.genres is empty for 67% of the 3 items of the metadata file "
                             "(quality.metadata_max_empty_share: 50%)"]


def test_bad_dataset_yaml_field_exits_2_with_one_line():
    proc = subprocess.run([sys.executable, "-m", "jobs.ingest", "--dataset", "movielens100k", "--raw", "/x",
                           "--lake", "/y", "--set", "dataset.positive_threshold=9"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "ingest: error: invalid config: dataset: Value error, positive_threshold 9 leaves a class empty: "
        "it must be in (1, 5]"]


def test_unknown_dataset_exits_non_zero_with_one_line():
    proc = subprocess.run([sys.executable, "-m", "jobs.ingest", "--dataset", "nope", "--raw", "/x", "--lake", "/y"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "ingest: error: unknown dataset 'nope'; known: amazon, bookcrossing, movielens100k"]


def test_quarantine_keeps_raw_bytes_and_reads_with_deltalake(small_lake):
    """A copy of the shared BX_Books.csv with a line that is not UTF-8: `quarantine` opens
    with delta-rs (no 'Invalid UTF8 sequence'), and every quarantined row's raw_bytes are
    exactly that line of its raw file."""
    from pathlib import Path
    from urllib.parse import urlparse

    from deltalake import DeltaTable

    rows = DeltaTable(f"{small_lake}/bookcrossing/quarantine").to_pyarrow_table()
    rows.validate(full=True)
    lines: dict[str, list[bytes]] = {}
    for r in rows.to_pylist():
        path = urlparse(r["source_file"]).path
        lines.setdefault(path, Path(path).read_bytes().splitlines())
        assert r["raw_bytes"] == lines[path][r["line_number"] - 1], r
        assert r["raw_text"] == r["raw_bytes"].decode("utf-8", errors="replace"), r
    bad = [(Path(r["source_file"]).name, r["line_number"], r["raw_bytes"], r["raw_text"])
           for r in rows.to_pylist() if r["reason"] == "invalid_utf8"]
    assert bad == [("BX_Books.csv", 101, b"0000000001,Caf\xe9 \xff\xfe,Ana,1999,Pub",
                    "0000000001,Caf\ufffd \ufffd\ufffd,Ana,1999,Pub")]


def test_a_drop_of_garbage_fails_the_ingest_gate(spark, tmp_path):
    """Every rating line unreadable (';' for ','): ingest quarantines them all and the ingest
    suite, the nightly DAG's gate (check_ingest), fails and says which expectation."""
    from optirag.quality.runner import run_checks
    from optirag.quality.suites import ingest_checks

    garbage = b"User_ID,ISBN,Book_Rating\n" + b"".join(
        f"{u};{i};{r}\n".encode() for u, i, r in [(1, "A", 8), (2, "B", 5), (3, "C", 9), (4, "A", 2)])
    cfg, s = _ingest(spark, tmp_path, "bookcrossing", {"BX_Book_Ratings.csv": garbage, "BX_Books.csv": BX_BOOKS})
    assert s["files"]["BX_Book_Ratings.csv"] == {"raw": 4, "accepted": 0, "quarantined": 4}
    report = run_checks(ingest_checks(spark, cfg))
    assert not report.success and report.failures
    assert "FAIL" in report.render()
