"""Agents behind one interface (`Agent`): rlfm's model and the baselines it is compared with.

`make(name, n_states, n_actions, horizon=..., seed=..., **knobs)` builds one by name.
"""

from rlfm.agents import uniform  # noqa: F401  (registers its agent)
from rlfm.agents.base import Agent, ModelBasedAgent, agent_class, available, make, register

__all__ = ["Agent", "ModelBasedAgent", "agent_class", "available", "make", "register"]
