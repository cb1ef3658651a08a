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


def load_pretrained():
    """The pretrained network shipped inside the package (no network access needed)."""
    from rlfm.checkpoint import load_pretrained as load

    return load()


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
    "value_iteration",
]
