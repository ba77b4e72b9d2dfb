"""Only what extends RLlib: the routing RLModule (``models``), the KL-to-reference PPO learner (``kl_ref_learner``)
and its coefficient schedules (``schedules``, ``adaptive``), heuristic teacher modules and demonstration collection
(``teacher``, ``demos``), behaviour cloning (``bc``), the training config and loop shared by ``train`` and every Tune
trial (``train_config``, ``session``, ``train``), callbacks and metric names (``callbacks``, ``metrics``), saved-policy
I/O (``policy_io``) and Ray start-up (``ray_runtime``). The application built on it lives in ``warmroute/``."""
