"""Two runs, one directory: a live writer's lock refuses a second ``pipeline``/``train``; a killed writer's is taken over."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from warmroute.artifacts.lock import DirectoryLock
from warmroute.artifacts.metadata import ArtifactError
from warmroute.artifacts.run_dir import LOCK_FILE

HOLD = "import sys, time; from warmroute.artifacts.lock import DirectoryLock\nwith DirectoryLock(sys.argv[1], '--output'):\n    print('held', flush=True); time.sleep(120)"


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, Path]]:
    """Another process holding the lock of ``tmp_path/run`` (the lock ``pipeline`` and ``train`` take)."""
    directory = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(directory)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    yield process, directory
    process.kill()
    process.wait()


@pytest.mark.parametrize(
    "command",
    [
        ("pipeline", "--num-requests", "20", "--output"),
        ("train", "--num-requests", "20", "--iterations", "1", "--output"),
    ],
)
def test_a_second_run_on_a_directory_a_live_process_writes_is_refused_naming_its_pid(holder, command, cli_in_process) -> None:
    process, directory = holder
    result = cli_in_process(*command, str(directory))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"--output {directory}: another warmroute process (pid {process.pid})" in lines[0]
    assert sorted(p.name for p in directory.iterdir()) == [LOCK_FILE]  # nothing written next to the holder's work


def test_a_stale_lock_of_a_killed_writer_is_taken_over_and_said(holder) -> None:
    process, directory = holder
    process.kill()  # SIGKILL: no chance to remove its lock file
    process.wait()
    assert json.loads((directory / LOCK_FILE).read_text())["pid"] == process.pid
    said: list[str] = []
    with DirectoryLock(directory, "--output", said.append):
        assert json.loads((directory / LOCK_FILE).read_text())["pid"] != process.pid
    assert len(said) == 1 and f"took over a stale lock of pid {process.pid}" in said[0]
    assert not (directory / LOCK_FILE).exists()  # released on a clean exit


def test_a_refused_run_leaves_no_directory_behind(tmp_path: Path) -> None:
    directory = tmp_path / "new"
    with pytest.raises(ArtifactError, match="bad input"), DirectoryLock(directory, "--output"):
        assert (directory / LOCK_FILE).is_file()
        raise ArtifactError("bad input")
    assert not directory.exists()
