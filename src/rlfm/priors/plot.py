"""Drawings of sampled MDPs (matplotlib, Agg backend): a gridworld as its grid (walls, goals,
holes, cliffs, start, the optimal first-step action and V*_0 as shading); a bandit as its arm
means; any other MDP as its transition graph (up to 40 states) or a heatmap of P averaged over
actions, in the family's canonical state order (the permutation undone for readability)."""

from __future__ import annotations

import os

import numpy as np

from rlfm.mdp import TabularMDP, backward_induction
from rlfm.priors.families import CLIFF, GOAL, HOLE

GRAPH_MAX_STATES = 40
ARROWS = {0: (0, 1), 1: (1, 0), 2: (0, -1), 3: (-1, 0)}  # up, right, down, left in plot (x, y)


def plot_mdps(mdps: list[TabularMDP], path: str | os.PathLike, titles: list[str] | None = None):
    """Draw the MDPs side by side (4 per row) into a PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(mdps)
    ncols = min(n, 4)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 4.2 * nrows), squeeze=False,
                             layout="constrained")
    for i, ax in enumerate(axes.ravel()):
        if i >= n:
            ax.axis("off")
            continue
        mdp = mdps[i]
        info = getattr(mdp, "info", {})
        if "layout" in info:
            _draw_grid(ax, mdp, info)
        elif mdp.n_states == 1:
            _draw_bandit(ax, mdp)
        elif mdp.n_states <= GRAPH_MAX_STATES:
            _draw_graph(ax, mdp, info)
        else:
            _draw_heatmap(ax, mdp, info)
        title = titles[i] if titles else (f"{info.get('family', mdp.name)}: S={mdp.n_states}, "
                                          f"A={mdp.n_actions}, H={mdp.horizon}")
        ax.set_title(title, fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _canonical_order(mdp: TabularMDP, info: dict) -> np.ndarray:
    """State indices in the family's canonical order (state_perm[c] = index of canonical c)."""
    return np.asarray(info.get("state_perm", np.arange(mdp.n_states)))


def _draw_grid(ax, mdp: TabularMDP, info: dict) -> None:
    layout = np.asarray(info["layout"])
    cells, kind = np.asarray(info["cells"]), np.asarray(info["cell_kind"])
    sol = backward_induction(mdp)
    V = sol.V[0]
    shade = np.full(layout.shape, np.nan)
    shade[cells[:, 0], cells[:, 1]] = V
    cmap = _cmap("viridis")
    cmap.set_bad("#444444")
    ax.imshow(shade, cmap=cmap, origin="upper")
    # canonical action of each (permuted) action index: 0..3 up/right/down/left, 4 stay
    canonical_action = np.argsort(np.asarray(info.get("action_perm", np.arange(mdp.n_actions))))
    marks = {GOAL: "G", HOLE: "H", CLIFF: "C"}
    for s, (r, c) in enumerate(cells):
        label = marks.get(int(kind[s]), "")
        if mdp.terminal[s]:
            label += "*" if label else ""
        if mdp.initial[s] > 0:
            label = "S" + label
        if label:
            ax.text(c, r, label, ha="center", va="center", fontsize=8, color="white",
                    fontweight="bold")
        elif not mdp.terminal[s]:
            a = int(canonical_action[sol.policy[0, s]])
            if a in ARROWS:
                dx, dy = ARROWS[a]
                ax.arrow(c - 0.2 * dx, r + 0.2 * dy, 0.3 * dx, -0.3 * dy, head_width=0.15,
                         color="white", length_includes_head=True)
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_bandit(ax, mdp: TabularMDP) -> None:
    ax.bar(np.arange(mdp.n_actions), mdp.R[0], color="tab:blue")
    ax.set_xlabel("arm")
    ax.set_ylabel("mean reward")


def _draw_graph(ax, mdp: TabularMDP, info: dict) -> None:
    order = _canonical_order(mdp, info)
    S = mdp.n_states
    angle = 2 * np.pi * np.arange(S) / S
    pos = np.zeros((S, 2))
    pos[order] = np.c_[np.cos(angle), np.sin(angle)]
    P = mdp.P.max(axis=1)   # strongest transition over actions
    src, dst = np.nonzero(P > 0.02)
    for s, t in zip(src, dst, strict=True):
        if s == t:
            continue
        ax.annotate("", xy=pos[t], xytext=pos[s],
                    arrowprops=dict(arrowstyle="-|>", color="gray", alpha=float(0.15 + 0.6 * P[s, t]),
                                    lw=0.8, shrinkA=6, shrinkB=6))
    V = backward_induction(mdp).V[0]
    live = ~mdp.terminal
    ax.scatter(pos[live, 0], pos[live, 1], c=V[live], cmap="viridis", s=80, zorder=3,
               edgecolors=np.where(mdp.initial[live] > 0, "red", "black"))
    ax.scatter(pos[~live, 0], pos[~live, 1], marker="s", s=80, c="black", zorder=3)
    best = mdp.R.max(axis=1)
    for s in np.flatnonzero(best > 0.5 * max(best.max(), 1e-12)):
        ax.text(*(pos[s] * 1.15), "$", ha="center", va="center", fontsize=9, color="tab:green")
    ax.set_xlim(-1.35, 1.35)
    ax.set_ylim(-1.35, 1.35)
    ax.axis("off")


def _draw_heatmap(ax, mdp: TabularMDP, info: dict) -> None:
    order = _canonical_order(mdp, info)
    P = mdp.P.mean(axis=1)[np.ix_(order, order)]
    ax.imshow(P ** 0.5, cmap="magma", interpolation="nearest")
    ax.set_xlabel("next state")
    ax.set_ylabel("state (mean over actions; sqrt scale)")


def _cmap(name: str):
    import matplotlib

    return matplotlib.colormaps[name].copy()
