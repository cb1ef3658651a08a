"""Agents behind one interface (`Agent`): rlfm's model and the baselines it is compared with.

`make(name, n_states, n_actions, horizon=..., seed=..., **knobs)` builds one by name.
"""

from rlfm.agents import cevi, psrl, qlearning, rlfm, ucbvi, uniform, vilcb  # noqa: F401  (register agents)
from rlfm.agents.base import Agent, ModelBasedAgent, agent_class, available, make, register

__all__ = ["Agent", "ModelBasedAgent", "agent_class", "available", "make", "register"]
