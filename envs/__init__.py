"""Vidur routing environment, workloads, offline execution-time predictor and heuristic routers."""

import gymnasium as gym

from envs.vidur_env import VidurEnvConfig, VidurRoutingEnv
from envs.workload import PRESETS, WorkloadConfig, WorkloadError, preset

ENV_ID = "WarmRoute/VidurRouting-v0"

if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="envs.vidur_env:VidurRoutingEnv")

__all__ = ["ENV_ID", "PRESETS", "VidurEnvConfig", "VidurRoutingEnv", "WorkloadConfig", "WorkloadError", "preset"]
