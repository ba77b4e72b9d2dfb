"""The cluster configs in cluster/ are valid: the launcher YAMLs pass Ray's own autoscaler validation, and every key of
the KubeRay RayJob manifest exists in the KubeRay v1 CRD schema (the CRD itself accepts misspelt keys silently)."""

from __future__ import annotations

import copy
import json
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import ray
import yaml
from jsonschema import ValidationError
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER = Path(__file__).resolve().parents[1] / "cluster"
RAYJOB_KEYS = Path(__file__).parent / "data" / "kuberay_v1.7.0_rayjob_keys.json"


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((CLUSTER / name).read_text())


def _validated(config: dict[str, Any]) -> dict[str, Any]:
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def unknown_keys(node: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Paths of ``node`` keys that the schema tree (see the data file's ``source``) does not define."""
    if isinstance(node, list):
        return [bad for i, item in enumerate(node) for bad in unknown_keys(item, schema.get("i", {}), f"{path}[{i}]")]
    if not isinstance(node, dict):
        return []
    if "p" not in schema:  # free-form object (metadata, resource quantities) or a map of one value schema
        return [bad for k, v in node.items() for bad in unknown_keys(v, schema.get("a", {}), f"{path}.{k}")]
    bad = [f"{path}.{k}" for k in node if k not in schema["p"] and not schema.get("u")]
    return bad + [b for k, v in node.items() if k in schema["p"] for b in unknown_keys(v, schema["p"][k], f"{path}.{k}")]


@pytest.mark.parametrize("name", ["onprem.yaml", "aws.yaml"])
def test_launcher_yamls_pass_ray_autoscaler_validation_with_token_auth(name: str) -> None:
    config = _load(name)
    _validated(config)
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    for command in config["head_start_ray_commands"][1:] + config["worker_start_ray_commands"][1:]:
        assert "RAY_AUTH_MODE=token" in command
    assert any("/mnt/shared" in command for command in config["setup_commands"])


def test_aws_yaml_has_a_cpu_free_head_and_an_autoscaling_cpu_worker_group() -> None:
    nodes = _validated(_load("aws.yaml"))["available_node_types"]
    assert nodes["head"]["resources"] == {"CPU": 0}
    assert nodes["cpu_worker"]["min_workers"] == 0 and nodes["cpu_worker"]["max_workers"] > 0


def test_autoscaler_validation_catches_what_the_configs_must_avoid() -> None:
    misspelt = {**_load("aws.yaml"), "head_node_typ": "head"}
    with pytest.raises(ValidationError, match="head_node_typ"):
        _validated(misspelt)
    node_types = {**_load("onprem.yaml"), "available_node_types": {"x": {"node_config": {}, "resources": {}}}}
    with pytest.raises(click.ClickException, match="available_node_types"):
        _validated(node_types)


def test_rayjob_manifest_keys_all_exist_in_the_kuberay_v1_schema() -> None:
    manifest = _load("rayjob-sweep.yaml")
    schema = json.loads(RAYJOB_KEYS.read_text())["schema"]
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayJob"
    assert unknown_keys(manifest, schema) == []


def test_the_schema_check_finds_a_misspelt_rayjob_key() -> None:
    manifest = _load("rayjob-sweep.yaml")
    spec = manifest["spec"]
    spec["shutdownAfterJobFinish"] = spec.pop("shutdownAfterJobFinishes")
    spec["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["volumeMount"] = []
    schema = json.loads(RAYJOB_KEYS.read_text())["schema"]
    assert unknown_keys(manifest, schema) == [
        ".spec.shutdownAfterJobFinish",
        ".spec.rayClusterSpec.workerGroupSpecs[0].template.spec.containers[0].volumeMount",
    ]


def test_rayjob_runs_the_installed_project_with_token_auth_and_shared_storage() -> None:
    spec = _load("rayjob-sweep.yaml")["spec"]
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == ray.__version__ and cluster["authOptions"] == {"mode": "token"}
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["warmroute", "sweep"]
    output = argv[argv.index("--output") + 1]
    pods = [cluster["headGroupSpec"]["template"]] + [group["template"] for group in cluster["workerGroupSpecs"]]
    for pod in pods:
        mounts = [m["mountPath"] for c in pod["spec"]["containers"] for m in c["volumeMounts"]]
        assert any(output.startswith(mount + "/") for mount in mounts)
        assert all(c["image"] == pods[0]["spec"]["containers"][0]["image"] for c in pod["spec"]["containers"])


def test_rayjob_entrypoint_parses_with_warmroute_parser() -> None:
    from warmroute.cli.main import build_parser

    parser = build_parser()
    if "sweep" not in parser._subparsers._group_actions[0].choices:
        pytest.skip("this build has no `warmroute sweep` subcommand")
    argv = shlex.split(_load("rayjob-sweep.yaml")["spec"]["entrypoint"])
    assert parser.parse_args(argv[1:]).command == "sweep"
