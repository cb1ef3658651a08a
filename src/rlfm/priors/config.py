"""The prior's configuration: a TOML file (the default ships as `rlfm/priors/default.toml`).

A user file overrides the default: every table is merged key by key, except the weight tables
`[mixture]` and `[context.behaviours]`, which replace the default's whole (so a file holding
`[mixture] grid = 1` samples gridworlds only). Unknown keys are errors, never ignored.
"""

from __future__ import annotations

import copy
import inspect
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

from rlfm.errors import RlfmError
from rlfm.fields import finite

WEIGHT_TABLES = (("mixture",), ("context", "behaviours"))
# The context behaviours the batched world simulates (rlfm.priors.batch).
BEHAVIOURS = ("uniform", "epsilon_greedy", "fixed_policy", "optimistic", "psrl", "mixed")


class PriorConfigError(RlfmError, ValueError):
    """A prior configuration file or dict that is malformed."""


@dataclass(frozen=True)
class PriorConfig:
    """The prior as plain data (JSON-serialisable with `to_dict`, e.g. into a checkpoint)."""

    mixture: dict[str, float]
    families: dict[str, dict[str, Any]]
    rewards: dict[str, Any]
    context: dict[str, Any]
    targets: dict[str, Any]
    source: str = field(default="default", compare=False)

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>", base: dict | None = None) -> PriorConfig:
        """Merge `data` over `base` (the default prior unless given) and validate."""
        merged = _merge(copy.deepcopy(_default_dict() if base is None else base), data, ())
        unknown = set(merged) - {"mixture", "families", "rewards", "context", "targets"}
        if unknown:
            raise PriorConfigError(f"{source}: unknown table(s) {sorted(unknown)}")
        config = cls(mixture=dict(merged["mixture"]), families=merged["families"],
                     rewards=merged["rewards"], context=merged["context"],
                     targets=merged["targets"], source=source)
        config.validate()
        return config

    def to_dict(self) -> dict:
        return copy.deepcopy({"mixture": self.mixture, "families": self.families,
                              "rewards": self.rewards, "context": self.context,
                              "targets": self.targets})

    # ---- derived configurations ---------------------------------------------------------
    def only(self, family: str) -> PriorConfig:
        """The same prior restricted to one family."""
        return self.replace(mixture={family: 1.0})

    def replace(self, **tables) -> PriorConfig:
        data = self.to_dict()
        data.update(copy.deepcopy(tables))
        config = PriorConfig(**data, source=self.source)
        config.validate()
        return config

    # ---- checks -------------------------------------------------------------------------
    def validate(self) -> None:
        from rlfm.priors.families import FAMILIES

        where = self.source
        data = self.to_dict()
        for table in ("families", "rewards", "context", "targets"):
            _check_like(data[table], _default_dict()[table], f"{where}: {table}")
        _check_bounds(data, where)
        _check_weights(self.mixture, f"{where}: [mixture]")
        for name in self.mixture:
            if name not in FAMILIES:
                raise PriorConfigError(f"{where}: unknown family {name!r} in [mixture]; known: "
                                       f"{', '.join(sorted(FAMILIES))}")
        for name, params in self.families.items():
            if name not in FAMILIES:
                raise PriorConfigError(f"{where}: unknown family table [families.{name}]")
            accepted = set(inspect.signature(FAMILIES[name]).parameters) - {"rng"}
            bad = set(params) - accepted
            if bad:
                raise PriorConfigError(f"{where}: [families.{name}] has unknown key(s) "
                                       f"{sorted(bad)}; accepted: {', '.join(sorted(accepted))}")
        _check_weights(self.context["behaviours"], f"{where}: [context.behaviours]")
        for name in self.context["behaviours"]:
            if name not in BEHAVIOURS:
                raise PriorConfigError(f"{where}: unknown behaviour {name!r} in "
                                       f"[context.behaviours]; known: {', '.join(BEHAVIOURS)}")
        for key in ("scale_log10", "offset"):
            _check_range(self.rewards[key], f"{where}: rewards.{key}")
        for key in ("reward_noise",):
            _check_range(self.context[key], f"{where}: context.{key}")
        if not float(self.targets["tau_rel"]) > 0:
            raise PriorConfigError(f"{where}: targets.tau_rel must be > 0")


def load_config(config: PriorConfig | str | os.PathLike | dict | None = None) -> PriorConfig:
    """The prior: the default (None), a TOML file (a prior, or a training configuration, whose
    [prior] table of overrides is read), a dict, or an existing PriorConfig."""
    if config is None:
        return _DEFAULT()
    if isinstance(config, PriorConfig):
        return config
    if isinstance(config, dict):
        return PriorConfig.from_dict(config)
    path = Path(config)
    if not path.is_file():
        raise PriorConfigError(f"{path}: no such prior configuration file")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise PriorConfigError(f"{path}: not a valid TOML file ({e})") from None
    if {"model", "train", "validation", "prior"} & set(data):   # a training configuration
        return PriorConfig.from_dict(data.get("prior", {}), source=f"{path} [prior]")
    return PriorConfig.from_dict(data, source=str(path))


# ---- internals ------------------------------------------------------------------------------
_default_cache: dict = {}


def _default_dict() -> dict:
    if "dict" not in _default_cache:
        text = resources.files("rlfm.priors").joinpath("default.toml").read_text()
        _default_cache["dict"] = tomllib.loads(text)
    return copy.deepcopy(_default_cache["dict"])


def _DEFAULT() -> PriorConfig:
    if "config" not in _default_cache:
        _default_cache["config"] = PriorConfig.from_dict({}, source="default")
    return _default_cache["config"]


def _merge(base: dict, over: dict, path: tuple) -> dict:
    for key, value in over.items():
        here = (*path, key)
        if here in WEIGHT_TABLES:
            base[key] = dict(value)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = _merge(base[key], value, here)
        elif key not in base and here[0] != "families":
            raise PriorConfigError(f"unknown prior setting {'.'.join(here)!r}")
        else:
            base[key] = value
    return base


# Lower and upper bounds of numeric settings (a value, or both ends of a [low, high] range), by
# key, anywhere in [families.*] and [context]; any other setting there must be >= 0, and every
# *_prob setting a probability.
AT_LEAST_ONE = ("n_states", "large_states", "n_actions", "horizon", "side", "large_side",
                "length", "large_length", "depth", "max_states", "branching", "n_goals",
                "transitions_per_state", "max_transitions", "min_max_episodes", "max_episodes",
                "replan_every_episode", "horizon_factor")
FRACTIONS = ("forward", "current", "slip", "success", "wall_density", "hole_fraction", "epsilon")


def _check_like(value, default, where: str) -> None:
    """`value` has the type and shape of the default setting it replaces."""
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise PriorConfigError(f"{where} must be a table, got {value!r}")
        for key in value.keys() & default.keys():
            _check_like(value[key], default[key], f"{where}.{key}")
    elif isinstance(default, list):
        _check_range(value, where)
        if all(isinstance(v, int) for v in default) and not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise PriorConfigError(f"{where} must be a range of integers, got {value!r}")
    elif isinstance(default, bool) or not isinstance(default, int | float):
        if type(value) is not type(default):
            raise PriorConfigError(f"{where} must be a {type(default).__name__}, got {value!r}")
    elif isinstance(default, int) and (not isinstance(value, int) or isinstance(value, bool)):
        raise PriorConfigError(f"{where} must be an integer, got {value!r}")
    elif not isinstance(value, int | float) or isinstance(value, bool) or not finite(value):
        raise PriorConfigError(f"{where} must be a finite number, got {value!r}")


def _check_bounds(data: dict, where: str) -> None:
    tables = [(f"families.{name}", params) for name, params in data["families"].items()]
    tables += [("context", data["context"]),
               ("rewards", {k: v for k, v in data["rewards"].items() if k.endswith("_prob")})]
    tables += [(f"context.{k}", v) for k, v in data["context"].items() if isinstance(v, dict)
               and k != "behaviours"]
    for table, params in tables:
        for key, value in params.items():
            ends = value if isinstance(value, list) else [value]
            if isinstance(value, dict) or not all(isinstance(v, int | float) for v in ends):
                continue
            low = 1 if key in AT_LEAST_ONE else 0
            high = 1 if key in FRACTIONS or key.endswith("_prob") else math.inf
            if not all(low <= v <= high for v in ends):
                raise PriorConfigError(f"{where}: {table}.{key} must lie in [{low}, {high}], "
                                       f"got {value!r}")


def _check_weights(weights: dict, where: str) -> None:
    if not weights:
        raise PriorConfigError(f"{where} is empty")
    for name, w in weights.items():
        if not isinstance(w, int | float) or w < 0:
            raise PriorConfigError(f"{where}: weight of {name!r} must be a number >= 0, got {w!r}")
    if sum(weights.values()) <= 0:
        raise PriorConfigError(f"{where}: weights must not all be zero")


def _check_range(value, where: str) -> None:
    if (not isinstance(value, list | tuple) or len(value) != 2
            or not all(isinstance(v, int | float) for v in value) or value[0] > value[1]):
        raise PriorConfigError(f"{where} must be a range [low, high] with low <= high, got {value!r}")
