"""The raw drop of jobs.bench_nightly --drop: one held-back rating per chosen user, seeded."""
from __future__ import annotations

from optirag_bench.raw_drop import hold_back


def _raw(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    rows = [f"u{u},i{i},{(u + i) % 10}\n" for u in range(40) for i in range(1 + u % 5)]
    (raw / "ratings.csv").write_text("User_ID,ISBN,Book_Rating\n" + "".join(rows))
    (raw / "books.csv").write_text("ISBN,Title\n")
    return raw, rows


def test_the_drop_holds_back_one_rating_of_each_chosen_user_and_nothing_else(tmp_path):
    raw, rows = _raw(tmp_path)
    touched, n_users = hold_back(raw, tmp_path / "before", "ratings.csv", ",", 0.1, seed=3)
    assert n_users == 40 and len(touched) == 4
    kept = (tmp_path / "before" / "ratings.csv").read_text().splitlines(keepends=True)
    assert kept[0] == "User_ID,ISBN,Book_Rating\n" and (tmp_path / "before" / "books.csv").is_file()
    missing = [r for r in rows if r not in kept[1:]]
    assert sorted(r.split(",")[0] for r in missing) == sorted(touched)    # one rating each
    counts = {u: sum(r.startswith(u + ",") for r in rows) for u in touched}
    assert all(n >= 3 for n in counts.values())     # each keeps a sample: the split stays put
    again, _ = hold_back(raw, tmp_path / "before", "ratings.csv", ",", 0.1, seed=3)
    assert again == touched and (tmp_path / "before" / "ratings.csv").read_text() == "".join(kept)


def test_sizing_scales_the_measured_rate_and_keeps_the_fixed_steps():
    from optirag_bench.raw_drop import sizing

    run = {"rows": 1000, "date": "2026-12-03", "cpu_count": 2, "job_rows_per_s": 10.0}
    night = {"rows": 1000, "rows_rescored_share": 0.1, "rows_rescored": 100, "wall_seconds": 60.0}   # 10 s scoring
    got = sizing(run, night, catalogue_rows=36_000)
    assert got["job_rows_per_s_per_core"] == 5.0 and got["full_night_hours"][1] == 1.0
    assert got["full_night_hours"][4] == 0.25
    assert got["incremental_night_hours"][1] == round((50 + 3600 * 0.1) / 3600, 2)   # 50 s fixed
