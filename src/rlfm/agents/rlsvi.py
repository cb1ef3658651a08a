"""RLSVI, randomized least-squares value iteration in its tabular form (Osband, Van Roy & Wen,
ICML 2016, "Generalization and exploration via randomized value functions"; Osband, Van Roy,
Russo & Wen, JMLR 2019, "Deep exploration via randomized value functions").

Before every episode, plan on the empirical model with randomly perturbed rewards and act greedily
on the result for the whole episode:

    R̃(s, a) = R̂(s, a) + σ · span / sqrt(N(s, a) + 1) · ξ(s, a),   ξ ~ N(0, 1) independent,
    Q̃ = backward induction on (P̂, R̃).

The noise is the posterior spread of a mean reward with N observations and one imaginary one, so
a rarely tried action is sometimes worth a lot for the rest of the episode: exploration that looks
several steps ahead. P̂ and R̂ are `Statistics.empirical_mdp` (an unvisited pair stays where it
is, so its noise is collected at every remaining step); a state observed as terminal keeps reward
0. σ is `sigma`, in units of span = r_hi - r_lo, the reward range (`reward_range`, default [0, 1],
widened to every observed mean reward; the papers assume rewards in [0, 1]).

Deviations: the papers' value functions depend on the step h, and their tabular form perturbs
every observed reward (or regresses on perturbed targets) per step; here the MDP is stationary and
one perturbation per (s, a) and episode is shared by all steps. With σ = 0 this is
certainty-equivalent planning (`cevi`).

Exploitation policy (`policy()`): greedy on the unperturbed plan, i.e. CE-VI's, as (H, S).
"""

from __future__ import annotations

import numpy as np

from rlfm.agents._planning import check_reward_range, greedy, is_number, reward_range
from rlfm.agents.base import ModelBasedAgent, register
from rlfm.errors import RlfmError
from rlfm.mdp import backward_induction


@register("rlsvi")
class RLSVI(ModelBasedAgent):
    TUNING_GRID = {"sigma": [0.1, 0.3, 1.0, 3.0, 10.0]}

    def __init__(self, n_states, n_actions, horizon, seed=0, sigma=1.0,
                 reward_range=(0.0, 1.0)):
        if not (is_number(sigma) and sigma >= 0):
            raise RlfmError(f"rlsvi: sigma must be a number >= 0, got {sigma!r}")
        self.sigma = float(sigma)
        self.reward_range = check_reward_range(reward_range)
        super().__init__(n_states, n_actions, horizon, seed)

    def plan(self) -> None:
        self.model = mdp = self.stats.empirical_mdp(self.horizon)
        r_lo, r_hi = reward_range(self.stats, self.reward_range)
        width = self.sigma * (r_hi - r_lo) / np.sqrt(self.stats.visits + 1.0)
        R = mdp.R + width * self.rng.standard_normal(mdp.R.shape)
        R[mdp.terminal] = 0.0
        self.Q = backward_induction(mdp, R=R).Q
        self.acting = greedy(self.Q, self.rng)  # ties only where sigma = 0
        self._exploit = None

    def exploit(self) -> np.ndarray:
        if self._exploit is None:
            Q = backward_induction(self.model).Q
            self._exploit = greedy(Q, self.tie_rng)
        return self._exploit
