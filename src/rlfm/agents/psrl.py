"""PSRL (Osband, Russo & Van Roy 2013, "(More) efficient reinforcement learning via posterior
sampling").

Before every episode, sample one MDP from the posterior, solve it by backward induction and act
greedily on the sample for the whole episode.

Posterior (independent per state-action pair):
- transitions: P(.|s, a) ~ Dirichlet(α + N(s, a, .)) with α = prior_strength / S per successor,
  i.e. the prior is worth `prior_strength` imaginary transitions in total, spread uniformly over
  the S states (default 1.0). A per-successor pseudo-count of 1 would be worth S = 500 imaginary
  transitions in Taxi and drown the data; a total of 1 keeps the posterior mean within 1/(N + 1)
  of the empirical P̂ at any S, while an unvisited pair still samples a random destination.
- mean rewards: Normal with known noise variance σ² (conjugate): prior N(μ0, σ²/κ0) with κ0 = 1
  imaginary observation, posterior N((κ0 μ0 + Σr) / (κ0 + N), σ² / (κ0 + N)). μ0 and σ are the
  midpoint and half the width of the reward range (`reward_range`, default [0, 1], widened to every
  observed mean reward; half the width is the largest standard deviation a reward in the range
  can have).
- a state observed as terminal is absorbing with reward 0 in every sample.

Dirichlet samples are normalised gamma variates, vectorised over all (s, a, s'), using
Gamma(N + α) = Gamma(N) + Gamma(α) so that the S*A*S draws share one scalar shape.

Exploitation policy (`policy()`): greedy on the posterior-mean MDP (no sampling), as (H, S).
"""

from __future__ import annotations

import numpy as np

from rlfm.agents._planning import check_reward_range, greedy, is_number, reward_range
from rlfm.agents.base import ModelBasedAgent, register
from rlfm.errors import RlfmError
from rlfm.mdp import TabularMDP, backward_induction

REWARD_PRIOR_COUNT = 1.0  # κ0


@register("psrl")
class PSRL(ModelBasedAgent):
    TUNING_GRID = {"prior_strength": [0.1, 0.3, 1.0, 3.0, 10.0]}

    def __init__(self, n_states, n_actions, horizon, seed=0, prior_strength=1.0,
                 reward_range=(0.0, 1.0)):
        if not (is_number(prior_strength) and prior_strength > 0):
            raise RlfmError(f"psrl: prior_strength must be a number > 0, got {prior_strength!r}")
        self.prior_strength = float(prior_strength)
        self.reward_range = check_reward_range(reward_range)
        super().__init__(n_states, n_actions, horizon, seed)

    def _reward_posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of every mean reward, (S, A) each."""
        r_lo, r_hi = reward_range(self.stats, self.reward_range)
        mu0, sigma = (r_lo + r_hi) / 2, (r_hi - r_lo) / 2
        precision = REWARD_PRIOR_COUNT + self.stats.visits
        mean = (REWARD_PRIOR_COUNT * mu0 + self.stats.reward_sum) / precision
        return mean, sigma / np.sqrt(precision)

    def _mdp(self, P: np.ndarray, R: np.ndarray) -> TabularMDP:
        """The MDP with transition rows P (S*A, S) and rewards R, observed terminals absorbing."""
        S, A = self.n_states, self.n_actions
        terminal = self.stats.observed_terminal
        rows = np.flatnonzero(np.repeat(terminal, A))
        P[rows] = 0.0
        P[rows, rows // A] = 1.0
        R[terminal] = 0.0
        return TabularMDP(P, R, np.full(S, 1.0 / S), self.horizon, terminal=terminal)

    def plan(self) -> None:
        # Ties have probability 0 in a sampled MDP: plain argmax is greedy enough.
        self.acting = backward_induction(self._mdp(*self.sample_posterior())).policy
        self._exploit = None

    def sample_posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """One MDP from the posterior: transition rows P (S*A, S) and mean rewards R (S, A)."""
        S, A = self.n_states, self.n_actions
        rows, cols, counts = self.stats.transition_triplets()
        # P(.|s, a) ~ Dirichlet(α + N(s, a, .)), as normalised gamma variates (drawn in float32
        # for speed: the rows are normalised in float64 and variates below 1e-38 are negligible).
        G = self.rng.standard_gamma(self.prior_strength / S, size=(S * A, S), dtype=np.float32)
        G[rows, cols] += self.rng.standard_gamma(counts)
        total = G.sum(axis=1, dtype=np.float64)
        # With a tiny prior all S variates of an unvisited row can underflow to 0: the sample is
        # then (to machine precision) a point mass on a uniformly random successor.
        empty = np.flatnonzero(total == 0)
        G[empty, self.rng.integers(S, size=empty.size)] = 1.0
        total[empty] = 1.0
        mean, std = self._reward_posterior()
        return G / total[:, None], mean + std * self.rng.standard_normal((S, A))

    def exploit(self) -> np.ndarray:
        if self._exploit is None:
            S, A = self.n_states, self.n_actions
            rows, cols, counts = self.stats.transition_triplets()
            P = np.full((S * A, S), self.prior_strength / S)
            P[rows, cols] += counts
            P /= (self.stats.visits.ravel() + self.prior_strength)[:, None]
            mean_mdp = self._mdp(P, self._reward_posterior()[0])
            self._exploit = greedy(backward_induction(mean_mdp).Q, self.tie_rng)
        return self._exploit
