"""Contexts: the sufficient statistic of data that some behaviour collected in a sampled MDP.

Data generation is vectorised: `Simulator.rollout` runs many episodes in parallel as numpy
arrays, one array operation per time step, drawing next states by inverse CDF on the rows of P
(a single `searchsorted` over the concatenated cumulative rows, so its cost grows with the
number of non-zero transitions, never with S*A*S). Behaviours:

  uniform          uniformly random actions;
  epsilon_greedy   epsilon-greedy around the true optimal policy (Q*_h), epsilon ~ U(epsilon);
  fixed_policy     one random deterministic stationary policy;
  optimistic       an optimistic certainty-equivalent learner (UCB-VI-like count bonus,
                   c * span(observed r) / sqrt(N(s,a)), optimistic values for untried pairs),
                   replanning after each of the first episodes and then after geometrically
                   growing batches of episodes (each batch is simulated in parallel);
  any other name   an `Agent` factory `f(n_states, n_actions, horizon, seed) -> Agent` given
                   to `sample_context(agents={name: f})`, or "agent:NAME" for a registered agent
                   (rlfm.agents.make): stepped episode by episode through the Agent interface.

The amount of data is log-uniform from none to plenty (see `draw_episodes`).
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from rlfm.mdp import TabularMDP
from rlfm.stats import Statistics

BUILTIN_BEHAVIOURS = ("uniform", "epsilon_greedy", "fixed_policy", "optimistic")
AgentFactory = Callable[..., object]


@dataclass
class Transitions:
    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_states: np.ndarray
    terminated: np.ndarray

    @classmethod
    def concatenate(cls, parts: list[Transitions]) -> Transitions:
        if not parts:
            empty = np.zeros(0, np.int64)
            return cls(empty, empty, np.zeros(0), empty, np.zeros(0, bool))
        return cls(*(np.concatenate([getattr(p, f) for p in parts])
                     for f in ("states", "actions", "rewards", "next_states", "terminated")))

    def __len__(self) -> int:
        return len(self.states)


class Simulator:
    """Fast episodes of a TabularMDP.

    Observed rewards: R(s, a) by default; `entry_reward` (S,) observes entry(s') instead (its
    mean over s' is R(s, a)); `reward_noise` > 0 adds Gaussian noise of that std.
    """

    def __init__(self, mdp: TabularMDP, reward_noise: float = 0.0,
                 entry_reward: np.ndarray | None = None):
        self.mdp = mdp
        S, A = mdp.n_states, mdp.n_actions
        self.S, self.A, self.H = S, A, mdp.horizon
        T = mdp.transition_matrix
        if mdp.is_sparse:
            T = T.tocsr()
            indptr, cols, probs = T.indptr, T.indices, T.data
            keep = probs > 0
            rows = np.repeat(np.arange(S * A), np.diff(indptr))[keep]
            cols, probs = cols[keep], probs[keep]
        else:
            rows, cols = np.nonzero(T)
            probs = T[rows, cols]
        counts = np.bincount(rows, minlength=S * A)
        indptr = np.concatenate([[0], np.cumsum(counts)])
        # keys[i] = row + (cumulative probability within the row, the row's last entry exactly 1):
        # one sorted array, so searchsorted(keys, row + u) samples P(.|row) by inverse CDF.
        cum = np.cumsum(probs)
        before = np.repeat(cum[indptr[:-1]] - probs[indptr[:-1]], counts)
        within = np.minimum(cum - before, 1.0)
        within[indptr[1:] - 1] = 1.0
        self.keys = rows + within
        self.row_last = indptr[1:] - 1
        self.cols = cols.astype(np.int64)
        self.R_flat = mdp.R.ravel()
        self.terminal = mdp.terminal
        self.entry = entry_reward
        self.noise = float(reward_noise)
        init_cum = np.cumsum(mdp.initial)
        init_cum[-1] = 1.0
        self.init_cum = init_cum
        self._lists = None  # Python copies of the tables, for one-step-at-a-time episodes

    def starts(self, rng, n: int) -> np.ndarray:
        return np.minimum(np.searchsorted(self.init_cum, rng.random(n), side="right"), self.S - 1)

    def step(self, rng, s: np.ndarray, a: np.ndarray):
        """Next states, observed rewards and termination flags for arrays of (s, a)."""
        row = s * self.A + a
        idx = np.searchsorted(self.keys, row + rng.random(row.size), side="right")
        np.minimum(idx, self.row_last[row], out=idx)
        s2 = self.cols[idx]
        r = self.R_flat[row] if self.entry is None else self.entry[s2]
        if self.noise > 0:
            r = r + self.noise * rng.standard_normal(row.size)
        return s2, r, self.terminal[s2]

    def rollout(self, rng, n_episodes: int, policy: np.ndarray | None = None,
                epsilon: float = 0.0) -> Transitions:
        """`n_episodes` episodes in parallel. policy: None (uniform random actions), (S,) or (H, S)
        action indices; with probability `epsilon` an action is uniformly random instead."""
        if n_episodes == 1 and policy is not None:  # one episode: plain Python is faster
            table = (policy if policy.ndim == 2 else policy[None]).tolist()
            last = len(table) - 1
            A = self.A

            def act(s, t, rnd):
                if epsilon > 0 and rnd.random() < epsilon:
                    return min(int(rnd.random() * A), A - 1)
                return table[min(t, last)][s]
            return self._episodes(rng, 1, act)
        parts = []
        s = self.starts(rng, n_episodes)
        A = self.A
        for t in range(self.H):
            n = s.size
            if n == 0:
                break
            if policy is None:
                a = rng.integers(A, size=n)
            else:
                a = (policy[t] if policy.ndim == 2 else policy)[s]
                if epsilon > 0:
                    explore = rng.random(n) < epsilon
                    a = np.where(explore, rng.integers(A, size=n), a)
            s2, r, done = self.step(rng, s, a)
            parts.append(Transitions(s, a, r, s2, done))
            s = s2[~done] if done.any() else s2
        return Transitions.concatenate(parts)

    def run_agent(self, rng, agent, n_episodes: int) -> Transitions:
        """Episodes of an `Agent` (act / observe / end_episode), one step at a time."""
        return self._episodes(rng, n_episodes, lambda s, t, rnd: int(agent.act(s, t)), agent)

    def _episodes(self, rng, n_episodes: int, act, agent=None) -> Transitions:
        """Episodes one step at a time in plain Python (random.Random seeded from `rng`)."""
        if self._lists is None:
            self._lists = (self.keys.tolist(), self.row_last.tolist(), self.cols.tolist(),
                           self.R_flat.tolist(), self.terminal.tolist(),
                           None if self.entry is None else self.entry.tolist(),
                           self.init_cum.tolist())
        keys, row_last, cols, R, terminal, entry, init_cum = self._lists
        rnd = random.Random(int(rng.integers(2**63)))
        A, H, noise, S = self.A, self.H, self.noise, self.S
        out_s, out_a, out_r, out_s2, out_d = [], [], [], [], []
        for _ in range(n_episodes):
            s = min(bisect.bisect_right(init_cum, rnd.random()), S - 1)
            for t in range(H):
                a = act(s, t, rnd)
                row = s * A + a
                s2 = cols[min(bisect.bisect_right(keys, row + rnd.random()), row_last[row])]
                r = R[row] if entry is None else entry[s2]
                if noise > 0:
                    r += noise * rnd.gauss(0.0, 1.0)
                d = terminal[s2]
                if agent is not None:
                    agent.observe(s, a, r, s2, d)
                out_s.append(s)
                out_a.append(a)
                out_r.append(r)
                out_s2.append(s2)
                out_d.append(d)
                s = s2
                if d:
                    break
            if agent is not None:
                agent.end_episode()
        return Transitions(np.array(out_s, np.int64), np.array(out_a, np.int64),
                           np.array(out_r, float), np.array(out_s2, np.int64),
                           np.array(out_d, bool))


# ---- the optimistic learner ------------------------------------------------------------------
def optimistic_rollouts(sim: Simulator, rng, n_episodes: int, bonus_scale: float = 0.3,
                        epsilon: float = 0.0, replan_every_episode: int = 20,
                        replan_growth: float = 0.25, reward_range=None) -> Transitions:
    """An optimistic certainty-equivalent learner (compact UCB-VI): plans by backward induction
    on (P̂, R̂ + bonus), untried pairs valued at the per-step optimum (max r + bonus), states
    seen to terminate worth 0; acts greedily (epsilon-greedy if epsilon > 0).

    The bonus is bonus_scale * span / sqrt(N(s, a)), span the range of rewards: the known
    `reward_range` (lo, hi), as UCB-VI knows its rewards lie in [0, 1], widened by what is
    observed. Without it the learner only knows the observed rewards, and a tiny step cost seen
    before any goal (DeepSea) makes it hardly optimistic at all.
    """
    S, A, H = sim.S, sim.A, sim.H
    N = np.zeros(S * A)
    N_next = np.zeros(S * A * S)
    r_sum = np.zeros(S * A)
    r_lo, r_hi = (np.inf, -np.inf) if reward_range is None else map(float, reward_range)
    seen_terminal = np.zeros(S, bool)
    parts, done = [], 0
    while done < n_episodes:
        policy = _optimistic_plan(rng, N, N_next, r_sum, r_lo, r_hi, seen_terminal, S, A, H,
                                  bonus_scale)
        batch = 1 if done < replan_every_episode else math.ceil(replan_growth * done)
        batch = min(batch, n_episodes - done)
        tr = sim.rollout(rng, batch, policy, epsilon)
        row = tr.states * A + tr.actions
        N += np.bincount(row, minlength=S * A)
        N_next += np.bincount(row * S + tr.next_states, minlength=S * A * S)
        r_sum += np.bincount(row, weights=tr.rewards, minlength=S * A)
        if len(tr):
            r_lo, r_hi = min(r_lo, tr.rewards.min()), max(r_hi, tr.rewards.max())
        seen_terminal[tr.next_states[tr.terminated]] = True
        parts.append(tr)
        done += batch
    return Transitions.concatenate(parts)


def _optimistic_plan(rng, N, N_next, r_sum, r_lo, r_hi, seen_terminal, S, A, H, c):
    seen = np.isfinite(r_hi)
    span = (r_hi - r_lo) if seen and r_hi > r_lo else (abs(r_hi) if seen and r_hi != 0 else 1.0)
    n = np.maximum(N, 1.0)
    P_hat = N_next.reshape(S * A, S) / n[:, None]
    R_opt = r_sum / n + c * span / np.sqrt(n)
    per_step = (r_hi if seen else 0.0) + c * span
    tried = N > 0
    tie_break = rng.random(S * A) * 1e-9 * span
    V = np.zeros(S)
    policy = np.empty((H, S), np.int64)
    for h in range(H - 1, -1, -1):
        cap = (H - h) * per_step
        Q = np.where(tried, np.minimum(R_opt + P_hat @ V, cap), cap) + tie_break
        Q = Q.reshape(S, A)
        policy[h] = Q.argmax(axis=1)
        V = Q.max(axis=1)
        V[seen_terminal] = 0.0
    return policy


# ---- sampling a context ----------------------------------------------------------------------
@dataclass
class Context:
    """The statistic of the data a behaviour collected, and how it was made."""

    stats: Statistics
    behaviour: str
    n_episodes: int


def draw_episodes(rng, n_states: int, horizon: int, zero_data_prob: float = 0.05,
                  transitions_per_state: int = 1000, max_transitions: int = 50_000,
                  min_max_episodes: int = 10, **_) -> int:
    """The number of episodes: 0 with probability zero_data_prob, otherwise log-uniform in
    [1, E] with E = max(min_max_episodes, budget // H), budget = min(transitions_per_state * S,
    max_transitions) transitions."""
    if rng.random() < zero_data_prob:
        return 0
    budget = min(transitions_per_state * n_states, max_transitions)
    most = max(min_max_episodes, budget // horizon)
    return int(min(most, np.floor(np.exp(rng.uniform(0.0, np.log(most + 1))))))


def sample_context(rng, mdp: TabularMDP, context: Mapping, optimal_policy: np.ndarray | None = None,
                   agents: Mapping[str, AgentFactory] | None = None) -> Context:
    """Draw a behaviour (weights `context["behaviours"]`) and an amount of data, simulate it in
    `mdp`, and return the statistic. `optimal_policy` (H, S): the greedy Q*_h actions (needed by
    epsilon_greedy; computed if missing)."""
    agents = agents or {}
    names = list(context["behaviours"])
    weights = np.array([context["behaviours"][k] for k in names], float)
    behaviour = names[rng.choice(len(names), p=weights / weights.sum())]
    S, A, H = mdp.n_states, mdp.n_actions, mdp.horizon
    n_episodes = draw_episodes(rng, S, H, **context)
    info = getattr(mdp, "info", {})

    entry = info.get("entry_reward")
    if entry is not None and rng.random() >= context["entry_reward_prob"]:
        entry = None
    noise = float(info.get("reward_noise", 0.0))
    if rng.random() < context["reward_noise_prob"]:
        live = mdp.R[~mdp.terminal]
        span = float(live.max() - live.min()) if live.size else 0.0
        span = span or float(np.abs(live).max(initial=0.0))
        noise = max(noise, float(rng.uniform(*context["reward_noise"])) * span)
    sim = Simulator(mdp, reward_noise=noise, entry_reward=entry)

    if behaviour == "uniform":
        tr = sim.rollout(rng, n_episodes)
    elif behaviour == "epsilon_greedy":
        if optimal_policy is None:
            from rlfm.mdp import backward_induction
            optimal_policy = backward_induction(mdp).policy
        eps = float(rng.uniform(*context["epsilon_greedy"]["epsilon"]))
        tr = sim.rollout(rng, n_episodes, optimal_policy, eps)
    elif behaviour == "fixed_policy":
        tr = sim.rollout(rng, n_episodes, rng.integers(A, size=S))
    elif behaviour == "optimistic":
        opt = context["optimistic"]
        c = float(np.exp(rng.uniform(*np.log(opt["bonus_scale"]))))
        eps = float(rng.uniform(*opt["epsilon"])) if rng.random() < opt["epsilon_prob"] else 0.0
        live = mdp.R[~mdp.terminal]
        known = (min(0.0, live.min()), max(0.0, live.max())) if live.size else None
        tr = optimistic_rollouts(sim, rng, n_episodes, c, eps, opt["replan_every_episode"],
                                 opt["replan_growth"], reward_range=known)
    else:
        factory = _agent_factory(behaviour, agents)
        n_episodes = min(n_episodes, int(context["max_agent_episodes"]))
        agent = factory(S, A, H, seed=int(rng.integers(2**63)))
        tr = sim.run_agent(rng, agent, n_episodes)
    stats = Statistics.from_transitions(S, A, tr.states, tr.actions, tr.rewards, tr.next_states,
                                        tr.terminated)
    return Context(stats=stats, behaviour=behaviour, n_episodes=n_episodes)


def check_behaviours(context: Mapping, agents: Mapping[str, AgentFactory] | None = None) -> None:
    """Fail early (PriorConfigError) on a weighted behaviour that nothing can provide."""
    from rlfm.agents import available

    agents = agents or {}
    for name, weight in context["behaviours"].items():
        known = (name in BUILTIN_BEHAVIOURS or name in agents
                 or (name.startswith("agent:") and name.split(":", 1)[1] in available()))
        if weight > 0 and not known:
            _unknown_behaviour(name)


def _agent_factory(name: str, agents: Mapping[str, AgentFactory]) -> AgentFactory:
    if name in agents:
        return agents[name]
    if name.startswith("agent:"):
        from rlfm.agents import make

        registered = name.split(":", 1)[1]
        return lambda S, A, H, seed: make(registered, S, A, H, seed=seed)
    _unknown_behaviour(name)


def _unknown_behaviour(name: str):
    from rlfm.priors.config import PriorConfigError

    raise PriorConfigError(f"behaviour {name!r} is neither built in ({', '.join(BUILTIN_BEHAVIOURS)})"
                           f", nor an agent factory passed to the sampler, nor 'agent:NAME' for a "
                           f"registered agent")
