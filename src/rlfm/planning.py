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
    """A function (v (n, S), n) -> E[v(s') | s, a] (n, S*A) for the first n MDPs of a batch.

    Sparse rows (few successors) gather v at the successors, slot-major so that the sum runs
    over an outer axis (a sum over a short last axis is several times slower on CPU); rows with
    successors for a large share of the states are made into a dense (S*A, S) matrix per MDP
    and use a batched matrix product, which beats gathering there."""
    B, S, A, K = successors.shape
    if K * 4 >= S * 3 and S > 8:
        P = probs.new_zeros(B, S * A, S).scatter_add_(2, successors.reshape(B, S * A, K),
                                                      probs.reshape(B, S * A, K))
        return lambda v, n: torch.bmm(P[:n], v.unsqueeze(-1)).squeeze(-1)
    offsets = (torch.arange(B, device=successors.device) * S).view(B, 1, 1)
    index = (successors.permute(0, 3, 1, 2).reshape(B, K, S * A) + offsets).reshape(-1)
    weights = probs.permute(0, 3, 1, 2).reshape(B, K, S * A).contiguous()
    per_mdp = K * S * A

    def expect(v, n):
        gathered = v.reshape(-1).index_select(0, index[:n * per_mdp]).view(n, K, S * A)
        return (weights[:n] * gathered).sum(1)
    return expect


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

    The MDPs are solved longest horizon first: at t steps to go only those with H >= t, a
    prefix of the sorted batch, are computed, so short episodes cost no padding in time.
    """
    B, S, A, _ = successors.shape
    device = R.device
    horizon = horizon.to(device)
    if B == 0:
        return Plan(q=R, v=R.new_zeros(0, S),
                    actions=successors.new_zeros(0, 0, S) if greedy_actions else None)
    order = torch.argsort(horizon, descending=True, stable=True)
    if bool((order == torch.arange(B, device=device)).all()):
        order = None
    sort = (lambda x: x) if order is None else \
        (lambda x: None if x is None else x.index_select(0, order))
    successors, probs, R, horizon = sort(successors), sort(probs), sort(R), sort(horizon)
    bonus, terminal, policy, tie_noise = sort(bonus), sort(terminal), sort(policy), sort(tie_noise)
    H = int(horizon[0])
    # active[t]: how many MDPs (a prefix) still have t steps to go
    active = (horizon.view(1, B) >= torch.arange(H + 2, device=device).view(-1, 1)).sum(1).tolist()
    expect = expectation(successors, probs)
    base = (R if bonus is None else R + bonus).reshape(B, S * A)
    mask = None if action_mask is None or bool(action_mask.all()) else \
        sort(action_mask)[:, None, :]
    if gamma is not None:
        gamma = sort(gamma).to(R.dtype).view(B, 1)
        if bool((gamma == 1).all()):
            gamma = None
    if bounds is not None:
        lo, hi = (sort(b).to(R.dtype).view(B, 1) for b in bounds)
    dead = None
    if terminal is not None and bool(terminal.any()):
        dead = terminal[:, :, None].expand(B, S, A).reshape(B, S * A)
    rows = torch.arange(B, device=device)
    v = R.new_zeros(B, S)
    finished = []                     # Q_0 of the MDPs whose horizon is t, for t = 1, 2, ...
    actions = successors.new_zeros(B, H, S) if greedy_actions else None
    for t in range(1, H + 1):
        n = active[t]
        expected = expect(v[:n] if n < B else v, n)
        q = base[:n] + (expected if gamma is None else gamma[:n] * expected)
        if bounds is not None:
            q = torch.clamp(q, t * lo[:n], t * hi[:n])
        if dead is not None:
            q = q.masked_fill(dead[:n], 0.0)
        q = q.view(n, S, A)
        if policy is None:
            v_new = (q if mask is None else q.masked_fill(~mask[:n], -torch.inf)).amax(-1)
        else:
            pi = policy[:n] if policy.dim() == 3 else policy[rows[:n], horizon[:n] - t]
            v_new = (pi * q).sum(-1)
        if actions is not None:
            scored = q if tie_noise is None else q + tie_noise[:n]
            scored = scored if mask is None else scored.masked_fill(~mask[:n], -torch.inf)
            actions[rows[:n], horizon[:n] - t] = scored.argmax(-1)
        v = v_new if n == B else torch.cat([v_new, v[n:]])
        if active[t + 1] < n:
            finished.append(q[active[t + 1]:])
    q0 = torch.cat(finished[::-1])
    if order is not None:
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(B, device=device)
        q0, v = q0.index_select(0, inverse), v.index_select(0, inverse)
        actions = None if actions is None else actions.index_select(0, inverse)
    return Plan(q=q0, v=v, actions=actions)
