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
