"""Streaming pretraining data: a torch IterableDataset of batches made by the batched world.

Batch format: `rlfm.features.GraphBatch`, the model's own input, packed (as in PyTorch
Geometric): every MDP contributes its S state nodes, S*A state-action nodes and its observed
transitions (s, a) -> s' as edges, so no maximum S or A exists and memory grows with the data
observed. Each batch carries its targets (policy_target, value_target, state_terminal).

Determinism: batch b of the stream of `seed` is `priors.batch.sample_batch(seed, b, B)`, which
depends on nothing else; worker w of n makes batches w, w + n, ... and the DataLoader returns
them in round-robin order, so the stream is the same for a seed whatever the number of workers.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from rlfm.features import GraphBatch
from rlfm.priors.batch import sample_batch
from rlfm.priors.config import PriorConfig, load_config


class PriorDataset(IterableDataset):
    """An endless (or `length`-batch) stream of training batches of `batch_size` MDPs, split
    across DataLoader workers (use DataLoader(dataset, batch_size=None)). `start`: the index of
    the first batch (to resume a stream); `device`: where the world runs (CPU by default; a GPU
    only without worker processes)."""

    def __init__(self, seed: int = 0, config: PriorConfig | str | None = None,
                 batch_size: int = 32, length: int | None = None, start: int = 0, device=None):
        super().__init__()
        self.seed, self.config = int(seed), load_config(config)
        self.batch_size, self.length, self.start = int(batch_size), length, int(start)
        self.device = device

    def __iter__(self) -> Iterator[GraphBatch]:
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info else (0, 1)
        if info is not None:
            torch.set_num_threads(1)
        stop = None if self.length is None else self.start + self.length
        for b in itertools.islice(itertools.count(self.start), worker, None, n_workers):
            if stop is not None and b >= stop:
                return
            yield self.batch(b)

    def batch(self, index: int) -> GraphBatch:
        return sample_batch(self.seed, index, self.batch_size, self.config, self.device).graph


def make_loader(seed: int = 0, batch_size: int = 32, num_workers: int = 0,
                config: PriorConfig | str | None = None, n_batches: int | None = None,
                start: int = 0, device=None, **loader_kwargs) -> DataLoader:
    """A DataLoader of packed GraphBatches with targets, made in the workers, reproducible for a
    seed whatever num_workers."""
    dataset = PriorDataset(seed, config, batch_size=batch_size, length=n_batches, start=start,
                           device=device)
    if num_workers > 0:
        loader_kwargs.setdefault("prefetch_factor", 2)
        loader_kwargs.setdefault("persistent_workers", n_batches is None)
    return DataLoader(dataset, batch_size=None, num_workers=num_workers, **loader_kwargs)
