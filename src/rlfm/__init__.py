"""rlfm: a reinforcement-learning foundation model for tabular MDPs."""

__version__ = "0.1.0"  # first: submodules read it

from rlfm import agents, envs
from rlfm.errors import (
    CheckpointError,
    InvalidDataError,
    InvalidEnvironmentError,
    InvalidMDPError,
    ResourceLimitError,
    RlfmError,
)
from rlfm.mdp import (
    ScoreReference,
    Solution,
    TabularMDP,
    backward_induction,
    evaluate_policy,
    normalized_score,
    value_iteration,
)
from rlfm.stats import Statistics


def load_pretrained(path=None):
    """The network of the checkpoint at `path` (NAME, NAME.json or NAME.safetensors, or the
    name of a checkpoint shipped in the package), by default the shipped default one (no
    network access needed)."""
    from rlfm.checkpoint import load_model, resolve

    return load_model(resolve(path or "pretrained"))


def run_online(env, agents, episodes=100, seeds=10, **options) -> dict:
    """The online protocol from Python: the results object that `rlfm online` writes to
    results.json (see `rlfm.evaluate.run_online` for the options)."""
    from rlfm.evaluate import run_online as run

    return run(env, agents, episodes, seeds, **options)


def run_offline(env, agents, behavior="uniform", dataset_episodes=(1, 3, 10, 30, 100, 300),
                seeds=10, **options) -> dict:
    """The offline protocol from Python: the results object of `rlfm offline` (see
    `rlfm.evaluate.run_offline` for the options)."""
    from rlfm.evaluate import run_offline as run

    return run(env, agents, behavior, dataset_episodes, seeds, **options)


__all__ = [
    "CheckpointError",
    "InvalidDataError",
    "InvalidEnvironmentError",
    "InvalidMDPError",
    "ResourceLimitError",
    "RlfmError",
    "ScoreReference",
    "Solution",
    "Statistics",
    "TabularMDP",
    "agents",
    "backward_induction",
    "envs",
    "evaluate_policy",
    "load_pretrained",
    "normalized_score",
    "run_offline",
    "run_online",
    "value_iteration",
]
