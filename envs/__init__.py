"""The simulated world: vidur glue (``sim``), the prefix cache (``prefix``), routers (``routers``), evaluation
(``evaluation``), the routing env (``vidur_env``) and its observation layout (``observation``).

Importing ``envs`` or ``envs.errors`` loads nothing heavy; the env registers itself with Gymnasium when
``envs.vidur_env`` is imported. docs/architecture.md draws the layers.
"""
