"""Progress of a scoring run: rows scored, rows/s and ETA, printed every few seconds.

The scorer actors add their rows to a CPU-free Ray actor (row_counter); a driver thread
(report_progress) prints a Progress line from it while the pipeline runs. The actors of
every stage also add the seconds they were busy (per stage name), which the job's summary
reports beside its own wall-clock stages.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import sys
import threading
import time
from typing import Any

import numpy as np


class Progress:
    """Rows scored, rows/s and ETA, printed every `every` seconds."""

    def __init__(self, total: int, every: float, out=sys.stdout):
        self.total, self.every, self.out = total, every, out
        self.done, self.started, self.last = 0, time.time(), 0.0

    def update(self, done: int, force: bool = False) -> None:
        self.done = done
        now = time.time()
        if force or now - self.last >= self.every:
            self.last = now
            rate = self.done / max(now - self.started, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            eta_text = str(dt.timedelta(seconds=int(eta))) if np.isfinite(eta) else "?"
            print(f"scored {self.done:,}/{self.total:,} rows ({rate:,.1f} rows/s, ETA {eta_text})",
                  file=self.out, flush=True)


def row_counter():
    """A CPU-free Ray actor the scorer actors add their rows to. Ray merges a task's small
    outputs into one block (up to 128 MiB), so the driver may see a whole candidate file's
    scores at once; the counter shows progress per scored batch instead."""
    import ray

    @ray.remote(num_cpus=0)
    class RowCounter:
        def __init__(self):
            self.rows = 0
            self.busy: dict[str, float] = {}

        def add(self, rows: int, busy: dict[str, float] | None = None) -> None:
            self.rows += rows
            for stage, seconds in (busy or {}).items():
                self.busy[stage] = self.busy.get(stage, 0.0) + seconds

        def get(self) -> int:
            return self.rows

        def busy_seconds(self) -> dict[str, float]:
            return {k: round(v, 1) for k, v in sorted(self.busy.items())}

    # On the driver's node: a counter on a worker node would die with that node and take
    # the progress thread (and so the job) with it, while Ray Data restarts the scorers.
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return RowCounter.options(scheduling_strategy=here).remote()


@contextlib.contextmanager
def report_progress(progress: Progress, counter: Any):
    """Print `progress` from the counter in a driver thread while the pipeline runs."""
    import ray

    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(progress.every):
            progress.update(ray.get(counter.get.remote()))

    thread = threading.Thread(target=loop, name="scoring-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        progress.update(ray.get(counter.get.remote()), force=True)
