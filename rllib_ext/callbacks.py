"""RLlib callbacks, one concern each."""

from __future__ import annotations

from typing import Any

from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.utils.annotations import override

from rllib_ext.metrics import ACTION_FRACTION, EPISODE_INFO_KEYS, OPTIONAL_EPISODE_INFO_KEYS

# RLlib 2.60 clears mean stats at every reduce: env/* metrics are means over the episodes that finished during the
# iteration (absent when none did); the window only bounds how many are kept within one iteration.
EPISODE_WINDOW = 1000


class RoutingMetricsCallback(RLlibCallback):
    """Log each finished episode's latency, throughput and routing balance (from the env's final ``info``)."""

    @override(RLlibCallback)
    def on_episode_end(self, *, episode: Any, metrics_logger: Any = None, **kwargs: Any) -> None:
        if metrics_logger is None:
            return
        info = episode.get_infos(-1)
        if not info or "mean_e2e_s" not in info:
            return
        for key, info_key in EPISODE_INFO_KEYS.items():
            metrics_logger.log_value(key, float(info[info_key]), reduce="mean", window=EPISODE_WINDOW)
        for key, info_key in OPTIONAL_EPISODE_INFO_KEYS.items():
            if info_key in info:
                metrics_logger.log_value(key, float(info[info_key]), reduce="mean", window=EPISODE_WINDOW)
        for replica, fraction in enumerate(info["action_distribution"]):
            metrics_logger.log_value(ACTION_FRACTION.format(replica), float(fraction), reduce="mean", window=EPISODE_WINDOW)
