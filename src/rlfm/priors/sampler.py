"""Sampling MDPs from the prior: one family's generator, the reward rescaling and the
permutation of states and actions (contexts, statistics and targets are made in batch by
`rlfm.priors.batch`). Deterministic given the generator's state."""

from __future__ import annotations

import numpy as np

from rlfm.mdp import TabularMDP
from rlfm.priors.config import PriorConfig, load_config
from rlfm.priors.families import FAMILIES, permute, transform_rewards


def sample_family(rng: np.random.Generator, name: str,
                  config: PriorConfig | str | None = None) -> TabularMDP:
    """One MDP of the named family, rewards rescaled, states and actions permuted."""
    config = load_config(config)
    mdp = FAMILIES[name](rng, **config.families.get(name, {}))
    mdp = transform_rewards(mdp, rng, **config.rewards)
    return permute(mdp, rng)


def sample_mdp(rng: np.random.Generator, config: PriorConfig | str | None = None) -> TabularMDP:
    """One MDP from the prior's mixture of families (`mdp.name` is the family)."""
    config = load_config(config)
    names = list(config.mixture)
    weights = np.array([config.mixture[k] for k in names], float)
    return sample_family(rng, names[rng.choice(len(names), p=weights / weights.sum())], config)
