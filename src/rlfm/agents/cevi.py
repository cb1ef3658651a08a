"""Certainty-equivalent value iteration (CE-VI): plan on the empirical model as if it were true.

Q_h is backward induction on `Statistics.empirical_mdp(H)`: P̂ = N(s, a, s') / N(s, a), R̂ = mean
observed reward, a state observed as terminal absorbing with reward 0, and an unvisited pair
staying where it is with reward 0. That last convention makes an untried action worth 0 for the
rest of the episode: pessimistic where rewards are positive, optimistic where they are negative
(Taxi, CliffWalking). No bonus, no penalty, nothing to tune.

Online, the agent replans after every episode and acts greedily, ties broken uniformly at random by
its rng (with no data every action ties; it must not always pick action 0). Offline, `fit(stats)`
returns the same greedy (H, S) policy.
"""

from __future__ import annotations

import numpy as np

from rlfm.agents._planning import greedy
from rlfm.agents.base import ModelBasedAgent, register
from rlfm.mdp import backward_induction


@register("cevi")
class CEVI(ModelBasedAgent):
    TUNING_GRID: dict[str, list] = {}

    def plan(self) -> None:
        self.Q = backward_induction(self.stats.empirical_mdp(self.horizon)).Q
        self.acting = greedy(self.Q, self.rng)

    def exploit(self) -> np.ndarray:
        return self.acting
