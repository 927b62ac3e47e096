"""The one way a job starts or joins Ray (the Ray twin of optirag.spark.get_spark).

``ray.address`` null starts a local instance inside the job (this machine); an address
(``auto``, ``127.0.0.1:6379``) joins a running cluster, where the job may itself be a Ray
job (``ray job submit``): then its runtime_env (code, config, env vars) comes from the
submission and is merged with what is passed here. The only thing added here is the fault
variables (optirag.faults), so an armed point also fires inside the job's Ray workers.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any

from optirag import faults

log = logging.getLogger(__name__)


def init_ray(ray_cfg: Any = None, num_cpus: int | None = None) -> Any:
    """``ray.init`` from the ``ray:`` config section unless Ray is already up; returns ray.

    address None -> a local instance (num_cpus from config, or the machine's); otherwise
    join the running cluster (num_cpus is then the cluster's business).
    """
    import ray

    if ray.is_initialized():
        return ray
    address = getattr(ray_cfg, "address", None)
    kwargs: dict[str, Any] = {"include_dashboard": bool(getattr(ray_cfg, "include_dashboard", False))}
    if address is None:
        # Ray >= 2.59 turns token auth on for a local instance and warns so at every start
        # (it stays on); that module warns only about the auth mode, its errors still show.
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        n = num_cpus if num_cpus is not None else getattr(ray_cfg, "num_cpus", None)
        if n is not None:
            kwargs["num_cpus"] = n
        # "local", not None: ray.init(None) joins the last `ray start` cluster of this
        # machine's default temp dir, so a local-mode job would silently run on someone's cluster
        kwargs["address"] = "local"
    else:
        kwargs["address"] = address
    job_env = _job_env_vars()
    env = {k: v for k, v in faults.environment().items() if k not in job_env}
    if env:
        kwargs["runtime_env"] = {"env_vars": env}
    ray.init(**kwargs)
    if address is not None:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        log.info("joined Ray at %s: %d nodes, %s CPUs", address, len(nodes),
                 ray.cluster_resources().get("CPU", 0))
    return ray


def _job_env_vars() -> dict:
    """The env_vars of the Ray job this driver runs in (`ray job submit`), else {}. Its
    launcher already put the armed faults there, and Ray refuses to merge a runtime_env
    that sets one of them again."""
    job = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR") or "{}")
    return (job.get("runtime_env") or {}).get("env_vars") or {}


def largest_node_cpus(ray: Any) -> float:
    """CPUs of the biggest alive node: a task asking for more than that waits forever, even
    when the cluster as a whole has enough (the CPUs of two nodes cannot be combined)."""
    cpus = [float(n["Resources"].get("CPU", 0.0)) for n in ray.nodes() if n.get("Alive")]
    return max(cpus, default=1.0) or 1.0
