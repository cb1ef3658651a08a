"""The uniform random agent: the zero of the normalised score."""

from __future__ import annotations

import numpy as np

from rlfm.agents.base import Agent, register


@register("uniform")
class UniformAgent(Agent):
    TUNING_GRID: dict[str, list] = {}

    def act(self, state: int, step: int) -> int:
        return int(self.rng.integers(self.n_actions))

    def exploit(self) -> np.ndarray:
        return np.full((self.n_states, self.n_actions), 1.0 / self.n_actions)

    def saved_state(self) -> dict[str, np.ndarray]:
        return {}  # nothing learned

    def fit(self, data) -> UniformAgent:
        return self  # learns nothing
