"""Lookahead demonstrations (scripts/lookahead_demos.py): labelled by forked rollouts, cloned by `warmroute pretrain`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rllib_ext.demos import load_demos

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "lookahead_demos.py"
TINY = ["--workload", "mooncake", "--trace-start", "2000", "--trace-lead-in", "2000", "--trace-windows", "13"]
TINY += ["--num-requests", "12", "--episodes", "2", "--horizon", "3", "--workers", "2"]


def _script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_lookahead_demonstrations_clone_and_a_dagger_round_clones_with_them(tmp_path: Path, run_cli) -> None:
    first = _script(*TINY, "--output", str(tmp_path / "round0"))
    assert first.returncode == 0, first.stderr
    table, meta = load_demos(tmp_path / "round0")
    assert table.num_rows == 24 and meta["teachers"] == ["lookahead"]
    assert len(meta["lookahead"]["episodes"]) == 2 and meta["lookahead"]["horizon"] == 3
    # Every replica's rollout return is kept: the label's is the best, and the ties are exactly the best ones.
    returns = np.array(table.column("teacher_returns").to_pylist())
    label = table.column("teacher_action").to_numpy()
    assert returns.shape == (24, 4)
    np.testing.assert_array_equal(returns[np.arange(24), label], returns.max(axis=1))
    np.testing.assert_array_equal(
        np.array(table.column("teacher_ties").to_pylist()), returns >= returns.max(axis=1, keepdims=True)
    )
    clone = run_cli(
        "pretrain", "--demo", str(tmp_path / "round0"), "--output", str(tmp_path / "bc"), "--epochs", "2", "--cost-weight", "0.5", "--quiet"
    )  # fmt: skip
    assert clone.returncode == 0, clone.stderr
    bc_meta = json.loads((tmp_path / "bc" / "metadata.json").read_text())
    assert bc_meta["bc_config"]["cost_weight"] == 0.5 and np.isfinite(bc_meta["validation"]["greedy_regret"])
    dagger = _script(*TINY, "--driver", str(tmp_path / "bc"), "--output", str(tmp_path / "round1"))
    assert dagger.returncode == 0, dagger.stderr
    assert load_demos(tmp_path / "round1")[1]["lookahead"]["driver"] == str(tmp_path / "bc")
    # A second improvement step: the rollouts follow the clone instead of a router.
    step2 = _script(*TINY, "--base", str(tmp_path / "bc"), "--output", str(tmp_path / "step2"))
    assert step2.returncode == 0, step2.stderr
    table2, meta2 = load_demos(tmp_path / "step2")
    assert meta2["lookahead"]["base"] == str(tmp_path / "bc") and table2.num_rows == 24
    # Finished episodes are cached next to the output, so a killed run resumes instead of starting over.
    assert sorted(p.name for p in (tmp_path / "round1.episodes").iterdir()) == ["seed0.npz", "seed1.npz"]
    # The rounds are cloned together, their episodes kept apart for the validation split.
    pooled = run_cli(
        "pretrain",
        "--demo",
        f"{tmp_path / 'round0'},{tmp_path / 'round1'}",
        "--output",
        str(tmp_path / "bc1"),
        "--epochs",
        "2",
        "--quiet",
    )
    assert pooled.returncode == 0, pooled.stderr
    meta = json.loads((tmp_path / "bc1" / "metadata.json").read_text())
    assert meta["demo_dirs"] == [str(tmp_path / "round0"), str(tmp_path / "round1")]
    assert meta["train_rows"] + meta["validation_rows"] == 48


def test_lookahead_demonstrations_refuse_a_zero_horizon_in_one_line(tmp_path: Path) -> None:
    result = _script(*TINY[:-6], "--horizon", "0", "--output", str(tmp_path / "out"))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == "lookahead_demos.py: --horizon, --episodes and --workers must be >= 1"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("base", ["no_such_router", "not_a_policy_dir"])
def test_lookahead_demonstrations_refuse_an_unknown_base_in_one_line(tmp_path: Path, base: str) -> None:
    if base == "not_a_policy_dir":
        base = str(tmp_path)
    result = _script(*TINY, "--base", base, "--output", str(tmp_path / "out"))
    assert result.returncode != 0
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("lookahead_demos.py: --base") and base in line
    assert not (tmp_path / "out").exists()
