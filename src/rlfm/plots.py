"""Figures of the evaluation protocol, drawn from a results.json dictionary (docs/results.md)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from rlfm.io import atomic_write

MARKERS = "osD^v<>ph*"
BEST = 1.0  # the top of the normalised score; nothing scores above the optimal policy


def _styles(names) -> dict:
    """One colour and marker per agent; its tuned variant shares them, dashed, so that the
    pairs read together and a dozen lines stay distinguishable."""
    base = list(dict.fromkeys(name.split(" (")[0] for name in names))
    colours = plt.get_cmap("tab10").colors
    styles = {}
    for name in names:
        i = base.index(name.split(" (")[0])
        styles[name] = dict(color=colours[i % len(colours)], marker=MARKERS[i % len(MARKERS)],
                            ls="--" if name.endswith("(tuned)") else "-")
    return styles


def _subtitle(results: dict) -> str:
    seeds = sorted({e["seeds"] for e in results["agents"].values()})
    parts = [f"seeds={'/'.join(map(str, seeds))}"]
    if "checkpoint" in results:
        parts.append(f"checkpoint {results['checkpoint']['name']}")
    if not results.get("complete", True):
        parts.append("interrupted, partial")
    return ", ".join(parts)


def _finish_axes(ax, results: dict, lowest: float, title: str, legend: bool = True) -> None:
    if results.get("scoring") == "sampled":  # raw returns, by rollouts: no fixed range
        ax.set(ylabel=f"return (mean of {results['rollouts']} episodes)", title=title)
    else:
        ax.set(ylabel="normalised score (1 = optimal)", ylim=(min(-0.05, lowest - 0.05), 1.05),
               title=title)
    if legend:
        ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _top(results: dict) -> float:
    """The highest a curve or band can go: 1 for normalised scores, unbounded for returns."""
    return np.inf if results.get("scoring") == "sampled" else BEST


def plot_online(results: dict, path: str | os.PathLike) -> Path:
    """Normalised score of the exploitation policy against episodes, one line per agent, with a
    95% confidence band of the mean over seeds (clipped to the score's range)."""
    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    styles, lowest = _styles(results["agents"]), 0.0
    for name, entry in results["agents"].items():
        curve, std = np.array(entry["curve"]), np.array(entry["curve_std"])
        episodes = np.arange(1, len(curve) + 1)
        half = 1.96 * std / np.sqrt(max(entry["seeds"], 1))
        ax.plot(episodes, curve, label=name, lw=1.5, markevery=max(1, len(curve) // 8),
                markersize=4, **styles[name])
        ax.fill_between(episodes, curve - half, np.minimum(curve + half, _top(results)),
                        color=styles[name]["color"], alpha=0.1)
        lowest = min(lowest, float(curve.min()))
    if results.get("scoring") != "sampled":
        ax.axhline(0.9, color="grey", ls=":", lw=1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("episode")
    _finish_axes(ax, results, lowest, f"{results['env']}: online (S={results['n_states']}, "
                             f"A={results['n_actions']}, H={results['horizon']}; "
                             f"{_subtitle(results)})")
    return _save(fig, path)


def plot_offline(results: dict, path: str | os.PathLike) -> Path:
    """Normalised score against the number of dataset episodes (log axis), mean ± std (clipped
    to the score's range); for a user's own dataset (one dataset, size unknown), one bar per
    agent."""
    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    entries = results["agents"]
    if any(d is None for e in entries.values() for d in e["dataset_episodes"]):
        scores = [e["score"][0] for e in entries.values()]
        ax.bar(list(entries), scores, color="tab:blue")
        _finish_axes(ax, results, min(scores), f"{results['env']}: offline, your dataset",
                     legend=False)
        return _save(fig, path)
    behavior, styles, lowest = "dataset", _styles(entries), 0.0
    for name, entry in entries.items():
        sizes = np.array(entry["dataset_episodes"], float)
        score, std = np.array(entry["score"]), np.array(entry["score_std"])
        behavior = entry.get("behavior", behavior)
        ax.plot(sizes, score, label=name, lw=1.5, markersize=4, **styles[name])
        ax.fill_between(sizes, score - std, np.minimum(score + std, _top(results)),
                        color=styles[name]["color"], alpha=0.1)
        lowest = min(lowest, float(score.min()))
    ax.set_xscale("log")
    ax.set_xlabel("dataset episodes")
    _finish_axes(ax, results, lowest, f"{results['env']}: offline, {behavior} behaviour "
                             f"({_subtitle(results)})")
    return _save(fig, path)


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    finally:
        plt.close(fig)
