"""Atomic writes: a file or a directory appears whole under its final name, or not at all.

Everything is first written under a hidden name beside the target (same file system, so the final
``os.replace`` is atomic), then renamed into place; a failure or an interrupt removes the staged copy. A reader (a
resumed pipeline, a report, a deployment) therefore never sees half an output, and a killed run leaves at most a
hidden ``.NAME.*.tmp`` behind, never a truncated ``NAME``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _staging_name(final: Path) -> Path:
    """A fresh hidden name beside ``final`` (made with the umask's permissions, unlike ``tempfile``'s private 0600)."""
    return final.with_name(f".{final.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


@contextmanager
def staged_file(final: str | Path) -> Iterator[Path]:
    """Yield an empty temporary file beside ``final``; on success it replaces ``final``, on error it is removed.

    The temporary file is created on entry, so an unwritable directory fails (``OSError``) before any work."""
    final = Path(final)
    temp = _staging_name(final)
    temp.open("x").close()
    try:
        yield temp
        os.replace(temp, final)
    finally:
        temp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a kill never leaves half a file)."""
    with staged_file(path) as temp:
        temp.write_text(text)


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(data, indent=2))


@contextmanager
def staged_dir(final: str | Path) -> Iterator[Path]:
    """Yield an empty directory beside ``final`` to fill; on success it replaces ``final`` (whatever was there is
    deleted), on error it is removed."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = _staging_name(final)
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if final.is_dir():
        shutil.rmtree(final)
    elif final.exists():
        final.unlink()
    staging.rename(final)
