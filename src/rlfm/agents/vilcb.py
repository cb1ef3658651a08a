"""VI-LCB (Rashidinejad, Zhu, Ma, Jiao & Russell 2021, "Bridging offline reinforcement learning
and imitation learning: a tale of pessimism"): the offline baseline.

Pessimistic value iteration over the horizon on the empirical model of the dataset:

    Q_h(s, a) = max( R̂(s, a) - b(s, a) + P̂(.|s, a) · V_{h+1},  (H - h) r_lo ),  V_h = max_a Q_h,
    b(s, a) = penalty_scale · c · H · span · sqrt(L / N(s, a)),   c = 1,  L = log(2 S A H / δ),  δ = 0.1

i.e. the paper's episodic penalty c·sqrt(H² L / N) (the paper leaves c an unspecified absolute
constant; we take c = 1 and let `penalty_scale`, default 1.0, tune it), scaled by the reward
range span = r_hi - r_lo because our rewards are not in [0, 1] ([r_lo, r_hi] = `reward_range`,
default [0, 1], widened to every observed mean reward). An unvisited pair gets the smallest value
an (H - h)-step return can have, (H - h) r_lo; a state observed as terminal is worth 0. The paper
splits the data so that each step h has its own independent counts; with stationary MDPs we pool
all steps (N(s, a) over the whole dataset), as is usual in practice.

`fit(stats)` returns the greedy (H, S) policy (ties broken at random by the agent's rng). Online,
the agent replans after every episode and acts greedily on the same policy, but it never explores:
it is an offline baseline.
"""

from __future__ import annotations

import numpy as np

from rlfm.agents._planning import (
    DELTA,
    check_reward_range,
    greedy,
    is_number,
    reward_range,
)
from rlfm.agents.base import ModelBasedAgent, register
from rlfm.errors import RlfmError
from rlfm.mdp import backward_induction

PENALTY_CONSTANT = 1.0  # c


@register("vilcb")
class VILCB(ModelBasedAgent):
    # At scale 1 the penalty pins every value to its floor until N(s, a) is in the thousands.
    TUNING_GRID = {"penalty_scale": [0.0001, 0.0003, 0.001, 0.003, 0.01, 0.1, 1.0]}

    def __init__(self, n_states, n_actions, horizon, seed=0, penalty_scale=1.0,
                 reward_range=(0.0, 1.0)):
        if not (is_number(penalty_scale) and penalty_scale >= 0):
            raise RlfmError(f"vilcb: penalty_scale must be a number >= 0, got {penalty_scale!r}")
        self.penalty_scale = float(penalty_scale)
        self.reward_range = check_reward_range(reward_range)
        super().__init__(n_states, n_actions, horizon, seed)

    def plan(self) -> None:
        S, A, H = self.n_states, self.n_actions, self.horizon
        r_lo, r_hi = reward_range(self.stats, self.reward_range)
        n = self.stats.visits
        L = np.log(2 * S * A * H / DELTA)
        b = self.penalty_scale * PENALTY_CONSTANT * H * (r_hi - r_lo) * np.sqrt(L / np.maximum(n, 1))
        penalty = np.where(n > 0, b, np.inf)
        pessimistic = backward_induction(self.stats.empirical_mdp(H),
                                         confidence=lambda h, V_next: -penalty,
                                         bounds=(r_lo, r_hi))
        self.Q = pessimistic.Q
        self.acting = greedy(self.Q, self.rng)

    def exploit(self) -> np.ndarray:
        return self.acting
