"""The one interface every agent implements (rlfm's model and each baseline), and the registry.

An episode, as the harness drives it (`agent.learn(env, episodes)` runs episodes like this):

    state = env.reset()
    for step in range(horizon):
        action = agent.act(state, step)
        next_state, reward, terminated, ... = env.step(action)
        agent.observe(state, action, reward, next_state, terminated)
        if terminated: break
    agent.end_episode()
    score(agent.policy())        # the exploitation policy: greedy, no bonus, no noise

Offline, `agent.fit(stats)` replaces everything the agent knows by a statistic of a dataset (or
a dataset file) and returns the agent; `agent.policy()` is its answer, `agent.predict(s, h)` the
action it takes. Every agent's `policy()` has one shape: (H, S, A) action probabilities.
"""

from __future__ import annotations

import json
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rlfm.agents._planning import greedy
from rlfm.errors import RlfmError
from rlfm.mdp import action_probabilities
from rlfm.stats import Statistics


class Agent(ABC):
    """Base class: an agent for an MDP with `n_states` states, `n_actions` actions and episodes of
    at most `horizon` steps; `seed` fixes all its randomness.

    A subclass implements `act` and `exploit` (and `observe`, `end_episode`, `fit` as it learns),
    takes its knobs as keyword arguments of `__init__`, raising RlfmError for a bad value, and
    declares in TUNING_GRID the values of its main knobs that `--tune` tries (each knob's list;
    every combination is tried; {} for nothing to tune)."""

    name = "agent"
    TUNING_GRID: dict[str, list] = {}

    def __init__(self, n_states: int, n_actions: int, horizon: int, seed: int | None = 0):
        self.n_states, self.n_actions, self.horizon = int(n_states), int(n_actions), int(horizon)
        self.seed = seed
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
    def exploit(self) -> np.ndarray:
        """The exploitation policy in the form natural to the agent: (S, A) or (H, S, A) action
        probabilities, or (S,) / (H, S) action indices. Greedy with respect to what was
        learned; no exploration. `policy()` gives it in the one shape of every agent."""

    def policy(self) -> np.ndarray:
        """The exploitation policy as (H, S, A) action probabilities: policy()[h, s] is the
        distribution of the action in state s at step h of an episode."""
        pi = action_probabilities(self.exploit(), self.n_states, self.n_actions, self.horizon)
        return pi if pi.ndim == 3 else np.repeat(pi[None], self.horizon, axis=0)

    def predict(self, state: int, step: int = 0) -> int:
        """The exploitation policy's action in `state` at `step` (the most probable one; ties
        broken at random)."""
        pi, h = np.asarray(self.exploit()), min(step, self.horizon - 1)
        stationary = pi.ndim == (2 if pi.dtype.kind == "f" else 1)  # (S, A) probs, (S,) actions
        chosen = pi[state] if stationary else pi[h, state]
        return int(chosen) if pi.dtype.kind in "iu" else int(greedy(chosen, self.tie_rng))

    def fit(self, data: Statistics | str | os.PathLike) -> Agent:
        """Offline: learn from a dataset alone, a Statistics or a dataset file (.npz or
        Minari, see docs/datasets.md); returns the agent (then `policy()`, `predict`)."""
        raise RlfmError(f"agent {self.name!r} does not learn offline")

    def learn(self, env, episodes: int, seed: int | None = None) -> np.ndarray:
        """Online: act and learn in a Gymnasium environment for `episodes` episodes of at most
        `horizon` steps (`seed` reseeds the environment first); returns each episode's
        return."""
        from rlfm.evaluate import run_episode

        return np.array([run_episode(env, self, self.horizon, seed=seed if k == 0 else None)
                         for k in range(episodes)])

    def saved_state(self) -> dict[str, np.ndarray] | None:
        """What `save` keeps besides the knobs (arrays); None: the agent cannot be saved."""
        return None

    def save(self, path: str | os.PathLike) -> Path:
        """Save the agent (its registry name, knobs, sizes and `saved_state`: for a model-based
        agent, its statistic, which its exploitation policy depends on) as an .npz that
        `rlfm.agents.load` rebuilds; no pickle. Agents made by `make` (or `load`) only, since
        their knobs are then known."""
        from rlfm.io import atomic_write

        knobs = getattr(self, "knobs", None)
        arrays = self.saved_state()
        if knobs is None:
            raise RlfmError("save: build the agent with rlfm.agents.make, so that its knobs "
                            "are recorded")
        if arrays is None:
            raise RlfmError(f"save: agent {self.name!r} keeps no statistic to save (only "
                            f"model-based agents and uniform can be saved)")
        header = json.dumps({"name": self.name, "knobs": knobs, "n_states": self.n_states,
                             "n_actions": self.n_actions, "horizon": self.horizon,
                             "seed": self.seed})

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, agent=np.array(header), **arrays)

        return atomic_write(path, write)


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

    def saved_state(self) -> dict[str, np.ndarray]:
        return self.stats.to_arrays()

    def fit(self, data: Statistics | str | os.PathLike) -> ModelBasedAgent:
        if not isinstance(data, Statistics):
            from rlfm.datasets import load_dataset

            data, _ = load_dataset(str(data), self.n_states, self.n_actions)
        if (data.n_states, data.n_actions) != (self.n_states, self.n_actions):
            raise RlfmError(f"statistic of a ({data.n_states}, {data.n_actions}) MDP given to an "
                            f"agent for ({self.n_states}, {self.n_actions})")
        self.stats = data.copy()
        self.plan()
        return self


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
    """Split at `sep` outside brackets, parentheses and quotes; empty parts dropped."""
    parts, depth, start, quote = [], 0, 0, None
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
            continue
        if char in "\"'":
            quote = char
            continue
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
        agent = cls(n_states, n_actions, horizon, seed=seed, **knobs)
    except TypeError as e:
        raise RlfmError(f"bad knob for agent {name!r}: {e}") from None
    agent.knobs = dict(knobs)
    return agent


def load(path: str | os.PathLike) -> Agent:
    """An agent saved by `Agent.save`: rebuilt by `make` and fitted on its saved statistic."""
    from rlfm.io import read_npz

    data = read_npz(path, RlfmError)
    try:
        header = json.loads(str(data.pop("agent")))
        agent = make(header["name"], header["n_states"], header["n_actions"],
                     header["horizon"], seed=header["seed"], **header["knobs"])
        if data:
            agent.fit(Statistics.from_arrays(agent.n_states, agent.n_actions, data))
    except (KeyError, TypeError, ValueError) as e:
        raise RlfmError(f"{path}: not a saved rlfm agent ({e})") from None
    return agent
