"""Metric names shared by the learner, callbacks, TensorBoard writer, console line, `compare` and Tune.

Namespaces: ``kl/*`` (reference KL and its coefficient), ``losses/*`` (learner terms), ``env/*`` (routing quality
of finished training episodes), ``perf/*`` (speed). docs/metrics.md documents every key.
"""

# Learner (logged per module by KLRefPPOTorchLearner)
KL_REF = "kl/ref_kl"
KL_COEF = "kl/kl_ref_coef"
ENTROPY_COEF = "losses/entropy_coef"
POLICY_FROZEN = "losses/policy_frozen"

# Env runners (logged by RoutingMetricsCallback from the env's episode-end info)
MEAN_E2E = "env/mean_e2e_s"
P99_E2E = "env/p99_e2e_s"
MEAN_TTFT = "env/mean_ttft_s"
P99_TTFT = "env/p99_ttft_s"
THROUGHPUT = "env/throughput_rps"
BALANCE = "env/balance_score"
ACTION_FRACTION = "env/action_distribution/replica_{}"
EPISODE_INFO_KEYS = {
    MEAN_E2E: "mean_e2e_s",
    P99_E2E: "p99_e2e_s",
    MEAN_TTFT: "mean_ttft_s",
    P99_TTFT: "p99_ttft_s",
    THROUGHPUT: "throughput_rps",
    BALANCE: "balance_score",
}
PREEMPTIONS = "env/preemptions"
SLO_ATTAINMENT = "env/slo_attainment"
GOODPUT = "env/goodput_rps"
OPTIONAL_EPISODE_INFO_KEYS = {PREEMPTIONS: "preemptions", SLO_ATTAINMENT: "slo_attainment", GOODPUT: "goodput_rps"}
"""Logged when the episode's info has them (SLO keys only when the workload sets SLOs)."""

# Driver-side (written by the training loop)
EPISODE_RETURN = "env/episode_return_mean"
REWARD_WARMUP = "env/reward_warmup"
ENTROPY = "losses/entropy"
ENV_STEPS = "perf/env_steps_lifetime"
ENV_STEPS_PER_S = "perf/env_steps_per_s"

# Tune sweeps (tuning.sweep): the score every result carries, and the held-out evaluation at the end of a trial
TUNE_SCORE = "tune/score_s"
EVAL_SCORE = "eval/score_s"
EVAL_PREFIX = "eval/"
IN_EFFECT_PREFIX = "in_effect/"
