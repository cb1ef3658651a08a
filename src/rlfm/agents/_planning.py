"""Pieces shared by the baselines (UCB-VI, VI-LCB, CE-VI, PSRL, Q-learning).

- `reward_range`: the reward bounds a confidence term is scaled by (our rewards are not in [0, 1]);
- (backward induction with a confidence term, a bonus or a penalty, and values kept inside what
  an H-step return can achieve, is `rlfm.mdp.backward_induction(mdp, confidence=, bounds=)`);
- `greedy`: the greedy policy, ties broken uniformly at random (an agent with no data must not
  always pick action 0);
- `is_number`, `check_reward_range`: validation of numeric knobs (bad values raise RlfmError).
"""

from __future__ import annotations

import numpy as np

from rlfm.errors import RlfmError
from rlfm.stats import Statistics

DELTA = 0.1  # failure probability in the log terms of the confidence bounds
TIE_TOLERANCE = 1e-9  # values this close to the best count as tied


def reward_range(stats: Statistics, nominal: tuple[float, float]) -> tuple[float, float]:
    """(r_lo, r_hi): the `nominal` range widened to contain every observed mean reward R̂(s, a).

    The papers assume rewards in [0, 1]; ours are not (Taxi: -10..20, CliffWalking: -100..-1), so
    confidence widths are scaled by r_hi - r_lo. Keeping the nominal range inside means 1.0 before
    any reward is seen, and that 0 (the value of a terminal state) always lies in the value range.
    (The statistic keeps no per-transition extremes, hence the extremes of the mean rewards.)
    """
    lo, hi = nominal
    visited = stats.visits > 0
    if visited.any():
        observed = stats.mean_reward[visited]
        lo, hi = min(lo, float(observed.min())), max(hi, float(observed.max()))
    return lo, hi


def is_number(x) -> bool:
    """A finite real number (not a bool): what a numeric knob must be."""
    return isinstance(x, (int, float, np.number)) and not isinstance(x, bool) and bool(np.isfinite(x))


def check_reward_range(reward_range) -> tuple[float, float]:
    """A knob `reward_range=(lo, hi)` with lo <= 0 <= hi and lo < hi, or RlfmError."""
    try:
        lo, hi = (float(x) for x in reward_range)
    except (TypeError, ValueError):
        raise RlfmError(f"reward_range must be a pair (lo, hi), got {reward_range!r}") from None
    if not (is_number(lo) and is_number(hi) and lo <= 0.0 <= hi and lo < hi):
        raise RlfmError(f"reward_range must satisfy lo <= 0 <= hi, lo < hi; got {reward_range!r}")
    return lo, hi


def greedy(Q: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """argmax over the last axis of Q, ties broken uniformly at random with `rng`."""
    best = Q >= Q.max(axis=-1, keepdims=True) - TIE_TOLERANCE
    return np.where(best, rng.random(Q.shape), -1.0).argmax(axis=-1)
