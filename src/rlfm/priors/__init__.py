"""The synthetic MDP prior and the pretraining data pipeline.

    import numpy as np
    from rlfm import priors

    rng = np.random.default_rng(0)
    mdp = priors.sample_mdp(rng)                  # from the default mixture (default.toml)
    example = priors.sample_example(rng)          # MDP -> context statistic + targets
    loader = priors.make_loader(seed=0, batch_size=32, num_workers=2)
    for batch in loader: ...                      # packed sparse GraphBatches (the model's input)

Modules: `families` (one generator per kind of structure, the shared permutation and reward
rescaling), `context` (vectorised data simulation and behaviours), `sampler` (mixture, targets,
TrainingExample), `dataset` (IterableDataset, packing; imports torch, so it is loaded on first
use), `config` (TOML), `plot`, `cli`.
"""

from rlfm.priors.config import PriorConfig, PriorConfigError, load_config
from rlfm.priors.context import Context, Simulator, draw_episodes, sample_context
from rlfm.priors.families import FAMILIES, permute, transform_rewards
from rlfm.priors.sampler import TrainingExample, sample_example, sample_family, sample_mdp, targets

__all__ = [
    "FAMILIES",
    "Context",
    "PriorConfig",
    "PriorConfigError",
    "PriorDataset",
    "Simulator",
    "TrainingExample",
    "collate",
    "draw_episodes",
    "example_rng",
    "load_config",
    "make_loader",
    "permute",
    "sample_context",
    "sample_example",
    "sample_family",
    "sample_mdp",
    "targets",
    "transform_rewards",
]

_DATASET_NAMES = {"PriorDataset", "collate", "example_rng", "make_loader"}


def __getattr__(name):
    if name in _DATASET_NAMES:  # lazily: torch is heavy to import
        from rlfm.priors import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module 'rlfm.priors' has no attribute {name!r}")
