"""Gymnasium environments: `TabularEnv` (any TabularMDP), the classic suite MDPs registered by
id (`rlfm/RiverSwim-v0`, ...), and `make`, which resolves what the command line calls ENV."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import gymnasium as gym

from rlfm.envs import classic
from rlfm.errors import InvalidEnvironmentError
from rlfm.mdp import TabularMDP


class TabularEnv(gym.Env):
    """A TabularMDP as a Gymnasium environment.

    Rewards are the MDP's mean rewards R(s, a); an episode terminates on entering a terminal
    state and is truncated after `mdp.horizon` steps. `env.unwrapped.mdp` is the exact model.
    """

    metadata = {"render_modes": []}

    def __init__(self, mdp: TabularMDP):
        self.mdp = mdp
        self.observation_space = gym.spaces.Discrete(mdp.n_states)
        self.action_space = gym.spaces.Discrete(mdp.n_actions)
        self._state = 0
        self._t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._state = int(self.np_random.choice(self.mdp.n_states, p=self.mdp.initial))
        self._t = 0
        return self._state, {}

    def step(self, action):
        a = int(action)
        if not self.action_space.contains(a):
            raise InvalidEnvironmentError(f"action {action!r} outside Discrete({self.mdp.n_actions})")
        nexts, probs = self.mdp.successors(self._state, a)
        reward = float(self.mdp.R[self._state, a])
        self._state = int(nexts[self.np_random.choice(len(nexts), p=probs)])
        self._t += 1
        terminated = bool(self.mdp.terminal[self._state])
        truncated = not terminated and self._t >= self.mdp.horizon
        return self._state, reward, terminated, truncated, {}


def _tabular(builder):
    """A Gymnasium entry point that builds the MDP with the given keyword arguments."""
    def entry_point(**kwargs):
        return TabularEnv(builder(**kwargs))
    entry_point.__doc__ = builder.__doc__
    return entry_point


SUITE_BUILDERS = {
    "rlfm/RiverSwim-v0": classic.river_swim,
    "rlfm/SixArms-v0": classic.six_arms,
    "rlfm/NChain-v0": classic.n_chain,
    "rlfm/DeepSea-v0": classic.deep_sea,
    "rlfm/FourRooms-v0": classic.four_rooms,
    "rlfm/Garnet-v0": classic.garnet,
}
# Garnet instances of the public suite; their seeds are reserved for evaluation (the prior
# draws its random MDPs from its own generator and never from these).
EVAL_GARNETS = {
    "rlfm/Garnet20-v0": dict(n_states=20, n_actions=4, branching=3, seed=1001, horizon=30),
    "rlfm/Garnet50-v0": dict(n_states=50, n_actions=5, branching=5, seed=1002, horizon=40),
}
# Each is registered with its default horizon as max_episode_steps (`make` adjusts it when
# keyword arguments change the horizon).
for _id, _builder in SUITE_BUILDERS.items():
    if _id not in gym.registry:
        gym.register(id=_id, entry_point=_tabular(_builder), disable_env_checker=True,
                     max_episode_steps=_builder().horizon)
for _id, _kwargs in EVAL_GARNETS.items():
    if _id not in gym.registry:
        gym.register(id=_id, entry_point=_tabular(classic.garnet), kwargs=_kwargs,
                     disable_env_checker=True, max_episode_steps=_kwargs["horizon"])

# The public benchmark suite (docs/protocol.md) and its online budget in episodes (Taxi's is smaller: with
# S = 500 an episode costs every agent some 25 times more than on the other MDPs).
PUBLIC_SUITE = {
    "FrozenLake-v1": 300,
    "FrozenLake8x8-v1": 300,
    "CliffWalking-v1": 200,
    "Taxi-v3": 100,
    "rlfm/RiverSwim-v0": 300,
    "rlfm/SixArms-v0": 300,
    "rlfm/NChain-v0": 300,
    "rlfm/DeepSea-v0": 300,
    "rlfm/FourRooms-v0": 300,
    "rlfm/Garnet20-v0": 200,
    "rlfm/Garnet50-v0": 200,
}

# Ids of earlier Gymnasium releases, with identical default dynamics under their new version.
LEGACY_IDS = {"Taxi-v3": "Taxi-v4", "CliffWalking-v0": "CliffWalking-v1"}


def make(env: str, **kwargs) -> gym.Env:
    """What the command line calls ENV: a path to an MDP `.npz`, a Gymnasium id whose spaces are
    Discrete, or `module:EnvId` (the module, e.g. a user's file in the current directory, is
    imported first so that it can register EnvId); `kwargs` go to `gymnasium.make`. Raises
    InvalidEnvironmentError / InvalidMDPError with a one-line message."""
    if env.endswith(".npz") or Path(env).is_file():
        if kwargs:
            raise InvalidEnvironmentError(f"{env}: an MDP file takes no environment arguments")
        return TabularEnv(TabularMDP.load(env))
    env_id = env
    if ":" in env:
        module, env_id = env.split(":", 1)
        _import_user_module(module, env)
    env_id = env_id if env_id in gym.registry else LEGACY_IDS.get(env_id, env_id)
    try:
        made = gym.make(env_id, **kwargs)
        mdp = getattr(made.unwrapped, "mdp", None)
        limit = made.spec.max_episode_steps if made.spec else None
        if isinstance(mdp, TabularMDP) and limit not in (None, mdp.horizon) \
                and "max_episode_steps" not in kwargs:  # the arguments changed the horizon
            made = gym.make(env_id, max_episode_steps=mdp.horizon, **kwargs)
    except gym.error.Error as e:
        raise InvalidEnvironmentError(f"unknown environment {env!r}: {e}") from None
    except TypeError as e:
        raise InvalidEnvironmentError(f"bad arguments for {env!r}: {e}") from None
    spaces = (made.observation_space, made.action_space)
    if not all(isinstance(space, gym.spaces.Discrete) for space in spaces):
        raise InvalidEnvironmentError(
            f"{env}: rlfm needs Discrete observation and action spaces, got "
            f"{type(spaces[0]).__name__} and {type(spaces[1]).__name__}")
    return made


def _import_user_module(module: str, env: str) -> None:
    """Import the module named in `module:EnvId`, from the current directory too (as `python -m`
    would); any failure is a one-line InvalidEnvironmentError."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        importlib.import_module(module)
    except Exception as e:  # a user's module can fail in any way: report it, never a traceback
        raise InvalidEnvironmentError(f"{env}: cannot import module {module!r} "
                                      f"({type(e).__name__}: {e})") from None


def has_model(env: gym.Env) -> bool:
    """Whether `TabularMDP.from_gymnasium` can read the exact model of `env`: a TabularMDP at
    `unwrapped.mdp`, or a toy-text table `unwrapped.P` with `initial_state_distrib`."""
    unwrapped = env.unwrapped
    if isinstance(getattr(unwrapped, "mdp", None), TabularMDP):
        return True
    return isinstance(getattr(unwrapped, "P", None), dict) and \
        getattr(unwrapped, "initial_state_distrib", None) is not None


def load_mdp(env: str, **kwargs) -> TabularMDP:
    """The exact TabularMDP of ENV (see `make`)."""
    return TabularMDP.from_gymnasium(make(env, **kwargs))


__all__ = ["EVAL_GARNETS", "LEGACY_IDS", "PUBLIC_SUITE", "SUITE_BUILDERS", "TabularEnv", "has_model",
           "load_mdp", "make"]
