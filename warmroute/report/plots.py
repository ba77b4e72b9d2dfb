"""The report's PNGs (matplotlib's Agg renderer): one function per figure, each readable without the text.

Figures are built as ``matplotlib.figure.Figure`` objects, not through pyplot: no global backend is switched and
no figure registry grows, so importing this module changes nothing for a notebook or another plotting caller.

Every figure puts env steps (routing decisions) or seconds on its axes with units, names what was evaluated on
which seeds in its title, and keeps one colour per run (cold blue, warm orange) across figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from envs.routers.heuristics import is_router
from rllib_ext import metrics as M
from rllib_ext.train_config import TrainConfig

RUN_COLORS = {"cold": "tab:blue", "warm": "tab:orange"}
RUN_TITLES = {"cold": "cold start", "warm": "warm start"}
DPI = 120


def _steps_axis(ax: Axes) -> None:
    ax.set_xlabel("env steps (routing decisions)")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:g}k" if abs(x) >= 1000 else f"{x:g}"))
    ax.grid(alpha=0.3)


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def heldout_curves(
    curves: dict[str, list[dict[str, Any]]], heuristics: dict[str, float], roles: dict[str, str], n_seeds: int, path: Path
) -> Path:
    """Mean e2e latency of every checkpoint on the held-out seeds; each heuristic (same seeds) as a horizontal line.

    ``roles`` marks the teacher and the best heuristic (drawn bold); heuristics far above the curves would squash
    them, so they are listed in the legend (marked with an arrow) instead of stretching the y axis.
    """
    fig = Figure(figsize=(10, 5))
    ax = fig.subplots()
    values = []
    for label, rows in curves.items():
        steps = [r["env_steps"] for r in rows]
        latency = [r["mean_e2e_s"] for r in rows]
        values += latency
        ax.plot(steps, latency, marker="o", lw=2, color=RUN_COLORS.get(label), label=f"{RUN_TITLES.get(label, label)} PPO")
    highlighted = [heuristics[name] for name in roles]
    low, high = min(values + highlighted), max(values + highlighted)
    pad = 0.08 * (high - low) or 0.05 * high
    ax.set_ylim(low - pad, high + pad)
    styles = {"teacher": ("tab:green", "--", 2.0), "best heuristic": ("black", ":", 2.0)}
    for name, value in sorted(heuristics.items(), key=lambda item: -item[1]):  # legend top-down like the lines
        if value > high + pad:  # a legend entry without a line, so the axis keeps the curves' range
            ax.plot([], [], " ", label=f"\u2191 {name}: {value:.3f} s (above the axis)")
            continue
        color, style, width = styles.get(roles.get(name, ""), ("gray", "-.", 0.9))
        role = f" [{roles[name]}]" if name in roles else ""
        ax.axhline(value, color=color, linestyle=style, lw=width, label=f"{name}{role}: {value:.3f} s")
    _steps_axis(ax)
    ax.set_ylabel("mean end-to-end latency (s)")
    ax.set_title(
        f"Held-out learning curves: each checkpoint and each heuristic on the same {n_seeds} held-out seeds\n"
        "(iteration 0 = the policy before any PPO update; warm start: the behaviour-cloned teacher)"
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)
    return _save(fig, path)


def latency_cdf(latencies: dict[str, dict[str, np.ndarray]], labels: dict[str, str], roles: dict[str, str], path: Path) -> Path:
    """Empirical CDF of end-to-end latency and TTFT per policy, all held-out requests pooled (log-scale seconds).

    Learned policies are bold and coloured (cold blue, warm orange, as elsewhere), the teacher and the best
    heuristic styled as in the learning curves, other heuristics thin grey: a dozen coloured lines are unreadable.
    """
    fig = Figure(figsize=(13, 5))
    axes = fig.subplots(1, 2, sharey=True)
    learned = iter(["tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:red"])
    order = sorted(latencies, key=lambda name: float(np.mean(latencies[name]["e2e_s"])))
    for name in order:
        label = labels.get(name, name)
        if is_router(name):
            color, ls, lw = {"teacher": ("tab:green", "--", 2.0), "best heuristic": ("black", ":", 2.0)}.get(
                roles.get(name, ""), ("gray", "-", 0.8)
            )
            label += f" [{roles[name]}]" if name in roles else ""
        else:
            run = next((r for r in RUN_COLORS if label.lower().startswith(r)), None)  # "warm PPO", "warm_ppo", ...
            color = RUN_COLORS[run] if run else next(learned)
            ls, lw = ("-." if "greedy" in label else "-"), 2.4
        for ax, key in zip(axes, ("e2e_s", "ttft_s")):
            values = np.sort(latencies[name][key])
            ax.step(values, np.arange(1, values.size + 1) / values.size, where="post", color=color, ls=ls, lw=lw, label=label)
    for ax, what in zip(axes, ("end-to-end latency", "time to first token")):
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.set_xlabel(f"{what} (s, log scale)")
        ax.set_title(what)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("fraction of requests at or below")
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, title="policy (by mean e2e)")
    fig.suptitle("Latency CDF per policy on the held-out seeds (all requests pooled; further left is better)")
    return _save(fig, path)


def _stack(ax: Axes, steps: list[float], shares: np.ndarray, names: list[str], *, per_iteration: bool) -> None:
    """Stacked shares per replica. ``per_iteration``: each row covers the env steps since the previous one (drawn
    as steps from 0); else rows are points in time (checkpoints, marked by thin white lines, interpolated between)."""
    colors = colormaps["viridis"](np.linspace(0.15, 0.95, len(names)))  # not the run colours of other figures
    if per_iteration:
        ax.stackplot([0, *steps], np.vstack([shares[:1], shares]).T, labels=names, colors=colors, alpha=0.9, step="pre")
    else:
        ax.stackplot(steps, shares.T, labels=names, colors=colors, alpha=0.9)
        ax.vlines(steps, 0, 1, colors="white", lw=0.8, alpha=0.8)
    ax.set_ylim(0, 1)


def action_distribution(
    progress: dict[str, list[dict[str, Any]]], curves: dict[str, list[dict[str, Any]]], devices: tuple[str, ...], path: Path
) -> Path:
    """Share of requests sent to each replica during training: top row training episodes (every iteration,
    sampled policy), bottom row the checkpoints on the held-out seeds."""
    labels = sorted(set(progress) | set(curves))
    names = [f"replica {i} ({device})" for i, device in enumerate(devices)]
    fig = Figure(figsize=(6 * len(labels) + 2, 7.5))
    axes = fig.subplots(2, len(labels), squeeze=False, sharex=True, sharey=True)
    for col, label in enumerate(labels):
        rows = [r for r in progress.get(label, []) if M.ACTION_FRACTION.format(0) in r]
        top, bottom = axes[0, col], axes[1, col]
        if rows:
            shares = np.array([[r.get(M.ACTION_FRACTION.format(i), 0.0) for i in range(len(devices))] for r in rows])
            _stack(top, [r[M.ENV_STEPS] for r in rows], shares, names, per_iteration=True)
        top.set_title(f"{RUN_TITLES.get(label, label)}: training episodes per iteration (sampled policy)")
        points = curves.get(label, [])
        if points:
            _stack(
                bottom,
                [r["env_steps"] for r in points],
                np.array([r["action_distribution"] for r in points]),
                names,
                per_iteration=False,
            )
        bottom.set_title(f"{RUN_TITLES.get(label, label)}: checkpoints on the held-out seeds")
    end = max(
        [r[M.ENV_STEPS] for rows in progress.values() for r in rows] + [r["env_steps"] for rows in curves.values() for r in rows]
    )
    for ax in axes.flat:
        ax.set_xlim(0, max(end, 1))
        _steps_axis(ax)
        ax.xaxis.set_tick_params(labelbottom=True)
    for row in axes:
        row[0].set_ylabel("share of requests routed")
    handles, legend_labels = max((ax.get_legend_handles_labels() for ax in axes.flat), key=lambda hl: len(hl[0]))
    fig.legend(handles[::-1], legend_labels[::-1], loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=9)
    fig.suptitle("Where requests went over training (stacked share per replica; an even split is equal bands)")
    fig.tight_layout()
    return _save(fig, path)


def schedules(configs: dict[str, TrainConfig], progress: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    """KL-to-reference and entropy coefficients vs env steps: lines from the schedule objects the learner builds
    (``KLRefPPOTorchLearner.build``), markers the values the learner logged each iteration. A cold start has no
    reference policy, so its learner uses a KL coefficient of 0 whatever the schedule says."""
    from rllib_ext.schedules import ConstantCoef, WarmupCoef

    end = max((rows[-1][M.ENV_STEPS] for rows in progress.values() if rows), default=1)
    fig = Figure(figsize=(13, 5))
    kl_ax, ent_ax = fig.subplots(1, 2)
    styles = {"warm": ("-", 3.2, 8), "cold": ("--", 1.8, 5)}  # warm underneath, wider: both stay visible when equal
    for label in sorted(configs, key=lambda name: name != "warm"):
        cfg, k = configs[label], configs[label].kl
        color, title, (ls, lw, ms) = RUN_COLORS.get(label), RUN_TITLES.get(label, label), styles.get(label, ("-", 2, 6))
        kl = k.kl_schedule() if k.enable_warm_start else ConstantCoef(0.0)
        entropy = WarmupCoef(cfg.ppo.entropy_coeff, k.entropy_warmup_coef, k.warmup_steps)
        steps = np.unique(np.concatenate([np.linspace(0, end, 400), [k.warmup_steps, k.warmup_steps + 1]]))
        steps = steps[steps <= end]
        kl_name = repr(kl) if k.enable_warm_start else "no reference policy, coefficient 0"
        kl_ax.plot(steps, [kl.value(int(s)) for s in steps], color=color, ls=ls, lw=lw, label=f"{title}: {kl_name}")
        ent_ax.plot(steps, [entropy.value(int(s)) for s in steps], color=color, ls=ls, lw=lw, label=f"{title}: {entropy!r}")
        for ax, key in ((kl_ax, M.KL_COEF), (ent_ax, M.ENTROPY_COEF)):
            logged = [(r[M.ENV_STEPS], r[key]) for r in progress.get(label, []) if key in r]
            if logged:
                ax.plot(*zip(*logged), "o", color=color, ms=ms, mfc="none", label=f"{title}: used by the learner")
    for ax, what in ((kl_ax, r"KL($\pi\,\|\,\pi_{ref}$) coefficient"), (ent_ax, "entropy coefficient")):
        _steps_axis(ax)
        ax.set_ylabel(f"{what} (unitless)")
        ax.set_title(what)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15))
    fig.suptitle("Regularisation schedules over training (lines: configured schedule; circles: value used per iteration)")
    fig.tight_layout()
    return _save(fig, path)


def ttft_timeline(
    latencies: dict[str, dict[str, np.ndarray]], panels: list[tuple[str, str]], path: Path, window: int = 0
) -> Path:
    """Each request's time to first token over one held-out window, one panel per policy, coloured by how much of its
    prompt came from the prefix cache.

    ``panels``: ``(policy name in latencies, title)``, e.g. the best router and the learned policies. Same window,
    same requests in every panel: a dot is one request at its arrival time, green when the replica it was sent to
    already held most of its prompt, red when it had to prefill the whole prompt. The black line is the rolling
    median, the dashed line the window's p90 TTFT.
    """
    fig = Figure(figsize=(12, 2.6 * len(panels) + 0.8))
    axes = fig.subplots(len(panels), 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    for ax, (name, title) in zip(axes, panels):
        data = latencies[name]
        mask = data["episode"] == window
        arrived, ttft = data["arrived_s"][mask], data["ttft_s"][mask]
        cached, prompt = data["cached_tokens"][mask], data["prompt_tokens"][mask]
        t = arrived - arrived.min()
        dots = ax.scatter(
            t, ttft, s=12, c=cached / np.maximum(prompt, 1), cmap="RdYlGn", vmin=0.0, vmax=1.0, alpha=0.85, linewidths=0
        )
        order = np.argsort(t)
        k = max(5, len(t) // 25)
        rolling = np.array([np.median(ttft[order][max(0, i - k) : i + k + 1]) for i in range(len(t))])
        ax.plot(t[order], rolling, color="black", lw=1.5, label=f"rolling median ({2 * k + 1} requests)")
        p90 = float(np.percentile(ttft, 90))
        ax.axhline(p90, color="black", ls="--", lw=1.0, label="p90 of the window")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
        ax.set_ylabel("TTFT (s, log)")
        hit = cached.sum() / max(prompt.sum(), 1.0)
        ax.set_title(
            f"{title}  |  p90 TTFT {p90:.2f} s, mean {float(np.mean(ttft)):.2f} s, prompt tokens from cache {hit:.0%}", loc="left"
        )
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(loc="upper left", fontsize=9)
    bar = fig.colorbar(dots, ax=list(axes), fraction=0.025, pad=0.01)
    bar.set_label("share of the request's prompt served from the prefix cache")
    axes[-1].set_xlabel("arrival time within the window (simulated s)")
    fig.suptitle(
        f"Time to first token of every request of held-out window {window + 1}, same requests in each panel (lower is better)"
    )
    return _save(fig, path)
