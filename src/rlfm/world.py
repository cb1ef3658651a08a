"""A batched world: many tabular MDPs as torch tensors, simulated in lockstep, with their
statistics, on CPU or CUDA.

Layout (packed, as PyTorch Geometric packs graphs, so that no maximum S exists anywhere): the
states of all B MDPs are concatenated, N in all; `state_mdp` (N,) names each state's MDP and
`first_state` (B,) where each MDP starts. Actions are padded to A and successors to K per
(s, a): `successors` (N, A, K) global next-state indices, `probs` (N, A, K) their
probabilities (0 on padding, the real slots of a pair first). Memory grows with the non-zero
transitions. The statistic of the data collected (`StatsBatch`) counts transitions in the
same slots: an observed next state is always one of the true successors, so N(s, a, s') needs
no S*S array. An MDP batch keeps its MDPs in order of non-increasing horizon, so that planning
(`rlfm.planning`) computes only the MDPs still running at each step.

Simulation steps every episode of every MDP at once ("lanes": one per running episode), a
fixed number of array operations per time step whatever the batch; learners that adapt to
their data (an optimistic certainty-equivalent learner, posterior sampling, a network) act in
rounds: plan for all of them in one backward induction, run a round of episodes, update the
statistic by scatter-add, plan again. Several batches of different padding ("buckets" of
MDPs of similar size, `rlfm.priors.batch`) simulate and plan together, laid end to end, so
that bucketing costs no extra steps. Random numbers come from one `torch.Generator`, so a
batch is reproducible for a seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
import scipy.sparse as sp
import torch

from rlfm.mdp import TabularMDP, transitions_from_coo
from rlfm.planning import Edges, Plan, backward_induction
from rlfm.stats import Statistics

TAU_FLOOR = 1e-12
PER_STATE = ("successors", "probs", "R", "initial", "terminal", "entry_reward", "slots",
             "counts", "visits", "reward_sum", "reward_sq_sum", "terminations",
             "terminal_entries")


def segment_sum(x: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """Sum of the rows of x over each group of `index` (n groups)."""
    return torch.zeros((n, *x.shape[1:]), dtype=x.dtype, device=x.device).index_add_(0, index, x)


def segment_max(x: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """Max of the rows of x over each group of `index` (n groups; -inf for an empty group)."""
    return _segment_reduce(x, index, n, "amax", -torch.inf)


def segment_min(x: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    return _segment_reduce(x, index, n, "amin", torch.inf)


def _segment_reduce(x, index, n, reduce, empty):
    out = torch.full((n, *x.shape[1:]), empty, dtype=x.dtype, device=x.device)
    expanded = index.view(-1, *([1] * (x.dim() - 1))).expand_as(x)
    return out.scatter_reduce(0, expanded, x, reduce=reduce, include_self=True)


def per_mdp_max(x: torch.Tensor, where: torch.Tensor, state_mdp: torch.Tensor, n: int):
    """The max of x (N, A) over the (s, a) of each of n MDPs where `where` holds (-inf if none)."""
    return segment_max(x.masked_fill(~where, -torch.inf).amax(-1), state_mdp, n)


def per_mdp_min(x: torch.Tensor, where: torch.Tensor, state_mdp: torch.Tensor, n: int):
    return segment_min(x.masked_fill(~where, torch.inf).amin(-1), state_mdp, n)


def normalised_score(J: torch.Tensor, optimal: torch.Tensor,
                     uniform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores (J - J(uniform)) / (J* - J(uniform)) of returns J (B, ...) given J* and J(uniform)
    (B,) per MDP, and which MDPs have a score: where every policy is optimal (a gap that
    rounding could make, float32 included), none has, and it is set to 1 (the rule of
    `rlfm.mdp.ScoreReference`)."""
    gap = optimal - uniform
    tolerance = max(1e-12, 100 * torch.finfo(gap.dtype).eps)
    scored = gap > tolerance * optimal.abs().clamp_min(1.0)
    per_mdp = lambda x: x.view(-1, *([1] * (J.dim() - 1)))  # noqa: E731
    score = (J - per_mdp(uniform)) / per_mdp(torch.where(scored, gap, torch.ones_like(gap)))
    return torch.where(per_mdp(scored), score, torch.ones_like(score)), scored


def _nonzero_transitions(T) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The non-zero entries of a transition operator (dense array or sparse), row by row and
    by column within a row: rows (s * A + a), slots (rank within the row), next states,
    probabilities."""
    if sp.issparse(T):
        T = sp.csr_array(T, copy=True)   # the MDP's own operator is left as it is
        T.eliminate_zeros()
        T.sort_indices()
        row, col, p = np.repeat(np.arange(T.shape[0]), np.diff(T.indptr)), T.indices, T.data
    else:
        row, col = np.nonzero(T)
        p = T[row, col]
    starts = np.searchsorted(row, row, side="left")   # each entry's row begins there
    return row, np.arange(row.size) - starts, col, p


def _offsets(n_states: torch.Tensor) -> torch.Tensor:
    return torch.cumsum(n_states, 0) - n_states


class _Packed:
    """What MDP and statistic batches share: the packed layout and selecting MDPs from it."""

    state_mdp: torch.Tensor
    n_states: torch.Tensor
    n_actions: torch.Tensor
    successors: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.n_states.shape[0]

    @property
    def n_total_states(self) -> int:
        return self.state_mdp.shape[0]

    @property
    def first_state(self) -> torch.Tensor:
        return _offsets(self.n_states)

    @property
    def action_mask(self) -> torch.Tensor:
        """(N, A) bool: the actions that exist in each state's MDP."""
        A = self.successors.shape[1]
        return torch.arange(A, device=self.n_actions.device) < self.n_actions[self.state_mdp, None]

    def states_of(self, mdps: torch.Tensor) -> torch.Tensor:
        """The (global) states of the MDPs `mdps` (increasing indices), in batch order."""
        return torch.isin(self.state_mdp, mdps).nonzero().squeeze(1)

    def select(self, mdps: torch.Tensor):
        """The batch of the MDPs `mdps` (increasing indices) alone, re-packed."""
        states = self.states_of(mdps)
        renumber = torch.full((self.n_total_states,), -1, dtype=torch.int64,
                              device=states.device)
        renumber[states] = torch.arange(states.numel(), device=states.device)
        mdp_renumber = torch.full((self.batch_size,), -1, dtype=torch.int64, device=states.device)
        mdp_renumber[mdps] = torch.arange(mdps.numel(), device=states.device)
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "successors":
                value = renumber[value[states]]
            elif f.name == "state_mdp":
                value = mdp_renumber[value[states]]
            elif f.name in PER_STATE:
                value = value[states]
            elif isinstance(value, torch.Tensor):
                value = value[mdps]
            elif isinstance(value, list):
                value = [value[i] for i in mdps.tolist()]
            out[f.name] = value
        return type(self)(**out)


# ---- MDPs ------------------------------------------------------------------------------------
@dataclass
class MDPBatch(_Packed):
    """B MDPs, packed (see the module docstring), in order of non-increasing horizon.

    Per state: successors (N, A, K) int64, probs (N, A, K), R (N, A), initial (N,), terminal
    (N,) bool, entry_reward (N,): the reward observed on entering a state, for families that
    define one, state_mdp (N,). Per MDP: n_states, n_actions, horizon (B,) int64, gamma (B,),
    has_entry (B,) bool, reward_noise (B,): the family's own observation noise (bandits),
    families, source: the index of each MDP in the list it was made from.
    """

    successors: torch.Tensor
    probs: torch.Tensor
    R: torch.Tensor
    initial: torch.Tensor
    terminal: torch.Tensor
    entry_reward: torch.Tensor
    state_mdp: torch.Tensor
    n_states: torch.Tensor
    n_actions: torch.Tensor
    horizon: torch.Tensor
    gamma: torch.Tensor
    has_entry: torch.Tensor
    reward_noise: torch.Tensor
    families: list
    source: torch.Tensor

    @classmethod
    def from_mdps(cls, mdps: Sequence[TabularMDP], device=None,
                  dtype: torch.dtype = torch.float64) -> MDPBatch:
        """Pack TabularMDPs (dense or sparse), longest horizon first (`source` maps back)."""
        order = sorted(range(len(mdps)), key=lambda i: -mdps[i].horizon)
        mdps = [mdps[i] for i in order]
        tables = [_nonzero_transitions(m.transition_matrix) for m in mdps]
        A = max(m.n_actions for m in mdps)
        K = max(int(slot.max()) + 1 for _, slot, _, _ in tables)
        sizes = np.array([m.n_states for m in mdps])
        first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        N = int(sizes.sum())
        successors = np.broadcast_to(np.arange(N)[:, None, None], (N, A, K)).copy()
        probs = np.zeros((N, A, K))
        probs[..., 0] = 1.0        # padded actions: absorbing, never taken
        R = np.zeros((N, A))
        entry = np.zeros(N)
        has_entry = np.zeros(len(mdps), bool)
        for b, (m, (row, slot, col, p)) in enumerate(zip(mdps, tables, strict=True)):
            Ab, lo = m.n_actions, first[b]
            s, a = np.divmod(row, Ab)
            probs[lo:lo + m.n_states, :Ab] = 0.0
            successors[lo + s, a, slot] = lo + col
            probs[lo + s, a, slot] = p
            R[lo:lo + m.n_states, :Ab] = m.R
            info = getattr(m, "info", {})
            if info.get("entry_reward") is not None:
                entry[lo:lo + m.n_states] = info["entry_reward"]
                has_entry[b] = True
        t = lambda x, dt=dtype: torch.as_tensor(np.asarray(x), dtype=dt, device=device)  # noqa: E731
        cat = np.concatenate
        return cls(successors=t(successors, torch.int64), probs=t(probs), R=t(R),
                   initial=t(cat([m.initial for m in mdps])),
                   terminal=t(cat([m.terminal for m in mdps]), torch.bool),
                   entry_reward=t(entry),
                   state_mdp=t(np.repeat(np.arange(len(mdps)), sizes), torch.int64),
                   n_states=t(sizes, torch.int64),
                   n_actions=t([m.n_actions for m in mdps], torch.int64),
                   horizon=t([m.horizon for m in mdps], torch.int64),
                   gamma=t([m.gamma for m in mdps]), has_entry=t(has_entry, torch.bool),
                   reward_noise=t([float(getattr(m, "info", {}).get("reward_noise", 0.0))
                                   for m in mdps]),
                   families=[m.name or "" for m in mdps], source=t(order, torch.int64))

    def to_mdp(self, i: int) -> TabularMDP:
        """MDP `i` as a TabularMDP (for exact scoring with rlfm.mdp)."""
        lo, Sb, Ab = int(self.first_state[i]), int(self.n_states[i]), int(self.n_actions[i])
        succ = self.successors[lo:lo + Sb, :Ab].cpu().numpy() - lo
        p = self.probs[lo:lo + Sb, :Ab].double().cpu().numpy()
        rows = np.broadcast_to((np.arange(Sb)[:, None] * Ab + np.arange(Ab))[..., None], p.shape)
        keep = p > 0
        T = transitions_from_coo(rows[keep], succ[keep], p[keep], Sb, Ab)
        return TabularMDP(T, self.R[lo:lo + Sb, :Ab].double().cpu().numpy(),
                          self.initial[lo:lo + Sb].double().cpu().numpy(), int(self.horizon[i]),
                          terminal=self.terminal[lo:lo + Sb].cpu().numpy(),
                          gamma=float(self.gamma[i]), name=self.families[i] or None)

    # ---- exact quantities of the true MDPs -------------------------------------------------
    def solve(self, greedy_actions: bool = False) -> Plan:
        """Q*, V* at the first step (and the optimal action of every step, if asked)."""
        return backward_induction(self.successors, self.probs, self.R, self.state_mdp,
                                  self.horizon, gamma=self.gamma, action_mask=self.action_mask,
                                  greedy_actions=greedy_actions)

    def expected_return(self, v: torch.Tensor) -> torch.Tensor:
        """sum_s initial(s) V(s) per MDP (B,), for first-step values v (N,)."""
        return segment_sum(self.initial * v, self.state_mdp, self.batch_size)

    def evaluate(self, policy: torch.Tensor) -> torch.Tensor:
        """J(pi) (B,): the exact expected return of a stationary (N, A) or time-dependent
        (N, Hmax, A) policy from the initial distribution; differentiable in the policy."""
        plan = backward_induction(self.successors, self.probs, self.R, self.state_mdp,
                                  self.horizon, gamma=self.gamma, policy=policy)
        return self.expected_return(plan.v)

    def uniform_policy(self) -> torch.Tensor:
        mask = self.action_mask.to(self.R.dtype)
        return mask / mask.sum(-1, keepdim=True)

    def normalise(self, J: torch.Tensor) -> torch.Tensor:
        """`normalised_score` of returns J (B, ...) of each MDP."""
        optimal = self.expected_return(self.solve().v)
        return normalised_score(J, optimal, self.evaluate(self.uniform_policy()))[0]

    def cdf(self) -> torch.Tensor:
        """(N * A, K) cumulative successor probabilities for sampling by inverse CDF: the last
        real slot of a pair is exactly 1 and padding is 2, so it is never chosen."""
        real = self.probs > 0
        c = self.probs.cumsum(-1).masked_fill(~real, 2.0)
        c = c.scatter(-1, (real.sum(-1, keepdim=True) - 1).clamp_min(0), 1.0)
        return c.view(-1, c.shape[-1])

    def start_keys(self) -> torch.Tensor:
        """(N,) MDP index + cumulative initial probability within the MDP (the MDP's last state
        exactly index + 1): one sorted array to draw start states by `searchsorted`. In float64
        whatever the batch's dtype: float32 cannot tell 500.99999 from 501."""
        cum = torch.cumsum(self.initial.double(), 0)
        before = (cum - self.initial)[self.first_state][self.state_mdp]
        keys = self.state_mdp.to(cum.dtype) + (cum - before).clamp(0.0, 1.0)
        last = self.first_state + self.n_states - 1
        return keys.index_put((last,), torch.arange(1, self.batch_size + 1, dtype=keys.dtype,
                                                    device=keys.device))


def targets(world: MDPBatch, tau_rel: float, plan: Plan | None = None) -> dict:
    """Training targets of the true MDPs, as `rlfm.priors.sampler.targets` defines them:
    policy softmax(Q*_0 / tau) (N, A) with tau = tau_rel * span(Q*_0) + 1e-12 (span over every
    real (s, a) of the MDP, terminal states included), value (V*_0 - min V*_0) / span (N,),
    the span itself (B,), and the optimal return J(pi*) (B,)."""
    plan = plan or world.solve()
    B, mask, Q = world.batch_size, world.action_mask, plan.q
    state_max = Q.masked_fill(~mask, -torch.inf).amax(-1)
    state_min = Q.masked_fill(~mask, torch.inf).amin(-1)
    scale = segment_max(state_max, world.state_mdp, B) - segment_min(state_min, world.state_mdp, B)
    tau = (tau_rel * scale + TAU_FLOOR)[world.state_mdp, None]
    policy = torch.softmax(((Q - state_max[:, None]) / tau).masked_fill(~mask, -torch.inf), -1)
    v_min = segment_min(plan.v, world.state_mdp, B)
    denominator = torch.where(scale > 0, scale, torch.ones_like(scale))
    value = (plan.v - v_min[world.state_mdp]) / denominator[world.state_mdp]
    return dict(policy=policy, value=value, value_scale=scale,
                optimal_return=world.expected_return(plan.v))


# ---- statistics ------------------------------------------------------------------------------
@dataclass
class StatsBatch(_Packed):
    """The sufficient statistic (as `rlfm.stats.Statistics`) of B MDPs, packed in slots.

    counts (N, A, K): N(s, a, successors[s, a, k]); slots (N, A, K) bool: the slots that stand
    for a next state (the others are padding); visits, reward_sum, reward_sq_sum, terminations
    (N, A); terminal_entries (N,); state_mdp (N,); n_states, n_actions (B,). Counts are held in
    the floating dtype of the batch (exact below 2**24 in float32), reward sums in float64.
    """

    successors: torch.Tensor
    slots: torch.Tensor
    counts: torch.Tensor
    visits: torch.Tensor
    reward_sum: torch.Tensor
    reward_sq_sum: torch.Tensor
    terminations: torch.Tensor
    terminal_entries: torch.Tensor
    state_mdp: torch.Tensor
    n_states: torch.Tensor
    n_actions: torch.Tensor

    @classmethod
    def empty(cls, world: MDPBatch) -> StatsBatch:
        """No data yet, counting in the successor slots of `world`."""
        z = world.R.new_zeros
        N, A, K = world.successors.shape
        # reward sums in float64 whatever the batch's dtype: E[r^2] - E[r]^2 cancels badly
        wide = lambda *shape: torch.zeros(shape, dtype=torch.float64, device=world.R.device)  # noqa: E731
        return cls(successors=world.successors, slots=world.probs > 0, counts=z(N, A, K),
                   visits=z(N, A), reward_sum=wide(N, A), reward_sq_sum=wide(N, A),
                   terminations=z(N, A), terminal_entries=z(N), state_mdp=world.state_mdp,
                   n_states=world.n_states, n_actions=world.n_actions)

    @classmethod
    def from_statistics(cls, stats: Sequence[Statistics], device=None,
                        dtype: torch.dtype = torch.float64) -> StatsBatch:
        """Pack Statistics: the slots of each (s, a) are its observed next states."""
        A = max(st.n_actions for st in stats)
        triplets = [st.transition_triplets() for st in stats]
        K = max([1, *(int(np.bincount(r).max()) for r, _, _ in triplets if r.size)])
        sizes = np.array([st.n_states for st in stats])
        first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        N = int(sizes.sum())
        successors = np.broadcast_to(np.arange(N)[:, None, None], (N, A, K)).copy()
        counts = np.zeros((N, A, K))
        arrays = {k: np.zeros((N, A)) for k in ("visits", "reward_sum", "reward_sq_sum",
                                                "terminations")}
        for b, (st, (rows, cols, c)) in enumerate(zip(stats, triplets, strict=True)):
            lo, Sb, Ab = first[b], st.n_states, st.n_actions
            slot = np.arange(rows.size) - np.searchsorted(rows, rows, side="left")
            s, a = np.divmod(rows, Ab)
            successors[lo + s, a, slot] = lo + cols
            counts[lo + s, a, slot] = c
            for k, arr in arrays.items():
                arr[lo:lo + Sb, :Ab] = getattr(st, k)
        t = lambda x, dt=dtype: torch.as_tensor(np.asarray(x), dtype=dt, device=device)  # noqa: E731
        counts = t(counts)
        return cls(successors=t(successors, torch.int64), slots=counts > 0, counts=counts,
                   **{k: t(v) for k, v in arrays.items()},
                   terminal_entries=t(np.concatenate([st.terminal_entries for st in stats])),
                   state_mdp=t(np.repeat(np.arange(len(stats)), sizes), torch.int64),
                   n_states=t(sizes, torch.int64),
                   n_actions=t([st.n_actions for st in stats], torch.int64))

    def to_statistics(self, i: int) -> Statistics:
        """Entry `i` as a Statistics (exactly the same counts and sums)."""
        lo, Sb, Ab = int(self.first_state[i]), int(self.n_states[i]), int(self.n_actions[i])
        part = slice(lo, lo + Sb)
        c = self.counts[part, :Ab].cpu().numpy()
        s, a, _ = np.nonzero(c)
        as_int = lambda x: np.rint(x.double().cpu().numpy()).astype(np.int64)  # noqa: E731
        as_float = lambda x: x.double().cpu().numpy()  # noqa: E731
        return Statistics.from_counts(
            Sb, Ab, visits=as_int(self.visits[part, :Ab]),
            reward_sum=as_float(self.reward_sum[part, :Ab]),
            reward_sq_sum=as_float(self.reward_sq_sum[part, :Ab]),
            terminations=as_int(self.terminations[part, :Ab]),
            terminal_entries=as_int(self.terminal_entries[part]),
            rows=s * Ab + a, next_states=self.successors[part, :Ab].cpu().numpy()[c > 0] - lo,
            counts=np.rint(c[c > 0]).astype(np.int64))

    def compact(self) -> StatsBatch:
        """The same statistic with slots for the observed next states only, laid out as
        `from_statistics` lays them out (in order of next state, padding a self-loop): planning
        on it costs what the data hold, not what the true MDPs' successor slots would. The
        per-pair tensors (visits, reward sums, ...) are shared with this one, not copied."""
        observed = self.counts > 0
        N, A, _ = self.counts.shape
        K = max(1, int(observed.sum(-1).max()))
        s, a, k = observed.nonzero(as_tuple=True)
        rank = (observed.cumsum(-1) - 1)[s, a, k]
        successors = torch.arange(N, device=s.device).view(N, 1, 1).repeat(1, A, K)
        successors[s, a, rank] = self.successors[s, a, k]
        counts = self.counts.new_zeros(N, A, K)
        counts[s, a, rank] = self.counts[s, a, k]
        return replace(self, successors=successors, counts=counts, slots=counts > 0)

    @property
    def mean_reward(self) -> torch.Tensor:
        """R̂ (N, A) in the batch's dtype; 0 for an unvisited pair."""
        return (self.reward_sum / self.visits.clamp_min(1.0)).to(self.counts.dtype)

    @property
    def reward_std(self) -> torch.Tensor:
        n = self.visits.clamp_min(1.0)
        var = self.reward_sq_sum / n - (self.reward_sum / n) ** 2
        return var.clamp_min(0.0).sqrt().to(self.counts.dtype)

    @property
    def observed_terminal(self) -> torch.Tensor:
        return self.terminal_entries > 0

    def empirical(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The certainty-equivalent model of `Statistics.empirical_mdp`, packed:
        (successors, probs, R) with one extra slot per (s, a), a self-loop taken with
        probability 1 by unvisited pairs and by states observed as terminal."""
        N, A, _ = self.counts.shape
        terminal = self.observed_terminal[:, None]
        p = (self.counts / self.visits.clamp_min(1.0)[..., None]).masked_fill(
            terminal[..., None], 0.0)
        loop = ((self.visits == 0) | terminal).to(p.dtype)
        own = torch.arange(N, device=p.device).view(N, 1, 1).expand(N, A, 1)
        return (torch.cat([self.successors, own], -1), torch.cat([p, loop[..., None]], -1),
                self.mean_reward.masked_fill(terminal, 0.0))


def observed_reward_range(stats: StatsBatch, lo: torch.Tensor, hi: torch.Tensor):
    """(lo, hi) (B,) widened to every observed mean reward R̂(s, a)."""
    visited, r, B = stats.visits > 0, stats.mean_reward, stats.batch_size
    return (torch.minimum(lo, per_mdp_min(r, visited, stats.state_mdp, B)),
            torch.maximum(hi, per_mdp_max(r, visited, stats.state_mdp, B)))


# ---- simulation --------------------------------------------------------------------------------
@dataclass
class Actor:
    """What the simulated agents do: `table` None (uniformly random actions), (N, Hmax) or (N,)
    actions per state (and step), or (N, A) probabilities to sample from at every step;
    `epsilon` (B,): the probability of a uniformly random action instead."""

    table: torch.Tensor | None = None
    epsilon: torch.Tensor | None = None


@dataclass
class Observations:
    """Context options of each MDP (B,): observe the entry reward of the next state instead of
    R(s, a) (`use_entry`, where the family defines one), and Gaussian noise of std `noise`."""

    use_entry: torch.Tensor
    noise: torch.Tensor


@dataclass
class Recorded:
    """Transitions of a simulation, with the MDP each came from (states are global)."""

    mdp: torch.Tensor
    states: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_states: torch.Tensor
    terminated: torch.Tensor


class Simulator:
    """Episodes of every MDP of one or several batches ("buckets", each its own padded
    layout) in lockstep, adding each transition to the buckets' statistics: one array operation
    per step serves every bucket, so splitting MDPs into buckets by size costs no more steps.

    Internally the buckets are laid end to end: global MDP, state and (s, a) indices, and the
    real successor slots of all pairs in one sorted array of keys `pair + P(next <= slot)`, so
    that the next state of a pair is one `searchsorted` (as start states are drawn), whatever
    the bucket's padding."""

    def __init__(self, worlds: MDPBatch | Sequence[MDPBatch],
                 observe: Observations | Sequence[Observations | None] | None = None):
        self.worlds = [worlds] if isinstance(worlds, MDPBatch) else list(worlds)
        observe = [observe] * len(self.worlds) if observe is None or \
            isinstance(observe, Observations) else list(observe)
        first = self.worlds[0]
        device, dtype = first.R.device, first.R.dtype
        cat = torch.cat
        # where each bucket starts among all MDPs, states, pairs and successor cells (ints)
        offsets = lambda size: np.cumsum([0] + [size(w) for w in self.worlds]).tolist()  # noqa: E731
        self.mdp_offset = offsets(lambda w: w.batch_size)
        self.state_offset = offsets(lambda w: w.n_total_states)
        self.pair_offset = offsets(lambda w: w.R.numel())
        self.cell_offset = offsets(lambda w: w.probs.numel())
        keys, next_states, cells = [], [], []
        for b, w in enumerate(self.worlds):
            K = w.successors.shape[2]
            real = (w.probs > 0).view(-1, K)
            row, slot = real.nonzero(as_tuple=True)
            keys.append((self.pair_offset[b] + row).double() + w.cdf()[row, slot].double())
            next_states.append(w.successors.view(-1, K)[row, slot] + self.state_offset[b])
            cells.append(self.cell_offset[b] + row * K + slot)
        self.slot_keys, self.slot_next, self.slot_cell = cat(keys), cat(next_states), cat(cells)
        # the last real slot of each pair: a key rounded up to the pair's end stays in the pair
        self.slot_last = torch.searchsorted(
            self.slot_keys, torch.arange(1, self.pair_offset[-1] + 1, device=device,
                                         dtype=torch.float64), right=False)
        self.pair_first = cat([self.pair_offset[b] + torch.arange(w.n_total_states, device=device)
                               * w.R.shape[1] for b, w in enumerate(self.worlds)])
        self.R = cat([w.R.reshape(-1) for w in self.worlds])
        self.terminal = cat([w.terminal for w in self.worlds])
        self.entry_reward = cat([w.entry_reward for w in self.worlds])
        self.start_keys = cat([w.start_keys() + self.mdp_offset[b]
                               for b, w in enumerate(self.worlds)])
        self.last_state = cat([self.state_offset[b] + w.first_state + w.n_states - 1
                               for b, w in enumerate(self.worlds)])
        self.per_mdp = {"n_actions": cat([w.n_actions for w in self.worlds]),
                        "horizon": cat([w.horizon for w in self.worlds])}
        seen = [o for o in observe if o is not None]
        self.noisy = any(bool((o.noise > 0).any()) for o in seen)
        self.entry = any(bool(o.use_entry.any()) for o in seen)
        if self.noisy:
            self.per_mdp["noise"] = cat([
                o.noise.to(dtype) if o is not None else w.R.new_zeros(w.batch_size)
                for o, w in zip(observe, self.worlds, strict=True)])
        if self.entry:
            self.per_mdp["use_entry"] = cat([
                o.use_entry if o is not None else w.has_entry.new_zeros(w.batch_size)
                for o, w in zip(observe, self.worlds, strict=True)])
        self.device, self.dtype = device, dtype

    def run(self, stats: StatsBatch | Sequence[StatsBatch], episodes: torch.Tensor,
            actor: Actor, gen: torch.Generator, record: list | None = None) -> None:
        """`episodes[b]` episodes of every MDP b (global index: the buckets' MDPs end to end)
        under `actor` (its table and epsilon global too); an episode ends on entering a
        terminal state or after the MDP's horizon. `stats`: the statistic of each bucket, added
        to. `record`: a list to append transitions to (global indices)."""
        stats = [stats] if isinstance(stats, StatsBatch) else list(stats)
        device, dtype = self.device, self.dtype
        lane_mdp = torch.repeat_interleave(torch.arange(self.mdp_offset[-1], device=device),
                                           episodes.to(device))
        if lane_mdp.numel() == 0:
            return
        u = torch.rand(lane_mdp.numel(), generator=gen, device=device, dtype=torch.float64)
        state = torch.searchsorted(self.start_keys, lane_mdp + u, right=True)
        state = torch.minimum(state, self.last_state.index_select(0, lane_mdp))
        # what the run adds, accumulated over all buckets and added to theirs at the end
        per_pair = torch.zeros(self.pair_offset[-1], 4, dtype=torch.float64, device=device)
        counts = torch.zeros(self.cell_offset[-1], dtype=dtype, device=device)
        entries = torch.zeros(self.state_offset[-1], dtype=dtype, device=device)
        per_mdp = dict(self.per_mdp)
        if actor.epsilon is not None:
            per_mdp["epsilon"] = actor.epsilon
        # what each lane reads of its MDP, gathered once and kept along with the lanes
        lane = {k: x.index_select(0, lane_mdp) for k, x in per_mdp.items()}
        ones = torch.ones(lane_mdp.numel(), device=device, dtype=dtype)
        for t in range(int(lane["horizon"].max())):
            L = lane_mdp.numel()
            if L == 0:
                break
            action = _act(actor, state, t, lane, gen)
            row = self.pair_first.index_select(0, state) + action
            u = torch.rand(L, generator=gen, device=device, dtype=torch.float64)
            slot = torch.searchsorted(self.slot_keys, row + u, right=True)
            slot = torch.minimum(slot, self.slot_last.index_select(0, row))
            next_state = self.slot_next.index_select(0, slot)
            reward = self.R.index_select(0, row)
            if self.entry:
                reward = torch.where(lane["use_entry"], self.entry_reward.index_select(
                    0, next_state), reward)
            if self.noisy:
                reward = reward + lane["noise"] * torch.randn(
                    L, generator=gen, device=device, dtype=dtype)
            done = self.terminal.index_select(0, next_state)
            wide = reward.double()
            per_pair.index_add_(0, row, torch.stack([torch.ones_like(wide), wide, wide * wide,
                                                     done.double()], 1))
            counts.index_add_(0, self.slot_cell.index_select(0, slot), ones[:L])
            entries.index_add_(0, next_state, done.to(dtype))
            if record is not None:
                record.append(Recorded(lane_mdp, state, action, reward, next_state, done))
            alive = ~done & (lane["horizon"] > t + 1)
            if not bool(alive.all()):
                keep = alive.nonzero().squeeze(1)
                lane_mdp, next_state = lane_mdp[keep], next_state[keep]
                lane = {k: x[keep] for k, x in lane.items()}
            state = next_state
        pairs, cells, states = self.pair_offset, self.cell_offset, self.state_offset
        for b, st in enumerate(stats):
            added = per_pair[pairs[b]:pairs[b + 1]]
            st.visits.view(-1).add_(added[:, 0].to(dtype))
            st.reward_sum.view(-1).add_(added[:, 1])
            st.reward_sq_sum.view(-1).add_(added[:, 2])
            st.terminations.view(-1).add_(added[:, 3].to(dtype))
            st.counts.view(-1).add_(counts[cells[b]:cells[b + 1]])
            st.terminal_entries.add_(entries[states[b]:states[b + 1]])


def _act(actor: Actor, state, t, lane: dict, gen) -> torch.Tensor:
    L = state.numel()
    n = lane["n_actions"]

    def uniform():
        u = torch.rand(L, generator=gen, device=state.device)
        return torch.minimum((u * n).long(), n - 1)

    table = actor.table
    if table is None:
        return uniform()
    if table.is_floating_point():                   # (N, A) probabilities
        cum = table.index_select(0, state).cumsum(-1)
        u = torch.rand(L, generator=gen, device=state.device, dtype=cum.dtype)
        action = torch.minimum((u[:, None] * cum[:, -1:] >= cum).sum(-1), n - 1)
    elif table.dim() == 2:                          # (N, Hmax) actions per step
        action = table[:, t].index_select(0, state)
    else:                                           # (N,) stationary actions
        action = table.index_select(0, state)
    if actor.epsilon is not None:
        explore = torch.rand(L, generator=gen, device=state.device) < lane["epsilon"]
        action = torch.where(explore, uniform(), action)
    return action


def simulate(world: MDPBatch | Sequence[MDPBatch], stats: StatsBatch | Sequence[StatsBatch],
             episodes: torch.Tensor, actor: Actor, gen: torch.Generator,
             observe: Observations | Sequence[Observations | None] | None = None,
             record: list | None = None) -> None:
    """`episodes[b]` episodes of every MDP b in lockstep under `actor`, into `stats` (one
    batch, or several buckets: see `Simulator`)."""
    Simulator(world, observe).run(stats, episodes, actor, gen, record)


def run_learners(worlds: MDPBatch | Sequence[MDPBatch], stats: StatsBatch | Sequence[StatsBatch],
                 episodes: torch.Tensor, actor: Actor,
                 plan: Callable[[int, torch.Tensor, torch.Tensor], PlanningProblem],
                 gen: torch.Generator, *, adaptive: torch.Tensor, replan_every: torch.Tensor,
                 replan_growth: torch.Tensor,
                 observe: Observations | Sequence[Observations | None] | None = None,
                 record: list | None = None) -> None:
    """B behaviours in lockstep rounds, adding their data to `stats`, over one batch or
    several buckets (per-MDP tensors and `actor` global, the buckets' MDPs end to end, as
    `Simulator` lays them out). `actor.table` holds (N, Hmax) actions. An MDP that is not
    `adaptive` runs all its episodes in the first round under its table; before every round,
    `plan(bucket, mdps, states)` gives the `PlanningProblem` of the adaptive MDPs of a bucket
    still running (indices within the bucket; from its statistic), all buckets' problems are
    solved in one backward induction and the greedy actions become their tables, and each of
    them runs one episode, or, once it has run `replan_every` episodes, ceil(replan_growth *
    episodes so far): the whole batch costs one simulation and one plan per round."""
    sim = Simulator(worlds, observe)
    mdp_offset, state_offset = sim.mdp_offset, sim.state_offset
    done = torch.zeros_like(episodes)
    table = actor.table
    while True:
        running = done < episodes
        if not bool(running.any()):
            return
        wanted = running & adaptive
        rows, problems = [], []
        for b, world in enumerate(sim.worlds):
            mdps = wanted[mdp_offset[b]:mdp_offset[b + 1]].nonzero().squeeze(1)
            if mdps.numel():
                states = world.states_of(mdps)
                problems.append(plan(b, mdps, states))
                rows.append(state_offset[b] + states)
        if problems:
            new = PlanningProblem.concatenate(problems).greedy()
            table[torch.cat(rows), :new.shape[1]] = new
        grown = torch.ceil(replan_growth * done).long().clamp_min(1)
        batch = torch.where(adaptive, torch.where(done < replan_every, torch.ones_like(done),
                                                  grown), episodes)
        batch = torch.minimum(batch, episodes - done)
        sim.run(stats, batch, Actor(table, actor.epsilon), gen, record)
        done = done + batch


def online(world: MDPBatch, episodes: int,
           learner: Callable[[StatsBatch], tuple[torch.Tensor, torch.Tensor]],
           gen: torch.Generator) -> torch.Tensor:
    """The online protocol of `rlfm.evaluate.online_run` for every MDP of `world` at once, one
    episode of each per round. `learner(stats)` gives, from the statistic collected so far, the
    action probabilities (N, A) to act by in the next episode (sampled at every step) and the
    policy it reports, (N, A) or (N, Hmax, A), whose exact return is recorded after each
    episode; both 0 on padded actions. Returns J (B, episodes), in the world's order."""
    stats = StatsBatch.empty(world)
    sim = Simulator(world)
    one = torch.ones(world.batch_size, dtype=torch.int64, device=world.R.device)
    acting, _ = learner(stats)
    returns = [world.R.new_zeros(world.batch_size, 0)]
    for _ in range(episodes):
        sim.run(stats, one, Actor(acting), gen)
        acting, reported = learner(stats)
        returns.append(world.evaluate(reported)[:, None])
    return torch.cat(returns, 1)


# ---- learners that make training contexts --------------------------------------------------
@dataclass
class PlanningProblem:
    """The inputs of one `planning.backward_induction` (bounds lo, hi per MDP), for learners
    whose plans are solved together (`greedy`). Transitions: padded `successors` (N, A, K)
    with `probs`, or an `Edges` list with probs None (`concatenate`)."""

    successors: torch.Tensor | Edges
    probs: torch.Tensor | None
    R: torch.Tensor
    state_mdp: torch.Tensor
    horizon: torch.Tensor
    action_mask: torch.Tensor
    bonus: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    terminal: torch.Tensor
    tie_noise: torch.Tensor

    def greedy(self) -> torch.Tensor:
        """Greedy actions (N, Hmax) of every state at every step."""
        return backward_induction(self.successors, self.probs, self.R, self.state_mdp,
                                  self.horizon, action_mask=self.action_mask, bonus=self.bonus,
                                  bounds=(self.lo, self.hi), terminal=self.terminal,
                                  greedy_actions=True, tie_noise=self.tie_noise).actions

    @staticmethod
    def concatenate(problems: Sequence[PlanningProblem]) -> PlanningProblem:
        """One problem of several padded ones (their MDPs and states end to end, actions padded
        to the largest A), its transitions an `Edges` list: buckets padded to different numbers
        of successors are solved in one backward induction, with no padding of successors."""
        if len(problems) == 1:
            return problems[0]
        A = max(p.R.shape[1] for p in problems)
        pad = lambda x, value=0: torch.nn.functional.pad(x, (0, A - x.shape[1]), value=value)  # noqa: E731
        rows, next_states, probs, state_mdp = [], [], [], []
        states = mdps = 0
        for p in problems:
            s, a, k = (p.probs != 0).nonzero(as_tuple=True)
            rows.append((states + s) * A + a)
            next_states.append(states + p.successors[s, a, k])
            probs.append(p.probs[s, a, k])
            state_mdp.append(mdps + p.state_mdp)
            states, mdps = states + p.R.shape[0], mdps + p.horizon.shape[0]
        cat = torch.cat
        return PlanningProblem(
            Edges(cat(rows), cat(next_states), cat(probs)), None,
            cat([pad(p.R) for p in problems]), cat(state_mdp),
            cat([p.horizon for p in problems]),
            cat([pad(p.action_mask, False) for p in problems]),
            cat([pad(p.bonus) for p in problems]), cat([p.lo for p in problems]),
            cat([p.hi for p in problems]), cat([p.terminal for p in problems]),
            cat([pad(p.tie_noise) for p in problems]))

    def overwrite(self, mdps: torch.Tensor, states: torch.Tensor,
                  other: PlanningProblem) -> PlanningProblem:
        """This problem with the MDPs `mdps` (and their `states`) replaced by `other`, a
        problem of those MDPs alone in the same layout (successor indices renumbered)."""
        if other.successors.shape[1:] != self.successors.shape[1:]:
            raise ValueError("overwrite needs problems of one layout (actions, slots)")
        out = {}
        for f in fields(self):
            x, y = getattr(self, f.name), getattr(other, f.name)
            if f.name in ("horizon", "lo", "hi"):
                x = x.index_copy(0, mdps, y)
            elif f.name == "state_mdp":
                pass
            elif f.name == "successors":
                x = x.index_copy(0, states, states[y])
            else:
                x = x.index_copy(0, states, y)
            out[f.name] = x
        return PlanningProblem(**out)


def optimistic_problem(stats: StatsBatch, horizon: torch.Tensor, bonus_scale: torch.Tensor,
                       known_lo: torch.Tensor, known_hi: torch.Tensor,
                       gen: torch.Generator) -> PlanningProblem:
    """The plan of an optimistic certainty-equivalent learner (compact UCB-VI): backward
    induction on (P̂, R̂ + bonus), bonus = c * span / sqrt(N(s, a)), values capped at what
    (H - h) steps of the best reward plus bonus can give (untried pairs are worth that cap),
    states seen to terminate worth 0. The reward range [r_lo, r_hi] is the `known` one (as
    UCB-VI knows its rewards lie in [0, 1]) widened by the observed mean rewards; span =
    r_hi - r_lo (or |r_hi|, or 1, where that is 0). Ties (untried pairs share the cap) are
    broken at random."""
    r_lo, r_hi = observed_reward_range(stats, known_lo, known_hi)
    span = torch.where(r_hi > r_lo, r_hi - r_lo,
                       torch.where(r_hi != 0, r_hi.abs(), torch.ones_like(r_hi)))
    successors, probs, R = stats.empirical()
    n = stats.visits
    c = (bonus_scale * span)[stats.state_mdp, None]
    bonus = torch.where(n > 0, c / n.clamp_min(1.0).sqrt(), torch.full_like(n, torch.inf))
    per_step = r_hi + bonus_scale * span
    tie = torch.rand(R.shape, generator=gen, device=R.device, dtype=R.dtype)
    return PlanningProblem(successors, probs, R, stats.state_mdp, horizon, stats.action_mask,
                           bonus, torch.full_like(per_step, -torch.inf), per_step,
                           stats.observed_terminal, tie)


def posterior_problem(stats: StatsBatch, horizon: torch.Tensor, gen: torch.Generator,
                      prior_strength: float = 1.0) -> PlanningProblem:
    """The plan of PSRL: one MDP drawn from the posterior of the `psrl` agent: transitions
    Dirichlet(prior_strength / S + N(s, a, .)), mean rewards Normal with one prior observation
    at the middle of the reward range ([0, 1] widened to the observed mean rewards), states
    observed as terminal worth 0.

    The Dirichlet is drawn exactly on the slots (the next states the statistic counts); for the
    states outside them, their total mass Gamma(prior_strength * (S - slots) / S) goes to one
    uniformly random state of the MDP, where the exact posterior would split it further (with a
    prior worth one imaginary transition it is nearly always concentrated on one state)."""
    N, A, _ = stats.counts.shape
    device, dtype = stats.counts.device, stats.counts.dtype
    n_states = stats.n_states[stats.state_mdp].view(N, 1)
    alpha = prior_strength / n_states.to(dtype)
    tiny = torch.finfo(dtype).tiny
    g = torch._standard_gamma((stats.counts + alpha[..., None]).clamp_min(tiny),
                              generator=gen) * stats.slots
    outside = (n_states - stats.slots.sum(-1)).clamp_min(0).to(dtype)
    g_out = torch._standard_gamma((alpha * outside).clamp_min(tiny), generator=gen) * (outside > 0)
    u = torch.rand(N, A, generator=gen, device=device, dtype=dtype)
    first = stats.first_state[stats.state_mdp].view(N, 1)
    anywhere = first + torch.minimum((u * n_states).long(), n_states - 1)
    total = g.sum(-1) + g_out
    g_out = torch.where(total > 0, g_out, torch.ones_like(g_out))   # all variates underflowed
    successors = torch.cat([stats.successors, anywhere[..., None]], -1)
    probs = torch.cat([g, g_out[..., None]], -1) / (g.sum(-1) + g_out)[..., None]
    zero = torch.zeros(stats.batch_size, device=device, dtype=dtype)
    lo, hi = observed_reward_range(stats, zero, zero + 1.0)
    mu0, sigma = ((lo + hi) / 2)[stats.state_mdp, None], ((hi - lo) / 2)[stats.state_mdp, None]
    precision = 1.0 + stats.visits
    R = (mu0 + stats.reward_sum.to(dtype)) / precision + sigma / precision.sqrt() * torch.randn(
        N, A, generator=gen, device=device, dtype=dtype)
    inf = torch.full_like(zero, torch.inf)
    return PlanningProblem(successors, probs, R, stats.state_mdp, horizon, stats.action_mask,
                           torch.zeros_like(R), -inf, inf, stats.observed_terminal,
                           torch.zeros_like(R))
