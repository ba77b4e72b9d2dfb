"""The names of the files inside every WarmRoute folder, in one place.

Three kinds of artefact folder, each with a ``metadata.json`` whose ``kind`` says which it is:

* :class:`DemoDir` (``warmroute collect-demos``): Parquet shards, one per teacher, env runner and chunk;
* :class:`PolicyDir` (``warmroute pretrain`` and a training run's ``policy/``): the module's weights (safetensors)
  and a probe batch;
* :class:`RunDir` (``warmroute train``): RLlib checkpoints, TensorBoard events, ``progress.jsonl`` and ``policy/``.

and :class:`PipelineDir` (``warmroute pipeline``), which holds one of each plus ``pipeline.json`` (kind ``pipeline``).

Writers and readers both ask these classes for paths, so a file name is never typed out twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_LEARNER_GROUP, COMPONENT_RL_MODULE, DEFAULT_MODULE_ID

METADATA_FILE = "metadata.json"
LOCK_FILE = ".lock"
"""Held by the process writing a run or pipeline directory (``warmroute.artifacts.lock``)."""
# Where an Algorithm checkpoint (and ``Algorithm.restore_from_path(component=...)``) keeps the trained RLModule.
MODULE_COMPONENT = "/".join((COMPONENT_LEARNER_GROUP, COMPONENT_LEARNER, COMPONENT_RL_MODULE, DEFAULT_MODULE_ID))


@dataclass(frozen=True)
class _Folder:
    path: Path
    """The folder (a ``str`` is turned into a ``Path``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def metadata(self) -> Path:
        return self.path / METADATA_FILE


@dataclass(frozen=True)
class DemoDir(_Folder):
    """A demonstrations dataset: ``metadata.json`` and ``part-<teacher>-w<worker>-c<chunk>.parquet`` shards."""

    KIND = "demonstrations"

    def shard(self, teacher: str, worker: int, chunk: int) -> Path:
        """Named by worker and chunk (not arrival order), so sorted shards read back in the same order every run."""
        return self.path / f"part-{teacher}-w{worker:03d}-c{chunk:06d}.parquet"

    def shards(self) -> list[Path]:
        return sorted(self.path.glob("*.parquet"))


@dataclass(frozen=True)
class PolicyDir(_Folder):
    """A saved routing policy: ``weights.safetensors``, ``probe.npz`` and ``metadata.json`` (architecture, layout).

    No file in it is a pickle: policies are shared, and loading one must never run its author's code."""

    KIND = "policy"

    @property
    def weights(self) -> Path:
        return self.path / "weights.safetensors"

    @property
    def probe(self) -> Path:
        return self.path / "probe.npz"


@dataclass(frozen=True)
class RunDir(_Folder):
    """A training run: ``checkpoints/iter_NNNN/``, ``tensorboard/``, ``progress.jsonl``, ``policy/``, ``metadata.json``."""

    KIND = "training_run"
    ADAPTIVE_FILE = "adaptive_state.json"
    """Written last into each checkpoint, so its presence marks the checkpoint complete."""

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def checkpoint(self, iteration: int) -> Path:
        return self.checkpoints / f"iter_{iteration:04d}"

    def complete_checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        done = (p for p in self.checkpoints.glob("iter_*") if (p / self.ADAPTIVE_FILE).is_file())
        return sorted(done, key=checkpoint_iteration)

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    @property
    def progress(self) -> Path:
        """One JSON row per iteration (read by ``warmroute compare``)."""
        return self.path / "progress.jsonl"

    @property
    def policy(self) -> PolicyDir:
        """The exported final policy."""
        return PolicyDir(self.path / "policy")


def checkpoint_iteration(checkpoint: Path) -> int:
    """The iteration a ``checkpoints/iter_NNNN`` folder was saved at."""
    return int(checkpoint.name.split("_")[1])


def checkpoint_module(checkpoint: Path) -> Path:
    """The RLModule inside an RLlib Algorithm checkpoint (loadable with ``RLModule.from_checkpoint``)."""
    return checkpoint / MODULE_COMPONENT


@dataclass(frozen=True)
class PipelineDir(_Folder):
    """A ``warmroute pipeline`` output: ``pipeline.json`` (config, teacher, seeds, stage records), ``stages.jsonl``
    (what each invocation did), ``demos/`` (DemoDir), ``bc/`` (PolicyDir), ``warm/`` and ``cold/`` (RunDir), the
    held-out evaluation, the checkpoint curves and ``report/``."""

    KIND = "pipeline"
    CONFIG_FILE = "pipeline.json"
    LOG_FILE = "stages.jsonl"

    @property
    def config(self) -> Path:
        """``pipeline.json``: workload/env config, budget, teacher, seeds, and each stage's settings and status."""
        return self.path / self.CONFIG_FILE

    @property
    def log(self) -> Path:
        """``stages.jsonl``: one line per stage event (started, resumed, done, reused) of every invocation."""
        return self.path / self.LOG_FILE

    @property
    def demos(self) -> DemoDir:
        return DemoDir(self.path / "demos")

    @property
    def bc(self) -> PolicyDir:
        return PolicyDir(self.path / "bc")

    def run(self, label: str) -> RunDir:
        """The training run ``cold`` or ``warm``."""
        return RunDir(self.path / label)

    @property
    def evaluation(self) -> Path:
        """Every policy on the held-out seeds (the format of ``warmroute evaluate --json``)."""
        return self.path / "evaluation.json"

    @property
    def latencies(self) -> Path:
        """Per-request latencies of the evaluated policies (``envs.evaluation.evaluate.save_latencies``)."""
        return self.path / "latencies.npz"

    @property
    def curves(self) -> Path:
        """``{"seeds": [...], "runs": {"warm": [rows], "cold": [rows]}}``: checkpoints on held-out seeds."""
        return self.path / "curves.json"

    @property
    def report(self) -> Path:
        return self.path / "report"
