"""Figures of the evaluation protocol, drawn from a results.json dictionary (docs/results.md)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from rlfm.io import atomic_write


def plot_online(results: dict, path: str | os.PathLike) -> Path:
    """Normalised score of the exploitation policy against episodes, one line per agent, with a
    95% confidence band of the mean over seeds."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, entry in results["agents"].items():
        curve, std = np.array(entry["curve"]), np.array(entry["curve_std"])
        episodes = np.arange(1, len(curve) + 1)
        half = 1.96 * std / np.sqrt(max(entry["seeds"], 1))
        (line,) = ax.plot(episodes, curve, label=name, lw=1.6)
        ax.fill_between(episodes, curve - half, curve + half, color=line.get_color(), alpha=0.15)
    ax.axhline(0.9, color="grey", ls=":", lw=1)
    ax.set(xlabel="episode", ylabel="normalised score (1 = optimal)", ylim=(-0.05, 1.05),
           title=f"{results['env']}: online (S={results['n_states']}, A={results['n_actions']}, "
                 f"H={results['horizon']})")
    ax.legend(frameon=False, fontsize=8)
    return _save(fig, path)


def plot_offline(results: dict, path: str | os.PathLike) -> Path:
    """Normalised score against the number of dataset episodes (log axis), mean ± std; for a
    user's own dataset (one dataset, size unknown), one bar per agent."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    entries = results["agents"]
    if any(d is None for e in entries.values() for d in e["dataset_episodes"]):
        ax.bar(list(entries), [e["score"][0] for e in entries.values()], color="tab:blue")
        ax.set(ylabel="normalised score (1 = optimal)", ylim=(-0.05, 1.05),
               title=f"{results['env']}: offline, your dataset")
        return _save(fig, path)
    behavior = "dataset"
    for name, entry in results["agents"].items():
        sizes = np.array(entry["dataset_episodes"], float)
        score, std = np.array(entry["score"]), np.array(entry["score_std"])
        behavior = entry.get("behavior", behavior)
        (line,) = ax.plot(sizes, score, marker="o", label=name, lw=1.6)
        ax.fill_between(sizes, score - std, score + std, color=line.get_color(), alpha=0.15)
    ax.set_xscale("log")
    ax.set(xlabel="dataset episodes", ylabel="normalised score (1 = optimal)", ylim=(-0.05, 1.05),
           title=f"{results['env']}: offline, {behavior} behaviour")
    ax.legend(frameon=False, fontsize=8)
    return _save(fig, path)


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    finally:
        plt.close(fig)
