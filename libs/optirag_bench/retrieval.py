"""Benchmarks for ``make bench-retrieval``: search scaling and training time.

Search scaling. :func:`bench_search_scaling` runs :func:`bench_search` for 10k, 100k
and 1M users, each in a fresh Python subprocess so that its peak RSS (``VmHWM``, see
:func:`_peak_rss_mb`) belongs to that size alone. Each
result reports the RSS right before the search (interpreter + embeddings) and the
peak, whose difference is the search's working memory: it follows
``4 * search_block_size * candidate_block_size`` bytes (the float32 similarity block;
up to 5x on rows redone in float64) plus the normalised candidate copy ``4 * N * d``,
not ``N^2``.

Queries. The job queries the *sample* users (BookCrossing: ~18k) against all warm
users, so the benchmark queries ``min(N, n_queries)`` users (default 10k) against all N
candidates. An all-pairs search over 1M users is 10^12 similarities, about
``N / n_queries`` = 100 times the 1M row here: hours on 2 cores, which is why it is
not the default (pass ``n_queries=None`` to run it anyway).

Training. :func:`bench_training` trains the default config on a synthetic graph of
the BookCrossing-like size (17k users, 26k items, 170k edges; power-law degrees).
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

import numpy as np

from optirag.retrieval.config import RetrieverConfig
from optirag.retrieval.lightgcn import torch_threads, train_lightgcn
from optirag.retrieval.topk import cosine_topk

DEFAULT_SIZES = (10_000, 100_000, 1_000_000)


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _peak_rss_mb() -> float:
    """Peak RSS of this process image.

    Linux ``VmHWM`` (high-water mark of the current address space) where available:
    ``ru_maxrss`` survives ``exec`` and so reports the *parent's* RSS at fork time for a
    subprocess started from a big process (e.g. pytest with torch loaded).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def bench_search(
    n_users: int,
    dim: int = 64,
    n_queries: int | None = 10_000,
    k: int = 4,
    block_size: int = 1024,
    candidate_block_size: int = 4096,
    threads: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Exact top-k of ``min(n_users, n_queries)`` random users against all ``n_users``.

    Runs in this process; :func:`bench_search_subprocess` isolates the peak RSS.
    """
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n_users, dim), dtype=np.float32)
    nq = n_users if n_queries is None else min(n_users, n_queries)
    queries = np.sort(rng.choice(n_users, size=nq, replace=False)) if nq < n_users else np.arange(n_users)
    with torch_threads(threads):
        # warm-up on tiny integer data (both the float32 and the exact float64 path): the
        # first calls page in torch/BLAS code and thread pools, which RSS would otherwise
        # count as search memory
        cosine_topk(rng.integers(-1, 2, size=(300, dim)).astype(np.float32), k, None, None, 64, 128)
    rss_before = _rss_mb()
    t0 = time.perf_counter()
    with torch_threads(threads):
        neigh, sim, _ = cosine_topk(emb, k, queries, None, block_size, candidate_block_size)
    secs = time.perf_counter() - t0
    assert (neigh >= 0).all() and (neigh != queries[:, None]).all()
    return {
        "n_users": n_users, "n_queries": int(nq), "dim": dim, "k": k,
        "block_size": block_size, "candidate_block_size": candidate_block_size,
        "threads": threads, "seconds": round(secs, 3),
        "queries_per_s": round(nq / secs, 1),
        "pairs_per_s": round(nq * n_users / secs, 1),
        "rss_before_search_mb": round(rss_before, 1),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "search_working_mb": round(_peak_rss_mb() - rss_before, 1),
        # float32 similarity block; up to 5x that on rows redone in float64 (topk.py)
        "block_mb": round(4 * min(block_size, nq) * min(candidate_block_size, n_users) / 2**20, 1),
        "block_mb_worst": round(20 * min(block_size, nq) * min(candidate_block_size, n_users) / 2**20, 1),
        "candidate_copy_mb": round(4 * n_users * dim / 2**20, 1),
    }


def bench_search_subprocess(timeout: float | None = None, **kwargs: Any) -> dict[str, Any]:
    """:func:`bench_search` in a fresh interpreter (own peak RSS); same keyword args."""
    code = (
        "import json, sys; from optirag_bench.retrieval import bench_search; "
        "print(json.dumps(bench_search(**json.loads(sys.argv[1]))))"
    )
    # a fixed mmap threshold: glibc otherwise raises it after the first large frees and
    # keeps later ~MB blocks in the heap, so peak RSS would show fragmentation, not the
    # search's live memory
    env = {"MALLOC_MMAP_THRESHOLD_": "1048576", **os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(kwargs)], capture_output=True,
                          text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"bench_search{kwargs} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_search_scaling(
    sizes: tuple[int, ...] = DEFAULT_SIZES,
    dim: int = 64,
    n_queries: int | None = 10_000,
    block_size: int = 1024,
    candidate_block_size: int = 4096,
    threads: int | None = None,
    timeout: float | None = None,
) -> list[dict[str, Any]]:
    """One subprocess per size; a list of :func:`bench_search` dicts."""
    return [bench_search_subprocess(timeout=timeout, n_users=n, dim=dim, n_queries=n_queries,
                                    block_size=block_size, candidate_block_size=candidate_block_size,
                                    threads=threads)
            for n in sizes]


def synthetic_graph(n_users: int = 17_000, n_items: int = 26_000, n_edges: int = 170_000,
                    n_communities: int = 20, p_in: float = 0.8, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A user-item graph with power-law activity and community structure.

    User activity and item popularity are Zipf-like; a user's edge goes to an item of
    its own community with probability ``p_in``, else to any item. Returns exactly
    ``n_edges`` distinct edges as (user_idx, item_idx, user_community, item_community).
    """
    rng = np.random.default_rng(seed)
    uc = rng.integers(0, n_communities, n_users)
    ic = rng.integers(0, n_communities, n_items)
    user_p = 1.0 / np.arange(1, n_users + 1) ** 0.8
    item_w = 1.0 / np.arange(1, n_items + 1) ** 0.8
    by_comm = [np.nonzero(ic == c)[0] for c in range(n_communities)]
    comm_p = [item_w[pool] / item_w[pool].sum() for pool in by_comm]
    keys = np.zeros(0, dtype=np.int64)
    # popular pairs repeat: draw in rounds until n_edges distinct (user, item) pairs exist
    while keys.size < n_edges:
        m = int((n_edges - keys.size) * 1.3) + 16
        users = rng.choice(n_users, size=m, p=user_p / user_p.sum())
        items = rng.choice(n_items, size=m, p=item_w / item_w.sum())
        inside = rng.random(m) < p_in
        for c in range(n_communities):
            sel = np.nonzero(inside & (uc[users] == c))[0]
            items[sel] = rng.choice(by_comm[c], size=sel.size, p=comm_p[c])
        keys = np.unique(np.concatenate([keys, users.astype(np.int64) * n_items + items]))
    keys = np.sort(rng.choice(keys, size=n_edges, replace=False))
    return keys // n_items, keys % n_items, uc, ic


def bench_training(n_users: int = 17_000, n_items: int = 26_000, n_edges: int = 170_000,
                   cfg: RetrieverConfig | None = None, seed: int = 0) -> dict[str, Any]:
    """Train ``cfg`` (default config, torch threads = all cores) on :func:`synthetic_graph`."""
    cfg = cfg or RetrieverConfig(torch_threads=os.cpu_count())
    u, i, uc, _ = synthetic_graph(n_users, n_items, n_edges, seed=seed)
    epoch_secs: list[float] = []
    res = train_lightgcn(u, i, n_users, n_items, cfg, on_epoch=lambda e, l, s: epoch_secs.append(s))
    from optirag.retrieval.embeddings import embedding_for

    emb = embedding_for(cfg, res.user_layers)
    warm = res.user_degree > 0
    t0 = time.perf_counter()
    neigh, _, cold = cosine_topk(emb, cfg.k, None, warm, cfg.search_block_size, cfg.candidate_block_size)
    search_secs = time.perf_counter() - t0
    ok = ~cold
    same = float((uc[neigh[ok]] == uc[np.nonzero(ok)[0]][:, None]).mean())
    return {
        "n_users": n_users, "n_items": n_items, "n_edges": int(res.n_edges),
        "epochs": cfg.epochs, "batch_size": cfg.batch_size, "threads": cfg.torch_threads,
        "train_seconds": round(res.seconds, 2),
        "mean_epoch_seconds": round(float(np.mean(epoch_secs)), 3) if epoch_secs else None,
        "first_loss": res.losses[0] if res.losses else None,
        "final_loss": res.losses[-1] if res.losses else None,
        "all_pairs_search_seconds": round(search_secs, 2),
        "neighbour_same_community": round(same, 4),
        # share a random pair of users would have in common: sum_c (n_c / N)^2
        "community_chance": round(float(np.sum((np.bincount(uc) / n_users) ** 2)), 4),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }


# -- GCN retriever vs LLM retriever on one dataset (the paper's Q2 speed question) ------------

def bench_retrievers(spark: Any, cfg: Any, n_users: int = 500, threads: int = 1,
                     seed: int = 0, echo: Any = print) -> dict[str, Any]:
    """GCN vs LLM retriever in one process, on the same users and the same k.

    Users: ``n_users`` seeded random sample users with training edges. Each retriever
    embeds them and finds every one's k nearest among *those users* (same candidate pool
    on both sides). GCN time = LightGCN training on the whole graph (it cannot train on
    fewer users) + layer averaging + search; LLM time = prompting and embedding the users
    + the same search (model load reported apart). Both run in this process with
    ``threads`` torch threads. The LLM cost grows linearly with users while GCN training
    does not, so the LLM time for every warm user is also extrapolated (labelled as such).
    Also measured: the job's real search (all sample users against all warm users).
    """
    # imported here, not at the top: bench_search's subprocess imports this module and its
    # peak RSS must not count Spark's or transformers' code
    from optirag.config import ConfigError
    from optirag.llm.config import ModelConfig
    from optirag.llm.loading import load_model
    from optirag.retrieval.config import retriever_config
    from optirag.retrieval.embeddings import embedding_for
    from optirag.retrieval.job import load_inputs, user_histories
    from optirag.retrieval.llm_retriever import embed_histories
    from optirag.retrieval.training import sample_user_index, training_edges

    rcfg = retriever_config(cfg).model_copy(update={"torch_threads": threads})
    k = rcfg.k
    t = time.perf_counter()
    inp = load_inputs(spark, cfg)
    read_s = time.perf_counter() - t
    n_all, n_items = len(inp.user_index), len(inp.item_index)
    u, i = training_edges(inp.edges, rcfg)
    degree = np.bincount(u, minlength=n_all)
    q_ids, q_idx = sample_user_index(inp.sample_users, inp.user_index, "cold")
    warm_samples = np.array([j for j in q_idx if j >= 0 and degree[j] > 0], dtype=np.int64)
    if warm_samples.size < 2:
        raise ConfigError("fewer than 2 warm sample users: is the lake ingested?")
    rng = np.random.default_rng(seed)
    users = np.sort(rng.choice(warm_samples, size=min(n_users, warm_samples.size), replace=False))
    pool = np.zeros(n_all, dtype=bool)
    pool[users] = True
    echo(f"{len(users)} benchmark users (of {warm_samples.size} warm sample users), k={k}, "
         f"{threads} torch thread(s)")

    # GCN: train, embed, search
    epoch_s: list[float] = []
    res = train_lightgcn(u, i, n_all, n_items, rcfg, on_epoch=lambda e, l, s: (
        epoch_s.append(s), echo(f"gcn epoch {e}/{rcfg.epochs} loss {l:.5f} ({s:.1f}s)")))
    t = time.perf_counter()
    with torch_threads(threads):
        emb = embedding_for(rcfg, res.user_layers)
        g_neigh, _, _ = cosine_topk(emb, k, users, pool, rcfg.search_block_size, rcfg.candidate_block_size)
    gcn_search_s = time.perf_counter() - t
    echo(f"gcn: trained in {res.seconds:.1f}s, searched in {gcn_search_s:.2f}s")

    # the job's search: every sample user against every warm user
    warm = degree > 0
    known = warm_samples  # cold sample users are flagged, not searched
    t = time.perf_counter()
    with torch_threads(threads):
        cosine_topk(emb, k, known, warm, rcfg.search_block_size, rcfg.candidate_block_size)
    job_search_s = time.perf_counter() - t

    # LLM: histories -> prompts -> mean-pooled hidden states -> the same search
    lc = rcfg.llm
    ids = inp.user_index.set_index("user_idx")["user_id"].astype(str)
    names = [ids[j] for j in users]
    hist = user_histories(spark, cfg, lc.max_items, names)
    mcfg = ModelConfig.model_validate(cfg.model)
    t = time.perf_counter()
    with torch_threads(threads):
        model, tok = load_model(mcfg)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    with torch_threads(threads):
        _, l_warm, l_emb = embed_histories(
            {n: hist.get(n, []) for n in names}, model, tok, lc.max_items, lc.batch_size, lc.max_length,
            progress=lambda d, n: echo(f"llm batches {d}/{n}") if d % 10 == 0 or d == n else None)
        embed_s = time.perf_counter() - t
        t = time.perf_counter()
        l_neigh, _, _ = cosine_topk(l_emb, k, None, l_warm, rcfg.search_block_size, rcfg.candidate_block_size)
        llm_search_s = time.perf_counter() - t
    llm_s = embed_s + llm_search_s
    echo(f"llm: embedded {len(names)} users in {embed_s:.1f}s, searched in {llm_search_s:.3f}s")

    # how much the two retrievers agree (both index the benchmark users' positions)
    pos = np.full(n_all, -1, dtype=np.int64)
    pos[users] = np.arange(users.size)
    g_sets = [set(pos[r[r >= 0]].tolist()) for r in g_neigh]
    overlap = float(np.mean([len(a & set(b[b >= 0].tolist())) / k for a, b in zip(g_sets, l_neigh)]))
    # the speedup is taken from the stored (rounded) times so the report agrees with itself
    gcn_s, llm_s = round(res.seconds + gcn_search_s, 4), round(llm_s, 4)
    llm_per_user = embed_s / len(names)
    return {
        "dataset": cfg.dataset.name, "users": int(len(users)), "k": k, "threads": threads,
        "gcn_seconds": gcn_s,
        "gcn_seconds_excluding_training": round(gcn_search_s, 3),
        "gcn_train_seconds": round(res.seconds, 3),
        "gcn_epochs": rcfg.epochs,
        "gcn_mean_epoch_seconds": round(float(np.mean(epoch_s)), 3) if epoch_s else None,
        "llm_seconds": llm_s,
        "llm_embed_seconds": round(embed_s, 3), "llm_search_seconds": round(llm_search_s, 4),
        "llm_model_load_seconds": round(load_s, 2), "llm": mcfg.name,
        "llm_max_items": lc.max_items, "llm_max_length": lc.max_length, "llm_batch_size": lc.batch_size,
        "llm_users_per_s": round(len(names) / embed_s, 3),
        "speedup": round(llm_s / gcn_s, 3),
        "speedup_excluding_training": round(llm_s / gcn_search_s, 1),
        "neighbour_overlap_gcn_llm": round(overlap, 4),
        "search_users": int(known.size), "search_candidates": int(warm.sum()),
        "search_seconds": round(job_search_s, 3),
        "search_users_per_s": round(known.size / job_search_s, 1),
        "graph": {"users": n_all, "items": n_items, "edges": int(res.n_edges)},
        "read_inputs_seconds": round(read_s, 2),
        # extrapolations (not measurements): every warm user embedded by the LLM
        "estimate_all_warm_users": {
            "users": int(warm.sum()), "llm_seconds": round(llm_per_user * warm.sum(), 1),
            "gcn_seconds": round(res.seconds + job_search_s * warm.sum() / max(known.size, 1), 1),
        },
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }


def plot_retrieval(result: dict[str, Any], path: str) -> None:
    """Two panels: wall times of the retrievers, and the search scaling curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    labels = ["GCN\n(train+search)", "GCN\n(search only)", "LLM\n(embed+search)"]
    vals = [result["gcn_seconds"], result["gcn_seconds_excluding_training"], result["llm_seconds"]]
    bars = a.bar(labels, vals, color=["#3b7dd8", "#8fb8ee", "#d8643b"])
    a.bar_label(bars, labels=[f"{v:.2f}s" for v in vals])
    a.set_yscale("log")
    a.set_ylabel("wall seconds (log)")
    a.set_title(f"{result['dataset']}: {result['users']} users, k={result['k']}, "
                f"{result['threads']} thread(s); speedup {result['speedup']}x")
    sc = result.get("scaling") or []
    if sc:
        n = [s["users"] for s in sc]
        b.plot(n, [s["seconds"] for s in sc], "o-", color="#3b7dd8", label="search seconds")
        b.set_xscale("log")
        b.set_yscale("log")
        b.set_xlabel(f"candidate users ({sc[0].get('queries', '?')} queries each)")
        b.set_ylabel("seconds")
        r = b.twinx()
        r.plot(n, [s["peak_rss_mb"] for s in sc], "s--", color="#d8643b", label="peak RSS MB")
        r.set_ylabel("peak RSS (MB)")
        r.set_ylim(bottom=0)
        b.set_title("exact blocked top-k search scaling")
        lines = b.get_lines() + r.get_lines()
        b.legend(lines, [line.get_label() for line in lines], loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_retrieval_bench(spark: Any, cfg: Any, out_dir: str, n_users: int = 500, threads: int = 1,
                        sizes: tuple[int, ...] = DEFAULT_SIZES, n_queries: int | None = 10_000,
                        echo: Any = print) -> dict[str, Any]:
    """``make bench-retrieval``: :func:`bench_retrievers` + :func:`bench_search_scaling`,
    written to ``<out_dir>/retrieval_<dataset>.json`` and ``retrieval_<dataset>.png``."""
    from optirag.retrieval.config import retriever_config

    result = bench_retrievers(spark, cfg, n_users, threads, echo=echo)
    rcfg = retriever_config(cfg)
    detail = []
    for n in sizes:
        echo(f"search scaling: {n} users ...")
        detail.append(bench_search_subprocess(
            n_users=n, dim=rcfg.embedding_dim, n_queries=n_queries, k=rcfg.k, block_size=rcfg.search_block_size,
            candidate_block_size=rcfg.candidate_block_size, threads=threads))
        echo(f"  {detail[-1]['seconds']}s, peak RSS {detail[-1]['peak_rss_mb']} MB")
    result["scaling"] = [{"users": d["n_users"], "queries": d["n_queries"], "seconds": d["seconds"],
                          "peak_rss_mb": d["peak_rss_mb"], "search_working_mb": d["search_working_mb"],
                          "queries_per_s": d["queries_per_s"]} for d in detail]
    result["scaling_detail"] = detail
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.join(out_dir, f"retrieval_{cfg.dataset.name}")
    with open(f"{stem}.json", "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    plot_retrieval(result, f"{stem}.png")
    return result
