"""Atomic writes: an output appears whole under its final name or not at all, and a failure leaves nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from warmroute.artifacts.atomic import staged_dir, staged_file, write_json


def test_write_json_replaces_the_file_and_leaves_no_staging_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("old")
    write_json(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_failed_file_write_keeps_the_old_file_and_leaves_no_staging_file(tmp_path: Path) -> None:
    path = tmp_path / "router.pt"
    path.write_text("old")
    with pytest.raises(RuntimeError), staged_file(path) as temp:
        temp.write_text("half")
        raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["router.pt"]


def test_staged_dir_replaces_the_old_directory_only_on_success(tmp_path: Path) -> None:
    final = tmp_path / "report"
    final.mkdir()
    (final / "old.md").write_text("old")
    with pytest.raises(RuntimeError), staged_dir(final) as staging:
        (staging / "new.md").write_text("half")
        raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"] and (final / "old.md").is_file()
    with staged_dir(final) as staging:
        (staging / "new.md").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["new.md"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]
