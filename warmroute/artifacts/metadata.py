"""Metadata that travels with every artefact (demo datasets, BC checkpoints, training runs).

Each artefact directory holds a ``metadata.json`` naming its ``kind``, the observation layout it was made for, the
env config and the library versions. Readers call :func:`read_metadata` and ``layout.check_compatible`` so that a
mismatch is refused with one line instead of mis-reading tensors. JSON only: nothing on disk runs code when loaded.
"""

from __future__ import annotations

import json
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from envs.errors import WarmRouteError
from warmroute.artifacts.run_dir import LOCK_FILE, METADATA_FILE

METADATA_FORMAT_VERSION = 1
"""Layout version of every ``metadata.json`` and of ``pipeline.json`` whose kind is not in :data:`KIND_FORMAT_VERSIONS`:
a reader refuses any other version."""
KIND_FORMAT_VERSIONS = {"policy": 2}
"""Kinds whose format moved on. policy 2: weights as safetensors and the architecture as JSON (1 was RLlib's
pickled module checkpoint, which runs code when loaded)."""
_OLD_FORMATS = {("policy", 1): " holds pickled RLlib weights, which could run code when loaded, and is not read"}


def format_version(kind: str) -> int:
    return KIND_FORMAT_VERSIONS.get(kind, METADATA_FORMAT_VERSION)


class ArtifactError(WarmRouteError):
    """A missing, corrupted or mismatched artefact; the message names the path and the fix."""


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("warmroute", "ray", "torch", "vidur", "numpy", "gymnasium", "pyarrow"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def write_metadata(directory: Path, kind: str, **fields: Any) -> dict[str, Any]:
    data = {"kind": kind, "format_version": format_version(kind), **fields, "versions": library_versions()}
    (directory / METADATA_FILE).write_text(json.dumps(data, indent=2, sort_keys=False))
    return data


def read_metadata(directory: str | Path, kind: str, flag: str) -> dict[str, Any]:
    """Metadata of the ``kind`` artefact at ``directory``. ``flag`` says where the path came from, for errors: a
    ``{flag:field}`` placeholder (``"{flag:policy}"``, which the CLI spells ``--policy``) or plain words (``"run"``)."""
    path = Path(directory)
    if not path.is_dir():
        raise ArtifactError(f"{flag} {path}: no such directory")
    meta_path = path / METADATA_FILE
    if not meta_path.is_file():
        raise ArtifactError(f"{flag} {path}: no {METADATA_FILE}; is this a WarmRoute {kind} directory?")
    try:
        data = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{flag} {meta_path}: corrupted JSON ({exc.msg if hasattr(exc, 'msg') else exc})") from exc
    if not isinstance(data, dict):
        raise ArtifactError(f"{flag} {meta_path}: not a WarmRoute metadata object")
    if data.get("kind") != kind:
        raise ArtifactError(f"{flag} {path}: holds a '{data.get('kind')}' artefact, expected '{kind}'")
    found, wanted = data.get("format_version"), format_version(kind)
    if found != wanted:
        why = _OLD_FORMATS.get((kind, found), f", this WarmRoute reads {wanted}")
        raise ArtifactError(f"{flag} {path}: {kind} format version {found}{why}; re-create it with this WarmRoute")
    return data


def require_fresh_output(directory: str | Path, flag: str = "{flag:output}") -> Path:
    """Refuse to overwrite a non-empty directory (artefacts are immutable once written); the lock file of this
    run's own :class:`~warmroute.artifacts.lock.DirectoryLock` does not count."""
    path = Path(directory)
    if path.exists() and (not path.is_dir() or any(p.name != LOCK_FILE for p in path.iterdir())):
        raise ArtifactError(f"{flag} {path}: already exists and is not empty; choose a new directory or remove it")
    return path
