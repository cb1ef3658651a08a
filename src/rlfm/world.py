"""A batched world: B tabular MDPs as torch tensors, simulated in lockstep, with their statistics.

Layout (padded, sparse in successors): a batch of MDPs of up to S states and A actions stores,
for every (s, a), its K possible next states `successors` (B, S, A, K) and their probabilities
`probs` (0 on padding), so memory grows with B*S*A*K, the non-zero transitions. The statistic
of the data collected in a batch (`StatsBatch`) counts transitions in the same slots: an
observed next state is always one of the true successors, so N(s, a, s') needs no S*S array.
Padded states are absorbing and never reached; padded actions are masked out of every choice.

Simulation steps every episode of every MDP at once ("lanes": one per running episode), one
array operation per time step whatever B; learners that adapt to their data (the optimistic
certainty-equivalent learner, posterior sampling, a network) act in rounds: plan for all MDPs
in one batched backward induction (`rlfm.planning`), run a round of episodes, update the
statistic by scatter-add, plan again.

Random numbers come from one `torch.Generator`, so a batch is reproducible for a seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import numpy as np
import scipy.sparse as sp
import torch

from rlfm.mdp import TabularMDP, transitions_from_coo
from rlfm.planning import Plan, backward_induction
from rlfm.stats import Statistics

TAU_FLOOR = 1e-12


def _select(obj, index: torch.Tensor):
    """The same dataclass with every tensor field restricted to rows `index` (dim 0)."""
    return type(obj)(**{f.name: (v.index_select(0, index) if isinstance(v, torch.Tensor)
                                 else [v[i] for i in index.tolist()] if isinstance(v, list)
                                 else v)
                        for f in fields(obj) for v in [getattr(obj, f.name)]})


def _uniform(gen: torch.Generator, n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=like.device, dtype=like.dtype)


# ---- MDPs ------------------------------------------------------------------------------------
@dataclass
class MDPBatch:
    """B MDPs padded to (S, A, K). See the module docstring for the layout.

    successors (B, S, A, K) int64, probs (B, S, A, K); R (B, S, A); initial (B, S);
    horizon (B,) int64; gamma (B,); terminal (B, S) bool; n_states, n_actions (B,) int64;
    entry_reward (B, S): reward observed on entering a state, for families that define one
    (has_entry (B,) bool); reward_noise (B,): the family's own observation noise (bandits);
    families: the family name of each MDP.
    """

    successors: torch.Tensor
    probs: torch.Tensor
    R: torch.Tensor
    initial: torch.Tensor
    horizon: torch.Tensor
    gamma: torch.Tensor
    terminal: torch.Tensor
    n_states: torch.Tensor
    n_actions: torch.Tensor
    entry_reward: torch.Tensor
    has_entry: torch.Tensor
    reward_noise: torch.Tensor
    families: list

    @property
    def batch_size(self) -> int:
        return self.R.shape[0]

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return tuple(self.successors.shape)

    @property
    def action_mask(self) -> torch.Tensor:
        """(B, A) bool: the actions that exist in each MDP."""
        A = self.R.shape[2]
        return torch.arange(A, device=self.R.device) < self.n_actions[:, None]

    @property
    def state_mask(self) -> torch.Tensor:
        S = self.R.shape[1]
        return torch.arange(S, device=self.R.device) < self.n_states[:, None]

    def select(self, index: torch.Tensor) -> MDPBatch:
        return _select(self, index)

    @classmethod
    def from_mdps(cls, mdps: Sequence[TabularMDP], device=None,
                  dtype: torch.dtype = torch.float64) -> MDPBatch:
        """Pack TabularMDPs (dense or sparse) into one batch."""
        B = len(mdps)
        S = max(m.n_states for m in mdps)
        A = max(m.n_actions for m in mdps)
        rows_of = []
        for m in mdps:
            T = sp.csr_array(m.transition_matrix)
            T.eliminate_zeros()
            T.sort_indices()
            rows_of.append(T)
        K = max(int(np.diff(T.indptr).max()) for T in rows_of)
        successors = np.broadcast_to(np.arange(S)[None, :, None, None], (B, S, A, K)).copy()
        probs = np.zeros((B, S, A, K))
        probs[..., 0] = 1.0        # padding: absorbing, never reached
        R = np.zeros((B, S, A))
        initial = np.zeros((B, S))
        terminal = np.zeros((B, S), bool)
        entry = np.zeros((B, S))
        has_entry = np.zeros(B, bool)
        noise = np.zeros(B)
        for b, (m, T) in enumerate(zip(mdps, rows_of, strict=True)):
            Sb, Ab = m.n_states, m.n_actions
            counts = np.diff(T.indptr)
            row = np.repeat(np.arange(Sb * Ab), counts)
            slot = np.arange(T.nnz) - T.indptr[row]
            s, a = np.divmod(row, Ab)
            probs[b, :Sb, :Ab] = 0.0
            successors[b, s, a, slot] = T.indices
            probs[b, s, a, slot] = T.data
            R[b, :Sb, :Ab] = m.R
            initial[b, :Sb] = m.initial
            terminal[b, :Sb] = m.terminal
            info = getattr(m, "info", {})
            if info.get("entry_reward") is not None:
                entry[b, :Sb] = info["entry_reward"]
                has_entry[b] = True
            noise[b] = float(info.get("reward_noise", 0.0))
        t = lambda x, dt=dtype: torch.as_tensor(x, dtype=dt, device=device)  # noqa: E731
        return cls(successors=t(successors, torch.int64), probs=t(probs), R=t(R),
                   initial=t(initial), horizon=t([m.horizon for m in mdps], torch.int64),
                   gamma=t([m.gamma for m in mdps]), terminal=t(terminal, torch.bool),
                   n_states=t([m.n_states for m in mdps], torch.int64),
                   n_actions=t([m.n_actions for m in mdps], torch.int64),
                   entry_reward=t(entry), has_entry=t(has_entry, torch.bool),
                   reward_noise=t(noise), families=[m.name or "" for m in mdps])

    def to_mdp(self, i: int) -> TabularMDP:
        """MDP `i` as a TabularMDP (for exact scoring with rlfm.mdp)."""
        Sb, Ab = int(self.n_states[i]), int(self.n_actions[i])
        succ = self.successors[i, :Sb, :Ab].cpu().numpy()
        p = self.probs[i, :Sb, :Ab].double().cpu().numpy()
        rows = np.broadcast_to((np.arange(Sb)[:, None] * Ab + np.arange(Ab))[..., None], p.shape)
        keep = p > 0
        T = transitions_from_coo(rows[keep], succ[keep], p[keep], Sb, Ab)
        return TabularMDP(T, self.R[i, :Sb, :Ab].double().cpu().numpy(),
                          self.initial[i, :Sb].double().cpu().numpy(), int(self.horizon[i]),
                          terminal=self.terminal[i, :Sb].cpu().numpy(),
                          gamma=float(self.gamma[i]), name=self.families[i] or None)

    # ---- exact quantities of the true MDPs -------------------------------------------------
    def solve(self, greedy_actions: bool = False) -> Plan:
        """Q*, V* at the first step (and the optimal action of every step, if asked)."""
        return backward_induction(self.successors, self.probs, self.R, self.horizon,
                                  gamma=self.gamma, action_mask=self.action_mask,
                                  greedy_actions=greedy_actions)

    def evaluate(self, policy: torch.Tensor) -> torch.Tensor:
        """J(pi) (B,): the exact expected return of a stationary (B, S, A) or time-dependent
        (B, Hmax, S, A) policy from the initial distribution; differentiable in the policy."""
        plan = backward_induction(self.successors, self.probs, self.R, self.horizon,
                                  gamma=self.gamma, policy=policy)
        return (self.initial * plan.v).sum(-1)

    def uniform_policy(self) -> torch.Tensor:
        mask = self.action_mask.to(self.R.dtype)
        return (mask / mask.sum(-1, keepdim=True))[:, None, :].expand_as(self.R)

    def cdf(self) -> torch.Tensor:
        """Cumulative successor probabilities for sampling by inverse CDF (`simulate`): the
        real slots of a row come first (as `from_mdps` lays them out), the last one is exactly
        1, and padding is 2, so it is never chosen."""
        real = self.probs > 0
        c = self.probs.cumsum(-1).masked_fill(~real, 2.0)
        return c.scatter(-1, (real.sum(-1, keepdim=True) - 1).clamp_min(0), 1.0)


def targets(world: MDPBatch, tau_rel: float, plan: Plan | None = None) -> dict:
    """Training targets of the true MDPs, as `rlfm.priors.sampler.targets` defines them:
    policy softmax(Q*_0 / tau) with tau = tau_rel * span(Q*_0) + 1e-12 (span over every real
    (s, a), terminal states included), value (V*_0 - min V*_0) / span, the span itself, and the
    optimal return J(pi*)."""
    plan = plan or world.solve()
    valid = world.state_mask[:, :, None] & world.action_mask[:, None, :]
    Q = plan.q
    big = torch.finfo(Q.dtype).max
    q_max = Q.masked_fill(~valid, -big).amax((1, 2))
    q_min = Q.masked_fill(~valid, big).amin((1, 2))
    scale = q_max - q_min
    tau = (tau_rel * scale + TAU_FLOOR).view(-1, 1, 1)
    logits = ((Q - Q.masked_fill(~valid, -big).amax(-1, keepdim=True)) / tau)
    policy = torch.softmax(logits.masked_fill(~valid, -torch.inf), -1).nan_to_num(0.0)
    v_min = plan.v.masked_fill(~world.state_mask, big).amin(-1, keepdim=True)
    denominator = torch.where(scale > 0, scale, torch.ones_like(scale)).view(-1, 1)
    value = ((plan.v - v_min) / denominator).masked_fill(~world.state_mask, 0.0)
    return dict(policy=policy, value=value, value_scale=scale,
                optimal_return=(world.initial * plan.v).sum(-1))


# ---- statistics ------------------------------------------------------------------------------
@dataclass
class StatsBatch:
    """The sufficient statistic (as `rlfm.stats.Statistics`) of B MDPs, in slot layout.

    counts (B, S, A, K): N(s, a, successors[s, a, k]); slots (B, S, A, K) bool: the slots that
    stand for a next state (the others are padding); visits, reward_sum, reward_sq_sum,
    terminations (B, S, A); terminal_entries (B, S); n_states, n_actions (B,). Counts are held
    in the floating dtype of the batch (exact below 2**24 in float32).
    """

    successors: torch.Tensor
    slots: torch.Tensor
    counts: torch.Tensor
    visits: torch.Tensor
    reward_sum: torch.Tensor
    reward_sq_sum: torch.Tensor
    terminations: torch.Tensor
    terminal_entries: torch.Tensor
    n_states: torch.Tensor
    n_actions: torch.Tensor

    @classmethod
    def empty(cls, world: MDPBatch) -> StatsBatch:
        """No data yet, counting in the successor slots of `world`."""
        z = world.R.new_zeros
        B, S, A, K = world.shape
        return cls(successors=world.successors, slots=world.probs > 0, counts=z(B, S, A, K),
                   visits=z(B, S, A),
                   reward_sum=z(B, S, A), reward_sq_sum=z(B, S, A), terminations=z(B, S, A),
                   terminal_entries=z(B, S), n_states=world.n_states, n_actions=world.n_actions)

    @classmethod
    def from_statistics(cls, stats: Sequence[Statistics], device=None,
                        dtype: torch.dtype = torch.float64) -> StatsBatch:
        """Pack Statistics: the slots of each (s, a) are its observed next states."""
        B = len(stats)
        S = max(st.n_states for st in stats)
        A = max(st.n_actions for st in stats)
        triplets = [st.transition_triplets() for st in stats]
        K = max([1, *(int(np.bincount(r).max()) for r, _, _ in triplets if r.size)])
        successors = np.broadcast_to(np.arange(S)[None, :, None, None], (B, S, A, K)).copy()
        counts = np.zeros((B, S, A, K))
        arrays = {k: np.zeros((B, S, A)) for k in ("visits", "reward_sum", "reward_sq_sum",
                                                   "terminations")}
        entries = np.zeros((B, S))
        for b, (st, (rows, cols, c)) in enumerate(zip(stats, triplets, strict=True)):
            Sb, Ab = st.n_states, st.n_actions
            starts = np.searchsorted(rows, rows, side="left")   # rows are sorted
            slot = np.arange(rows.size) - starts
            s, a = np.divmod(rows, Ab)
            successors[b, s, a, slot] = cols
            counts[b, s, a, slot] = c
            for k, arr in arrays.items():
                arr[b, :Sb, :Ab] = getattr(st, k)
            entries[b, :Sb] = st.terminal_entries
        t = lambda x, dt=dtype: torch.as_tensor(x, dtype=dt, device=device)  # noqa: E731
        counts = t(counts)
        return cls(successors=t(successors, torch.int64), slots=counts > 0, counts=counts,
                   **{k: t(v) for k, v in arrays.items()}, terminal_entries=t(entries),
                   n_states=t([st.n_states for st in stats], torch.int64),
                   n_actions=t([st.n_actions for st in stats], torch.int64))

    def to_statistics(self, i: int) -> Statistics:
        """Entry `i` as a Statistics (exactly the same counts and sums)."""
        Sb, Ab = int(self.n_states[i]), int(self.n_actions[i])
        c = self.counts[i, :Sb, :Ab].cpu().numpy()
        succ = self.successors[i, :Sb, :Ab].cpu().numpy()
        s, a, _ = np.nonzero(c)
        rows = s * Ab + a
        as_int = lambda x: np.rint(x.cpu().numpy()).astype(np.int64)  # noqa: E731
        return Statistics.from_counts(
            Sb, Ab, visits=as_int(self.visits[i, :Sb, :Ab]),
            reward_sum=self.reward_sum[i, :Sb, :Ab].double().cpu().numpy(),
            reward_sq_sum=self.reward_sq_sum[i, :Sb, :Ab].double().cpu().numpy(),
            terminations=as_int(self.terminations[i, :Sb, :Ab]),
            terminal_entries=as_int(self.terminal_entries[i, :Sb]),
            rows=rows, next_states=succ[c > 0], counts=np.rint(c[c > 0]).astype(np.int64))

    def select(self, index: torch.Tensor) -> StatsBatch:
        return _select(self, index)

    @property
    def batch_size(self) -> int:
        return self.visits.shape[0]

    @property
    def mean_reward(self) -> torch.Tensor:
        return self.reward_sum / self.visits.clamp_min(1.0)

    @property
    def reward_std(self) -> torch.Tensor:
        n = self.visits.clamp_min(1.0)
        return ((self.reward_sq_sum / n - (self.reward_sum / n) ** 2).clamp_min(0.0)).sqrt()

    @property
    def observed_terminal(self) -> torch.Tensor:
        return self.terminal_entries > 0

    def empirical(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The certainty-equivalent model of `Statistics.empirical_mdp` in slot layout:
        (successors, probs, R) with one extra slot per (s, a), a self-loop taken with
        probability 1 by unvisited pairs and by states observed as terminal."""
        B, S, A, _ = self.counts.shape
        terminal = self.observed_terminal[:, :, None]
        p = (self.counts / self.visits.clamp_min(1.0)[..., None]).masked_fill(terminal[..., None],
                                                                                0.0)
        loop = ((self.visits == 0) | terminal).to(p.dtype)
        own = torch.arange(S, device=p.device).view(1, S, 1, 1).expand(B, S, A, 1)
        successors = torch.cat([self.successors, own], -1)
        probs = torch.cat([p, loop[..., None]], -1)
        R = self.mean_reward.masked_fill(terminal, 0.0)
        return successors, probs, R


# ---- simulation --------------------------------------------------------------------------------
# An actor tells the simulator what to do: (B, Hmax, S) or (B, S) actions, or (B, S, A)
# probabilities to sample from at every step; `epsilon` (B,) mixes in uniform actions.
@dataclass
class Actor:
    table: torch.Tensor | None = None      # None: uniformly random actions
    epsilon: torch.Tensor | None = None


@dataclass
class Observations:
    """Context options of each MDP: observe the entry reward of the next state instead of
    R(s, a) (`use_entry`, where the family defines one) and Gaussian noise of std `noise`."""

    use_entry: torch.Tensor
    noise: torch.Tensor


@dataclass
class Recorded:
    """Transitions of a simulation, with the MDP each came from (for tests and datasets)."""

    mdp: torch.Tensor
    states: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_states: torch.Tensor
    terminated: torch.Tensor


def simulate(world: MDPBatch, stats: StatsBatch, episodes: torch.Tensor, actor: Actor,
             gen: torch.Generator, observe: Observations | None = None,
             cdf: torch.Tensor | None = None, record: list | None = None) -> None:
    """Run `episodes[b]` episodes of every MDP b in parallel, all in lockstep, under `actor`,
    adding every transition to `stats` (in place). An episode ends on entering a terminal state
    or after the MDP's horizon. `record`: a list to append the transitions to (Recorded)."""
    B, S, A, K = world.shape
    device, dtype = world.R.device, world.R.dtype
    cdf = world.cdf() if cdf is None else cdf
    lane_mdp = torch.repeat_interleave(torch.arange(B, device=device), episodes.to(device))
    if lane_mdp.numel() == 0:
        return
    init_cdf = world.initial.cumsum(-1)
    init_cdf = torch.where(world.state_mask, init_cdf, torch.full_like(init_cdf, 2.0))
    last = (world.n_states - 1)
    init_cdf[torch.arange(B, device=device), last] = 1.0
    u = _uniform(gen, lane_mdp.numel(), init_cdf)
    state = (u[:, None] >= init_cdf[lane_mdp]).sum(-1)
    cdf_rows, succ_rows = cdf.reshape(-1, K), world.successors.reshape(-1, K)
    R_flat = world.R.reshape(-1)
    counts, visits = stats.counts.view(-1), stats.visits.view(-1)
    r_sum, r_sq = stats.reward_sum.view(-1), stats.reward_sq_sum.view(-1)
    terms, entries = stats.terminations.view(-1), stats.terminal_entries.view(-1)
    noisy = observe is not None and bool((observe.noise > 0).any())
    entry_any = observe is not None and bool(observe.use_entry.any())
    table = actor.table
    for t in range(int(world.horizon.max())):
        L = lane_mdp.numel()
        if L == 0:
            break
        action = _act(table, actor.epsilon, lane_mdp, state, t, world.n_actions, gen)
        row = (lane_mdp * S + state) * A + action
        u = _uniform(gen, L, cdf_rows)
        slot = (u[:, None] >= cdf_rows[row]).sum(-1)
        next_state = succ_rows[row].gather(1, slot[:, None]).squeeze(1)
        reward = R_flat[row]
        if entry_any:
            use = observe.use_entry[lane_mdp]
            reward = torch.where(use, world.entry_reward[lane_mdp, next_state], reward)
        if noisy:
            reward = reward + observe.noise[lane_mdp] * torch.randn(
                L, generator=gen, device=device, dtype=dtype)
        done = world.terminal[lane_mdp, next_state]
        ones = torch.ones(L, device=device, dtype=dtype)
        visits.index_add_(0, row, ones)
        counts.index_add_(0, row * K + slot, ones)
        r_sum.index_add_(0, row, reward)
        r_sq.index_add_(0, row, reward * reward)
        if bool(done.any()):
            terms.index_add_(0, row[done], ones[done])
            entries.index_add_(0, (lane_mdp * S + next_state)[done], ones[done])
        if record is not None:
            record.append(Recorded(lane_mdp, state, action, reward, next_state, done))
        alive = ~done & (t + 1 < world.horizon[lane_mdp])
        if not bool(alive.all()):
            keep = alive.nonzero().squeeze(1)
            lane_mdp, next_state = lane_mdp[keep], next_state[keep]
        state = next_state


def _act(table, epsilon, lane_mdp, state, t, n_actions, gen) -> torch.Tensor:
    L = lane_mdp.numel()
    n = n_actions[lane_mdp]

    def uniform():
        u = torch.rand(L, generator=gen, device=lane_mdp.device)
        return torch.minimum((u * n).long(), n - 1)

    if table is None:
        return uniform()
    if table.is_floating_point():                   # (B, S, A) probabilities
        cum = table[lane_mdp, state].cumsum(-1)
        u = torch.rand(L, generator=gen, device=lane_mdp.device, dtype=cum.dtype)
        action = torch.minimum((u[:, None] * cum[:, -1:] >= cum).sum(-1), n - 1)
    elif table.dim() == 3:                          # (B, Hmax, S) actions per step
        action = table[lane_mdp, t, state]
    else:                                           # (B, S) stationary actions
        action = table[lane_mdp, state]
    if epsilon is not None:
        explore = torch.rand(L, generator=gen, device=lane_mdp.device) < epsilon[lane_mdp]
        action = torch.where(explore, uniform(), action)
    return action


def run_learners(world: MDPBatch, stats: StatsBatch, episodes: torch.Tensor, actor: Actor,
                 plan: Callable[[torch.Tensor], torch.Tensor], gen: torch.Generator, *,
                 adaptive: torch.Tensor, replan_every: torch.Tensor,
                 replan_growth: torch.Tensor, observe: Observations | None = None,
                 record: list | None = None) -> None:
    """B behaviours in lockstep rounds, adding their data to `stats`. `actor.table` holds
    (B, Hmax, S) actions. A row that is not `adaptive` runs all its episodes in the first round
    under its table; before every round, `plan(rows)` gives new tables (len(rows), H, S) for
    the adaptive rows still running (from their statistic, `stats.select(rows)`), and each of
    them runs one episode, or, once it has run `replan_every` episodes, ceil(replan_growth *
    episodes so far): all B share each round, so the whole batch costs one simulation and one
    plan per round."""
    cdf = world.cdf()
    done = torch.zeros_like(episodes)
    table = actor.table
    while True:
        running = done < episodes
        if not bool(running.any()):
            return
        rows = (running & adaptive).nonzero().squeeze(1)
        if rows.numel():
            new = plan(rows)
            table[rows, :new.shape[1]] = new
        grown = torch.ceil(replan_growth * done).long().clamp_min(1)
        batch = torch.where(adaptive, torch.where(done < replan_every, torch.ones_like(done),
                                                  grown), episodes)
        batch = torch.minimum(batch, episodes - done)
        simulate(world, stats, batch, Actor(table, actor.epsilon), gen, observe, cdf, record)
        done = done + batch


# ---- learners that make training contexts --------------------------------------------------
def observed_reward_range(stats: StatsBatch, lo: torch.Tensor, hi: torch.Tensor):
    """(lo, hi) (B,) widened to every observed mean reward R̂(s, a)."""
    visited = stats.visits > 0
    r = stats.mean_reward
    lo = torch.minimum(lo, r.masked_fill(~visited, torch.inf).amin((1, 2)))
    hi = torch.maximum(hi, r.masked_fill(~visited, -torch.inf).amax((1, 2)))
    return lo, hi


@dataclass
class PlanningProblem:
    """The inputs of one `planning.backward_induction` for B MDPs (bounds lo, hi per MDP),
    so that the problems of different learners can be solved in one call (`greedy`)."""

    successors: torch.Tensor
    probs: torch.Tensor
    R: torch.Tensor
    horizon: torch.Tensor
    action_mask: torch.Tensor
    bonus: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    terminal: torch.Tensor
    tie_noise: torch.Tensor

    @staticmethod
    def greedy(problems: list[PlanningProblem]) -> torch.Tensor:
        """Greedy actions (sum of B, Hmax, S) of all the problems, solved together."""
        p = problems[0] if len(problems) == 1 else PlanningProblem(
            **{f.name: torch.cat([getattr(q, f.name) for q in problems]) for f in fields(problems[0])})
        return backward_induction(p.successors, p.probs, p.R, p.horizon, action_mask=p.action_mask,
                                  bonus=p.bonus, bounds=(p.lo, p.hi), terminal=p.terminal,
                                  greedy_actions=True, tie_noise=p.tie_noise).actions


def _action_mask(stats: StatsBatch) -> torch.Tensor:
    A = stats.visits.shape[2]
    return torch.arange(A, device=stats.visits.device) < stats.n_actions[:, None]


def optimistic_problem(stats: StatsBatch, horizon: torch.Tensor, bonus_scale: torch.Tensor,
                       known_lo: torch.Tensor, known_hi: torch.Tensor,
                       gen: torch.Generator) -> PlanningProblem:
    """The plan of an optimistic certainty-equivalent learner (compact UCB-VI): backward
    induction on (P̂, R̂ + bonus), bonus = c * span / sqrt(N(s, a)), values capped at what
    (H - h) steps of the best reward plus bonus can give (untried pairs are worth that cap),
    states seen to terminate worth 0. The reward range [r_lo, r_hi] is the `known` one (as
    UCB-VI knows its rewards lie in [0, 1]) widened by the observed mean rewards; span =
    r_hi - r_lo (or |r_hi|, or 1, where that is 0). Ties are broken at random."""
    r_lo, r_hi = observed_reward_range(stats, known_lo, known_hi)
    span = torch.where(r_hi > r_lo, r_hi - r_lo,
                       torch.where(r_hi != 0, r_hi.abs(), torch.ones_like(r_hi)))
    successors, probs, R = stats.empirical()
    n = stats.visits
    c = (bonus_scale * span).view(-1, 1, 1)
    bonus = torch.where(n > 0, c / n.clamp_min(1.0).sqrt(), torch.full_like(n, torch.inf))
    per_step = r_hi + bonus_scale * span
    tie = torch.rand(R.shape, generator=gen, device=R.device, dtype=R.dtype) * 1e-9 * \
        span.view(-1, 1, 1)
    return PlanningProblem(successors, probs, R, horizon, _action_mask(stats), bonus,
                           torch.full_like(per_step, -torch.inf), per_step,
                           stats.observed_terminal, tie)


def posterior_problem(stats: StatsBatch, horizon: torch.Tensor, gen: torch.Generator,
                      prior_strength: float = 1.0) -> PlanningProblem:
    """The plan of PSRL: one MDP drawn from the posterior of the `psrl` agent: transitions
    Dirichlet(prior_strength / S + N(s, a, .)), mean rewards Normal with one prior observation
    at the middle of the reward range ([0, 1] widened to the observed mean rewards), states
    observed as terminal worth 0.

    The Dirichlet is drawn exactly on the slots (the next states the statistic counts); for the
    states outside them, their total mass Gamma(prior_strength * (S - slots) / S) goes to one
    uniformly random state, where the exact posterior would split it further (with a prior worth
    one imaginary transition it is nearly always concentrated on one state anyway)."""
    B, S, A, _ = stats.counts.shape
    device, dtype = stats.counts.device, stats.counts.dtype
    n_states = stats.n_states.view(B, 1, 1)
    alpha = prior_strength / n_states.to(dtype)
    tiny = torch.finfo(dtype).tiny
    g = torch._standard_gamma((stats.counts + alpha[..., None]).clamp_min(tiny),
                              generator=gen) * stats.slots
    outside = (n_states - stats.slots.sum(-1)).clamp_min(0).to(dtype)
    g_out = torch._standard_gamma((alpha * outside).clamp_min(tiny), generator=gen) * (outside > 0)
    u = torch.rand(B, S, A, generator=gen, device=device, dtype=dtype)
    anywhere = torch.minimum((u * n_states).long(), n_states - 1)
    total = g.sum(-1) + g_out
    g_out = torch.where(total > 0, g_out, torch.ones_like(g_out))   # all variates underflowed
    successors = torch.cat([stats.successors, anywhere[..., None]], -1)
    probs = torch.cat([g, g_out[..., None]], -1) / (g.sum(-1) + g_out)[..., None]
    zero = torch.zeros(B, device=device, dtype=dtype)
    lo, hi = observed_reward_range(stats, zero, zero + 1.0)
    mu0, sigma = ((lo + hi) / 2).view(B, 1, 1), ((hi - lo) / 2).view(B, 1, 1)
    precision = 1.0 + stats.visits
    R = (mu0 + stats.reward_sum) / precision + sigma / precision.sqrt() * torch.randn(
        B, S, A, generator=gen, device=device, dtype=dtype)
    inf = torch.full((B,), torch.inf, device=device, dtype=dtype)
    return PlanningProblem(successors, probs, R, horizon, _action_mask(stats),
                           torch.zeros_like(R), -inf, inf, stats.observed_terminal,
                           torch.zeros_like(R))
