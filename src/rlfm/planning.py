"""Backward induction over a batch of MDPs: the one planning kernel.

Every finite-horizon plan in rlfm's batched world (the true optimum of a prior MDP, the
in-context plans of the featurisation, the learners that make training contexts, the exact
return of a policy) is this function.

Layout (packed, as PyTorch Geometric packs graphs): the states of all MDPs of a batch are
concatenated, N in all, and `state_mdp` (N,) says which MDP each belongs to. Actions are padded
to A and successors to K per (s, a): `successors` (N, A, K) holds global next-state indices and
`probs` (N, A, K) their probabilities (0 on padding), so memory grows with the non-zero
transitions, never with S*S nor with the largest MDP's S. Where the number of successors varies
widely between pairs (a batch mixing dense and sparse MDPs), the transitions can instead be an
`Edges` list, one entry per non-zero P(s'|s, a), with no padding at all. Padded actions are left out of every
maximum by `action_mask` (N, A).

With t the number of steps to go (t = H - h), one step is

    Q_t(s, a) = R(s, a) + bonus(s, a) + gamma * sum_k probs(s, a, k) V_{t-1}(successors(s, a, k))
    Q_t       = clip(Q_t, t * lo, t * hi)                 (optional value bounds)
    Q_t(s, .) = 0 for s in `terminal`                     (optional)
    V_t(s)    = max_a Q_t(s, a), or sum_a pi_h(a|s) Q_t(s, a) to evaluate a policy pi,

with V_0 = 0. A bonus of +inf (-inf) on a pair with no data becomes the largest (smallest)
value a t-step return can have once clipped (so it needs finite bounds on that side): optimism
and pessimism under one formula. MDPs of different horizons share a batch: the result is always
the first step of each MDP's own episode. The states are solved in order of non-increasing
horizon (as `world.MDPBatch` orders them; others are reordered first), so that at each step only
the MDPs still running, a prefix of the states, are computed.
Differentiable with respect to R, bonus and the policy.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread inside the block: float sums split across threads (the sparse
    product of a plan step among them) depend on their number, so results that must not depend
    on the machine or on the number of worker processes (a training stream, an agent's scores
    for a seed) are computed on one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass
class Plan:
    """q (N, A) and v (N,): Q and V at the first step (h = 0) of every state's MDP.
    actions (N, Hmax): the greedy action of every state at each step h (only when asked for)."""

    q: torch.Tensor
    v: torch.Tensor
    actions: torch.Tensor | None = None


@dataclass
class Edges:
    """Transitions as a list: `row` (E,) = s * A + a, non-decreasing; `next_state` (E,) global
    state indices; `prob` (E,) P(next_state | s, a)."""

    row: torch.Tensor
    next_state: torch.Tensor
    prob: torch.Tensor

    def expectation(self, N: int, A: int, sparse: bool):
        """As `expectation`, for a list: the first n states' edges are a prefix."""
        starts = torch.searchsorted(self.row, torch.arange(N * A + 1, device=self.row.device))
        if sparse:
            return _sparse_expectation(starts, self.next_state, self.prob, N, A)
        ends = starts[::A].tolist()

        def expect(v: torch.Tensor, n: int, add: torch.Tensor | None = None) -> torch.Tensor:
            e = ends[n]
            terms = self.prob[:e] * v.index_select(0, self.next_state[:e])
            start = v.new_zeros(n * A) if add is None else add.clone()
            return start.index_add_(0, self.row[:e], terms).view(n, A)
        return expect

    def reorder(self, order: torch.Tensor, inverse: torch.Tensor, A: int) -> Edges:
        """The same transitions with state `order[i]` renumbered i."""
        row = inverse[self.row // A] * A + self.row % A
        sort = torch.argsort(row, stable=True)
        return Edges(row[sort], inverse[self.next_state[sort]], self.prob[sort])


def expectation(successors: torch.Tensor, probs: torch.Tensor, sparse: bool):
    """A function (v (N,), n, add) -> add + E[v(s') | s, a] (n, A) for the first n states
    (`add` (n * A,), flat, or None: nothing added).

    `sparse` (on CPU, with no gradient asked for): the transitions become a sparse CSR matrix
    (N*A, N), zero probabilities left out, and each step is one sparse matrix-vector product
    with the addition fused in (with a gradient, torch would transpose the matrix again at every
    step of the backward pass, and none flows to a part of its values). Otherwise they
    are stored slot-major, (K, N*A), so that the sum over successors runs over an outer axis (a
    sum over a short last axis is several times slower), the values picked by one
    `index_select` on a flat index. Either way the first n states' part is made once each time
    n changes."""
    N, A, K = successors.shape
    if sparse:
        keep = probs.reshape(N * A, K) != 0
        starts = torch.cat([keep.new_zeros(1, dtype=torch.int64), keep.sum(1).cumsum(0)])
        return _sparse_expectation(starts, successors.reshape(N * A, K)[keep],
                                   probs.reshape(N * A, K)[keep], N, A)
    # contiguous copies: the permuted view has stride 1 along K, which makes the sum slow
    index = successors.permute(2, 0, 1).reshape(K, N * A).contiguous()
    weights = probs.permute(2, 0, 1).reshape(K, N * A).contiguous()
    m, flat, w = N * A, index.view(-1), weights

    def expect(v: torch.Tensor, n: int, add: torch.Tensor | None = None) -> torch.Tensor:
        nonlocal m, flat, w
        if m != n * A:
            m, flat, w = n * A, index[:, :n * A].reshape(-1), weights[:, :n * A]
        q = v.index_select(0, flat).view(K, m).mul_(w).sum(0)
        return (q if add is None else q.add_(add)).view(n, A)
    return expect


def _sparse_expectation(rows: torch.Tensor, columns: torch.Tensor, values: torch.Tensor,
                        N: int, A: int):
    """`expectation` by a sparse CSR matrix (N * A, N): `rows` (N * A + 1,) where each (s, a)'s
    transitions start in `columns` (next states) and `values` (their probabilities)."""
    if N * A < 2**31 and columns.numel() < 2**31:   # 32-bit indices: what the CPU kernel takes
        rows, columns = rows.int(), columns.int()
    ends = rows[::A].tolist()   # where each state's transitions start

    def matrix(n: int) -> torch.Tensor:   # the first n states' rows
        e = ends[n]
        with warnings.catch_warnings():   # torch's note that its sparse CSR support is "beta"
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(rows[:n * A + 1], columns[:e], values[:e],
                                           (n * A, N), check_invariants=False)
    m, P = N, matrix(N)

    def expect(v: torch.Tensor, n: int, add: torch.Tensor | None = None) -> torch.Tensor:
        nonlocal m, P
        if m != n:
            m, P = n, matrix(n)
        return (torch.mv(P, v) if add is None else torch.addmv(add, P, v)).view(n, A)
    return expect


def backward_induction(successors: torch.Tensor | Edges, probs: torch.Tensor | None,
                       R: torch.Tensor,
                       state_mdp: torch.Tensor, horizon: torch.Tensor, *,
                       gamma: torch.Tensor | None = None, action_mask: torch.Tensor | None = None,
                       bonus: torch.Tensor | None = None,
                       bounds: tuple[torch.Tensor, torch.Tensor] | None = None,
                       terminal: torch.Tensor | None = None, policy: torch.Tensor | None = None,
                       greedy_actions: bool = False,
                       tie_noise: torch.Tensor | None = None) -> Plan:
    """Backward induction (see the module docstring) for a packed batch of MDPs.

    Transitions: `successors` (N, A, K) with `probs`, or an `Edges` with probs None.
    state_mdp (N,) int; horizon (B,) int; gamma (B,) or None (1); action_mask (N, A) bool or
    None (all valid); bonus (N, A); bounds (lo, hi), each (B,): per-step reward bounds;
    terminal (N,) bool; policy: None (optimal values), (N, A) stationary or (N, Hmax, A)
    time-dependent action probabilities (zero on padded actions) to evaluate; greedy_actions:
    also return the greedy action of every step (ties to the lowest index, or, given
    `tie_noise` (N, A) in [0, 1), to the tied action of largest noise: uniformly at random).
    """
    edges = successors if isinstance(successors, Edges) else None
    N, A = R.shape
    device = R.device
    if N == 0:
        return Plan(q=R, v=R.new_zeros(0),
                    actions=state_mdp.new_zeros(0, 0) if greedy_actions else None)
    horizon = horizon.to(device)
    if bool((horizon < 1).any()):
        raise ValueError("every horizon must be at least 1")
    h_state = horizon[state_mdp]
    if not bool((h_state[1:] <= h_state[:-1]).all()):
        # Order the states by non-increasing horizon, solve, and put the answer back in order.
        order = torch.argsort(h_state, descending=True, stable=True)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(N, device=device)
        pick = lambda x: None if x is None else x[order]  # noqa: E731
        moved = (edges.reorder(order, inverse, A), None) if edges is not None else \
            (inverse[successors[order]], probs[order])
        plan = backward_induction(
            *moved, R[order], state_mdp[order], horizon,
            gamma=gamma, action_mask=pick(action_mask), bonus=pick(bonus), bounds=bounds,
            terminal=pick(terminal), policy=pick(policy), greedy_actions=greedy_actions,
            tie_noise=pick(tie_noise))
        return Plan(q=plan.q[inverse], v=plan.v[inverse],
                    actions=None if plan.actions is None else plan.actions[inverse])
    H = int(h_state[0])
    # the states whose MDP still runs at t steps to go: a prefix of length active[t]
    steps = torch.arange(H + 2, device=device)
    active = torch.searchsorted(-h_state, -steps, right=True).tolist()
    base = R if bonus is None else R + bonus
    # Few tensor operations per step (at small sizes their launch, not arithmetic, is the
    # cost): the padded actions' mask is negated once, and terminal states, when there are
    # bounds and no gradient is asked for, become bounds of [0, 0], so that one clamp also
    # zeroes them (a clamp passes the gradient of a value lying on its bound: masked_fill
    # does not).
    invalid = None if action_mask is None or bool(action_mask.all()) else ~action_mask
    per_state = lambda x: x.to(R.dtype)[state_mdp].view(N, 1)  # noqa: E731
    if gamma is not None:
        gamma = None if bool((gamma == 1).all()) else per_state(gamma)
    dead = None if terminal is None or not bool(terminal.any()) else terminal.view(N, 1)
    inputs = (R, bonus, policy, gamma, probs, edges.prob if edges is not None else None,
              *(bounds if bounds is not None else ()))
    differentiable = torch.is_grad_enabled() and any(
        isinstance(x, torch.Tensor) and x.requires_grad for x in inputs)
    sparse = device.type == "cpu" and not differentiable
    expect = edges.expectation(N, A, sparse) if edges is not None else \
        expectation(successors, probs, sparse)
    step_bounds = None
    if bounds is not None:
        bounds = torch.stack([per_state(bounds[0]), per_state(bounds[1])])   # (2, N, 1)
        if not differentiable:
            if dead is not None:
                bounds, dead = bounds.masked_fill(dead, 0.0), None
            # t * bounds, accumulated in place at each step (a gradient would need them all),
            # with views of both sides made once: one operation per step
            step_bounds = torch.zeros_like(bounds)
            step_lo, step_hi = step_bounds.unbind(0)
    rows = torch.arange(N, device=device)
    v = R.new_zeros(N)
    finished = []                  # Q_0 of the states whose MDP's horizon is t, t = 1, 2, ...
    actions = step_zero = None
    if greedy_actions:
        actions = state_mdp.new_zeros(N * H)    # flat (N, H)
        step_zero = rows * H + h_state          # where a state's action at step h_state - t is, + t
    base = base.reshape(-1)
    n_was = None
    for t in range(1, H + 1):
        n = active[t]
        if n != n_was:     # the running states changed: their slices, made once
            n_was = n
            cut = (lambda x: x) if n == N else (lambda x, n=n: None if x is None else x[:n])
            add = base[:n * A]
        if gamma is None:    # a new tensor: updated in place from here on
            q = expect(v, n, add)
        else:
            q = expect(v, n).mul_(cut(gamma)).add_(add.view(n, A))
        if bounds is not None:
            if step_bounds is None:
                limits = t * bounds
                q = torch.clamp(q, limits[0, :n], limits[1, :n])
            else:
                step_bounds.add_(bounds)
                q = q.clamp_(step_lo, step_hi) if n == N else q.clamp_(step_lo[:n], step_hi[:n])
        if dead is not None:
            q = q.masked_fill(cut(dead), 0.0)
        if policy is None or actions is not None:   # the best value, for V or the actions
            scored = q if invalid is None else q.masked_fill(cut(invalid), -torch.inf)
            top = scored.amax(-1, keepdim=True)
        if policy is None:
            v_new = top.view(n)
        else:
            pi = cut(policy) if policy.dim() == 2 else \
                policy[rows[:n], (h_state[:n] - t).clamp_min(0)]
            v_new = (pi * q).sum(-1)
        if actions is not None:
            if tie_noise is not None:   # among the exact maximisers, the largest noise
                scored = torch.where(scored == top, cut(tie_noise), -1.0)
            actions.index_copy_(0, step_zero[:n] - t, scored.argmax(-1))
        v = v_new if n == N else torch.cat([v_new, v[n:]])
        if active[t + 1] < n:
            finished.append(q[active[t + 1]:])
    return Plan(q=torch.cat(finished[::-1]), v=v,
                actions=None if actions is None else actions.view(N, H))
