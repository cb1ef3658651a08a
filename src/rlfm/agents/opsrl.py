"""Optimistic PSRL (Tiapkin, Belomestny, Calandriello, Moulines, Munos, Naumov, Rowland, Valko &
Ménard, NeurIPS 2022, "Optimistic posterior sampling for reinforcement learning with few samples
and tight guarantees").

Before every episode, draw J MDPs from an optimistic posterior and plan on their upper envelope:

    Q_h(s, a) = max_j [ R_j(s, a) + P_j(.|s, a) · V_{h+1} ],     V_h = max_a Q_h,

then act greedily on Q_h for the episode. The transition posterior puts its prior on a "ghost"
next state s_0 worth the most any remaining steps can return: P_j(.|s, a) ~ Dirichlet(n0,
N(s, a, s'_1), ..., N(s, a, s'_k)) over s_0 and the observed successors, with prior count
n0 = `prior_count` (1, as in the paper). An unvisited pair goes to the ghost for sure and is worth
the maximal value; a visited one keeps ghost mass of about n0 / (N + n0), an optimism that fades
with the visits. The upper envelope over J samples is backward induction on one MDP whose actions
are the pairs (a, j), with the ghost as an absorbing state paying r_hi per step: so OPSRL uses the
shared exact solver (`rlfm.mdp.backward_induction`) unchanged.

Deviations from the paper, all to fit this library's setting: the paper draws independent samples
for every step h (a stage-dependent MDP) and knows the reward function; here MDPs are stationary,
so samples are per (s, a) and shared by all steps, and mean rewards are unknown, drawn from PSRL's
Gaussian posterior (`psrl.PSRL`), J draws each. The ghost's per-step reward r_hi is the top of the
reward range (`reward_range`, default [0, 1], widened to every observed mean reward), since our
rewards are not in [0, 1]. `prior="uniform"` replaces the ghost by PSRL's prior (prior_count
imaginary transitions spread over the S states): with J = 1 that is PSRL, draw for draw.

Exploitation policy (`policy()`): PSRL's, greedy on the posterior-mean MDP (no ghost, no sampling).
"""

from __future__ import annotations

import numpy as np

from rlfm.agents._planning import is_number, reward_range
from rlfm.agents.base import register
from rlfm.agents.psrl import PSRL
from rlfm.errors import RlfmError
from rlfm.mdp import TabularMDP, backward_induction, transitions_from_coo

PRIORS = ("optimistic", "uniform")


@register("opsrl")
class OPSRL(PSRL):
    TUNING_GRID = {"samples": [2, 8, 16], "prior_count": [0.3, 1.0, 3.0]}

    def __init__(self, n_states, n_actions, horizon, seed=0, samples=8, prior_count=1.0,
                 prior="optimistic", reward_range=(0.0, 1.0)):
        if not (isinstance(samples, int | np.integer) and not isinstance(samples, bool)
                and samples >= 1):
            raise RlfmError(f"opsrl: samples must be an integer >= 1, got {samples!r}")
        if not (is_number(prior_count) and prior_count > 0):
            raise RlfmError(f"opsrl: prior_count must be a number > 0, got {prior_count!r}")
        if prior not in PRIORS:
            raise RlfmError(f"opsrl: prior must be one of {', '.join(PRIORS)}, got {prior!r}")
        self.samples, self.prior = int(samples), prior
        super().__init__(n_states, n_actions, horizon, seed, prior_strength=prior_count,
                         reward_range=reward_range)

    def plan(self) -> None:
        draws = [self.sample_posterior() if self.prior == "uniform" else self._optimistic_draw()
                 for _ in range(self.samples)]
        # actions of the envelope MDP are (a, j) -> a * J + j: the best (a, j) gives a
        self.acting = backward_induction(self._envelope(draws)).policy // self.samples
        self._exploit = None

    def _optimistic_draw(self) -> tuple[tuple, np.ndarray]:
        """One draw over the observed successors and the ghost (column S): ((rows, cols,
        probabilities) of the S*A transition rows, rewards (S, A))."""
        S, A = self.n_states, self.n_actions
        rows, cols, counts = self.stats.transition_triplets()
        observed = self.rng.standard_gamma(counts)
        ghost = self.rng.standard_gamma(self.prior_strength, size=S * A)
        total = ghost + np.bincount(rows, weights=observed, minlength=S * A)
        mean, std = self._reward_posterior()
        R = mean + std * self.rng.standard_normal((S, A))
        transitions = (np.concatenate([rows, np.arange(S * A)]),
                       np.concatenate([cols, np.full(S * A, S)]),
                       np.concatenate([observed / total[rows], ghost / total]))
        return transitions, R

    def _envelope(self, draws: list) -> TabularMDP:
        """The MDP whose action (a, j) in state s follows draw j's (s, a); observed terminals
        absorb with reward 0, the ghost state (optimistic prior) absorbs paying r_hi per step."""
        S, A, J = self.n_states, self.n_actions, self.samples
        ghost = self.prior == "optimistic"
        n = S + ghost
        rows, cols, probs = [], [], []
        R = np.zeros((n, A * J))
        for j, (P, R_j) in enumerate(draws):
            r, c, p = P if ghost else _triplets(P)
            s, a = divmod(r, A)
            rows.append(s * A * J + a * J + j)
            cols.append(c)
            probs.append(p)
            R[:S, j::J] = R_j
        terminal = np.zeros(n, bool)
        terminal[:S] = self.stats.observed_terminal
        absorbing = np.flatnonzero(terminal)
        if ghost:
            absorbing = np.append(absorbing, S)
            R[S] = reward_range(self.stats, self.reward_range)[1]
        R[terminal] = 0.0
        rows, cols, probs = np.concatenate(rows), np.concatenate(cols), np.concatenate(probs)
        keep = ~np.isin(rows // (A * J), absorbing)
        loops = (absorbing[:, None] * A * J + np.arange(A * J)).ravel()
        T = transitions_from_coo(np.concatenate([rows[keep], loops]),
                                 np.concatenate([cols[keep], np.repeat(absorbing, A * J)]),
                                 np.concatenate([probs[keep], np.ones(loops.size)]), n, A * J)
        return TabularMDP(T, R, np.full(n, 1.0 / n), self.horizon, terminal=terminal)


def _triplets(P: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows, cols = np.nonzero(P)
    return rows, cols, P[rows, cols]
