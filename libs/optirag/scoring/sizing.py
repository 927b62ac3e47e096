"""How many scorer actors a run starts and how many CPUs and torch threads each gets, from
the resources Ray gives it (unless ``scoring.actors`` / ``actor_num_cpus`` /
``torch_threads`` set them).

    GPU run (scoring.num_gpus > 0)   one actor per num_gpus of the cluster's GPUs, 1 CPU and
                                     1 torch thread each (the GPU does the work)
    CPU run                          per node: what the read and prompt stages reserve
                                     (read_num_cpus + prompt_num_cpus) stays free; the rest
                                     goes to actors of at most `max_threads_per_actor` threads,
                                     as few as fit (one model copy per actor; a forward's
                                     matmuls use the threads), each asking for its share of
                                     the CPUs and running ceil(share) torch threads

On a 2-core machine that is one actor of 1.5 CPUs and 2 threads: the read and prompt stages
keep 0.5 (two 1-CPU actors starve the read task) and the model uses both cores while they
idle. Ray places actors by their CPU request, so actors of one size fit the largest node.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from optirag.config import ConfigError
from optirag.scoring.config import ScoringConfig


@dataclass(frozen=True)
class Sizing:
    actors: int
    actor_num_cpus: float
    torch_threads: int
    num_gpus: float
    basis: str            # what it was derived from, for the summary

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def size_actors(scfg: ScoringConfig, node_resources: list[dict[str, float]]) -> Sizing:
    """The scorer pool for `scfg` on nodes with these resources ({"CPU": n, "GPU": m})."""
    cpus = [float(r.get("CPU", 0.0)) for r in node_resources] or [1.0]
    if scfg.num_gpus:
        gpus = sum(float(r.get("GPU", 0.0)) for r in node_resources)
        actors = scfg.actors or max(1, int(gpus // scfg.num_gpus))
        return Sizing(actors, scfg.actor_num_cpus or 1.0, scfg.torch_threads or 1, scfg.num_gpus,
                      f"{gpus:g} GPUs")
    reserve = scfg.read_num_cpus + scfg.prompt_num_cpus
    node = max(cpus)
    usable = node - reserve
    if usable <= 0 and not scfg.actor_num_cpus:
        raise ConfigError(f"the largest Ray node has {node:g} CPUs, all kept for the read and prompt "
                          f"stages (scoring.read_num_cpus + prompt_num_cpus = {reserve:g}): lower "
                          "those or set scoring.actor_num_cpus")
    per_node = max(1, math.ceil(usable / scfg.max_threads_per_actor))
    share = scfg.actor_num_cpus or math.floor(100 * usable / per_node) / 100  # down: they must fit
    threads = scfg.torch_threads or max(1, math.ceil(share))
    actors = scfg.actors or max(1, per_node * sum(1 for c in cpus if c >= share))
    return Sizing(actors, share, threads, 0.0,
                  f"{len(cpus)} node(s), largest {node:g} CPUs, {reserve:g} kept for read+prompts")


def ray_node_resources(ray: Any) -> list[dict[str, float]]:
    """Alive nodes' total resources as Ray reports them."""
    return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]
