"""The uniform random agent: the zero of the normalised score."""

import numpy as np

from rlfm.agents.base import Agent, register
from rlfm.stats import Statistics


@register("uniform")
class UniformAgent(Agent):
    TUNING_GRID: dict[str, list] = {}

    def act(self, state: int, step: int) -> int:
        return int(self.rng.integers(self.n_actions))

    def policy(self) -> np.ndarray:
        return np.full((self.n_states, self.n_actions), 1.0 / self.n_actions)

    def fit(self, stats: Statistics) -> np.ndarray:
        return self.policy()
