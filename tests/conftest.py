"""Shared fixtures: one real local Spark session with Delta per test run, the shared data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("OPTIRAG_SHARED_DATA", REPO.parent / "shared" / "data"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared datasets not found at {SHARED_DATA} (set OPTIRAG_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def spark():
    from optirag.config import load_config
    from optirag.spark import get_spark

    session = get_spark(load_config("bookcrossing"))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def session_lake(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("lake"))


# --- LLM fixtures (tests/llm, tests/early_exit): the real SmolLM2 tokenizer from the
# prepared cache, and tiny random causal LMs over its vocabulary. Imports are lazy so the
# Spark-only tests do not pay for torch/transformers.

@pytest.fixture(scope="session")
def model_cfg():
    import torch

    from optirag.llm.config import model_config_from_recipe

    # Tiny models on a 2-core box: thread hand-offs cost more than the math
    # (one thread runs these tests ~10-30x faster).
    torch.set_num_threads(1)
    return model_config_from_recipe("cpu-small")


@pytest.fixture(scope="session")
def prepared_dir(model_cfg):
    from optirag.llm.loading import prepare_model

    return prepare_model(model_cfg)  # converts once (about half a minute), then cached


@pytest.fixture(scope="session")
def tokenizer(prepared_dir):
    from optirag.llm.loading import load_tokenizer

    return load_tokenizer(prepared_dir)


@pytest.fixture(scope="session")
def answer(tokenizer, model_cfg):
    from optirag.llm.scoring import answer_tokens

    return answer_tokens(tokenizer, model_cfg.answer)


@pytest.fixture
def tiny_model(tokenizer):
    import torch

    from optirag.llm.tiny import tiny_causal_lm

    torch.manual_seed(0)
    return tiny_causal_lm(len(tokenizer), initializer_range=0.2,
                          pad_token_id=tokenizer.pad_token_id, seed=0)


# --- A small real lake: a slice of the shared BookCrossing files, ingested for real, with
# GCN neighbours. For the scoring/orchestration tests, where the data size is not the point.
SMALL_BX_USERS = 60


def write_bookcrossing_slice(shared: Path, out: Path, n_users: int = SMALL_BX_USERS) -> Path:
    """The ratings of the first `n_users` users with >= 3 ratings (file order), and all books."""
    import csv

    out.mkdir(parents=True, exist_ok=True)
    src = shared / "bookcrossing"
    with open(src / "BX_Book_Ratings.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    counts: dict[str, int] = {}
    for r in body:
        counts[r[0]] = counts.get(r[0], 0) + 1
    keep: list[str] = []
    for r in body:
        if counts[r[0]] >= 3 and r[0] not in keep:
            keep.append(r[0])
        if len(keep) == n_users:
            break
    chosen = set(keep)
    with open(out / "BX_Book_Ratings.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(r for r in body if r[0] in chosen)
    (out / "BX_Books.csv").write_bytes((src / "BX_Books.csv").read_bytes())
    return out


# A Latin-1 book line (as in the original BX release) with a stray byte-order mark.
INVALID_UTF8_LINE = b"0000000001,Caf\xe9 \xff\xfe,Ana,1999,Pub"


@pytest.fixture(scope="session")
def small_lake(spark, shared_data, tmp_path_factory) -> str:
    """Lake root with `bookcrossing` ingested from a 60-user slice (its copy of BX_Books.csv
    holds one line that is not UTF-8) + gcn neighbours; the raw files are in `<root>/raw`."""
    from optirag.config import load_config
    from optirag.ingest.job import run_ingest
    from optirag.registry import kind_dir
    from optirag.retrieval.training import run_retriever
    from optirag.tables import NEIGHBOURS, read_table, write_table

    root = tmp_path_factory.mktemp("small")
    raw = write_bookcrossing_slice(shared_data, root / "raw")
    books = (raw / "BX_Books.csv").read_bytes().split(b"\n")
    books.insert(100, INVALID_UTF8_LINE)  # line 101 of the copy: quarantined as invalid_utf8
    (raw / "BX_Books.csv").write_bytes(b"\n".join(books))
    lake = str(root / "lake")
    cfg = load_config("bookcrossing", lake=lake, overrides=["retriever.epochs=2"])
    summary = run_ingest(spark, cfg, str(raw))
    dl = cfg.dataset_lake()
    users = [r.user_id for r in read_table(spark, "samples", dl).select("user_id").distinct().collect()]
    neighbours, _ = run_retriever(
        read_table(spark, "edges", dl).toPandas(), read_table(spark, "user_index", dl).toPandas(),
        users, cfg, None, data_version=summary["data_version"],
        models_dir=str(kind_dir(cfg, "retriever")))  # where jobs.train_retriever puts it
    write_table(spark.createDataFrame(neighbours, schema=NEIGHBOURS.schema), NEIGHBOURS, dl,
                replace_where="retriever = 'gcn'")
    return lake
