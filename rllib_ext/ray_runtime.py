"""Start or join Ray the same way from every entry point.

``RAY_ADDRESS`` (set by ``ray job submit`` and on cluster nodes) joins that cluster; otherwise a private local
instance starts with ``address="local"``, so a stale ``/tmp/ray/ray_current_cluster`` left by a killed head is
never joined by accident.
"""

from __future__ import annotations

import logging
import os

import ray


def ensure_ray() -> None:
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING)


def cpus_per_runner(num_env_runners: int, reserved: int = 0) -> float:
    """CPUs to ask per env runner: one each when the cluster has them (after ``reserved`` CPUs for learners),
    else an even share (oversubscribe rather than wait forever for resources)."""
    available = max(1.0, float(ray.cluster_resources().get("CPU", 1.0)) - reserved)
    return 1.0 if num_env_runners <= available else max(0.01, available / num_env_runners)
