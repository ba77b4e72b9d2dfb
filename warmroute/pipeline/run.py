"""``warmroute pipeline``: demonstrations -> BC -> warm and cold PPO -> held-out evaluation -> report, resumable.

:func:`run_pipeline` runs the ``Stage`` records of ``warmroute.pipeline.stages`` in order, each into its own output under the
pipeline directory (:class:`~warmroute.artifacts.run_dir.PipelineDir`). ``pipeline.json`` records, per stage, the settings it
ran with (``Stage.settings``) and whether it finished; ``stages.jsonl`` logs what every
invocation did. A re-run

* reuses a finished stage whose settings match (and whose output is still there);
* resumes a PPO run that was stopped from its last complete checkpoint (``rllib_ext.train``'s ``resume``);
* redoes any other unfinished stage, and every stage after one that ran;
* refuses, before doing anything, a stage recorded with other settings: one line naming the setting, telling
  the user to pick a new ``--output`` or pass ``force=True`` (``--force``) to redo that stage and those after it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from warmroute.artifacts.atomic import write_json
from warmroute.artifacts.lock import DirectoryLock
from warmroute.artifacts.metadata import METADATA_FORMAT_VERSION, ArtifactError, library_versions
from warmroute.artifacts.run_dir import LOCK_FILE, PipelineDir
from warmroute.pipeline.config import PipelineConfig
from warmroute.pipeline.stages import STAGES, Context


def _print_now(line: str) -> None:
    print(line, flush=True)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def load_state(pipeline: PipelineDir, flag: str = "{flag:output}") -> dict[str, Any]:
    """The directory's ``pipeline.json`` (empty for a new directory); refuse a directory that is something else."""
    if not pipeline.config.is_file():
        if pipeline.path.exists() and (not pipeline.path.is_dir() or any(p.name != LOCK_FILE for p in pipeline.path.iterdir())):
            raise ArtifactError(f"{flag} {pipeline.path}: exists and holds no {pipeline.CONFIG_FILE}; choose a new directory")
        return {}
    try:
        state = json.loads(pipeline.config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{flag} {pipeline.config}: corrupted JSON ({exc}); choose a new directory") from exc
    if (
        not isinstance(state, dict)
        or state.get("kind") != PipelineDir.KIND
        or state.get("format_version") != METADATA_FORMAT_VERSION
    ):
        raise ArtifactError(f"{flag} {pipeline.config}: not a pipeline state of this WarmRoute version; choose a new directory")
    return state


def _save_state(pipeline: PipelineDir, state: dict[str, Any]) -> None:
    """Write ``pipeline.json`` atomically (a kill never leaves half a file)."""
    pipeline.path.mkdir(parents=True, exist_ok=True)
    write_json(pipeline.config, state)


def _log_event(pipeline: PipelineDir, stage: str, event: str, **fields: Any) -> None:
    with open(pipeline.log, "a") as handle:
        handle.write(json.dumps({"time": _now(), "stage": stage, "event": event, **fields}) + "\n")


def _difference(old: Any, new: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """The first setting (dotted path) whose value differs between two JSON values, or None."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=lambda k: (k not in old or k not in new, k)):
            found = _difference(old.get(key), new.get(key), f"{path}.{key}" if path else key)
            if found:
                return found
        return None
    return None if old == new else (path, old, new)


def _recorded_teacher(config: PipelineConfig, stages: dict[str, Any]) -> str | None:
    record = stages.get("teacher")
    if config.teacher is not None:
        return config.teacher
    return record.get("result", {}).get("teacher") if record and record["status"] == "done" else None


def check_settings(config: PipelineConfig, pipeline: PipelineDir, state: dict[str, Any], force: bool) -> dict[str, Any]:
    """Stage records still valid for ``config``: refuse the first mismatch, or with ``force`` drop it and all after."""
    stages = dict(state.get("stages", {}))
    teacher = _recorded_teacher(config, stages)
    for index, stage in enumerate(STAGES):
        if stage.name not in stages:
            continue
        found = _difference(stages[stage.name]["settings"], stage.settings_of(config, teacher))
        if found is None:
            continue
        key, old, new = found
        if not force:
            raise ArtifactError(
                f"{{flag:output}} {pipeline.path}: its {stage.name} stage was made with {key}={json.dumps(old)}, this run asks "
                f"{key}={json.dumps(new)}; use a new {{flag:output}}, or add {{flag:force}} to redo {stage.name} and the stages after it"
            )
        return {s.name: stages[s.name] for s in STAGES[:index] if s.name in stages}
    return stages


def run_pipeline(
    config: PipelineConfig,
    output: str | Path,
    *,
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = _print_now,
) -> dict[str, Any]:
    """Run (or resume) the pipeline in ``output``, holding its lock (a second writer is refused); return its
    ``pipeline.json`` state."""
    pipeline = PipelineDir(output)
    with DirectoryLock(pipeline.path, "{flag:output}", log):
        return _run_locked(config, pipeline, force, progress, log)


def _run_locked(
    config: PipelineConfig, pipeline: PipelineDir, force: bool, progress: bool, log: Callable[[str], None]
) -> dict[str, Any]:
    state = load_state(pipeline)
    stages = check_settings(config, pipeline, state, force)
    state = {
        "kind": PipelineDir.KIND,
        "format_version": METADATA_FORMAT_VERSION,
        "config": config.to_dict(),
        "stages": stages,
        **{k: state[k] for k, stage in (("teacher", "teacher"), ("policies", "evaluation")) if k in state and stage in stages},
        "seeds": {"validation": config.validation_seeds, "test": config.test_seeds, "curves": config.curve_seeds},
        "paths": {"demos": "demos", "bc": "bc", "warm": "warm", "cold": "cold", "evaluation": "evaluation.json"},
        "versions": library_versions(),
    }
    _save_state(pipeline, state)
    ctx = Context(config, pipeline, state, _recorded_teacher(config, stages), progress, log)
    ran_before = False  # once a stage runs, every later stage runs too: its inputs may have changed
    for number, stage in enumerate(STAGES, 1):
        banner = f"[{number}/{len(STAGES)}] {stage.name}"
        record = stages.get(stage.name)
        if not ran_before and record and record["status"] == "done" and stage.done(pipeline):
            log(f"{banner}: reused (finished {record['finished']})")
            _log_event(pipeline, stage.name, "reused")
            continue
        resume = not ran_before and record is not None and stage.can_resume(pipeline)
        ran_before = True
        if not resume:
            stage.remove_output(pipeline)
        for later in STAGES[number:]:  # their inputs are about to change: they are not finished any more
            stages.pop(later.name, None)
        stages[stage.name] = {"settings": stage.settings_of(config, ctx.teacher), "status": "started", "started": _now()}
        _save_state(pipeline, state)
        log(f"{banner}: {'resuming' if resume else 'running'}")
        _log_event(pipeline, stage.name, "resumed" if resume else "started")
        start = time.perf_counter()
        result = stage.run(ctx, resume)
        seconds = time.perf_counter() - start
        stages[stage.name].update(status="done", finished=_now(), seconds=round(seconds, 1), result=result)
        _save_state(pipeline, state)
        _log_event(pipeline, stage.name, "done", seconds=round(seconds, 1))
        log(f"{banner}: done in {seconds:.0f} s")
    return state
