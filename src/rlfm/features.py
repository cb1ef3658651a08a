"""From a sufficient statistic to the model's input graph: all preprocessing lives here, and
the same function serves training (a batch made by the batched world) and inference (a batch of
one `Statistics`), so the two cannot drift apart.

Every (s, a) pair is a node (S*A of them, visited or not) and every *observed* transition
(s, a) -> s' is an edge, so memory grows with S*A plus the distinct transitions observed, never
with S*A*S. Statistics are packed into one batch by concatenating nodes and offsetting indices
(as PyTorch Geometric does), which lets MDPs of any size share a batch with no padding.

Features are invariant to the reward scale (rewards divided by a per-MDP scale) and, as
deterministic functions of the statistic, remain "in context". Besides counts and moments they
include two plans computed from the statistic itself — the certainty-equivalent Q and an
optimistic Q with a count bonus — which let the network start from value iteration rather than
having to learn it (without them, a network of this kind did not learn to plan). Each plan
enters as a value, a within-state advantage, and an action gap in units of the plan's span over
the whole MDP: the policy targets' temperature is a fraction of span(Q*), a global quantity that
no node could otherwise see.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch

from rlfm.planning import Edges, backward_induction
from rlfm.stats import Statistics
from rlfm.world import StatsBatch, normalised_score, per_mdp_max, per_mdp_min, segment_sum

SA_FEATURES = 14
CE_GAP = 12  # index of the CE plan's action gap in units of its span over the MDP
STATE_FEATURES = 6
EDGE_FEATURES = 2
PLANNING_HORIZON_CAP = 1000  # the in-context plans look at most this many steps ahead


@dataclass
class GraphBatch:
    """One or more MDP statistics packed as a graph (tensors; indices are global in the batch).

    sa_x (N_sa, SA_FEATURES), sa_state (N_sa,): the state node of each (s, a) node;
    state_x (N_s, STATE_FEATURES), state_graph (N_s,): the MDP each state belongs to;
    edge_sa, edge_next (E,): observed transitions (s, a) -> s'; edge_log_p (E,): log P̂(s'|s,a);
    edge_x (E, EDGE_FEATURES); graph_states, graph_actions (G,): S and A of each MDP;
    graph_horizon (G,): the task's horizon; reward_scale (G,): the unit of the reward features
    (the largest |R̂| observed, or 1).
    Optional training targets: policy_target (N_sa,), value_target (N_s,), q_target (N_sa,):
    the true Q*_0, state_terminal (N_s,) (the true terminal states, left out of the policy
    loss), the family of each MDP, and the true MDPs themselves (`TrueMDP`).
    """

    sa_x: torch.Tensor
    sa_state: torch.Tensor
    state_x: torch.Tensor
    state_graph: torch.Tensor
    edge_sa: torch.Tensor
    edge_next: torch.Tensor
    edge_log_p: torch.Tensor
    edge_x: torch.Tensor
    graph_states: torch.Tensor
    graph_actions: torch.Tensor
    graph_horizon: torch.Tensor
    reward_scale: torch.Tensor
    policy_target: torch.Tensor | None = None
    value_target: torch.Tensor | None = None
    q_target: torch.Tensor | None = None
    state_terminal: torch.Tensor | None = None
    families: tuple[str, ...] = ()
    true_mdp: TrueMDP | None = None

    @property
    def n_states(self) -> int:
        return self.state_x.shape[0]

    @property
    def n_graphs(self) -> int:
        return self.graph_states.shape[0]

    def to(self, device=None, dtype: torch.dtype | None = None) -> GraphBatch:
        """Move to `device`; cast the floating-point tensors to `dtype` (indices stay int64)."""
        return _map_tensors(self, lambda x: x.to(device, dtype) if (
            dtype is not None and x.is_floating_point()) else x.to(device))

    def select(self, graphs: torch.Tensor) -> GraphBatch:
        """The batch of the graphs `graphs` alone (in their order in this batch)."""
        keep = {"graph": torch.zeros(self.n_graphs, dtype=torch.bool, device=self.sa_x.device)}
        keep["graph"][graphs] = True
        keep["state"] = keep["graph"][self.state_graph]
        keep["sa"] = keep["state"][self.sa_state]
        keep["edge"] = keep["sa"][self.edge_sa]
        if self.true_mdp is not None:
            keep["true_edge"] = keep["sa"][self.true_mdp.edge_sa]
        renumber = {kind: keep[kind].cumsum(0) - 1 for kind in ("graph", "state", "sa")}

        def pick(name, x, kind):
            if x is None:
                return None
            if kind == "graph" and not isinstance(x, torch.Tensor):    # families
                return tuple(f for f, k in zip(x, keep["graph"].tolist(), strict=False) if k)
            x = x[keep[kind]]
            return renumber[_INDEXES[name]][x] if name in _INDEXES else x
        return _rebuild(self, pick)

    def split(self, parts: int) -> list[GraphBatch]:
        """`parts` batches of every `parts`-th graph (a world batch holds its MDPs grouped by
        size; striding gives every part the whole range of sizes)."""
        if parts == 1:
            return [self]
        index = torch.arange(self.n_graphs, device=self.sa_x.device)
        return [self.select(index[j::parts]) for j in range(parts)]

    def action_slots(self) -> tuple[torch.Tensor, int]:
        """Where each (s, a) node sits in a padded (N_s, A) table: (slot (N_sa,) = s * A + a,
        A = the most actions of any graph)."""
        A = int(self.graph_actions.max())
        per_state = self.graph_actions[self.state_graph]
        first = per_state.cumsum(0) - per_state
        local = torch.arange(self.sa_x.shape[0], device=self.sa_x.device) - first[self.sa_state]
        return self.sa_state * A + local, A

    def greedy(self, logits: torch.Tensor) -> torch.Tensor:
        """The deterministic policy (N_sa,) that takes each state's highest-scoring action
        (the lowest-numbered among exact ties), as action probabilities per node."""
        slot, A = self.action_slots()
        table = logits.new_full((self.n_states * A,), -torch.inf).index_copy(0, slot, logits)
        best = table.view(self.n_states, A).argmax(-1)
        return (slot == self.sa_state * A + best[self.sa_state]).to(logits.dtype)

    def true_return(self, policy: torch.Tensor) -> torch.Tensor:
        """J(pi) (G,): the exact expected return in each true MDP of the stationary policy of
        action probabilities `policy` (N_sa,), by the planning kernel; differentiable in it."""
        true = self.true_mdp
        if true is None:
            raise ValueError("this batch carries no true MDPs")
        slot, A = self.action_slots()
        table = lambda x: x.new_zeros(self.n_states * A).index_copy(  # noqa: E731
            0, slot, x).view(self.n_states, A)
        plan = backward_induction(Edges(slot[true.edge_sa], true.edge_next, true.edge_p), None,
                                  table(true.reward.to(policy.dtype)), self.state_graph,
                                  true.horizon, gamma=true.gamma.to(policy.dtype),
                                  policy=table(policy))
        return segment_sum(true.initial.to(policy.dtype) * plan.v, self.state_graph,
                           self.n_graphs)

    def true_score(self, policy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised exact scores (J - J_uniform) / (J* - J_uniform) (G,) of `policy`, and
        which graphs have a score (where every policy is optimal, none does: it is set to 1)."""
        true = self.true_mdp
        J = self.true_return(policy)
        return normalised_score(J, true.optimal_return.to(J.dtype),
                                true.uniform_return.to(J.dtype))

    @classmethod
    def concatenate(cls, graphs: list[GraphBatch]) -> GraphBatch:
        """One packed batch from several (every index offset)."""
        if len(graphs) == 1:
            return graphs[0]
        offsets = {"sa": 0, "state": 0, "graph": 0}
        shifted = []
        for g in graphs:
            shifted.append(_rebuild(g, lambda name, x, kind, o=dict(offsets): x + o[
                _INDEXES[name]] if name in _INDEXES and x is not None else x))
            offsets["sa"] += g.sa_x.shape[0]
            offsets["state"] += g.state_x.shape[0]
            offsets["graph"] += g.n_graphs

        def join(name, x, kind):
            xs = [_field(g, name) for g in shifted]
            if any(y is None for y in xs):
                return None
            return torch.cat(xs) if isinstance(xs[0], torch.Tensor) else \
                tuple(f for y in xs for f in y)
        return _rebuild(graphs[0], join)


@dataclass
class TrueMDP:
    """The true MDP behind each graph of a training batch, on the graph's own nodes, for losses
    that score the network's policy exactly (`rlfm.train.return_loss`).

    edge_sa, edge_next, edge_p (E,): every non-zero P(s'|s, a) of the true MDP, by (s, a) node;
    reward (N_sa,): R(s, a); initial (N_s,): the start distribution; horizon, gamma (G,);
    optimal_return, uniform_return (G,): J of an optimal and of the uniform policy."""

    edge_sa: torch.Tensor
    edge_next: torch.Tensor
    edge_p: torch.Tensor
    reward: torch.Tensor
    initial: torch.Tensor
    horizon: torch.Tensor
    gamma: torch.Tensor
    optimal_return: torch.Tensor
    uniform_return: torch.Tensor


# What each field of a GraphBatch (and of its TrueMDP, by the name true_mdp.NAME) is indexed
# by, and which kind of node the index fields point to: select and concatenate follow them.
_KINDS = {"sa_x": "sa", "sa_state": "sa", "state_x": "state", "state_graph": "state",
          "edge_sa": "edge", "edge_next": "edge", "edge_log_p": "edge", "edge_x": "edge",
          "graph_states": "graph", "graph_actions": "graph", "graph_horizon": "graph",
          "reward_scale": "graph", "policy_target": "sa", "q_target": "sa",
          "value_target": "state", "state_terminal": "state", "families": "graph",
          "true_mdp.edge_sa": "true_edge", "true_mdp.edge_next": "true_edge",
          "true_mdp.edge_p": "true_edge", "true_mdp.reward": "sa", "true_mdp.initial": "state",
          "true_mdp.horizon": "graph", "true_mdp.gamma": "graph",
          "true_mdp.optimal_return": "graph", "true_mdp.uniform_return": "graph"}
_INDEXES = {"sa_state": "state", "state_graph": "graph", "edge_sa": "sa", "edge_next": "state",
            "true_mdp.edge_sa": "sa", "true_mdp.edge_next": "state"}


def _field(g: GraphBatch, name: str):
    if name.startswith("true_mdp."):
        return None if g.true_mdp is None else getattr(g.true_mdp, name.split(".")[1])
    return getattr(g, name)


def _rebuild(g: GraphBatch, fn) -> GraphBatch:
    """A GraphBatch whose every field is fn(name, value, kind) of `g`'s."""
    out = {f.name: fn(f.name, getattr(g, f.name), _KINDS[f.name])
           for f in fields(GraphBatch) if f.name != "true_mdp"}
    if g.true_mdp is not None:
        out["true_mdp"] = TrueMDP(**{
            f.name: fn(f"true_mdp.{f.name}", getattr(g.true_mdp, f.name),
                       _KINDS[f"true_mdp.{f.name}"]) for f in fields(TrueMDP)})
    return GraphBatch(**out)


def _map_tensors(g: GraphBatch, fn) -> GraphBatch:
    return _rebuild(g, lambda name, x, kind: fn(x) if isinstance(x, torch.Tensor) else x)


def encode_statistics(stats: Statistics, horizon: int | Sequence[int], device=None) -> GraphBatch:
    """The graph of one statistic, for a task of `horizon` steps (a batch of one); given several
    horizons, one graph of the same statistic for each."""
    horizons = [int(h) for h in np.atleast_1d(horizon)]
    if not horizons or min(horizons) < 1:
        raise ValueError(f"every horizon must be at least 1, got {horizon}")
    return encode(StatsBatch.from_statistics([stats] * len(horizons), device),
                  torch.tensor(horizons))


def encode(stats: StatsBatch, horizon: torch.Tensor) -> GraphBatch:
    """The graphs of a packed batch of statistics, for tasks of `horizon` (B,) steps."""
    N, A, _ = stats.counts.shape
    B = stats.batch_size
    dtype, device = stats.counts.dtype, stats.counts.device
    horizon = horizon.to(device)
    mdp = stats.state_mdp
    valid = stats.action_mask
    n = stats.visits
    visited = n > 0
    r_hat = stats.mean_reward

    def mdp_max(x, where):   # max over the (s, a) of each MDP where `where` (-inf if none)
        return per_mdp_max(x, where, mdp, B)

    def mdp_min(x, where):
        return per_mdp_min(x, where, mdp, B)

    # reward scale: the largest |R̂| of a visited pair (1 with no data or all zero)
    scale = mdp_max(r_hat.abs(), visited)
    any_visit = torch.isfinite(scale)
    scale = torch.where(any_visit & (scale > 1e-12), scale, torch.ones_like(scale))
    H_plan = horizon.clamp_max(PLANNING_HORIZON_CAP)
    value_scale = H_plan.to(dtype) * scale
    zero = torch.zeros_like(scale)
    r_hi = torch.where(any_visit, mdp_max(r_hat, visited), zero).clamp_min(0) + scale
    r_lo = torch.where(any_visit, mdp_min(r_hat, visited), zero).clamp_max(0)
    bonus = torch.where(visited, scale[mdp, None] / n.clamp_min(1.0).sqrt(),
                        torch.full_like(n, torch.inf))
    q_ce, q_opt = in_context_plans(stats, H_plan, bonus, r_lo, r_hi)
    tiny = (1e-9 * value_scale)[mdp, None]

    def advantage(q):  # (Q - max_a Q) / spread of the state's Q: 0 for the best action, in [-1, 0]
        top = q.masked_fill(~valid, -torch.inf).amax(-1, keepdim=True)
        spread = top - q.masked_fill(~valid, torch.inf).amin(-1, keepdim=True)
        return (q - top) / torch.maximum(spread, tiny)

    def gap(q):  # (Q - max_a Q) / span of Q over the whole MDP: the policy target's own units
        top = q.masked_fill(~valid, -torch.inf).amax(-1, keepdim=True)
        span = (mdp_max(q, valid) - mdp_min(q, valid))[mdp, None]
        return (q - top) / torch.maximum(span, tiny)

    state_visits = n.sum(-1, keepdim=True)
    per_state = lambda x: x.to(dtype)[mdp, None]  # noqa: E731
    sa_x = torch.stack([
        n.log1p() / 5.0,
        (~visited).to(dtype),
        r_hat / per_state(scale),
        stats.reward_std / per_state(scale),
        stats.terminations / n.clamp_min(1.0),
        q_ce / per_state(value_scale),
        advantage(q_ce),
        q_opt / per_state(value_scale),
        advantage(q_opt),
        n / state_visits.clamp_min(1.0),                 # share of the state's visits
        (state_visits.log1p() / 5.0).expand(N, A),
        (per_state(horizon).log() / 5.0).expand(N, A),
        gap(q_ce),
        gap(q_opt),
    ], -1)
    state_x = torch.stack([
        stats.observed_terminal.to(dtype),
        state_visits[:, 0].log1p() / 5.0,
        q_ce.masked_fill(~valid, -torch.inf).amax(-1) / per_state(value_scale)[:, 0],
        q_opt.masked_fill(~valid, -torch.inf).amax(-1) / per_state(value_scale)[:, 0],
        (per_state(stats.n_states)[:, 0] + 1).log() / 5.0,
        per_state(stats.n_actions)[:, 0].log() / 2.0,
    ], -1)

    # packing: nodes in (state, action) order, as `collate` lays them out
    sa_id = valid.flatten().cumsum(0).view(N, A) - 1
    s, a, k = (stats.counts > 0).nonzero(as_tuple=True)
    count = stats.counts[s, a, k]
    log_p = (count / n[s, a]).log()
    return GraphBatch(
        sa_x=sa_x[valid].float(),
        sa_state=torch.arange(N, device=device)[:, None].expand(N, A)[valid],
        state_x=state_x.float(),
        state_graph=mdp.clone(),
        edge_sa=sa_id[s, a],
        edge_next=stats.successors[s, a, k],
        edge_log_p=log_p.float(),
        edge_x=torch.stack([log_p, count.log1p() / 5.0], -1).float(),
        graph_states=stats.n_states.clone(),
        graph_actions=stats.n_actions.clone(),
        graph_horizon=horizon.clone(),
        reward_scale=scale.float(),
    )


def in_context_plans(stats: StatsBatch, horizon: torch.Tensor, bonus: torch.Tensor,
                     r_lo: torch.Tensor, r_hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Q_0 (N, A) of two plans on the empirical model of `stats` over `horizon` (B,) steps:
    certainty-equivalent backward induction, and an optimistic one with `bonus` (N, A; inf
    for unvisited pairs), values bounded by what (H - h) steps of rewards in [r_lo, r_hi] (B,)
    can give and states observed as terminal worth 0. Both are solved in one kernel call (the
    CE plan as a plan with no bonus and no bounds; its terminal states are absorbing with zero
    reward anyway): half the operations for one statistic."""
    N, B = stats.n_total_states, stats.batch_size
    successors, probs, R = stats.empirical()
    two = lambda x, y=None: torch.cat([x, x if y is None else y])  # noqa: E731
    inf = torch.full_like(r_lo, torch.inf)
    q = backward_induction(two(successors, successors + N), two(probs), two(R),
                           two(stats.state_mdp, stats.state_mdp + B), two(horizon),
                           action_mask=two(stats.action_mask),
                           bonus=two(torch.zeros_like(bonus), bonus),
                           bounds=(two(-inf, r_lo), two(inf, r_hi)),
                           terminal=two(stats.observed_terminal)).q
    return q[:N], q[N:]

