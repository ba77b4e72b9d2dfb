"""``warmroute export``: a saved policy as a TorchScript router for deployment (docs/deploy.md)."""

from __future__ import annotations

import argparse

from warmroute.cli.flags import add_config_flags, given
from warmroute.deploy.export import ExportConfig, export_router

HELP = "write a saved policy as a TorchScript router (raw features in, replica out)"


def run(args: argparse.Namespace) -> int:
    config = ExportConfig(**given(args, ExportConfig))
    info = export_router(config)
    rule = "any replica count" if info["replicas"] == "any" else f"{info['replicas']} replicas only"
    print(
        f"wrote {config.output}: {info['architecture']} router for {rule} (checked against the policy on "
        f"{info['checked_on_replicas']} replicas, max logit gap {info['probe_max_logit_gap']:.1e})"
    )
    return 0


def add_args(parser: argparse.ArgumentParser) -> None:
    add_config_flags(
        parser,
        ExportConfig,
        ("policy", "output", "num_replicas"),
        flags={"num_replicas": "--replicas"},
        required=("policy", "output"),
    )
