"""Is there headroom over ``speed_aware`` on the mixed fleet from knowing request sizes?

Evaluates size-aware variants of ``speed_aware``: a request whose prompt exceeds ``threshold`` tokens is routed by
``(outstanding + 1) / speed**exponent`` (long prompts pushed harder towards fast GPUs); shorter ones by
``outstanding + 1`` alone. Threshold 0 with exponent 1 is ``speed_aware`` itself.

Run:
    .venv/bin/python scripts/size_aware_probe.py        # ~1 min on 2 cores

Expect (2-core x86): every variant other than speed_aware itself is slower, by 0.8% to 12% (docs/warm_start.md).
"""

from __future__ import annotations

import numpy as np

from envs.evaluation.evaluate import evaluate_policy, evaluation_seeds
from envs.observation import REPLICA_FEATURE_INDEX, REPLICA_FEATURES, ObservationLayout
from envs.sim.workload import preset
from envs.vidur_env import VidurEnvConfig

SCALES = dict(REPLICA_FEATURES)


class SizeAwareRouter:
    def __init__(self, layout: ObservationLayout, threshold: int, exponent: float) -> None:
        self.layout, self.threshold, self.exponent = layout, threshold, exponent
        self.name = f"threshold {threshold} exponent {exponent:g}"

    def reset(self, seed: int) -> None:
        pass

    def act(self, obs: np.ndarray) -> int:
        replicas, request = self.layout.split(obs)
        outstanding = replicas[:, REPLICA_FEATURE_INDEX["outstanding_requests"]] * SCALES["outstanding_requests"]
        speed = replicas[:, REPLICA_FEATURE_INDEX["relative_speed"]]
        prompt = request[0] * dict(self.layout.to_dict()["request_features"])["prefill_tokens"]
        exponent = self.exponent if prompt > self.threshold else 0.0
        return int(np.argmin((outstanding + 1) / speed**exponent))


def main() -> None:
    env = VidurEnvConfig(workload=preset("heterogeneous"))
    seeds = evaluation_seeds(0, 3)
    base = None
    for threshold in (0, 500, 1000, 2000):
        for exponent in (1.0, 2.0, 3.0):
            latency = evaluate_policy(SizeAwareRouter(env.layout, threshold, exponent), env, seeds)["mean_e2e_s"]
            base = base or latency
            print(
                f"threshold {threshold:>4}  exponent {exponent:g}  mean e2e {latency:.3f} s  vs speed_aware {latency / base - 1:+.1%}"
            )


if __name__ == "__main__":
    main()
