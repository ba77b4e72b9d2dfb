"""``warmroute submit``: run a ``warmroute`` command on a Ray cluster through Ray Jobs.

The checkout this module lives in becomes the job's ``working_dir`` (Ray uploads it, honouring ``.gitignore`` and
``.rayignore``); the entrypoint is ``python -m warmroute.cli ...`` with one CPU reserved for the driver. The command is
checked before anything is uploaded: it must parse with warmroute's own parser, and every path it reads or writes
must be visible to the cluster:

* an input is either inside the uploaded checkout (relative to the current directory, not ignored) or under a
  ``--shared-dir`` (storage every node mounts at the same path, e.g. NFS);
* an output must be under a ``--shared-dir``: the job's working directory is a temporary copy on whichever node runs
  the driver, and Ray deletes it with the job.

Paths are refused with a message saying how to stage them, never uploaded on the side: what the job reads is what
the user can see in the checkout or on shared storage. Ray 2.60 enables token authentication, and the Jobs client
sends a token only when told to, so the token (``--token-file``, ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or
``~/.ray/auth_token``) goes out explicitly as a Bearer header.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import os
import shlex
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import TYPE_CHECKING

from envs.errors import WarmRouteError
from envs.routers.heuristics import is_router
from warmroute.cli.flags import add_flag

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

HELP = "run a warmroute command on a Ray cluster (Ray Jobs)"

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
ENTRYPOINT = "python -m warmroute.cli"
ENTRYPOINT_NUM_CPUS = 1
REPO_ROOT = Path(__file__).resolve().parents[2]

# argparse dests of warmroute subcommands that name paths. Inputs are read; outputs are written (``--resume`` is both).
INPUT_DESTS = ("pretrained_actor_path", "demo", "runs", "space")
OUTPUT_DESTS = ("output", "resume", "json", "plot")


class SubmitError(WarmRouteError):
    """Bad ``warmroute submit`` input or an unusable cluster; printed as one line, exit status 2, nothing submitted."""


def add_args(submit: argparse.ArgumentParser) -> None:
    """Flags of ``warmroute submit`` (registered in warmroute.cli.main like every subcommand)."""
    add_flag(
        submit,
        "--address",
        "Ray dashboard URL of the cluster",
        shown_default=f"$RAY_API_SERVER_ADDRESS or {DEFAULT_ADDRESS}",
        metavar="URL",
    )
    add_flag(
        submit,
        "--token-file",
        "file holding the cluster's auth token",
        shown_default="$RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token",
        metavar="PATH",
    )
    add_flag(
        submit,
        "--shared-dir",
        "absolute directory every cluster node mounts at the same path (repeatable); "
        "outputs must be under one, inputs outside the checkout too",
        action="append",
        metavar="DIR",
    )
    add_flag(submit, "--no-wait", "print the job id and return instead of streaming its logs", action="store_true")
    submit.add_argument(
        "job_command",
        nargs=argparse.REMAINDER,
        metavar="-- COMMAND",
        help="the warmroute command to run (`-- evaluate ...` or `-- warmroute evaluate ...`)",
    )


def run(args: argparse.Namespace, build_parser: Callable[[], argparse.ArgumentParser]) -> int:
    """Submit the command after ``--``, first parsed by ``build_parser()`` (warmroute's own parser, passed in by
    ``warmroute.cli.main`` so that this module does not import it back)."""
    if not (REPO_ROOT / "pyproject.toml").is_file():
        raise SubmitError(
            f"warmroute is installed at {REPO_ROOT}, not run from a source checkout; the job uploads the "
            "checkout as its working_dir, so run `python -m warmroute.cli submit` from a clone of the repository"
        )
    command = job_command(args.job_command)
    shared = _shared_dirs(getattr(args, "shared_dir", []))
    cwd = Path.cwd().resolve()
    parsed = parse_command(command, build_parser())
    check_paths(parsed, cwd, shared)
    entrypoint = entrypoint_for(command, cwd)
    address = getattr(args, "address", None) or os.environ.get("RAY_API_SERVER_ADDRESS") or DEFAULT_ADDRESS
    client = connect(address, read_token(getattr(args, "token_file", None)))
    try:
        job_id = client.submit_job(
            entrypoint=entrypoint, runtime_env={"working_dir": str(REPO_ROOT)}, entrypoint_num_cpus=ENTRYPOINT_NUM_CPUS
        )
    except (RuntimeError, ValueError) as exc:  # e.g. the checkout exceeds Ray's 512 MiB working_dir limit
        raise SubmitError(f"--address {address}: the cluster did not accept the job: {_first_line(exc)}") from None
    print(f"submitted {job_id} to {address}: {entrypoint}", flush=True)
    if hasattr(args, "no_wait"):
        print(f"follow it with: ray job logs --follow {job_id} --address {address}  (stop: ray job stop {job_id} ...)")
        return 0
    try:
        asyncio.run(_stream_logs(client, job_id))
    except KeyboardInterrupt:
        print(f"\nstopped following {job_id}; the job keeps running (ray job stop {job_id} --address {address})")
        return 130
    info = client.get_job_info(job_id)
    print(f"job {job_id} {info.status}", flush=True)
    return 0 if info.status == "SUCCEEDED" else (info.driver_exit_code or 1)


def job_command(words: list[str]) -> list[str]:
    """The warmroute subcommand and its flags from what followed ``submit``: ``-- evaluate ...`` and
    ``-- warmroute evaluate ...`` (the spelling of ``ray job submit -- python ...``) are the same command."""
    command = words[1:] if words[:1] == ["--"] else list(words)
    return command[1:] if command[:1] == ["warmroute"] else command


def parse_command(command: list[str], parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse ``command`` with warmroute's own ``parser`` (nothing runs); a bad command becomes one SubmitError line."""
    if not command:
        raise SubmitError("give the warmroute command to run after --, e.g. `warmroute submit -- train --output DIR`")
    if command[0] == "submit":
        raise SubmitError("the command after -- is itself `submit`; give the command the job should run (train, evaluate, ...)")
    errors = io.StringIO()
    try:
        with redirect_stderr(errors), redirect_stdout(io.StringIO()):
            return parser.parse_args(command)
    except SystemExit as exit_:
        if exit_.code == 0:
            raise SubmitError("command after --: --help only prints help; run it locally") from None
        prog, _, reason = (errors.getvalue().strip().splitlines() or ["warmroute: error: invalid command"])[-1].partition(
            ": error: "
        )
        raise SubmitError(f"command after -- ({prog}): {reason}") from None


def check_paths(parsed: argparse.Namespace, cwd: Path, shared: tuple[Path, ...]) -> None:
    """Refuse any input or output path of ``parsed`` that the cluster cannot see (see the module docstring)."""
    for dest in INPUT_DESTS:
        for value in _values(getattr(parsed, dest, None)):
            _check_input(_flag(dest), value, cwd, shared)
    if getattr(parsed, "command", None) == "evaluate":
        for name in getattr(parsed, "policies", ()):
            if not is_router(name):
                _check_input("--policy", name, cwd, shared)
    lengths = getattr(parsed, "lengths", None)
    if lengths and lengths.startswith("trace:"):
        _check_input("--lengths", lengths.removeprefix("trace:"), cwd, shared)
    for dest in OUTPUT_DESTS:
        for value in _values(getattr(parsed, dest, None)):
            path = Path(value)
            if not (path.is_absolute() and _under(path, shared)):
                raise SubmitError(
                    f"{_flag(dest)} {value}: the job would write it on a cluster node where it is lost (its working "
                    "directory is a temporary copy); give an absolute path under a --shared-dir (storage every node mounts)"
                )


def _check_input(flag: str, value: str, cwd: Path, shared: tuple[Path, ...]) -> None:
    path = Path(value)
    if path.is_absolute() and _under(path, shared):
        return
    stage = "stage it under a --shared-dir (storage every node mounts) or in a tracked folder of the checkout"
    if path.is_absolute():
        if _under(path.resolve(), (REPO_ROOT,)):
            raise SubmitError(
                f"{flag} {value}: give paths inside the checkout relative to the current directory "
                "(the job runs in the uploaded copy, not at this absolute path)"
            )
        raise SubmitError(f"{flag} {value}: the cluster cannot see this path; {stage}")
    full = (cwd / path).resolve()
    if not _under(full, (REPO_ROOT,)) or not _under(cwd, (REPO_ROOT,)):
        raise SubmitError(f"{flag} {value}: outside the uploaded checkout {REPO_ROOT}; {stage}")
    if not full.exists():
        raise SubmitError(f"{flag} {value}: no such file or directory")
    ignored = _ignored(full)
    if ignored is not None:
        raise SubmitError(f"{flag} {value}: {ignored} is in .gitignore/.rayignore, so Ray does not upload it; {stage}")


def _ignored(path: Path) -> Path | None:
    """The part of ``path`` that ``.gitignore``/``.rayignore`` keeps out of the upload (Ray's own matching), if any."""
    from ray._private.runtime_env.packaging import get_excludes_from_ignore_files

    matchers, directory = [], REPO_ROOT
    for part in path.relative_to(REPO_ROOT).parts:
        matchers += get_excludes_from_ignore_files(directory, include_gitignore=True, logger=logging.getLogger(__name__))
        directory = directory / part
        if any(match(directory) for match in matchers):
            return directory.relative_to(REPO_ROOT)
    return None


def entrypoint_for(command: list[str], cwd: Path) -> str:
    """The job's shell command: run from the same place in the uploaded checkout as the user runs it here."""
    line = f"{ENTRYPOINT} {shlex.join(command)}"
    if _under(cwd, (REPO_ROOT,)) and cwd != REPO_ROOT:
        return f"cd {shlex.quote(str(cwd.relative_to(REPO_ROOT)))} && {line}"
    return line


def read_token(token_file: str | None) -> str | None:
    """The cluster token, from the first of: ``--token-file``, ``$RAY_AUTH_TOKEN``, ``$RAY_AUTH_TOKEN_PATH``,
    ``~/.ray/auth_token`` (Ray's own order after the flag); ``None`` when there is none."""
    if token_file is not None:
        return _token_from(Path(token_file), "--token-file")
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return os.environ["RAY_AUTH_TOKEN"].strip()
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return _token_from(Path(os.environ["RAY_AUTH_TOKEN_PATH"]), "RAY_AUTH_TOKEN_PATH")
    default = Path.home() / ".ray" / "auth_token"
    return _token_from(default, str(default)) if default.is_file() else None


def connect(address: str, token: str | None) -> JobSubmissionClient:
    """A Jobs client that has already made one authenticated request (so a bad address or token fails here).

    Ray is imported here, not at module level: every ``warmroute`` command imports this module."""
    import requests
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        client = JobSubmissionClient(address, headers=headers)
        client.list_jobs()
    except AuthenticationError as exc:
        if "Missing" in str(exc) or not token:
            raise SubmitError(
                f"--address {address}: the cluster requires an auth token; pass --token-file FILE "
                "(print it on the head with `ray get-auth-token`) or set RAY_AUTH_TOKEN"
            ) from None
        raise SubmitError(
            f"--address {address}: the cluster rejected the auth token (check --token-file / "
            "RAY_AUTH_TOKEN against `ray get-auth-token` on the head)"
        ) from None
    except (ConnectionError, requests.exceptions.RequestException, RuntimeError, ValueError) as exc:
        raise SubmitError(
            f"--address {address}: no Ray Jobs server answers there ({_first_line(exc)}); start the "
            "head with --include-dashboard=true (port 8265) or fix --address"
        ) from None
    return client


async def _stream_logs(client: JobSubmissionClient, job_id: str) -> None:
    async for lines in client.tail_job_logs(job_id):
        print(lines, end="", flush=True)


def _token_from(path: Path, source: str) -> str:
    if not path.is_file():
        raise SubmitError(f"{source} {path}: no such file")
    token = path.read_text().strip()
    if not token:
        raise SubmitError(f"{source} {path}: the file is empty")
    return token


def _shared_dirs(values: list[str]) -> tuple[Path, ...]:
    for value in values:
        if not Path(value).is_absolute():
            raise SubmitError(f"--shared-dir {value}: give an absolute path (the same on every cluster node)")
    return tuple(Path(os.path.normpath(v)) for v in values)


def _under(path: Path, roots: tuple[Path, ...]) -> bool:
    path = Path(os.path.normpath(path))
    return any(path == root or root in path.parents for root in roots)


def _values(value: object) -> list[str]:
    """The path strings a dest holds: one, or a comma list parsed into a tuple (``pretrain --demo DIR,DIR``); none for
    a switch (``--resume`` is a directory for train, a switch for sweep)."""
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list | tuple) else []


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
