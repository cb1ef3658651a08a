"""Tabular ε-greedy Q-learning (Watkins 1989): the model-free baseline.

One stationary, discounted table Q(s, a) (the textbook algorithm; `gamma` default 0.99), updated
after every transition:

    Q(s, a) += α (r + γ max_a' Q(s', a') - Q(s, a)),   with the bootstrap term 0 when s' is terminal
                                                        (a time-limit truncation still bootstraps).

Learning rate: `lr=None` (default) is the polynomial schedule α = 1 / N(s, a)^0.8 (Even-Dar &
Mansour 2003), a float is a constant α. Acting: with probability `epsilon` (default 0.1) a uniform
random action, else greedy on Q with ties broken at random. Initial values: `optimistic=False`
(default) starts at 0, `True` at the largest return the nominal reward bound 1 allows,
min(H, 1 / (1 - γ)), and a number starts at that number.

Exploitation policy (`policy()`): greedy on Q, as (S,) action indices.
"""

from __future__ import annotations

import numpy as np

from rlfm.agents._planning import greedy, is_number
from rlfm.agents.base import Agent, register
from rlfm.errors import RlfmError

LR_EXPONENT = 0.8


@register("qlearning")
class QLearning(Agent):
    TUNING_GRID = {"epsilon": [0.01, 0.05, 0.1, 0.3], "lr": [None, 0.1, 0.5]}

    def __init__(self, n_states, n_actions, horizon, seed=0, epsilon=0.1, lr=None, gamma=0.99,
                 optimistic=False):
        super().__init__(n_states, n_actions, horizon, seed)
        if not (is_number(epsilon) and 0 <= epsilon <= 1):
            raise RlfmError(f"qlearning: epsilon must lie in [0, 1], got {epsilon!r}")
        if lr is not None and not (is_number(lr) and 0 < lr <= 1):
            raise RlfmError(f"qlearning: lr must be None (1/N^0.8) or lie in (0, 1], got {lr!r}")
        if not (is_number(gamma) and 0 < gamma <= 1):
            raise RlfmError(f"qlearning: gamma must lie in (0, 1], got {gamma!r}")
        if isinstance(optimistic, bool):
            q0 = min(self.horizon, 1 / (1 - gamma) if gamma < 1 else np.inf) if optimistic else 0.0
        elif is_number(optimistic):
            q0 = float(optimistic)
        else:
            raise RlfmError(f"qlearning: optimistic must be a bool or a number, got {optimistic!r}")
        self.epsilon, self.lr, self.gamma = float(epsilon), lr, float(gamma)
        self.Q = np.full((self.n_states, self.n_actions), q0)
        self.visits = np.zeros((self.n_states, self.n_actions), np.int64)

    def act(self, state: int, step: int) -> int:
        if self.rng.random() < self.epsilon:
            return int(self.rng.integers(self.n_actions))
        return int(greedy(self.Q[state], self.rng))

    def observe(self, state, action, reward, next_state, terminated) -> None:
        self.visits[state, action] += 1
        alpha = self.lr if self.lr is not None else self.visits[state, action] ** -LR_EXPONENT
        target = reward + (0.0 if terminated else self.gamma * self.Q[next_state].max())
        self.Q[state, action] += alpha * (target - self.Q[state, action])

    def exploit(self) -> np.ndarray:
        return greedy(self.Q, self.tie_rng)
