"""Project conventions that review enforces, checked on the source: RLlib's public names, ``@override`` on hooks."""

from __future__ import annotations

import ast
import inspect
import textwrap
from pathlib import Path

import pytest

from rllib_ext.callbacks import RoutingMetricsCallback
from rllib_ext.kl_ref_learner import KLRefPPOTorchLearner
from rllib_ext.models import RoutingModule
from rllib_ext.teacher import HeuristicTeacherModule

ROOT = Path(__file__).resolve().parents[1]
# RLlib keys that must come from its constants (DEFAULT_MODULE_ID, ENV_RUNNER_RESULTS, LEARNER_RESULTS, ...).
TYPED_OUT = ('"default_policy"', '"env_runners"', '"learners"', '"episode_return_mean"', "learner_group/learner")


def test_rllib_ext_uses_rllib_constants_instead_of_typed_out_keys() -> None:
    for path in sorted((ROOT / "rllib_ext").glob("*.py")):
        text = path.read_text()
        assert not [s for s in TYPED_OUT if s in text], path.name


@pytest.mark.parametrize("cls", [KLRefPPOTorchLearner, RoutingModule, HeuristicTeacherModule, RoutingMetricsCallback])
def test_every_rllib_hook_we_override_is_marked_override(cls: type) -> None:
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    for node in (n for n in body if isinstance(n, ast.FunctionDef)):
        inherited = any(hasattr(base, node.name) for base in cls.__mro__[1:])
        decorators = [d.func.id for d in node.decorator_list if isinstance(d, ast.Call) and isinstance(d.func, ast.Name)]
        assert ("override" in decorators) == inherited, f"{cls.__name__}.{node.name}"
