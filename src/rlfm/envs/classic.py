"""The classic exploration MDPs of the public suite, each built as an exact TabularMDP.

Rewards are scaled into [0, 1] so that every learner that assumes bounded rewards (UCB-VI's
bonus, PSRL's prior) sees the same problem; the normalised score does not depend on the scale.
"""

from __future__ import annotations

import numpy as np

from rlfm.gridworld import grid_mdp, parse_layout
from rlfm.mdp import TabularMDP

LEFT, RIGHT = 0, 1


def river_swim(n_states: int = 6, horizon: int = 20) -> TabularMDP:
    """RiverSwim (Strehl & Littman 2008; rewards as in Osband et al. 2013).

    A chain against a current: 'left' always succeeds and pays 0.005 in the leftmost state;
    'right' moves right with probability 0.35 (0.6 in the leftmost state), stays with 0.6 and is
    swept back with 0.05; pushing right in the rightmost state pays 1. Start: leftmost state.
    """
    S = n_states
    P = np.zeros((S, 2, S))
    R = np.zeros((S, 2))
    for s in range(S):
        P[s, LEFT, max(s - 1, 0)] = 1.0
        if s == 0:
            P[s, RIGHT, [0, 1]] = 0.4, 0.6
        elif s == S - 1:
            P[s, RIGHT, [s - 1, s]] = 0.4, 0.6
        else:
            P[s, RIGHT, [s - 1, s, s + 1]] = 0.05, 0.6, 0.35
    R[0, LEFT] = 0.005
    R[S - 1, RIGHT] = 1.0
    initial = np.eye(S)[0]
    return TabularMDP(P, R, initial, horizon, name="RiverSwim")


SIX_ARMS_ENTRY = (1.0, 0.15, 0.10, 0.05, 0.03, 0.01)
SIX_ARMS_REWARD = (50, 133, 300, 800, 1660, 6000)


def six_arms(horizon: int = 100) -> TabularMDP:
    """SixArms (Strehl & Littman 2008): a hub state and six rooms.

    From the hub, action i enters room i+1 with probability SIX_ARMS_ENTRY[i] (else stays).
    In room i+1, action i stays and pays SIX_ARMS_REWARD[i] (scaled by 1/6000); any other action
    returns to the hub. The richer rooms are the hardest to enter.
    """
    S, A = 7, 6
    P = np.zeros((S, A, S))
    R = np.zeros((S, A))
    for a, p in enumerate(SIX_ARMS_ENTRY):
        P[0, a, a + 1], P[0, a, 0] = p, 1.0 - p
    for room in range(1, S):
        P[room, :, 0] = 1.0
        P[room, room - 1] = 0.0
        P[room, room - 1, room] = 1.0
        R[room, room - 1] = SIX_ARMS_REWARD[room - 1] / max(SIX_ARMS_REWARD)
    return TabularMDP(P, R, np.eye(S)[0], horizon, name="SixArms")


def n_chain(n_states: int = 5, slip: float = 0.2, horizon: int = 50) -> TabularMDP:
    """The n-chain of Strens (2000): 'forward' (action 0) moves one step along the chain and,
    at its end, stays and pays 1; 'back' (action 1) returns to the start and pays 0.2. With
    probability `slip` the other action is performed. Start: the first state."""
    S = n_states
    P = np.zeros((S, 2, S))
    R = np.zeros((S, 2))
    for s in range(S):
        forward, forward_reward = min(s + 1, S - 1), (1.0 if s == S - 1 else 0.0)
        for a, p_forward in ((0, 1.0 - slip), (1, slip)):
            P[s, a, forward] += p_forward
            P[s, a, 0] += 1.0 - p_forward
            R[s, a] = p_forward * forward_reward + (1.0 - p_forward) * 0.2
    return TabularMDP(P, R, np.eye(S)[0], horizon, name="NChain")


def deep_sea(size: int = 10, seed: int = 0) -> TabularMDP:
    """DeepSea (Osband et al. 2019): a size x size staircase descended one row per step.

    Each step moves down one row and left or right one column; which action means 'right' is
    drawn per cell (from `seed`). Moving right costs 0.01/size; arriving in the bottom-right
    cell and stepping on pays 1, so the only rewarding path is `size` consecutive 'right's
    against a steady cost. States: the size*size cells plus one terminal state; horizon = size.
    """
    N = size
    S, A = N * N + 1, 2
    end = N * N
    flip = np.random.default_rng(seed).random((N, N)) < 0.5  # per-cell action meaning
    P = np.zeros((S, A, S))
    R = np.zeros((S, A))
    for row in range(N):
        for col in range(N):
            s = row * N + col
            for a in range(A):
                right = (a == RIGHT) != flip[row, col]
                if row == N - 1:
                    P[s, a, end] = 1.0
                    R[s, a] = 1.0 if (col == N - 1 and right) else 0.0
                else:
                    new_col = min(col + 1, N - 1) if right else max(col - 1, 0)
                    P[s, a, (row + 1) * N + new_col] = 1.0
                if right:
                    R[s, a] -= 0.01 / N
    P[end, :, end] = 1.0
    terminal = np.zeros(S, bool)
    terminal[end] = True
    R[end] = 0.0
    return TabularMDP(P, R, np.eye(S)[0], N, terminal=terminal, name="DeepSea")


FOUR_ROOMS = [
    ".....#.....",
    ".....#.....",
    "...........",
    ".....#.....",
    ".....#.....",
    "#.####.....",
    ".....###.##",
    ".....#.....",
    ".....#.....",
    "...........",
    ".....#.....",
]


def four_rooms(slip: float = 0.2, horizon: int = 100) -> TabularMDP:
    """FourRooms (Sutton, Precup & Singh 1999), 11x11 interior, slippery: with probability
    `slip` a move goes to a perpendicular direction. Start top-left, goal (reward 1, terminal)
    bottom-right."""
    free = parse_layout(FOUR_ROOMS)
    goal = (10, 10)
    return grid_mdp(free, (0, 0), {goal: 1.0}, horizon, slip=slip, terminal_cells=[goal],
                    name="FourRooms")


def garnet(n_states: int = 20, n_actions: int = 4, branching: int = 3, seed: int = 0,
           horizon: int = 30) -> TabularMDP:
    """A Garnet MDP (Archibald et al. 1995): each (s, a) reaches `branching` distinct random
    states with probabilities from a uniform random partition of [0, 1]; mean rewards uniform
    in [0, 1]; start in state 0."""
    if not 1 <= branching <= n_states:
        raise ValueError(f"branching must lie in [1, n_states={n_states}], got {branching}")
    rng = np.random.default_rng(seed)
    S, A = n_states, n_actions
    P = np.zeros((S, A, S))
    for s in range(S):
        for a in range(A):
            nexts = rng.choice(S, size=branching, replace=False)
            cuts = np.sort(rng.random(branching - 1))
            P[s, a, nexts] = np.diff(np.concatenate([[0.0], cuts, [1.0]]))
    R = rng.random((S, A))
    return TabularMDP(P, R, np.eye(S)[0], horizon, name=f"Garnet-{S}-{A}-{branching}-{seed}")
