"""Errors name the config field in the library and the flag on the command line, with the same message."""

from __future__ import annotations

import pickle

import pytest

from envs.errors import WarmRouteError
from envs.sim.workload import preset
from rllib_ext.train_config import PPOSettings


def test_the_library_names_the_field_and_the_cli_names_the_flag(cli_in_process) -> None:
    with pytest.raises(WarmRouteError) as caught:
        PPOSettings(minibatch_size=512, train_batch_size=256)
    assert str(caught.value) == "minibatch_size (512) must not exceed train_batch_size (256)"
    assert caught.value.field == "minibatch_size"
    result = cli_in_process("train", "--minibatch-size", "512", "--train-batch-size", "256", "--output", "unused")
    assert result.returncode == 2
    assert result.stderr == "warmroute train: error: --minibatch-size (512) must not exceed --train-batch-size (256)\n"


def test_a_field_with_another_flag_name_is_spelt_as_that_subcommands_flag(cli_in_process) -> None:
    with pytest.raises(WarmRouteError, match=r"^slo_ttft_s must be > 0 seconds"):
        preset("default").replace(slo_ttft_s=-1.0)
    result = cli_in_process("evaluate", "--slo-ttft", "-1", "--policy", "round_robin")
    assert result.returncode == 2 and "error: --slo-ttft must be > 0 seconds (got -1.0)" in result.stderr


def test_an_error_keeps_its_fields_through_pickling_as_ray_sends_it() -> None:
    error = pickle.loads(pickle.dumps(WarmRouteError("{flag} must be > 0 (got 0)", field="qps")))
    assert str(error) == "qps must be > 0 (got 0)"
    assert error.render(lambda field: "--" + field) == "--qps must be > 0 (got 0)"
