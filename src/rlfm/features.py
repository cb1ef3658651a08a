"""From a sufficient statistic to the model's input graph: all preprocessing lives here.

Every (s, a) pair is a node (S*A of them, visited or not) and every *observed* transition
(s, a) -> s' is an edge, so memory grows with S*A plus the distinct transitions observed, never
with S*A*S. Several statistics are packed into one batch by concatenating nodes and offsetting
indices (as PyTorch Geometric does), which lets MDPs of any size share a batch with no padding.

Features are invariant to the reward scale (rewards divided by a per-MDP scale) and, as
deterministic functions of the statistic, remain "in context". Besides counts and moments they
include two plans computed from the statistic itself — the certainty-equivalent Q and an
optimistic Q with a count bonus — which let the network start from value iteration rather than
having to learn it (SPEC §7: without them, the network did not learn to plan). Each plan enters
as a value, a within-state advantage, and an action gap in units of the plan's span over the
whole MDP: the policy targets' temperature is a fraction of span(Q*), a global quantity that no
node could otherwise see.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from rlfm.mdp import TabularMDP
from rlfm.planning import backward_induction
from rlfm.stats import Statistics
from rlfm.world import StatsBatch

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
    edge_x (E, EDGE_FEATURES); graph_states, graph_actions (G,): S and A of each MDP.
    Optional training targets: policy_target (N_sa,), value_target (N_s,), state_terminal (N_s,)
    (the true terminal states, left out of the policy loss), and the family of each MDP.
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
    policy_target: torch.Tensor | None = None
    value_target: torch.Tensor | None = None
    state_terminal: torch.Tensor | None = None
    families: tuple[str, ...] = ()

    @property
    def n_states(self) -> int:
        return self.state_x.shape[0]

    @property
    def n_graphs(self) -> int:
        return self.graph_states.shape[0]

    def to(self, device=None, dtype: torch.dtype | None = None) -> GraphBatch:
        """Move to `device`; cast the floating-point tensors to `dtype` (indices stay int64)."""
        def move(x):
            if not isinstance(x, torch.Tensor):
                return x
            return x.to(device, dtype) if (dtype is not None and x.is_floating_point()) \
                else x.to(device)
        return GraphBatch(**{f.name: move(getattr(self, f.name)) for f in fields(self)})


@dataclass
class Encoded:
    """One statistic's graph as numpy arrays (what data workers produce; cheap to pickle)."""

    sa_x: np.ndarray
    state_x: np.ndarray
    edge_sa: np.ndarray
    edge_next: np.ndarray
    edge_log_p: np.ndarray
    edge_x: np.ndarray
    n_states: int
    n_actions: int
    policy_target: np.ndarray | None = None
    value_target: np.ndarray | None = None
    state_terminal: np.ndarray | None = None
    family: str = ""


def reward_scale(stats: Statistics) -> float:
    """The scale rewards are divided by: the largest |R̂| of a visited pair (1 with no data)."""
    visited = stats.visits > 0
    if not visited.any():
        return 1.0
    scale = float(np.abs(stats.mean_reward[visited]).max())
    return scale if scale > 1e-12 else 1.0


def first_step_plans(model: TabularMDP, bonus: np.ndarray, r_lo: float,
                     r_hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Q_0 of two plans on the empirical `model`: certainty-equivalent backward induction, and
    the optimistic one of `bounded_backward_induction` with a count `bonus` (inf for unvisited
    pairs) and values bounded by what an (H - h)-step return can reach. The same numbers as
    those two solvers' Q[0], computed together (one expectation per step for both, no (H, S, A)
    arrays), since the featurisation runs at every call of the network."""
    H = model.horizon
    V = np.zeros((model.n_states, 2))
    for h in range(H - 1, -1, -1):
        q = model.expect(V)                                   # (S, A, 2)
        q[..., 0] = model.R + model.gamma * q[..., 0]
        q[..., 1] = np.clip(model.R + bonus + q[..., 1], (H - h) * r_lo, (H - h) * r_hi)
        q[model.terminal, :, 1] = 0.0
        V = _max_over_actions(q)
    return q[..., 0], q[..., 1]


def _max_over_actions(q: np.ndarray) -> np.ndarray:
    """q.max(axis=1), as A - 1 element-wise maxima: several times faster than numpy's reduction
    over a short middle axis, and this runs H times per call of the network."""
    v = q[:, 0].copy()
    for a in range(1, q.shape[1]):
        np.maximum(v, q[:, a], out=v)
    return v


def encode(stats: Statistics, horizon: int) -> Encoded:
    """The graph of one statistic, for a task of `horizon` steps."""
    S, A = stats.n_states, stats.n_actions
    H = int(horizon)
    scale = reward_scale(stats)
    n = stats.visits.astype(float)
    visited = n > 0
    value_scale = min(H, PLANNING_HORIZON_CAP) * scale

    model = stats.empirical_mdp(min(H, PLANNING_HORIZON_CAP))
    r_hi = max(float(stats.mean_reward[visited].max()) if visited.any() else 0.0, 0.0) + scale
    r_lo = min(float(stats.mean_reward[visited].min()) if visited.any() else 0.0, 0.0)
    bonus = np.where(visited, scale / np.sqrt(np.maximum(n, 1.0)), np.inf)
    q_ce, q_opt = first_step_plans(model, bonus, r_lo, r_hi)

    def advantage(q):  # (Q - max_a Q) / spread of the state's Q: 0 for the best action, in [-1, 0]
        spread = q.max(1, keepdims=True) - q.min(1, keepdims=True)
        return (q - q.max(1, keepdims=True)) / np.maximum(spread, 1e-9 * value_scale)

    def gap(q):  # (Q - max_a Q) / span of Q over the whole MDP: the policy target's own units
        return (q - q.max(1, keepdims=True)) / max(float(q.max() - q.min()), 1e-9 * value_scale)

    state_visits = n.sum(1, keepdims=True)
    log_h = np.log(H) / 5.0
    sa_x = np.stack([
        np.log1p(n) / 5.0,
        (~visited).astype(float),
        stats.mean_reward / scale,
        stats.reward_std / scale,
        stats.terminations / np.maximum(n, 1.0),
        q_ce / value_scale,
        advantage(q_ce),
        q_opt / value_scale,
        advantage(q_opt),
        n / np.maximum(state_visits, 1.0),                 # share of the state's visits
        np.broadcast_to(np.log1p(state_visits) / 5.0, (S, A)),
        np.full((S, A), log_h),
        gap(q_ce),
        gap(q_opt),
    ], axis=-1).reshape(S * A, SA_FEATURES)

    state_x = np.stack([
        stats.observed_terminal.astype(float),
        np.log1p(state_visits[:, 0]) / 5.0,
        q_ce.max(1) / value_scale,
        q_opt.max(1) / value_scale,
        np.full(S, np.log(S + 1) / 5.0),
        np.full(S, np.log(A) / 2.0),
    ], axis=-1)

    rows, cols, counts = stats.transition_triplets()
    log_p = np.log(counts / n.ravel()[rows])
    edge_x = np.stack([log_p, np.log1p(counts) / 5.0], axis=-1)
    return Encoded(sa_x=sa_x.astype(np.float32), state_x=state_x.astype(np.float32),
                   edge_sa=rows.astype(np.int64), edge_next=cols.astype(np.int64),
                   edge_log_p=log_p.astype(np.float32), edge_x=edge_x.astype(np.float32),
                   n_states=S, n_actions=A)


def collate(items: list[Encoded]) -> GraphBatch:
    """Pack encoded statistics into one GraphBatch (offsetting every index)."""
    state_offsets = np.cumsum([0] + [it.n_states for it in items])
    sa_offsets = np.cumsum([0] + [it.n_states * it.n_actions for it in items])
    cat = np.concatenate
    sa_state = cat([np.repeat(np.arange(it.n_states), it.n_actions) + state_offsets[i]
                    for i, it in enumerate(items)])
    batch = GraphBatch(
        sa_x=torch.from_numpy(cat([it.sa_x for it in items])),
        sa_state=torch.from_numpy(sa_state),
        state_x=torch.from_numpy(cat([it.state_x for it in items])),
        state_graph=torch.from_numpy(cat([np.full(it.n_states, i) for i, it in enumerate(items)])),
        edge_sa=torch.from_numpy(cat([it.edge_sa + sa_offsets[i] for i, it in enumerate(items)])),
        edge_next=torch.from_numpy(cat([it.edge_next + state_offsets[i]
                                        for i, it in enumerate(items)])),
        edge_log_p=torch.from_numpy(cat([it.edge_log_p for it in items])),
        edge_x=torch.from_numpy(cat([it.edge_x for it in items])),
        graph_states=torch.tensor([it.n_states for it in items]),
        graph_actions=torch.tensor([it.n_actions for it in items]),
    )
    if items and all(it.policy_target is not None for it in items):
        batch.policy_target = torch.from_numpy(cat([it.policy_target for it in items]).astype(np.float32))
        batch.value_target = torch.from_numpy(cat([it.value_target for it in items]).astype(np.float32))
        batch.state_terminal = torch.from_numpy(cat([it.state_terminal for it in items]).astype(bool))
        batch.families = tuple(it.family for it in items)
    return batch


# ---- batched featurisation ---------------------------------------------------------------------
def _masked_max(x: torch.Tensor, mask: torch.Tensor, dims) -> torch.Tensor:
    return x.masked_fill(~mask, -torch.inf).amax(dims)


def _masked_min(x: torch.Tensor, mask: torch.Tensor, dims) -> torch.Tensor:
    return x.masked_fill(~mask, torch.inf).amin(dims)


def encode_batch(stats: StatsBatch, horizon: torch.Tensor) -> GraphBatch:
    """The graphs of a batch of statistics (tasks of `horizon` (B,) steps), packed."""
    B, S, A, _ = stats.counts.shape
    dtype, device = stats.counts.dtype, stats.counts.device
    horizon = horizon.to(device)
    state_mask = torch.arange(S, device=device) < stats.n_states[:, None]
    action_mask = torch.arange(A, device=device) < stats.n_actions[:, None]
    valid = state_mask[:, :, None] & action_mask[:, None, :]
    n = stats.visits
    visited = n > 0
    any_visit = visited.flatten(1).any(-1)
    r_hat = stats.mean_reward
    # reward scale: the largest |R̂| of a visited pair (1 with no data or all zero)
    scale = _masked_max(r_hat.abs(), visited, (1, 2))
    scale = torch.where(any_visit & (scale > 1e-12), scale, torch.ones_like(scale))
    H_plan = horizon.clamp_max(PLANNING_HORIZON_CAP)
    value_scale = (H_plan.to(dtype) * scale).view(B, 1, 1)
    zero = torch.zeros_like(scale)
    r_hi = torch.where(any_visit, _masked_max(r_hat, visited, (1, 2)), zero).clamp_min(0) + scale
    r_lo = torch.where(any_visit, _masked_min(r_hat, visited, (1, 2)), zero).clamp_max(0)
    bonus = torch.where(visited, scale.view(B, 1, 1) / n.clamp_min(1.0).sqrt(),
                        torch.full_like(n, torch.inf))
    # Both plans in one call (the CE plan as a plan with no bonus and no bounds; its terminal
    # states are absorbing with zero reward anyway): half the operations for one statistic.
    successors, probs, R = stats.empirical()
    two = lambda x, y=None: torch.cat([x, x if y is None else y])  # noqa: E731
    inf = torch.full_like(scale, torch.inf)
    q = backward_induction(two(successors), two(probs), two(R), two(H_plan),
                           action_mask=two(action_mask), bonus=two(torch.zeros_like(bonus), bonus),
                           bounds=(two(-inf, r_lo), two(inf, r_hi)),
                           terminal=two(stats.observed_terminal)).q
    q_ce, q_opt = q[:B], q[B:]
    tiny = 1e-9 * value_scale

    def advantage(q):  # (Q - max_a Q) / spread of the state's Q: 0 for the best action, in [-1, 0]
        top = _masked_max(q, valid, -1)[..., None]
        spread = top - _masked_min(q, valid, -1)[..., None]
        return (q - top) / torch.maximum(spread, tiny)

    def gap(q):  # (Q - max_a Q) / span of Q over the whole MDP: the policy target's own units
        top = _masked_max(q, valid, -1)[..., None]
        span = (_masked_max(q, valid, (1, 2)) - _masked_min(q, valid, (1, 2))).view(B, 1, 1)
        return (q - top) / torch.maximum(span, tiny)

    state_visits = n.sum(-1, keepdim=True)
    log_h = (horizon.to(dtype).log() / 5.0).view(B, 1, 1).expand(B, S, A)
    sa_x = torch.stack([
        n.log1p() / 5.0,
        (~visited).to(dtype),
        r_hat / scale.view(B, 1, 1),
        stats.reward_std / scale.view(B, 1, 1),
        stats.terminations / n.clamp_min(1.0),
        q_ce / value_scale,
        advantage(q_ce),
        q_opt / value_scale,
        advantage(q_opt),
        n / state_visits.clamp_min(1.0),                 # share of the state's visits
        (state_visits.log1p() / 5.0).expand(B, S, A),
        log_h,
        gap(q_ce),
        gap(q_opt),
    ], -1)
    n_s = stats.n_states.to(dtype).view(B, 1).expand(B, S)
    n_a = stats.n_actions.to(dtype).view(B, 1).expand(B, S)
    state_x = torch.stack([
        stats.observed_terminal.to(dtype),
        state_visits[..., 0].log1p() / 5.0,
        _masked_max(q_ce, valid, -1) / value_scale[..., 0],
        _masked_max(q_opt, valid, -1) / value_scale[..., 0],
        (n_s + 1).log() / 5.0,
        n_a.log() / 2.0,
    ], -1)

    # packing: nodes in (MDP, state, action) order, as `collate` lays them out
    state_id = state_mask.flatten().cumsum(0).view(B, S) - 1
    sa_id = valid.flatten().cumsum(0).view(B, S, A) - 1
    edges = stats.counts > 0
    b, s, a, k = edges.nonzero(as_tuple=True)
    count = stats.counts[b, s, a, k]
    log_p = (count / n[b, s, a]).log()
    graph = torch.arange(B, device=device)
    return GraphBatch(
        sa_x=sa_x[valid].float(),
        sa_state=state_id[:, :, None].expand(B, S, A)[valid],
        state_x=state_x[state_mask].float(),
        state_graph=graph[:, None].expand(B, S)[state_mask],
        edge_sa=sa_id[b, s, a],
        edge_next=state_id[b, stats.successors[b, s, a, k]],
        edge_log_p=log_p.float(),
        edge_x=torch.stack([log_p, count.log1p() / 5.0], -1).float(),
        graph_states=stats.n_states.clone(),
        graph_actions=stats.n_actions.clone(),
    )
