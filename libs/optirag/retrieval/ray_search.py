"""The neighbour search and the LightGCN training as Ray tasks.

Search. The normalised warm-user matrix (the candidates) is put in the object store
once with ``ray.put``; every task receives the reference, reads the matrix zero-copy
from shared memory, and computes the exact top-k of one block of query users with
:func:`optirag.retrieval.topk.search_block`. At most ``ray_tasks`` tasks are in flight
(``ray.wait`` loop), each reserving ``search_num_cpus`` and running that many torch
threads, so on a 2-core machine two 1-CPU tasks run side by side and nothing
over-subscribes the cores; on a cluster raise ``ray_tasks`` to the cores you want to
use. Blocks are the same as in the local path and results are stitched back in block
order, so the Ray path returns exactly the local result (tested). Progress ("blocks
done / total") goes to a callback and to this module's logger.

Training. :func:`train_on_ray` runs :func:`optirag.retrieval.lightgcn.train_lightgcn`
inside one Ray task that reserves ``train_num_cpus`` (capped at the largest node's CPUs
so it cannot wait forever) with as many torch threads, and returns the per-layer
embeddings. Per-epoch loss lines are printed by the task and Ray streams them to the
driver's log (``(_train_task pid=...) lightgcn epoch 3/30 loss ...``).

Scaling training beyond one worker (not implemented, on purpose). Data-parallel DDP with
Ray Train's ``TorchTrainer`` (gloo on CPU, NCCL on GPU) is mechanically simple: every
worker holds the full embedding table and adjacency, takes a shard of the BPR triples,
and gradients are all-reduced. But every LightGCN step propagates over the *whole*
graph (K sparse products over all nodes), and that dominates the step, so each worker
would repeat the same propagation and only the cheap loss part would be split: little
speed-up for N x the memory. Real scale-out needs the graph partitioned (e.g. PyG's
``torch_geometric.distributed`` with ``LinkNeighborLoader`` sampling K-hop subgraphs per
batch, or a GPU worker holding the whole graph: a 300k-user / 300k-item / 10M-edge graph
at d = 64 fits easily in one GPU). For the paper's datasets (<= 300k users) one
multi-core worker trains in minutes, so the job uses one task.
"""
from __future__ import annotations

import logging
import time
import warnings
from typing import Any, Callable

import numpy as np

from optirag.ray_session import largest_node_cpus
from optirag.retrieval.config import RetrieverConfig
from optirag.retrieval.lightgcn import LightGCNResult, torch_threads, train_lightgcn
from optirag.retrieval.topk import Candidates, assemble, prepare_candidates, query_blocks, search_block

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (blocks done, blocks total)


def _threads_for(num_cpus: float, cfg_threads: int | None) -> int:
    return cfg_threads if cfg_threads is not None else max(1, int(num_cpus))


def _search_task_body(cands: tuple[np.ndarray, np.ndarray], block_no: int, query_pos: np.ndarray,
                      k: int, candidate_block_size: int, threads: int):
    emb, idx = cands
    with warnings.catch_warnings():
        # object-store arrays are read-only; the search never writes to them
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        with torch_threads(threads):
            neigh, sim = search_block(emb, idx, query_pos, k, candidate_block_size)
    return block_no, neigh, sim


def search_ray(
    ray: Any,
    emb: np.ndarray,
    k: int,
    query_idx: np.ndarray,
    warm: np.ndarray | None,
    cfg: RetrieverConfig,
    progress: Progress | None = None,
    candidates: Candidates | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Same contract as :func:`optirag.retrieval.topk.cosine_topk`, run as Ray tasks."""
    cands = candidates or prepare_candidates(emb, warm)
    is_cold, blocks = query_blocks(query_idx, cands, cfg.search_block_size)
    total = len(blocks)
    if total == 0:
        return (*assemble(is_cold, [], k), is_cold)
    threads = _threads_for(cfg.search_num_cpus, cfg.torch_threads)
    task = ray.remote(num_cpus=cfg.search_num_cpus)(_search_task_body)
    cands_ref = ray.put((cands.emb, cands.idx))  # once; every task reads it zero-copy

    results: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    pending: list[Any] = []
    next_block, t0 = 0, time.perf_counter()
    while next_block < total or pending:
        while next_block < total and len(pending) < cfg.ray_tasks:
            pending.append(task.remote(cands_ref, next_block, blocks[next_block], k,
                                       cfg.candidate_block_size, threads))
            next_block += 1
        ready, pending = ray.wait(pending, num_returns=1)
        for block_no, neigh, sim in ray.get(ready):
            results[block_no] = (neigh, sim)
        done = len(results)
        log.info("neighbour search: %d/%d blocks (%.1fs)", done, total, time.perf_counter() - t0)
        if progress is not None:
            progress(done, total)
    del cands_ref
    neigh, sim = assemble(is_cold, [results[b] for b in range(total)], k)
    return neigh, sim, is_cold


def _train_task_body(user_idx: np.ndarray, item_idx: np.ndarray, n_users: int, n_items: int,
                     cfg_dict: dict[str, Any], threads: int) -> LightGCNResult:
    cfg = RetrieverConfig.model_validate({**cfg_dict, "torch_threads": threads})

    def report(epoch: int, loss: float, secs: float) -> None:
        print(f"lightgcn epoch {epoch}/{cfg.epochs} loss {loss:.5f} ({secs:.2f}s)", flush=True)

    return train_lightgcn(user_idx, item_idx, n_users, n_items, cfg, on_epoch=report)


def train_on_ray(
    ray: Any,
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    n_users: int,
    n_items: int,
    cfg: RetrieverConfig,
) -> LightGCNResult:
    """Train LightGCN inside one Ray task reserving ``train_num_cpus``; see module doc."""
    num_cpus = min(cfg.train_num_cpus, largest_node_cpus(ray))
    threads = _threads_for(num_cpus, cfg.torch_threads)
    task = ray.remote(num_cpus=num_cpus)(_train_task_body)
    # the edge arrays travel through the object store (zero-copy for numpy)
    ref = task.options(name="_train_task").remote(
        np.ascontiguousarray(user_idx, dtype=np.int64), np.ascontiguousarray(item_idx, dtype=np.int64),
        int(n_users), int(n_items), cfg.model_dump(), threads,
    )
    result = ray.get(ref)
    log.info("lightgcn trained on Ray in %.1fs (%d epochs, final loss %s)", result.seconds,
             len(result.losses), f"{result.losses[-1]:.5f}" if result.losses else "n/a")
    return result
