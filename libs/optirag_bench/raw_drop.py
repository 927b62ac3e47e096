"""A night after a small raw drop: what an incremental night re-scores (jobs.bench_nightly --drop).

    raw ──hold back one rating of a seeded --drop-users-share of the users──> before/ (a copy)
    night 1  jobs.nightly on before/ for --date: ingest, a retriever trained on it (refresh
             forced, as the lake's last refresh), candidates, a full score, gates, page, publish
    night 2  jobs.nightly on raw (the drop arrives) for --date + 1: ingest, retriever_due (the
             drop is below retriever_refresh_edges_share: neighbours kept), candidates, an
             incremental score that reuses every row whose key is unchanged
    -> reports/bench/nightly_scale.json datasets.<name>.incremental["forward_rows<n>"]: users
       touched, rows re-scored and why (the touched users' own rows, rows of users whose
       neighbours or candidates changed), both nights' wall seconds per step

--drop-reverse, on a lake whose --date was scored on all the raw files (make bench-nightly
at catalogue scale): night 2 only, on before/: the same users' inputs change, at that run's
size, without paying for another full night; recorded as ["reverse_rows<n>"] and as that
run's `incremental`.

Both nights go through optirag.orchestration.nightly, the optirag_nightly DAG's steps and
its retriever_due branch. Users with at least three ratings are eligible, so each keeps a
sample and the 8:1:1 split of users does not move. The interactions file must be delimited
with the user id first (the bookcrossing and recbole formats).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import random
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from optirag.config import FORMAT_DELIMITERS, FORMAT_FILES, Config, load_config
from optirag.environment import environment
from optirag.evaluation.metrics import write_report
from optirag.orchestration import lake
from optirag.orchestration.nightly import run_nightly
from optirag.reporting.night import SUMMARY_FILE, night_dir
from optirag.tables import SCORES, USER_INDEX

REPO = Path(__file__).resolve().parents[2]


def hold_back(raw: Path, out: Path, ratings_file: str, sep: str, share: float, seed: int) -> tuple[set[str], int]:
    """Copy `raw` to `out` without one seeded rating of each of a seeded `share` of the users
    (chosen among those with >= 3 ratings); returns (those users, all users of the file):
    the drop is their held-back ratings."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(raw, out)
    lines = (raw / ratings_file).read_text(encoding="utf-8").splitlines(keepends=True)
    header = [] if lines[0].split(sep, 1)[0].strip().isdigit() else lines[:1]
    body = lines[len(header):]
    rows_of: dict[str, list[int]] = {}
    for i, line in enumerate(body):
        rows_of.setdefault(line.split(sep, 1)[0], []).append(i)
    rng = random.Random(seed)
    eligible = sorted(u for u, rows in rows_of.items() if len(rows) >= 3)
    touched = set(rng.sample(eligible, round(share * len(rows_of))))
    held = {rng.choice(rows_of[u]) for u in sorted(touched)}
    (out / ratings_file).write_text("".join(header + [x for i, x in enumerate(body) if i not in held]),
                                    encoding="utf-8")
    return touched, len(rows_of)


def _night(args, date: str, raw: Path, overrides: list[str]) -> tuple[Config, dict[str, Any]]:
    """One night through optirag.orchestration.nightly with the bench's sizes."""
    from optirag.orchestration.launch import absolute

    settings = {"dataset": args.dataset, "lake": absolute(args.lake), "env": args.env, "model": args.model,
                "overrides": [*args.overrides, *overrides]}
    cfg = load_config(args.dataset, env=args.env, model=args.model, overrides=settings["overrides"],
                      lake=settings["lake"])
    print(f"\n##### night {date} on {raw}", flush=True)
    return cfg, run_nightly(cfg, settings, str(raw), date, args.variant, REPO)


def _night_users(cfg: Config, date: str) -> tuple[set[str], Counter]:
    """The date's users and, per user, its rows computed tonight (not reused), from one read
    of the date's scores."""
    rows = lake.read(SCORES, cfg.dataset_lake(), filters=[("score_date", "=", date)],
                     columns=["user_id", "scored_on"])
    users, on = rows["user_id"].to_pylist(), rows["scored_on"].to_pylist()
    return set(users), Counter(u for u, d in zip(users, on) if d == date)


def _graph_users(cfg: Config) -> int:
    index = lake.read(USER_INDEX, cfg.dataset_lake(), columns=["n_edges"])
    return sum(n > 0 for n in index["n_edges"].to_pylist())


def sizing(run: dict[str, Any], incremental: dict[str, Any], catalogue_rows: int) -> dict[str, Any]:
    """What a night over the whole catalogue costs, from one node's measured run: the job's
    end-to-end rows/s, and the incremental night's re-scored share and fixed steps (ingest,
    gates, candidates, context). N workers assume the job's rate scales with the nodes that
    run scorer actors (one pool per node, optirag.scoring.sizing): an extrapolation."""
    rate, share = run["job_rows_per_s"], incremental["rows_rescored_share"]
    fixed = incremental["wall_seconds"] - incremental["rows_rescored"] / rate   # what does not shrink
    workers = (1, 4, 16, 64)
    return {
        "catalogue_rows": catalogue_rows, "node_cores": run["cpu_count"], "job_rows_per_s_per_node": rate,
        "job_rows_per_s_per_core": round(rate / run["cpu_count"], 2),
        "full_night_hours": {n: round(catalogue_rows / (n * rate) / 3600, 2) for n in workers},
        "incremental_night_hours": {n: round((fixed + catalogue_rows * share / (n * rate)) / 3600, 2)
                                    for n in workers},
        "basis": (f"the job's rate on {run['rows']} rows on one {run['cpu_count']}-core node ({run['date']}); "
                  f"a {incremental['rows']}-row night after a 5%-of-users drop re-scoring {share:.2%} in "
                  f"{incremental['wall_seconds']:.0f} s; N workers: rate x N (not measured), fixed steps not divided"),
        "gpu": "not measured in this run (no device lent; reports/bench/scoring_device.json is stale)",
    }


def run_drop_bench(args, out: Path) -> dict[str, Any]:
    raw = Path(args.drop).resolve()
    ds = load_config(args.dataset).dataset
    if FORMAT_DELIMITERS[ds.format] is None:
        raise ValueError(f"--drop needs a delimited ratings file; {ds.name} is {ds.format} (JSON lines)")
    ratings = ds.files[FORMAT_FILES[ds.format][0]]
    before = Path(args.lake).resolve() / "_bench" / "raw_before_drop"
    touched, n_users = hold_back(raw, before, ratings, FORMAT_DELIMITERS[ds.format], args.drop_users_share,
                                 args.seed)
    sizes = [f"candidates.max_users={args.users}", f"candidates.per_user={args.candidates_per_user}",
             "candidates.include_eval=false"]
    first = args.date
    second = (dt.date.fromisoformat(first) + dt.timedelta(days=1)).isoformat()
    night1 = None
    if args.drop_reverse:   # `first` was scored on all the raw files: the drop leaves again
        cfg, night = _night(args, second, before, sizes)
    else:
        _, night1 = _night(args, first, before, [*sizes, "orchestration.retriever_refresh_edges_share=0"])
        cfg, night = _night(args, second, raw, sizes)
    summary = json.loads((night_dir(cfg, second) / SUMMARY_FILE).read_text())
    night_users, rescored = _night_users(cfg, second)
    record = {
        "command": ("python -m jobs.bench_nightly --dataset {d} --lake LAKE --env {e} --model {m} --date {t} "
                    "--users {u} --candidates-per-user {c} --drop {r} --drop-users-share {s}{rev}").format(
            d=args.dataset, e=args.env, m=args.model, t=first, u=args.users, c=args.candidates_per_user,
            r=args.drop, s=args.drop_users_share, rev=" --drop-reverse" if args.drop_reverse else ""),
        "direction": "the touched users lose the rating" if args.drop_reverse else "the touched users gain a rating",
        "dates": [first, second], "seed": args.seed,
        "users_touched": len(touched), "users_touched_share": round(len(touched) / n_users, 4),
        "night_users": len(night_users), "night_users_touched": len(night_users & touched),
        "rows": summary["rows"], "rows_rescored": summary["scored"], "rows_reused": summary["reused"],
        "rows_rescored_share": round(summary["scored"] / max(summary["rows"], 1), 4),
        "rescored_rows_of_touched_users": sum(n for u, n in rescored.items() if u in touched),
        "rescored_rows_of_other_users": sum(n for u, n in rescored.items() if u not in touched),
        "users_rescored": len(rescored),
        "retriever": night["retriever"],
        "wall_seconds": night["wall_seconds"], "step_seconds": night["seconds"],
        "first_night": night1 and {"wall_seconds": night1["wall_seconds"], "step_seconds": night1["seconds"]},
        "score_stages": summary.get("stages"), "scorer": summary.get("model_version"),
        "cpu_count": os.cpu_count(), "environment": environment(),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    doc = json.loads(out.read_text()) if out.is_file() else {}
    data = doc.setdefault("datasets", {}).setdefault(args.dataset, {})
    data.setdefault("incremental", {})[f"{'reverse' if args.drop_reverse else 'forward'}_rows{record['rows']}"] = record
    for run in data.get("runs", {}).values():   # the run whose next night this was
        if args.drop_reverse and run.get("date") == first and run.get("rows") == record["rows"]:
            run["incremental"] = {k: record[k] for k in ("users_touched_share", "rows_rescored_share",
                                                         "wall_seconds", "rows_rescored", "dates")}
    if data.get("runs"):
        data["sizing"] = sizing_of(data, _graph_users(cfg) * args.candidates_per_user)
    write_report(out, doc)
    return record


def sizing_of(data: dict[str, Any], catalogue_rows: int) -> dict[str, Any]:
    """`sizing` from a dataset's largest run and the incremental night measured nearest its
    size (a catalogue-size reverse drop where there is one)."""
    run = max(data["runs"].values(), key=lambda r: r["rows"])
    night = min(data["incremental"].values(), key=lambda r: abs(r["rows"] - run["rows"]))
    return sizing(run, night, catalogue_rows) | {"run_rows": run["rows"], "incremental_rows": night["rows"]}


def write_sizing(args, out: Path) -> dict[str, Any]:
    """jobs.bench_nightly --sizing: the `sizing` block from what the file already holds."""
    doc = json.loads(out.read_text())
    data = doc["datasets"][args.dataset]
    cfg = load_config(args.dataset, env=args.env, model=args.model, overrides=args.overrides, lake=args.lake)
    data["sizing"] = sizing_of(data, _graph_users(cfg) * args.candidates_per_user)
    write_report(out, doc)
    return data["sizing"]
