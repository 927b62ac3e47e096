"""Search results -> rows of the NEIGHBOURS table (one schema for every retriever).

``NEIGHBOURS(retriever, model_version, user_id, neighbour_user_id, rank, similarity,
is_cold)``: a warm sample user gets up to k rows, rank 1 = most similar; a cold sample
user gets exactly one row with null neighbour / rank / similarity and is_cold = true, so
that "no neighbours" is recorded rather than silently dropped (a warm user with no other
warm user to return, possible only on a degenerate graph, gets the same null row with
is_cold = false). The column list mirrors
``optirag.tables.NEIGHBOURS`` (a test keeps the two in step) without importing Spark.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

NEIGHBOURS_SCHEMA = pa.schema([
    pa.field("retriever", pa.string(), False),
    pa.field("model_version", pa.string(), False),
    pa.field("user_id", pa.string(), False),
    pa.field("neighbour_user_id", pa.string(), True),
    pa.field("rank", pa.int32(), True),
    pa.field("similarity", pa.float64(), True),
    pa.field("is_cold", pa.bool_(), False),
])
NEIGHBOURS_COLUMNS = [f.name for f in NEIGHBOURS_SCHEMA]


def neighbours_frame(
    retriever: str,
    model_version: str,
    query_user_ids: Sequence[str],
    neigh: np.ndarray,
    sim: np.ndarray,
    is_cold: np.ndarray,
    user_ids_by_idx: Sequence[str] | np.ndarray,
) -> pd.DataFrame:
    """Long NEIGHBOURS rows from the [Q, k] search output (-1 = no neighbour).

    ``user_ids_by_idx[i]`` is the user_id of global index i. Rows come out ordered by
    query order, then rank. Nullable columns use pandas' nullable dtypes so the frame
    converts to the Arrow schema above without float-for-int surprises.
    """
    q_ids = np.asarray(query_user_ids, dtype=object)
    neigh = np.asarray(neigh, dtype=np.int64)
    sim = np.asarray(sim, dtype=np.float64)
    is_cold = np.asarray(is_cold, dtype=bool)
    Q, k = neigh.shape if neigh.ndim == 2 else (0, 0)
    if q_ids.shape[0] != Q or is_cold.shape[0] != Q:
        raise ValueError("query ids, neighbours and is_cold disagree on the query count")
    if (neigh[is_cold] >= 0).any():
        raise ValueError("a cold user must not have neighbours")
    ids = np.asarray(user_ids_by_idx, dtype=object)

    rows, ranks = np.nonzero(neigh >= 0)  # row-major: query order, then rank
    warm_part = pd.DataFrame({
        "_q": rows,
        "user_id": q_ids[rows],
        "neighbour_user_id": ids[neigh[rows, ranks]] if rows.size else np.array([], dtype=object),
        "rank": ranks + 1,
        "similarity": sim[rows, ranks],
        "is_cold": False,
    })
    # cold users, and (degenerate graphs only) warm users with no other warm user to
    # return: one row with no neighbour, so no sample user is ever silently missing
    empty_q = np.nonzero(is_cold | (neigh < 0).all(axis=1))[0] if Q else np.zeros(0, np.int64)
    cold_part = pd.DataFrame({
        "_q": empty_q, "user_id": q_ids[empty_q], "neighbour_user_id": None,
        "rank": pd.array([None] * empty_q.size, dtype="Int32"),
        "similarity": np.full(empty_q.size, np.nan), "is_cold": is_cold[empty_q],
    })
    df = pd.concat([warm_part, cold_part], ignore_index=True)
    df = df.sort_values(["_q", "rank"], kind="stable", na_position="first").drop(columns="_q")
    df.insert(0, "model_version", model_version)
    df.insert(0, "retriever", retriever)
    return _typed(df.reset_index(drop=True))


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    df = df[NEIGHBOURS_COLUMNS]
    return df.astype({
        "retriever": "string", "model_version": "string", "user_id": "string",
        "neighbour_user_id": "string", "rank": "Int32", "similarity": "Float64",
        "is_cold": "bool",
    })


def to_arrow(df: pd.DataFrame) -> pa.Table:
    """The frame as an Arrow table in the declared schema (for deltalake / Ray Data)."""
    return pa.Table.from_pandas(df[NEIGHBOURS_COLUMNS], schema=NEIGHBOURS_SCHEMA, preserve_index=False)
