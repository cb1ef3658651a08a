"""UCB-VI (Azar, Osband & Munos 2017, "Minimax regret bounds for reinforcement learning").

Before every episode, optimistic value iteration over the horizon on the empirical model:

    Q_h(s, a) = min( R̂(s, a) + b_h(s, a) + P̂(.|s, a) · V_{h+1},  (H - h) r_hi ),  V_h = max_a Q_h,

and the agent acts greedily on Q_h at step h. An unvisited pair gets the cap (H - h) r_hi; a state
observed as terminal is absorbing and worth 0 (never an unvisited, optimistic state).

Bonuses, with N = N(s, a), L = log(5 S A T / δ), δ = 0.1 and T = the number of steps observed so
far (at least 1: an anytime version of the paper's T = K H, which must be known in advance):

- "hoeffding" (UCBVI-CH):  b = 7 H L span / sqrt(N)
- "bernstein" (UCBVI-BF):  b = sqrt(8 L Var_{P̂(.|s,a)}(V_{h+1}) / N) + 14 H L span / (3 N)
                              + sqrt(8 Σ_y P̂(y|s,a) min(100² H³ S² A L² / N'_{h+1}(y), H²) span² / N)
  where N'_{h+1}(y) counts visits to y at step h + 1 (the last term is 0 at h = H - 1, where
  V_H = 0 is exact; `fit` has no per-step counts, so there the min takes its maximum H²).

Both are multiplied by `bonus_scale` (1.0 = the paper's constants). The paper assumes rewards in
[0, 1]; ours are not, so every bonus is scaled by span = r_hi - r_lo, where [r_lo, r_hi] is
`reward_range` (default [0, 1]) widened to contain every observed mean reward (1.0 before any
reward is seen; see `_planning.reward_range`). Differences from the paper, all minor: the reward is
estimated (R̂) rather than known, and the paper's extra min with the previous episode's Q_h is
left out (it only serves the proof's monotonicity, and with a growing reward range it would freeze
values computed under a narrower one).

Exploitation policy (`policy()`): greedy on the certainty-equivalent Q_h of the empirical model
(no bonus; an unvisited pair stays put with reward 0, see `Statistics.empirical_mdp`), as (H, S).
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

BONUSES = ("hoeffding", "bernstein")


@register("ucbvi")
class UCBVI(ModelBasedAgent):
    # The paper's constants make the bonus dwarf every value for hundreds of visits (all actions then
    # tie at the cap and the agent explores at random): the useful scales are far below 1.
    TUNING_GRID = {"bonus_scale": [0.0001, 0.0003, 0.001, 0.003, 0.01, 0.1, 1.0]}

    def __init__(self, n_states, n_actions, horizon, seed=0, bonus="hoeffding",
                 bonus_scale=1.0, reward_range=(0.0, 1.0)):
        if bonus not in BONUSES:
            raise RlfmError(f"ucbvi: bonus must be one of {', '.join(BONUSES)}, got {bonus!r}")
        if not (is_number(bonus_scale) and bonus_scale >= 0):
            raise RlfmError(f"ucbvi: bonus_scale must be a number >= 0, got {bonus_scale!r}")
        self.bonus, self.bonus_scale = bonus, float(bonus_scale)
        self.reward_range = check_reward_range(reward_range)
        self.step_visits = np.zeros((int(horizon), int(n_states)), np.int64)  # N'_h(s)
        self._t = 0  # step within the current episode
        super().__init__(n_states, n_actions, horizon, seed)

    # ---- data ------------------------------------------------------------------------------
    def observe(self, state, action, reward, next_state, terminated) -> None:
        super().observe(state, action, reward, next_state, terminated)
        if self._t < self.horizon:
            self.step_visits[self._t, state] += 1
        self._t += 1

    def end_episode(self) -> None:
        self._t = 0
        super().end_episode()

    def fit(self, stats):
        self.step_visits[:] = 0  # a dataset's statistic records no per-step visits
        return super().fit(stats)

    # ---- planning --------------------------------------------------------------------------
    def plan(self) -> None:
        S, A, H = self.n_states, self.n_actions, self.horizon
        self.model = self.stats.empirical_mdp(H)
        r_lo, r_hi = reward_range(self.stats, self.reward_range)
        span = r_hi - r_lo
        n = self.stats.visits
        visited = n > 0
        n1 = np.maximum(n, 1)
        L = np.log(5 * S * A * max(self.stats.n_transitions, 1) / DELTA)

        def bonus(h: int, V_next: np.ndarray) -> np.ndarray:
            if self.bonus == "hoeffding":
                b = 7 * H * L * span / np.sqrt(n1)
            else:
                var = np.maximum(self.model.expect(V_next ** 2) - self.model.expect(V_next) ** 2, 0)
                b = np.sqrt(8 * L * var / n1) + 14 * H * L * span / (3 * n1)
                if h + 1 < H:
                    c = 100 ** 2 * H ** 3 * S ** 2 * A * L ** 2
                    with np.errstate(divide="ignore"):
                        spread = np.minimum(c / self.step_visits[h + 1], H ** 2) * span ** 2
                    b = b + np.sqrt(8 * self.model.expect(spread) / n1)
            return np.where(visited, self.bonus_scale * b, np.inf)

        optimistic = backward_induction(self.model, confidence=bonus, bounds=(r_lo, r_hi))
        self.Q = optimistic.Q
        self.acting = greedy(self.Q, self.rng)
        self._exploit = None

    def exploit(self) -> np.ndarray:
        if self._exploit is None:
            self._exploit = greedy(backward_induction(self.model).Q, self.tie_rng)
        return self._exploit
