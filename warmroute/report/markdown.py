"""report.md: the report's tables and plots as Markdown, rendered from the report.json dict (warmroute.report.build),
so the two files cannot disagree."""

from __future__ import annotations

import json
from typing import Any

from envs.vidur_env import VidurEnvConfig


def _cell(value: Any, spec: str) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}%" if spec == "%" else format(value, spec)


def _pct(fraction: float) -> str:
    """Signed percentage; rounds a tiny negative to +0.0% rather than printing -0.0%."""
    return f"{fraction if abs(fraction) >= 5e-4 else 0.0:+.1%}"


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def _shares(values: list[float | None]) -> str:
    return "[" + " ".join("-" if v is None else f"{v:.2f}" for v in values) + "]"


def _seeds(seeds: dict[str, list[int]]) -> str:
    if seeds["evaluation"] == seeds["curves"]:
        return f"Held-out seeds {seeds['curves']}: every policy, checkpoint and heuristic line uses these."
    return (
        f"Held-out seeds of the policy table: {seeds['evaluation']}; of the learning curves and their heuristic "
        f"lines: {seeds['curves']}."
    )


def _policy_table(report: dict[str, Any], where: str) -> list[str]:
    """The report's lead: every router and learned policy on the held-out traffic, then the TTFT timeline."""
    comparison = report["comparison"]
    columns = comparison["columns"]
    header = ["policy", *(h for _, h, _ in columns), "action distribution"]
    rows = [
        [
            f"`{comparison['labels'][name]}`",
            *(_cell(comparison["policies"][name].get(k), s) for k, _, s in columns),
            _shares(comparison["policies"][name]["action_distribution"]),
        ]
        for name in comparison["order"]
    ]
    order = "SLO attainment" if columns[-1][0] == "goodput_rps" else "mean e2e latency"
    out = [
        f"## Every router and learned policy on the {where}",
        "",
        f"Sorted by {order}. Every router the registry knows, the behaviour-cloned clone of the teacher, and warm- and "
        "cold-start PPO; saved policies sample their actions unless marked (greedy). Balance is 1 - std of the action "
        "shares (1 = even split); action distribution is the share of requests per replica.",
        "",
        *_markdown_table(header, rows),
    ]
    timeline = "ttft_timeline.png"
    if timeline in report["plots"]:
        out += ["", f"![{report['plots'][timeline]}]({timeline})", "", f"*{report['plots'][timeline]}*"]
    return out


def render_markdown(report: dict[str, Any], env: VidurEnvConfig) -> str:
    """report.md from the report.json dict: the same numbers, rounded for reading."""
    w, head = env.workload, report["headline"]
    out = [
        f"# WarmRoute report: workload `{w.name}`",
        "",
        f"{w.describe()}. {_seeds(report['seeds'])}",
        "",
        *_policy_table(report, "held-out trace windows" if w.is_trace else "held-out seeds"),
        "",
        "## At a glance (held-out seeds)",
        "",
    ]
    lines, teacher, best = report["heuristic_lines"], head["teacher"], head["best_heuristic"]
    if teacher in lines:
        out.append(f"- Teacher `{teacher}`: mean e2e {lines[teacher]:.3f} s.")
    if best is not None:
        out.append(f"- Best heuristic `{best}`: mean e2e {lines[best]:.3f} s.")
    for label in [k for k in ("cold", "warm") if k in head]:
        run = head[label]
        text = f"- {label} start: {run['iteration0_mean_e2e_s']:.3f} s at iteration 0"
        if "iteration0_vs_teacher" in run:
            text += f" ({_pct(run['iteration0_vs_teacher'])} vs teacher)"
        text += f", {run['final_mean_e2e_s']:.3f} s after {run['final_env_steps']} env steps"
        if "final_vs_best_heuristic" in run:
            text += f" ({_pct(run['final_vs_best_heuristic'])} vs best heuristic)"
        if "steps_to_teacher" in run:
            reached = run["steps_to_teacher"]
            text += f"; within {head['reach_tolerance']:.0%} of the teacher " + (
                f"from {reached} env steps" if reached is not None else "at no checkpoint"
            )
        out.append(text + ".")
    bucket_rows = [
        [
            label,
            bucket,
            "-".join(dict.fromkeys(str(s) for s in b["env_steps"])),
            _cell(b["mean_e2e_s"], ".3f"),
            _cell(b["throughput_rps"], ".2f"),
            _cell(b["balance_score"], ".3f"),
            _shares(b["action_distribution"]),
        ]
        for label, table in report["buckets"].items()
        for bucket, b in table.items()
    ]
    header = ["run", "bucket", "env steps", "mean e2e (s)", "req/s", "balance", "action distribution"]
    out += [
        "",
        "## Cold vs warm during training (training episodes, sampled policy)",
        "",
        "Means over the iterations of each bucket: the first iteration, *early* (iterations ending in the first third "
        "of the run's env steps) and *late* (the last third). These are training episodes on training seeds: compare "
        "cold with warm here, and policies with heuristics in the table above.",
        "",
        *_markdown_table(header, bucket_rows),
    ]
    out += ["", "## Plots", ""]
    out += [f"![{caption}]({name})\n\n*{caption}*\n" for name, caption in report["plots"].items() if name != "ttft_timeline.png"]
    if "latency_cdf.png" not in report["plots"]:
        out.append("No latency CDF: the pipeline left no `latencies.npz` (`warmroute evaluate --latencies PATH`).\n")
    out += ["## Configuration", "", "```json", json.dumps(report["configuration"], indent=2), "```", ""]
    out.append("Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()))
    return "\n".join(out) + "\n"
