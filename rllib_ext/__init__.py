"""RLlib extensions: heuristic teacher modules, demonstrations, the routing RLModule, behaviour cloning, the
KL-to-reference PPO learner and its schedules, and the training loop."""
