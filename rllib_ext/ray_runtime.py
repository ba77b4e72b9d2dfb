"""Start or join Ray the same way from every entry point, with a quiet console.

``RAY_ADDRESS`` (set by ``ray job submit`` and on cluster nodes) joins that cluster; otherwise a private local
instance starts with ``address="local"``, so a stale ``/tmp/ray/ray_current_cluster`` left by a killed head is
never joined by accident.

Quiet by default: the workers' (env runners', learners', evaluation tasks') stdout and stderr stay in Ray's session
log directory instead of being streamed to the console (``log_to_driver=False``, which also ends Ray's
log-deduplication notices), and a run directory given to :func:`configure` gets a ``ray-logs`` link to that
directory. ``configure(verbose=True)`` (``--verbose``) streams them again and logs Ray at INFO.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import ray

RAY_LOGS_LINK = "ray-logs"
"""Name of the link, inside a run directory, to the Ray session's log directory (worker logs)."""

_settings: dict[str, object] = {"verbose": False, "log_dir": None}


class _DropMessage(logging.Filter):
    """Drops records whose message starts with ``prefix`` (one known, harmless line of a third-party logger)."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


def silence(logger: str, prefix: str) -> None:
    """Drop the one message of ``logger`` starting with ``prefix`` (idempotent; other messages still show)."""
    target = logging.getLogger(logger)
    if not any(isinstance(f, _DropMessage) and f.prefix == prefix for f in target.filters):
        target.addFilter(_DropMessage(prefix))


def configure(*, verbose: bool = False, log_dir: str | Path | None = None) -> None:
    """Settings of the next :func:`ensure_ray` in this process: ``verbose`` streams worker logs to the console;
    ``log_dir`` (a run or pipeline directory) gets the ``ray-logs`` link to Ray's session logs."""
    _settings.update(verbose=verbose, log_dir=None if log_dir is None else Path(log_dir))


def ensure_ray() -> None:
    if ray.is_initialized():
        return
    verbose = bool(_settings["verbose"])
    options = {"log_to_driver": verbose, "logging_level": logging.INFO if verbose else logging.WARNING}
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, **options)
    else:
        # Our own private instance has token authentication on (good), and Ray 2.60 says so as a WARNING at every
        # start; it is not a warning about anything the user can or should change here.
        silence("ray._private.authentication.authentication_token_setup", "Token authentication is enabled")
        ray.init(address="local", include_dashboard=False, **options)
    _link_session_logs(_settings["log_dir"])


def _link_session_logs(log_dir: object) -> None:
    """``log_dir/ray-logs`` -> this node's Ray session log directory (replaced by a later session's)."""
    if not isinstance(log_dir, Path):
        return
    # Private attribute: Ray 2.60 has no public accessor for the session's log directory on this node.
    logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    link = log_dir / RAY_LOGS_LINK
    log_dir.mkdir(parents=True, exist_ok=True)
    if link.is_symlink():
        link.unlink()
    if not link.exists():
        link.symlink_to(logs, target_is_directory=True)


def cpus_per_runner(num_env_runners: int, reserved: int = 0) -> float:
    """CPUs to ask per env runner: one each when the cluster has them (after ``reserved`` CPUs for learners),
    else an even share (oversubscribe rather than wait forever for resources)."""
    available = max(1.0, float(ray.cluster_resources().get("CPU", 1.0)) - reserved)
    return 1.0 if num_env_runners <= available else max(0.01, available / num_env_runners)
