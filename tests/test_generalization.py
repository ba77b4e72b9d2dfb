"""benchmarks/generalization.py: the grid's cells are the measured presets at the asked load, the bar is the best
production router of each cell, and bad flags are one-line errors."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from envs.prefix.workloads import MOONCAKE_TRACE
from envs.sim.workload import preset

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("generalization", ROOT / "benchmarks" / "generalization.py")
gen = importlib.util.module_from_spec(_spec)
sys.modules["generalization"] = gen  # dataclasses look their module up there
_spec.loader.exec_module(gen)


@pytest.mark.parametrize(("fleet", "name"), list(gen.FLEET_PRESETS.items()))
def test_a_cell_at_85_percent_is_the_measured_preset_on_the_held_out_windows(fleet: str, name: str) -> None:
    windows = gen.cell_windows(gen.Cell("mooncake", fleet, 0.85))
    assert [w.trace_start for w in windows] == [9000, 10000, 11000]
    for w in windows:
        assert w.trace_time_scale == pytest.approx(preset(name).trace_time_scale)
        assert w.devices == preset(name).devices and w.trace_lead_in == 2000


def test_a_lower_load_replays_the_trace_slower_in_proportion() -> None:
    (w, *_) = gen.cell_windows(gen.Cell("mooncake", "8xh100", 0.5))
    assert w.trace_time_scale == pytest.approx(preset("mooncake_8").trace_time_scale * 0.85 / 0.5)


def test_another_trace_uses_its_last_windows_at_the_same_rate_per_replica(tmp_path: Path) -> None:
    lines = MOONCAKE_TRACE.read_text().splitlines()[:3000]
    slow = []
    for line in lines:  # the same requests arriving at half the rate
        row = json.loads(line)
        row["timestamp"] *= 2
        slow.append(json.dumps(row))
    path = tmp_path / "slow.jsonl"
    path.write_text("\n".join(slow) + "\n")
    windows = gen.cell_windows(gen.Cell(f"jsonl:{path}", "4xh100", 0.85))
    assert [w.trace_start for w in windows] == [3000 - 3 * 512, 3000 - 2 * 512, 3000 - 512]
    # half the arrival rate of the held-out Mooncake windows (those arrive at 3.70 req/s, this slice at about 3.2 / 2)
    assert 0.3 < windows[0].trace_time_scale / preset("mooncake").trace_time_scale < 0.6


def test_another_trace_is_loaded_by_prompt_tokens_not_requests(tmp_path: Path) -> None:
    """Twice the prompt per request at the same arrival times is twice the prefill work: the trace is replayed at half
    the speed (its time scale doubles), so the cell's load means the same tokens per second per replica."""
    lines = MOONCAKE_TRACE.read_text().splitlines()[:3000]
    scales = []
    for factor in (1, 2):
        rows = []
        for line in lines:
            row = json.loads(line)
            row["input_length"] *= factor
            row["hash_ids"] = row["hash_ids"] * factor
            rows.append(json.dumps(row))
        path = tmp_path / f"x{factor}.jsonl"
        path.write_text("\n".join(rows) + "\n")
        scales.append(gen.cell_windows(gen.Cell(f"jsonl:{path}", "4xh100", 0.85))[0].trace_time_scale)
    assert scales[1] / scales[0] == pytest.approx(2.0, rel=1e-9)


def test_the_bar_is_the_production_router_with_the_lowest_mean_e2e_in_each_cell() -> None:
    cell = gen.Cell("mooncake", "4xh100", 0.85)
    results = {
        ("a", cell): {"mean_e2e_s": 6.0, "p90_ttft_s": 3.0},
        ("b", cell): {"mean_e2e_s": 5.0, "p90_ttft_s": 4.0},
        ("p1", cell): {"mean_e2e_s": 5.5, "p90_ttft_s": 2.0},
        ("p2", cell): {"mean_e2e_s": 5.0, "p90_ttft_s": 3.0},
    }
    (row,) = gen.summarise(results, ["a", "b"], ["p1", "p2"], [cell])
    assert row["best"] == "p2"
    assert row["e2e_ratio"] == {"mean": pytest.approx(1.1), "min": 1.0, "max": 1.2}
    assert row["p90_ttft_ratio"] == {"mean": pytest.approx(7 / 6), "min": 1.0, "max": pytest.approx(4 / 3)}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--fleets", "3xh100"], "--fleets: unknown fleet"),
        (["--loads", "0.5,2"], "--loads"),
        (["--policy", "no/such/policy"], "--policy no/such/policy"),
        (["--prefix-workload", "jsonl:/no/such.jsonl"], "cannot open trace"),
    ],
)
def test_bad_flags_are_one_line_errors_with_exit_2_and_nothing_written(tmp_path: Path, args: list[str], needle: str) -> None:
    out = tmp_path / "out"
    base = ["--policy", "least_ttft", "--output", str(out), "--cache", str(tmp_path / "cache")]
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "generalization.py"), *base, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert not list(tmp_path.iterdir())
