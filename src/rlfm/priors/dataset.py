"""Streaming pretraining data: a torch IterableDataset over the prior, and packed sparse batches.

Batch format: `rlfm.features.GraphBatch`, the model's own input: PACKED SPARSE graphs, as in
PyTorch Geometric, not padding with masks. The MDPs of one batch are concatenated: every graph
contributes its S state nodes and S*A state-action nodes and its *observed* transitions
(s, a) -> s' as edges. Why:
  * no maximum S or A anywhere: a batch mixing a bandit (S = 1) and a 200-state grid costs
    sum(S*A) nodes + the number of distinct observed transitions, where padding would cost
    G * Smax * Amax * Smax for the dense attention of each (s, a) over its successors;
  * the model's attention of each (s, a) node over its successors s' with bias log P̂(s'|s,a) is
    exactly a segment softmax over the edges grouped by their (s, a), and the policy is a segment
    softmax of the (s, a) logits grouped by state;
  * memory grows with the data actually observed, and the same code path serves training and
    inference at S = 2,000.
Featurisation (`features.encode`) happens here, in the DataLoader workers.

Determinism: example i of the stream is drawn from `np.random.SeedSequence(seed, spawn_key=(i,))`
and batch b holds examples b*B .. b*B + B - 1; worker w of n makes batches w, w + n, ... and the
DataLoader returns them in round-robin order, so the stream of batches is the same for a given
seed whatever the number of workers (examples: with batch_size=None in PriorDataset).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from rlfm import features
from rlfm.features import GraphBatch
from rlfm.priors.config import PriorConfig, load_config
from rlfm.priors.context import AgentFactory, check_behaviours
from rlfm.priors.sampler import TrainingExample, sample_example


def collate(examples: Sequence[TrainingExample]) -> GraphBatch:
    """TrainingExamples of any sizes -> one packed GraphBatch with targets (in the workers, so
    the featurisation, in-context planning included, runs off the training process)."""
    items = []
    for e in examples:
        item = features.encode(e.stats, e.horizon)
        item.policy_target = e.policy_target.ravel()
        item.value_target = e.value_target
        item.state_terminal = e.terminal
        item.family = e.family
        items.append(item)
    return features.collate(items)


# ---- the stream ------------------------------------------------------------------------------
def example_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of example `index` of the stream of `seed`."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


class PriorDataset(IterableDataset):
    """An endless (or `length`-item) stream from the prior, split across DataLoader workers.

    batch_size=None: yields TrainingExamples (use DataLoader(batch_size=B, collate_fn=collate));
    batch_size=B: yields `collate_fn(examples)` for B examples, made in the workers (use
    DataLoader(batch_size=None)); the default collate_fn packs a GraphBatch, and a model's own
    featurisation can be passed instead (it runs in the workers too). This mode is reproducible
    for a seed whatever num_workers. `length`: the number of items
    (examples, or batches) before the stream ends (None: endless); `start`: the index of the
    first item (to resume a stream). `agents`: Agent factories for behaviours named in the
    config (they must survive pickling or forking into the workers).
    """

    def __init__(self, seed: int = 0, config: PriorConfig | str | None = None,
                 batch_size: int | None = None, length: int | None = None,
                 agents: Mapping[str, AgentFactory] | None = None, start: int = 0,
                 collate_fn: Callable[[list[TrainingExample]], Any] | None = None):
        super().__init__()
        self.seed, self.config = int(seed), load_config(config)
        self.batch_size, self.length = batch_size, length
        self.agents, self.start = dict(agents or {}), int(start)
        self.collate_fn = collate_fn or collate
        check_behaviours(self.config.context, self.agents)

    def __iter__(self) -> Iterator:
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info else (0, 1)
        if info is not None:
            torch.set_num_threads(1)
        size = self.batch_size or 1
        stop = None if self.length is None else self.start + self.length
        for b in itertools.islice(itertools.count(self.start), worker, None, n_workers):
            if stop is not None and b >= stop:
                return
            examples = [self.example(b * size + j) for j in range(size)]
            yield examples[0] if self.batch_size is None else self.collate_fn(examples)

    def example(self, index: int) -> TrainingExample:
        return sample_example(example_rng(self.seed, index), self.config, self.agents)


def make_loader(seed: int = 0, batch_size: int = 32, num_workers: int = 0,
                config: PriorConfig | str | None = None, n_batches: int | None = None,
                agents: Mapping[str, AgentFactory] | None = None, start: int = 0,
                collate_fn: Callable[[list[TrainingExample]], Any] | None = None,
                **loader_kwargs) -> DataLoader:
    """A DataLoader of packed GraphBatches (or of `collate_fn(examples)`), collated in the workers,
    reproducible for a seed whatever num_workers."""
    dataset = PriorDataset(seed, config, batch_size=batch_size, length=n_batches,
                           agents=agents, start=start, collate_fn=collate_fn)
    if num_workers > 0:
        loader_kwargs.setdefault("prefetch_factor", 4)
        loader_kwargs.setdefault("persistent_workers", n_batches is None)
    return DataLoader(dataset, batch_size=None, num_workers=num_workers, **loader_kwargs)
