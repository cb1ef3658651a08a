"""Sampling from the prior: an MDP from the mixture, a context in it, and the training targets.

Targets (of the *true* MDP, at the first step of an episode of horizon H):
  Q*_0 by backward induction (rlfm.mdp.backward_induction);
  value scale  sigma = max Q*_0 - min Q*_0 over all (s, a), terminal states (Q = 0) included;
  policy       softmax(Q*_0(s, .) / tau) with tau = tau_rel * sigma + 1e-12: a Boltzmann policy
               whose temperature is a fixed fraction of the MDP's own value range, so the target
               does not depend on the reward scale (and equal Q-values give a uniform row);
  value        (V*_0(s) - min_s V*_0(s)) / sigma, in [0, 1]: shift- and scale-free, for an
               auxiliary head; q_target = (Q*_0 - min_s V*_0) / sigma likewise.
`sample_example(rng, config)` is deterministic given the generator's state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from rlfm.mdp import Solution, TabularMDP, backward_induction
from rlfm.priors.config import PriorConfig, load_config
from rlfm.priors.context import AgentFactory, sample_context
from rlfm.priors.families import FAMILIES, permute, transform_rewards
from rlfm.stats import Statistics

TAU_FLOOR = 1e-12


@dataclass
class TrainingExample:
    """One pretraining example: the model's input (statistic, horizon) and its targets."""

    stats: Statistics
    horizon: int
    policy_target: np.ndarray     # (S, A) Boltzmann policy of Q*_0, rows sum to 1
    value_target: np.ndarray      # (S,) (V*_0 - min V*_0) / value_scale, in [0, 1]
    q_target: np.ndarray          # (S, A) (Q*_0 - min V*_0) / value_scale
    value_scale: float            # span of Q*_0 (0: every policy is optimal)
    terminal: np.ndarray          # (S,) bool: the true terminal states (targets there are moot)
    family: str
    behaviour: str
    n_episodes: int
    optimal_return: float         # J(pi*) from the initial distribution
    mdp: TabularMDP | None = None  # kept only on request (keep_mdp=True): heavy to pickle

    @property
    def n_states(self) -> int:
        return self.stats.n_states

    @property
    def n_actions(self) -> int:
        return self.stats.n_actions


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


def targets(solution: Solution, tau_rel: float) -> dict:
    """Policy, value and Q targets from the optimal solution (see the module docstring)."""
    Q = solution.Q[0]
    V = solution.V[0]
    scale = float(Q.max() - Q.min())
    tau = tau_rel * scale + TAU_FLOOR
    logits = (Q - Q.max(axis=1, keepdims=True)) / tau
    policy = np.exp(logits)
    policy /= policy.sum(axis=1, keepdims=True)
    low = V.min()
    denominator = scale if scale > 0 else 1.0
    return dict(policy_target=policy, value_target=(V - low) / denominator,
                q_target=(Q - low) / denominator, value_scale=scale)


def sample_example(rng: np.random.Generator, config: PriorConfig | str | None = None,
                   agents: Mapping[str, AgentFactory] | None = None,
                   keep_mdp: bool = False) -> TrainingExample:
    """An MDP from the prior, a context of data in it, and its targets."""
    config = load_config(config)
    mdp = sample_mdp(rng, config)
    solution = backward_induction(mdp)
    context = sample_context(rng, mdp, config.context, solution.policy, agents)
    return TrainingExample(
        stats=context.stats, horizon=mdp.horizon,
        **targets(solution, float(config.targets["tau_rel"])),
        terminal=mdp.terminal.copy(), family=mdp.name, behaviour=context.behaviour,
        n_episodes=context.n_episodes, optimal_return=float(mdp.initial @ solution.V[0]),
        mdp=mdp if keep_mdp else None)
