"""Gridworld MDPs from a boolean map of free cells (shared by FourRooms and the prior)."""

from __future__ import annotations

import numpy as np

from rlfm.mdp import TabularMDP, transitions_from_coo

# up, right, down, left as (row, column) steps
MOVES = np.array([(-1, 0), (0, 1), (1, 0), (0, -1)])


def parse_layout(rows: list[str]) -> np.ndarray:
    """A map drawn as strings ('#' wall, anything else free) to a bool array of free cells."""
    return np.array([[c != "#" for c in row] for row in rows], bool)


def grid_mdp(free: np.ndarray, start, rewards: dict, horizon: int, *, slip: float = 0.0,
             slip_to: str = "perpendicular", terminal_cells=(), step_reward: float = 0.0,
             name: str | None = None) -> TabularMDP:
    """A gridworld: one state per free cell (row-major), actions up/right/down/left.

    A move into a wall or off the grid stays put. With probability `slip` the move goes
    elsewhere: to one of the two perpendicular directions ('perpendicular') or to any of the
    other three ('any'), uniformly. Entering a cell of `rewards` pays its value (plus
    `step_reward`, paid on every move); `terminal_cells` (goals, holes, traps) end the episode.
    `start` is a cell or a list of cells (uniform start distribution).
    """
    free = np.asarray(free, bool)
    n_rows, n_cols = free.shape
    cells = np.argwhere(free)
    index = -np.ones(free.shape, np.int64)
    index[free] = np.arange(len(cells))
    S, A = len(cells), 4
    starts = [start] if np.ndim(start) == 1 else list(start)
    for cell in [*starts, *rewards, *terminal_cells]:
        if not free[tuple(cell)]:
            raise ValueError(f"cell {tuple(cell)} is a wall")
    # Where each move leads from every cell (stay put when blocked).
    target = cells[:, None, :] + MOVES[None, :, :]
    inside = ((target >= 0) & (target < (n_rows, n_cols))).all(-1)
    clipped = np.clip(target, 0, (n_rows - 1, n_cols - 1))
    blocked = ~inside | ~free[clipped[..., 0], clipped[..., 1]]
    dest = np.where(blocked, np.arange(S)[:, None], index[clipped[..., 0], clipped[..., 1]])

    # outcome[a, m]: probability that intended action a results in move m.
    outcome = np.eye(A) * (1.0 - slip)
    for a in range(A):
        others = [(a + 1) % A, (a + 3) % A] if slip_to == "perpendicular" else \
            [m for m in range(A) if m != a]
        outcome[a, others] += slip / len(others)

    entry_reward = np.full(S, step_reward)
    for cell, r in rewards.items():
        entry_reward[index[cell]] += r
    terminal = np.zeros(S, bool)
    for cell in terminal_cells:
        terminal[index[cell]] = True

    rows = np.repeat((np.arange(S)[:, None] * A + np.arange(A)).ravel(), A)   # (S*A*A,)
    moves = np.tile(np.arange(A), S * A)
    cols = dest[rows // A, moves]
    probs = outcome[rows % A, moves]
    R = (outcome[None] * entry_reward[dest][:, None, :]).sum(-1)            # (S, A)
    # Terminal cells are absorbing with zero reward.
    live = ~terminal[rows // A] & (probs > 0)
    t = np.flatnonzero(terminal)
    rows = np.concatenate([rows[live], (t[:, None] * A + np.arange(A)).ravel()])
    cols = np.concatenate([cols[live], np.repeat(t, A)])
    probs = np.concatenate([probs[live], np.ones(t.size * A)])
    R[terminal] = 0.0

    initial = np.zeros(S)
    initial[[index[tuple(c)] for c in starts]] = 1.0 / len(starts)
    return TabularMDP(transitions_from_coo(rows, cols, probs, S, A), R, initial, horizon,
                      terminal=terminal, name=name)
