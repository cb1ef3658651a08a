"""Backward induction over a batch of MDPs: the one planning kernel.

Every finite-horizon plan in rlfm (the true optimum of a prior MDP, the in-context plans of the
featurisation, the learners that make training contexts, the exact return of a policy) is this
function. A batch holds B MDPs padded to S states, A actions and K successors per (s, a):
transitions are next-state indices `successors` (B, S, A, K) with their probabilities `probs`
(B, S, A, K; 0 on padding), so memory grows with the non-zero transitions, never with S*S.
Padded actions are left out of the maximum by `action_mask`; padded states are never reached.

With t the number of steps to go (t = H - h), one step is

    Q_t(s, a) = R(s, a) + bonus(s, a) + gamma * sum_k probs(s, a, k) V_{t-1}(successors(s, a, k))
    Q_t       = clip(Q_t, t * lo, t * hi)                 (optional value bounds)
    Q_t(s, .) = 0 for s in `terminal`                     (optional)
    V_t(s)    = max_a Q_t(s, a), or sum_a pi_h(a|s) Q_t(s, a) to evaluate a policy pi,

with V_0 = 0. A bonus of +inf (-inf) on a pair with no data becomes the largest (smallest)
value a t-step return can have once clipped: optimism and pessimism under one formula. MDPs of
different horizons share the batch: the values of an MDP stop changing once t passes its
horizon, so the result is always the first step of each MDP's own episode. Everything is
differentiable with respect to R, bonus and the policy (no in-place operations).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Plan:
    """q (B, S, A) and v (B, S): Q and V at the first step (h = 0) of every MDP.
    actions (B, Hmax, S): the greedy action at each step h (only when asked for)."""

    q: torch.Tensor
    v: torch.Tensor
    actions: torch.Tensor | None = None


def expectation(successors: torch.Tensor, probs: torch.Tensor):
    """A function v (B, S) -> E[v(s') | s, a] (B, S*A) for the transitions of a batch.

    Sparse rows (few successors) gather v at the successors, slot-major so that the sum runs
    over an outer axis (a sum over a short last axis is several times slower on CPU); rows with
    successors for a large share of the states are made into a dense (S*A, S) matrix per MDP
    and use a batched matrix product, which beats gathering there."""
    B, S, A, K = successors.shape
    if K * 4 >= S * 3 and S > 8:
        P = probs.new_zeros(B, S * A, S).scatter_add_(2, successors.reshape(B, S * A, K),
                                                      probs.reshape(B, S * A, K))
        return lambda v: torch.bmm(P, v.unsqueeze(-1)).squeeze(-1)
    index = successors.permute(0, 3, 1, 2).reshape(B, K * S * A)
    weights = probs.permute(0, 3, 1, 2).reshape(B, K, S * A).contiguous()
    if K == 1:
        return lambda v: weights[:, 0] * v.gather(1, index)
    return lambda v: (weights * v.gather(1, index).view(B, K, S * A)).sum(1)


def backward_induction(successors: torch.Tensor, probs: torch.Tensor, R: torch.Tensor,
                       horizon: torch.Tensor, *, gamma: torch.Tensor | None = None,
                       action_mask: torch.Tensor | None = None, bonus: torch.Tensor | None = None,
                       bounds: tuple[torch.Tensor, torch.Tensor] | None = None,
                       terminal: torch.Tensor | None = None, policy: torch.Tensor | None = None,
                       greedy_actions: bool = False,
                       tie_noise: torch.Tensor | None = None) -> Plan:
    """Backward induction (see the module docstring) for B MDPs at once.

    horizon (B,) int; gamma (B,) or None (1); action_mask (B, A) bool or None (all valid);
    bonus (B, S, A); bounds (lo, hi), each (B,): per-step reward bounds; terminal (B, S) bool;
    policy: None (optimal values), (B, S, A) stationary or (B, Hmax, S, A) time-dependent
    action probabilities (zero on padded actions) to evaluate; greedy_actions: also return the
    greedy action of every step (ties to the lowest index, after adding `tie_noise` (B, S, A)).
    """
    B, S, A, _ = successors.shape
    horizon = horizon.to(R.device)
    H = int(horizon.max()) if B else 0
    same_horizon = B == 0 or bool((horizon == H).all())
    expect = expectation(successors, probs)
    base = (R if bonus is None else R + bonus).reshape(B, S * A)
    mask = None if action_mask is None or bool(action_mask.all()) else action_mask[:, None, :]
    if gamma is not None:
        gamma = gamma.to(R.dtype).view(B, 1)
        if bool((gamma == 1).all()):
            gamma = None
    if bounds is not None:
        lo, hi = (b.to(R.dtype).view(B, 1) for b in bounds)
    dead = None
    if terminal is not None and bool(terminal.any()):
        dead = terminal[:, :, None].expand(B, S, A).reshape(B, S * A)
    rows = torch.arange(B, device=R.device)
    v = R.new_zeros(B, S)
    q0 = R.new_zeros(B, S, A)
    steps = [] if greedy_actions else None
    for t in range(1, H + 1):
        expected = expect(v)
        q = base + (expected if gamma is None else gamma * expected)
        if bounds is not None:
            q = torch.clamp(q, t * lo, t * hi)
        if dead is not None:
            q = q.masked_fill(dead, 0.0)
        q = q.view(B, S, A)
        if policy is None:
            v_new = (q if mask is None else q.masked_fill(~mask, -torch.inf)).amax(-1)
        else:
            pi = policy if policy.dim() == 3 else policy[rows, (horizon - t).clamp_min(0)]
            v_new = (pi * q).sum(-1)
        if steps is not None:
            scored = q if tie_noise is None else q + tie_noise
            steps.append((scored if mask is None else scored.masked_fill(~mask, -torch.inf))
                         .argmax(-1))
        if same_horizon:
            v = v_new
            q0 = q
        else:
            active = (t <= horizon).view(B, 1)
            v = torch.where(active, v_new, v)
            q0 = torch.where((t == horizon).view(B, 1, 1), q, q0)
    actions = None
    if steps is not None:
        # steps[t - 1] holds step h = H_b - t of MDP b: reorder to (B, Hmax, S) by h.
        stacked = torch.stack(steps, 1) if steps else successors.new_zeros(B, 0, S)
        h = torch.arange(H, device=R.device)
        t_index = (horizon.view(B, 1) - 1 - h).clamp_min(0)
        actions = stacked.gather(1, t_index.view(B, H, 1).expand(B, H, S))
    return Plan(q=q0, v=v, actions=actions)
