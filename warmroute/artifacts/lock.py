"""One writer per output directory: ``warmroute pipeline`` and ``warmroute train`` hold ``DIR/.lock`` while they run.

Two processes writing one run directory interleave checkpoints, ``pipeline.json`` and ``progress.jsonl`` and leave a
run that reads as finished but is neither. The lock is an exclusive ``flock`` on ``DIR/.lock``, which also holds the
writer's pid and host: the kernel drops the ``flock`` when its process dies, however it dies, so a second process
either fails to take it (a live writer: refused in one line naming that pid) or takes it while the file still names
another pid (the writer was killed before it could remove the file: a stale lock, taken over and said so). A clean
exit removes the file. ``flock`` works on local disks and NFSv4.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO

from warmroute.artifacts.metadata import ArtifactError
from warmroute.artifacts.run_dir import LOCK_FILE


class DirectoryLock:
    """``with DirectoryLock(path, "--output", log):`` holds ``path/.lock`` (creating ``path`` if needed) for the block.

    If the block leaves ``path`` empty and the lock created it, ``path`` is removed again, so a refused run leaves
    nothing behind.
    """

    def __init__(self, path: str | Path, flag: str, log: Callable[[str], None] = print) -> None:
        self.path = Path(path)
        self.flag = flag
        self.log = log
        self._handle: IO[str] | None = None
        self._created = False

    @property
    def file(self) -> Path:
        return self.path / LOCK_FILE

    def __enter__(self) -> DirectoryLock:
        self._created = not self.path.exists()
        handle = self._acquire()
        stale = _holder(handle)
        if stale:
            self.log(f"{self.flag} {self.path}: took over a stale lock of {_describe(stale)}, which stopped without releasing it")
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
        handle.flush()
        self._handle = handle
        return self

    def _acquire(self) -> IO[str]:
        """The locked, open lock file. Retried when the file was removed or replaced while we waited for its flock
        (its writer was just releasing it): a lock on a file no longer at ``self.file`` guards nothing."""
        for _ in range(10):
            try:
                self.path.mkdir(parents=True, exist_ok=True)
                handle = open(self.file, "a+")
            except OSError as exc:
                raise ArtifactError(
                    f"{self.flag} {self.path}: cannot write there ({exc.strerror}); choose another directory"
                ) from exc
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(handle)
                handle.close()
                raise ArtifactError(
                    f"{self.flag} {self.path}: another warmroute process ({_describe(holder)}) is writing this "
                    "directory; wait for it to finish or choose another directory"
                ) from None
            try:
                if os.stat(self.file).st_ino == os.fstat(handle.fileno()).st_ino:
                    return handle
            except FileNotFoundError:
                pass
            handle.close()
        raise ArtifactError(f"{self.flag} {self.path}: its lock file keeps changing; is another process starting there?")

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None) -> None:
        self.file.unlink(missing_ok=True)  # before the flock goes: a file that outlives its flock means a killed writer
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._created and self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()


def _holder(handle: IO[str]) -> dict[str, object]:
    """The pid and host recorded in the lock file ({} when empty or unreadable)."""
    handle.seek(0)
    try:
        data = json.loads(handle.read() or "{}")
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _describe(holder: dict[str, object]) -> str:
    if not holder:
        return "pid unknown"
    host = holder.get("host")
    return f"pid {holder.get('pid')}" + (f" on {host}" if host and host != socket.gethostname() else "")
