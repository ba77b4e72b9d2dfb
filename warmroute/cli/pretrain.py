"""``warmroute pretrain``: behaviour-clone the PPO routing module from demonstrations."""

from __future__ import annotations

import argparse

from rllib_ext.bc import BCConfig, pretrain
from rllib_ext.models import ARCHITECTURES
from warmroute.cli.flags import add_config_flags, add_flag, comma_list, given

HELP = "behaviour-clone the PPO routing module from demonstrations"


def run(args: argparse.Namespace) -> int:
    result = pretrain(list(args.demo), args.output, BCConfig(**given(args, BCConfig)), progress=not hasattr(args, "quiet"))
    val = result["validation"]
    per_teacher = ", ".join(f"{t} {a:.3f}" for t, a in val["accuracy_per_teacher"].items())
    print(
        f"best epoch {result['best_epoch']}: validation accuracy {val['accuracy']:.3f} ({per_teacher}), "
        f"loss {val['loss']:.4f}; wrote {args.output}"
    )
    return 0


def add_args(parser: argparse.ArgumentParser) -> None:
    add_flag(
        parser,
        "--demo",
        "directory written by collect-demos; several, comma-separated, are pooled (e.g. one teacher per load band)",
        required=True,
        type=comma_list,
        metavar="DIR[,DIR...]",
    )
    add_flag(parser, "--output", "new directory for the policy (RLlib module + metadata)", required=True, metavar="DIR")
    add_config_flags(
        parser,
        BCConfig,
        (
            "epochs",
            "batch_size",
            "lr",
            "label_smoothing",
            "validation_fraction",
            "patience",
            "cost_weight",
            "architecture",
            "hidden",
            "num_replicas",
            "seed",
        ),
        flags={"num_replicas": "--replicas"},
        choices={"architecture": ARCHITECTURES},
    )
    add_flag(parser, "--quiet", "no progress bar", action="store_true")
