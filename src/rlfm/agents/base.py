"""The one interface every agent implements (rlfm's model and each baseline), and the registry.

An episode, as the harness drives it:

    state = env.reset()
    for step in range(horizon):
        action = agent.act(state, step)
        next_state, reward, terminated, ... = env.step(action)
        agent.observe(state, action, reward, next_state, terminated)
        if terminated: break
    agent.end_episode()
    score(agent.policy())        # the exploitation policy: greedy, no bonus, no noise

Offline, `agent.fit(stats)` replaces everything the agent knows by a statistic of a dataset and
`agent.policy()` is its answer.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np

from rlfm.errors import RlfmError
from rlfm.stats import Statistics


class Agent(ABC):
    """Base class: an agent for an MDP with `n_states` states, `n_actions` actions and episodes of
    at most `horizon` steps; `seed` fixes all its randomness."""

    name = "agent"

    def __init__(self, n_states: int, n_actions: int, horizon: int, seed: int | None = 0):
        self.n_states, self.n_actions, self.horizon = int(n_states), int(n_actions), int(horizon)
        self.rng = np.random.default_rng(seed)
        # Ties in the exploitation policy are broken with a stream of their own, so that scoring
        # the agent after an episode never changes how it acts.
        self.tie_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])

    @abstractmethod
    def act(self, state: int, step: int) -> int:
        """The action to take in `state` at time `step` (0-based) of the current episode."""

    def observe(self, state: int, action: int, reward: float, next_state: int,
                terminated: bool) -> None:
        """Record one transition (called after every step)."""

    def end_episode(self) -> None:
        """Called once when an episode ends (terminated or truncated)."""

    @abstractmethod
    def policy(self) -> np.ndarray:
        """The exploitation policy: (S, A) or (H, S, A) action probabilities, or (S,) / (H, S)
        action indices. Greedy with respect to what was learned; no exploration."""

    def fit(self, stats: Statistics) -> np.ndarray:
        """Offline: learn from a dataset's statistic alone and return the exploitation policy."""
        raise RlfmError(f"agent {self.name!r} does not learn offline")


class ModelBasedAgent(Agent):
    """An agent whose knowledge is the sufficient statistic; it replans after every episode.

    Subclasses set their knobs before calling `super().__init__`, which plans once (on no data);
    `plan` sets `self.acting`, the (H, S) actions the agent takes at each step of an episode.
    """

    def __init__(self, n_states: int, n_actions: int, horizon: int, seed: int | None = 0):
        super().__init__(n_states, n_actions, horizon, seed)
        self.stats = Statistics(n_states, n_actions)
        self.plan()

    @abstractmethod
    def plan(self) -> None:
        """Recompute the acting policy (and whatever `policy()` needs) from `self.stats`."""

    def act(self, state: int, step: int) -> int:
        return int(self.acting[min(step, self.horizon - 1), state])

    def observe(self, state, action, reward, next_state, terminated) -> None:
        self.stats.update(state, action, reward, next_state, terminated)

    def end_episode(self) -> None:
        self.plan()

    def fit(self, stats: Statistics) -> np.ndarray:
        if (stats.n_states, stats.n_actions) != (self.n_states, self.n_actions):
            raise RlfmError(f"statistic of a ({stats.n_states}, {stats.n_actions}) MDP given to an "
                            f"agent for ({self.n_states}, {self.n_actions})")
        self.stats = stats.copy()
        self.plan()
        return self.policy()


AgentFactory = Callable[..., Agent]
_REGISTRY: dict[str, AgentFactory] = {}


def register(name: str):
    """Class decorator: make an agent available as `rlfm.agents.make(name, ...)`."""
    def decorate(cls):
        cls.name = name
        _REGISTRY[name] = cls
        return cls
    return decorate


def available() -> list[str]:
    return sorted(_REGISTRY)


def agent_class(name: str) -> type[Agent]:
    if name not in _REGISTRY:
        raise RlfmError(f"unknown agent {name!r}; available: {', '.join(available())}")
    return _REGISTRY[name]


def parse_spec(text: str) -> tuple[str, dict]:
    """`name` or `name(knob=value, ...)` -> (name, knobs). Values are JSON (numbers, true,
    false, null, "strings", [lists]) or bare words (strings): `rlfm(exploration=greedy)`,
    `psrl(prior_strength=0.3)`, `ucbvi(reward_range=[-1, 1])`."""
    match = re.fullmatch(r"\s*([A-Za-z_][\w-]*)\s*(?:\((.*)\))?\s*", text, re.S)
    if not match:
        raise RlfmError(f"bad agent {text!r}: expected NAME or NAME(knob=value, ...)")
    name, arguments = match.groups()
    agent_class(name)
    knobs = {}
    for part in split_top_level(arguments or ""):
        key, sep, value = part.partition("=")
        if not sep or not key.strip().isidentifier():
            raise RlfmError(f"bad agent {text!r}: knobs are written knob=value, got {part!r}")
        knobs[key.strip()] = _knob_value(value.strip())
    return name, knobs


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split at `sep` outside brackets and parentheses; empty parts dropped."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += (char in "([{") - (char in ")]}")
        if char == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _knob_value(text: str):
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text  # a bare word: a string
    return tuple(value) if isinstance(value, list) else value  # hashable, as specs must be


def make(name: str, n_states: int, n_actions: int, horizon: int, seed: int | None = 0,
         **knobs) -> Agent:
    """Build a registered agent; `knobs` are its hyper-parameters (e.g. bonus_scale=0.5)."""
    cls = agent_class(name)
    try:
        return cls(n_states, n_actions, horizon, seed=seed, **knobs)
    except TypeError as e:
        raise RlfmError(f"bad knob for agent {name!r}: {e}") from None
