"""The date's candidates, as the scoring job reads them: the Parquet files of the date's
partition (from the Delta log, no Spark), streamed in blocks by Ray Data read tasks."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from optirag.config import Config
from optirag.tables import CANDIDATES


def candidate_files(cfg: Config, score_date: str) -> list[str]:
    from deltalake import DeltaTable

    path = CANDIDATES.path(cfg.dataset_lake())
    try:
        table = DeltaTable(path)
    except Exception:
        raise FileNotFoundError(f"no candidates table at {path}: run jobs.build_candidates") from None
    files = table.file_uris(partition_filters=[("score_date", "=", score_date)])
    if not files:
        raise FileNotFoundError(f"no candidates for {score_date} in {path}: run "
                                f"jobs.build_candidates --date {score_date}")
    return files


def read_files(batch: pa.Table, columns: list[str], users: list[str] | None, rows: int):
    """Stream each candidate file in `rows`-row blocks (a generator: Ray passes each block
    on as it is read, so scoring starts before a large file is read and memory stays flat)."""
    import pyarrow.compute as pc

    keep = None if users is None else pa.array(users)
    for path in batch["path"].to_pylist():
        for record_batch in pq.ParquetFile(path).iter_batches(batch_size=rows, columns=columns):
            table = pa.Table.from_batches([record_batch])
            if keep is not None:
                table = table.filter(pc.is_in(table["user_id"], keep))
            if table.num_rows:
                yield table
