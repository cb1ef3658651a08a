"""The synthetic MDP prior and the pretraining data pipeline.

    import numpy as np
    from rlfm import priors

    mdp = priors.sample_mdp(np.random.default_rng(0))    # from the default mixture (default.toml)
    batch = priors.sample_batch(seed=0, index=0, batch_size=256)
    batch.graph                                          # the model's input, with its targets
    loader = priors.make_loader(seed=0, batch_size=256, num_workers=1)
    for graph in loader: ...                             # packed GraphBatches with targets

Modules: `families` (one generator per kind of structure, the shared permutation and reward
rescaling), `sampler` (the mixture), `batch` (contexts, statistics, features and targets made in
batch by the batched world `rlfm.world`), `dataset` (IterableDataset), `config` (TOML), `plot`,
`cli`. `batch` and `dataset` import torch, so they are loaded on first use.
"""

from rlfm.priors.config import PriorConfig, PriorConfigError, load_config
from rlfm.priors.families import FAMILIES, permute, transform_rewards
from rlfm.priors.sampler import sample_family, sample_mdp

__all__ = [
    "FAMILIES",
    "PriorBatch",
    "PriorConfig",
    "PriorConfigError",
    "PriorDataset",
    "load_config",
    "make_loader",
    "permute",
    "sample_batch",
    "sample_family",
    "sample_mdp",
    "transform_rewards",
]

_LAZY = {"PriorBatch": "batch", "sample_batch": "batch", "PriorDataset": "dataset",
         "make_loader": "dataset"}


def __getattr__(name):
    if name in _LAZY:  # lazily: torch is heavy to import
        from importlib import import_module

        return getattr(import_module(f"rlfm.priors.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'rlfm.priors' has no attribute {name!r}")
