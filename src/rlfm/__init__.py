"""rlfm: a reinforcement-learning foundation model for tabular MDPs."""

from rlfm import envs
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

__version__ = "0.1.0"

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
    "backward_induction",
    "envs",
    "evaluate_policy",
    "normalized_score",
    "value_iteration",
]
