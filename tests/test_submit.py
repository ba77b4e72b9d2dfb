"""``warmroute submit`` against a real Ray head started here with token authentication (``ray start --head --block``
in its own process group, free ports, private temp dir and HOME; stopped by its group id, never ``ray stop``)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from warmroute.cli.main import main
from warmroute.cli.submit import REPO_ROOT, job_command

VENV_BIN = Path(sys.executable).parent
HEAD_PORTS = (
    "port",
    "dashboard-port",
    "ray-client-server-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "runtime-env-agent-port",
    "metrics-export-port",
    "node-manager-port",
    "object-manager-port",
)
TINY_TRAIN = [
    "train",
    "--iterations",
    "1",
    "--train-batch-size",
    "256",
    "--minibatch-size",
    "128",
    "--num-epochs",
    "1",
    "--num-requests",
    "64",
    "--num-env-runners",
    "1",
    "--quiet",
]


@dataclass
class Head:
    url: str
    token_file: Path
    root: Path

    def jobs(self) -> int:
        token = self.token_file.read_text()
        return len(requests.get(f"{self.url}/api/jobs/", headers={"Authorization": f"Bearer {token}"}, timeout=10).json())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _clean_env(home: Path, **extra: str) -> dict[str, str]:
    """This environment without any Ray setting (no token leaks in), with its own HOME (no ~/.ray/auth_token)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(home), PYTHONPATH=str(REPO_ROOT), PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", **extra)
    return env


@pytest.fixture(scope="module")
def head() -> Iterator[Head]:
    root = Path(tempfile.mkdtemp(prefix="wr-head-", dir="/tmp"))  # short: Ray's socket paths must stay < 108 chars
    (root / "home").mkdir()
    token = uuid.uuid4().hex
    token_file = root / "token"
    token_file.write_text(token)
    ports = {name: _free_port() for name in HEAD_PORTS}
    cmd = [
        str(VENV_BIN / "ray"),
        "start",
        "--head",
        "--block",
        "--num-cpus=2",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--temp-dir={root / 'ray'}",
        *(f"--{k}={v}" for k, v in ports.items()),
    ]
    env = _clean_env(root / "home", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    with open(root / "head.log", "w") as log:
        process = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{ports['dashboard-port']}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(f"{url}/api/version", headers={"Authorization": f"Bearer {token}"}, timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray head did not start: {(root / 'head.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield Head(url, token_file, root)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the head's raylet, GCS and workers share its process group
        except ProcessLookupError:
            pass
        process.wait()
        shutil.rmtree(root, ignore_errors=True)


def _submit(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "warmroute.cli.main", "submit", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_submit_runs_a_tiny_training_job_to_success_and_streams_its_logs(head: Head) -> None:
    run = head.root / "shared" / "run"
    result = _submit(
        [
            "--address",
            head.url,
            "--token-file",
            str(head.token_file),
            "--shared-dir",
            str(head.root / "shared"),
            "--",
            "warmroute",  # the natural spelling; `-- train ...` is the same command (test_both_spellings_...)
            *TINY_TRAIN,
            "--output",
            str(run),
        ],
        _clean_env(head.root / "home"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "submitted raysubmit_" in result.stdout
    assert f"exported policy to {run}/policy" in result.stdout  # the job's own output, streamed back
    assert result.stdout.rstrip().endswith("SUCCEEDED")
    assert (run / "policy" / "metadata.json").is_file() and (run / "progress.jsonl").read_text().count("\n") == 1


@pytest.mark.slow
def test_submit_without_a_token_fails_with_one_auth_line_and_submits_nothing(head: Head) -> None:
    before = head.jobs()
    result = _submit(
        ["--address", head.url, "--shared-dir", str(head.root), "--", *TINY_TRAIN, "--output", str(head.root / "never")],
        _clean_env(head.root / "home"),
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "requires an auth token" in result.stderr and "--token-file" in result.stderr
    assert head.jobs() == before


@pytest.mark.slow
def test_submit_with_a_wrong_token_is_rejected_in_one_line(head: Head, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(REPO_ROOT)
    wrong = tmp_path / "token"
    wrong.write_text(uuid.uuid4().hex)
    before = head.jobs()
    assert main(["submit", "--address", head.url, "--token-file", str(wrong), "--", "evaluate", "--policy", "lor"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "rejected the auth token" in err
    assert head.jobs() == before


@pytest.mark.slow
def test_bad_commands_and_hidden_paths_reach_no_live_cluster(head: Head, capsys, monkeypatch) -> None:
    monkeypatch.chdir(REPO_ROOT)
    before = head.jobs()
    auth = ["--address", head.url, "--token-file", str(head.token_file), "--shared-dir", str(head.root)]
    assert main(["submit", *auth, "--", "deploy"]) == 2
    assert main(["submit", *auth, "--", "pretrain", "--demo", "/home/someone/demos", "--output", str(head.root / "bc")]) == 2
    assert [line.split(": error: ")[0] for line in capsys.readouterr().err.splitlines()] == ["warmroute submit"] * 2
    assert head.jobs() == before


def test_an_unreachable_address_is_one_line_and_exit_2(capsys, monkeypatch) -> None:
    monkeypatch.chdir(REPO_ROOT)
    assert main(["submit", "--address", f"http://127.0.0.1:{_free_port()}", "--", "evaluate", "--policy", "lor"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no Ray Jobs server answers there" in err


@pytest.mark.parametrize("words", [["--", "evaluate", "--policy", "lor"], ["--", "warmroute", "evaluate", "--policy", "lor"]])
def test_both_spellings_of_the_command_pass_the_checks_and_reach_the_cluster(words: list[str], capsys, monkeypatch) -> None:
    monkeypatch.chdir(REPO_ROOT)
    assert job_command(words) == ["evaluate", "--policy", "lor"]
    assert main(["submit", "--address", f"http://127.0.0.1:{_free_port()}", *words]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no Ray Jobs server answers there" in err  # parsed and checked; only the address fails


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["--", "deploy", "--fast"], "invalid choice: 'deploy'"),
        (["--", "train", "--lr", "fast"], "argument --lr: invalid float value"),
        (["--", "submit", "--", "train"], "is itself `submit`"),
        (["--", "warmroute", "submit", "--", "train"], "is itself `submit`"),
        (["--", "warmroute"], "give the warmroute command to run after --"),
        ([], "give the warmroute command to run after --"),
        (["--", "train", "--output", "runs/x"], "--output runs/x: the job would write it on a cluster node"),
        (["--", "train", "--output", "/elsewhere/x"], "absolute path under a --shared-dir"),
        (
            [
                "--shared-dir",
                "/shared",
                "--",
                "train",
                "--output",
                "/shared/x",
                "--enable-warm-start",
                "--pretrained-actor-path",
                "/home/someone/bc",
            ],
            "--pretrained-actor-path /home/someone/bc: the cluster cannot see this path",
        ),
        (
            ["--shared-dir", "/shared", "--", "pretrain", "--demo", "no/such/demos", "--output", "/shared/bc"],
            "--demo no/such/demos: no such file or directory",
        ),
        (
            [
                "--shared-dir",
                "/shared",
                "--",
                "pretrain",
                "--demo",
                "/shared/demos,/home/someone/demos",
                "--output",
                "/shared/bc",
            ],
            "--demo /home/someone/demos: the cluster cannot see this path",
        ),
        (["--", "evaluate", "--policy", "lor,/home/someone/policy"], "--policy /home/someone/policy: the cluster cannot see"),
        (["--", "evaluate", "--policy", "lor", "--lengths", "trace:/data/trace.csv"], "--lengths /data/trace.csv: the cluster"),
        (["--shared-dir", "relative", "--", "evaluate", "--policy", "lor"], "--shared-dir relative: give an absolute path"),
    ],
)
def test_bad_submissions_are_one_line_errors_before_connecting(command: list[str], message: str, capsys, monkeypatch) -> None:
    monkeypatch.chdir(REPO_ROOT)
    unreachable = f"http://127.0.0.1:{_free_port()}"  # checks come first: an address error would mean they did not
    assert main(["submit", "--address", unreachable, *command]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("warmroute submit: error: ") and "\n" not in err
    assert message in err


def test_an_input_in_a_gitignored_folder_is_refused_as_not_uploaded(capsys, monkeypatch) -> None:
    monkeypatch.chdir(REPO_ROOT)
    runs = REPO_ROOT / "runs"
    made_runs = not runs.exists()
    demos = runs / f"submit-test-{uuid.uuid4().hex[:8]}"
    demos.mkdir(parents=True)
    try:
        assert (
            main(
                [
                    "submit",
                    "--shared-dir",
                    "/shared",
                    "--",
                    "pretrain",
                    "--demo",
                    str(demos.relative_to(REPO_ROOT)),
                    "--output",
                    "/shared/bc",
                ]
            )
            == 2
        )
    finally:
        demos.rmdir()
        if made_runs:
            runs.rmdir()
    err = capsys.readouterr().err
    assert "is in .gitignore/.rayignore, so Ray does not upload it" in err and "--shared-dir" in err


def test_an_installed_copy_without_a_checkout_is_refused_rather_than_uploading_site_packages(
    tmp_path, capsys, monkeypatch
) -> None:
    import warmroute.cli.submit

    monkeypatch.setattr(warmroute.cli.submit, "REPO_ROOT", tmp_path)  # where a wheel install would put warmroute/
    assert main(["submit", "--", "evaluate", "--policy", "lor"]) == 2
    assert "not run from a source checkout" in capsys.readouterr().err
