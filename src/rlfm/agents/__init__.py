"""Agents behind one interface (`Agent`): rlfm's model and the baselines it is compared with.

`make(name, n_states, n_actions, horizon=..., seed=..., **knobs)` builds one by name.
"""

from rlfm.agents import (  # noqa: F401  (register agents)
    cevi,
    opsrl,
    psrl,
    qlearning,
    rlfm,
    rlsvi,
    ucbvi,
    uniform,
    vilcb,
)
from rlfm.agents.base import (
    Agent,
    ModelBasedAgent,
    agent_class,
    available,
    load,
    make,
    parse_spec,
    register,
)

__all__ = ["Agent", "ModelBasedAgent", "agent_class", "available", "load", "make", "parse_spec",
           "register"]
