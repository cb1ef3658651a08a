"""The evaluation protocol of SPEC §3: online learning curves scored exactly after every episode,
and offline datasets from a behaviour policy, scored exactly once.

Agents act in a real Gymnasium environment (for toy-text environments, with the environment's own
per-transition rewards); scores are computed on the exact TabularMDP by backward induction.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from rlfm.agents.base import Agent
from rlfm.mdp import ScoreReference, TabularMDP, backward_induction, evaluate_policy
from rlfm.stats import Statistics


def run_episode(env: gym.Env, agent: Agent, horizon: int, seed: int | None = None) -> float:
    """One episode of `agent` in `env` (at most `horizon` steps); returns the reward collected.
    `seed` reseeds the environment (pass it for the first episode of a run only)."""
    state, _ = env.reset(seed=seed)
    total = 0.0
    for step in range(horizon):
        action = agent.act(int(state), step)
        next_state, reward, terminated, truncated, _ = env.step(action)
        agent.observe(int(state), int(action), float(reward), int(next_state), bool(terminated))
        total += float(reward)
        state = next_state
        if terminated or truncated:
            break
    agent.end_episode()
    return total


@dataclass
class OnlineRun:
    """One seed of online learning: the normalised score of the exploitation policy after each
    episode, and the return actually collected in each episode."""

    scores: np.ndarray
    returns: np.ndarray


def online_run(env: gym.Env, mdp: TabularMDP, agent: Agent, episodes: int, seed: int,
               reference: ScoreReference | None = None) -> OnlineRun:
    reference = reference or ScoreReference.of(mdp)
    scores, returns = np.empty(episodes), np.empty(episodes)
    for k in range(episodes):
        returns[k] = run_episode(env, agent, mdp.horizon, seed=seed if k == 0 else None)
        scores[k] = reference.normalise(evaluate_policy(mdp, agent.policy()))
    return OnlineRun(scores=scores, returns=returns)


# ---- offline datasets ------------------------------------------------------------------------
BEHAVIOR_EPSILON = {"uniform": 1.0, "medium": 0.5, "expert": 0.1}


class BehaviorAgent(Agent):
    """ε-greedy with respect to the optimal Q*_h of the true MDP (ε = 1: uniform random)."""

    name = "behavior"

    def __init__(self, mdp: TabularMDP, epsilon: float, seed: int | None = 0):
        super().__init__(mdp.n_states, mdp.n_actions, mdp.horizon, seed)
        self.epsilon = epsilon
        self.greedy = backward_induction(mdp).policy if epsilon < 1.0 else None

    def act(self, state: int, step: int) -> int:
        if self.greedy is None or self.rng.random() < self.epsilon:
            return int(self.rng.integers(self.n_actions))
        return int(self.greedy[min(step, self.horizon - 1), state])

    def policy(self) -> np.ndarray:
        return np.full((self.n_states, self.n_actions), 1.0 / self.n_actions)


class _Recorder(Agent):
    """Wraps a behaviour agent and records its transitions into a Statistics."""

    def __init__(self, behavior: Agent):
        super().__init__(behavior.n_states, behavior.n_actions, behavior.horizon)
        self.behavior = behavior
        self.stats = Statistics(behavior.n_states, behavior.n_actions)

    def act(self, state, step):
        return self.behavior.act(state, step)

    def observe(self, state, action, reward, next_state, terminated):
        self.stats.update(state, action, reward, next_state, terminated)

    def policy(self):
        return self.behavior.policy()


def collect_dataset(env: gym.Env, mdp: TabularMDP, behavior: str, episodes: int,
                    seed: int) -> Statistics:
    """The statistic of `episodes` episodes of the named behaviour (SPEC §3) in `env`."""
    recorder = _Recorder(BehaviorAgent(mdp, BEHAVIOR_EPSILON[behavior], seed=seed))
    for k in range(episodes):
        run_episode(env, recorder, mdp.horizon, seed=seed if k == 0 else None)
    return recorder.stats
