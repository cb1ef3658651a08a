"""Tabular MDPs, their exact solvers and the normalised score (docs/protocol.md).

A `TabularMDP` keeps its transitions as one (S*A, S) operator: a dense array for small MDPs,
a `scipy.sparse.csr_array` for large ones, so that every solver is written once as
`mdp.expect(V)` (the expectation of V over next states, for every state-action pair) and a
2,000-state gridworld costs memory in proportion to its non-zero transitions.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from rlfm.errors import InvalidEnvironmentError, InvalidMDPError
from rlfm.limits import ensure_memory

# An MDP built from a transition list is stored dense when small or dense enough that a dense
# matrix product beats a sparse one, and sparse otherwise (memory grows with the non-zeros).
DENSE_LIMIT = 2_000_000
SMALL_DENSE = 65_536
DENSE_FRACTION = 0.05
# Horizon used for a Gymnasium environment that registers no time limit (e.g. CliffWalking).
FALLBACK_HORIZON = 100
ROW_SUM_TOL = 1e-6
# Returns (and differences of returns) must stay finite in float64, with room to spare.
MAX_RETURN = 1e300


class TabularMDP:
    """A finite MDP with S states, A actions and a finite horizon H.

    P: (S, A, S) array, or a scipy sparse matrix of shape (S*A, S) with row s*A + a holding
       P(.|s, a). R: (S, A) mean rewards. initial: (S,) start distribution. horizon: H >= 1.
    terminal: optional (S,) bool; a terminal state must be absorbing with zero reward.
    gamma: discount inside the horizon; 1.0 (the default) is the undiscounted H-step return.
    """

    def __init__(self, P, R, initial, horizon, terminal=None, gamma=1.0, name=None):
        self.R = _float_array(R, "R")
        if self.R.ndim != 2:
            raise InvalidMDPError(f"R must have shape (S, A), got shape {self.R.shape}")
        S, A = self.R.shape
        if S < 1 or A < 1:
            raise InvalidMDPError(f"an MDP needs at least one state and one action, got S={S}, A={A}")
        self.n_states, self.n_actions = S, A
        self._T = _transition_operator(P, S, A)
        self.initial = _float_array(initial, "initial")
        if self.initial.shape != (S,):
            raise InvalidMDPError(f"initial must have shape ({S},), got {self.initial.shape}")
        if (self.initial < 0).any() or abs(self.initial.sum() - 1.0) > ROW_SUM_TOL:
            raise InvalidMDPError("initial must be a probability distribution (non-negative, sum 1)")
        self.horizon = _positive_int(horizon, "horizon")
        largest = float(np.abs(self.R).max())
        if largest * self.horizon > MAX_RETURN:
            raise InvalidMDPError(
                f"rewards up to {largest:.3g} over {self.horizon} steps would overflow the "
                f"returns (float64); rescale the rewards")
        self.gamma = float(np.asarray(gamma).reshape(()))
        if not 0.0 < self.gamma <= 1.0:
            raise InvalidMDPError(f"gamma must lie in (0, 1], got {self.gamma}")
        self.terminal = np.zeros(S, bool) if terminal is None else np.asarray(terminal)
        if self.terminal.shape != (S,) or self.terminal.dtype != bool:
            raise InvalidMDPError(f"terminal must be a bool array of shape ({S},)")
        self._check_terminal_absorbing()
        self.name = name

    # ---- structure -------------------------------------------------------------------------
    @property
    def is_sparse(self) -> bool:
        return sp.issparse(self._T)

    @property
    def transition_matrix(self):
        """The (S*A, S) transition operator (dense array or sparse CSR), read-only by convention."""
        return self._T

    @property
    def P(self) -> np.ndarray:
        """Dense (S, A, S) transition array (materialised for a sparse MDP)."""
        if self.is_sparse:
            S, A = self.n_states, self.n_actions
            ensure_memory(8.0 * S * A * S, f"a dense P of S={S}, A={A}")
        T = self._T.toarray() if self.is_sparse else self._T
        return T.reshape(self.n_states, self.n_actions, self.n_states)

    @property
    def nbytes(self) -> int:
        """Memory held by the transition operator and the rewards, in bytes."""
        T = self._T
        held = T.data.nbytes + T.indices.nbytes + T.indptr.nbytes if self.is_sparse else T.nbytes
        return int(held + self.R.nbytes)

    @property
    def nnz(self) -> int:
        return int(self._T.nnz) if self.is_sparse else int(np.count_nonzero(self._T))

    def expect(self, V: np.ndarray) -> np.ndarray:
        """E[V(s') | s, a] for every (s, a): V of shape (S,) gives (S, A); (S, k) gives (S, A, k)."""
        out = self._T @ V
        return out.reshape((self.n_states, self.n_actions, *np.shape(V)[1:]))

    def successors(self, s: int, a: int) -> tuple[np.ndarray, np.ndarray]:
        """Next states with non-zero probability from (s, a), and their probabilities."""
        row = s * self.n_actions + a
        if self.is_sparse:
            lo, hi = self._T.indptr[row], self._T.indptr[row + 1]
            return self._T.indices[lo:hi], self._T.data[lo:hi]
        probs = self._T[row]
        nz = np.flatnonzero(probs)
        return nz, probs[nz]

    def __repr__(self) -> str:
        name = f"{self.name!r}, " if self.name else ""
        kind = "sparse" if self.is_sparse else "dense"
        return (f"TabularMDP({name}S={self.n_states}, A={self.n_actions}, H={self.horizon}, "
                f"terminal={int(self.terminal.sum())}, gamma={self.gamma}, {kind})")

    def _check_terminal_absorbing(self) -> None:
        terminal = np.flatnonzero(self.terminal)
        if not terminal.size:
            return
        rows = (terminal[:, None] * self.n_actions + np.arange(self.n_actions)).ravel()
        cols = np.repeat(terminal, self.n_actions)
        if self.is_sparse:   # P(s | s, a) from the rows' entries (scipy's fancy indexing is slow)
            sub = self._T[rows]
            row = np.repeat(np.arange(rows.size), np.diff(sub.indptr))
            own = sub.indices == cols[row]
            stay = np.bincount(row[own], weights=sub.data[own], minlength=rows.size)
        else:
            stay = self._T[rows, cols]
        bad = (np.abs(stay - 1.0) > ROW_SUM_TOL) | \
            np.repeat((self.R[terminal] != 0).any(axis=1), self.n_actions)
        if bad.any():
            s = int(cols[np.flatnonzero(bad)[0]])
            raise InvalidMDPError(
                f"terminal state {s} must be absorbing (P[s, a, s] = 1) with zero reward")

    # ---- files -----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the MDP `.npz` (docs/environments.md) (atomically). A sparse MDP stores P as CSR arrays."""
        arrays = dict(R=self.R, initial=self.initial, horizon=np.int64(self.horizon),
                      terminal=self.terminal, gamma=np.float64(self.gamma))
        if self.is_sparse:
            arrays.update(P_data=self._T.data, P_indices=self._T.indices,
                          P_indptr=self._T.indptr)
        else:
            arrays["P"] = self.P
        from rlfm.io import atomic_write

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object: numpy would append .npz to a name
                np.savez_compressed(f, **arrays)

        atomic_write(path, write)

    @classmethod
    def load(cls, path: str | os.PathLike) -> TabularMDP:
        """Read an MDP `.npz`; any problem raises InvalidMDPError naming the file and the fault."""
        from rlfm.io import read_npz

        path = Path(path)
        data = read_npz(path, InvalidMDPError)
        try:
            missing = [k for k in ("R", "initial", "horizon") if k not in data]
            if "P" not in data and not {"P_data", "P_indices", "P_indptr"} <= data.keys():
                missing.insert(0, "P")
            if missing:
                raise InvalidMDPError(f"missing key(s) {', '.join(repr(k) for k in missing)}")
            R = np.asarray(data["R"])
            if R.ndim != 2:
                raise InvalidMDPError(f"R must have shape (S, A), got shape {R.shape}")
            S, A = R.shape
            P = data.get("P")
            if P is None:  # sparse layout written by save() for large MDPs
                P = sp.csr_array((data["P_data"], data["P_indices"], data["P_indptr"]),
                                 shape=(S * A, S))
            elif P.shape in ((S, A, S), (S * A, S)) and np.issubdtype(P.dtype, np.number):
                P = _compact(sp.csr_array(P.reshape(S * A, S).astype(float)))  # dense if small
            return cls(P, data["R"], data["initial"], data["horizon"],
                       terminal=data.get("terminal"), gamma=data.get("gamma", 1.0),
                       name=path.stem)
        except InvalidMDPError as e:
            raise InvalidMDPError(f"{path}: {e}") from None
        except ValueError as e:  # e.g. inconsistent CSR arrays
            raise InvalidMDPError(f"{path}: {e}") from None

    # ---- Gymnasium -------------------------------------------------------------------------
    @classmethod
    def from_gymnasium(cls, env, horizon: int | None = None) -> TabularMDP:
        """The exact MDP of a Gymnasium environment.

        Works for rlfm's own environments and for any toy-text environment exposing its
        transition table `unwrapped.P[s][a] = [(prob, next_state, reward, terminated), ...]`
        (FrozenLake, CliffWalking, Taxi). A state entered with terminated=True becomes
        absorbing with zero reward; the horizon is the registered time limit (or `horizon`,
        or FALLBACK_HORIZON when the environment registers none).
        """
        import gymnasium as gym

        spaces = (env.observation_space, env.action_space)
        if not all(isinstance(space, gym.spaces.Discrete) for space in spaces):
            raise InvalidEnvironmentError(
                f"{_env_name(env)}: rlfm needs Discrete observation and action spaces, got "
                f"{type(spaces[0]).__name__} and {type(spaces[1]).__name__}")
        spec = getattr(env, "spec", None)
        H = horizon or (spec.max_episode_steps if spec else None)
        mdp = getattr(env.unwrapped, "mdp", None)
        if isinstance(mdp, TabularMDP):
            return mdp if H in (None, mdp.horizon) else mdp.with_horizon(H)
        table = getattr(env.unwrapped, "P", None)
        if not isinstance(table, dict):
            raise InvalidEnvironmentError(
                f"{_env_name(env)}: no transition table (env.unwrapped.P) to read the MDP from")
        S, A = int(env.observation_space.n), int(env.action_space.n)
        rows, cols, probs = [], [], []
        R = np.zeros((S, A))
        terminal = np.zeros(S, bool)
        for s in range(S):
            for a in range(A):
                for p, s_next, r, done in table[s][a]:
                    rows.append(s * A + a)
                    cols.append(int(s_next))
                    probs.append(p)
                    R[s, a] += p * r
                    terminal[int(s_next)] |= bool(done)
        rows, cols, probs = np.array(rows), np.array(cols), np.array(probs, float)
        keep = ~terminal[rows // A]  # terminal states become absorbing with zero reward
        t = np.flatnonzero(terminal)
        rows = np.concatenate([rows[keep], (t[:, None] * A + np.arange(A)).ravel()])
        cols = np.concatenate([cols[keep], np.repeat(t, A)])
        probs = np.concatenate([probs[keep], np.ones(t.size * A)])
        R[terminal] = 0.0
        initial = getattr(env.unwrapped, "initial_state_distrib", None)
        if initial is None:
            raise InvalidEnvironmentError(
                f"{_env_name(env)}: no initial-state distribution (initial_state_distrib)")
        return cls(transitions_from_coo(rows, cols, probs, S, A), R, initial,
                   H or FALLBACK_HORIZON, terminal=terminal, name=_env_name(env))

    def relabelled(self, state_perm: np.ndarray, action_perm: np.ndarray) -> TabularMDP:
        """The same MDP with state s named state_perm[s] and action a named action_perm[a]
        (sparse stays sparse; no new validation: relabelling keeps a valid MDP valid)."""
        S, A = self.n_states, self.n_actions
        inv_s, inv_a = np.argsort(state_perm), np.argsort(action_perm)
        if self.is_sparse:
            coo = self._T.tocoo()
            s, a = np.divmod(coo.row, A)
            T = _compact(sp.csr_array((coo.data, (state_perm[s] * A + action_perm[a],
                                                  state_perm[coo.col])), shape=self._T.shape))
        else:
            T = self._T.reshape(S, A, S)[inv_s][:, inv_a][:, :, inv_s].reshape(S * A, S)
        return self._derived(T, self.R[inv_s][:, inv_a], self.initial[inv_s],
                             self.terminal[inv_s])

    def with_rewards(self, R: np.ndarray) -> TabularMDP:
        """The same dynamics with mean rewards R (S, A), zero on terminal states."""
        R = _float_array(R, "R")
        if R.shape != self.R.shape or (R[self.terminal] != 0).any():
            raise InvalidMDPError(f"R must have shape {self.R.shape} and be 0 on terminal states")
        if float(np.abs(R).max()) * self.horizon > MAX_RETURN:
            raise InvalidMDPError("these rewards would overflow the returns (float64)")
        return self._derived(self._T, R, self.initial, self.terminal)

    def _derived(self, T, R, initial, terminal) -> TabularMDP:
        """A copy of this MDP with these arrays, which the caller made valid from its own: the
        validation pass of the constructor (most of the cost of a small MDP) is not repeated."""
        out = object.__new__(TabularMDP)
        out._T, out.R, out.initial, out.terminal = T, R, initial, terminal
        out.n_states, out.n_actions = R.shape
        out.horizon, out.gamma, out.name = self.horizon, self.gamma, self.name
        return out

    def with_horizon(self, horizon: int) -> TabularMDP:
        return TabularMDP(self._T, self.R, self.initial, horizon, self.terminal, self.gamma,
                          self.name)


def transitions_from_coo(rows, cols, probs, n_states: int, n_actions: int):
    """Transition operator from (row = s*A + a, next state, probability) triplets.

    Duplicate triplets are summed. Dense for small or dense-enough MDPs, CSR otherwise.
    """
    shape = (n_states * n_actions, n_states)
    if shape[0] * shape[1] <= SMALL_DENSE:   # dense whatever its zeros: no sparse detour
        flat = np.asarray(rows, np.int64) * n_states + np.asarray(cols, np.int64)
        return np.bincount(flat, weights=probs, minlength=shape[0] * shape[1]).reshape(shape)
    T = sp.csr_array((probs, (rows, cols)), shape=shape)
    T.sum_duplicates()
    return _compact(T)


def _compact(T: sp.csr_array):
    """The storage the solvers run fastest on: dense when small or dense enough, else CSR."""
    size = T.shape[0] * T.shape[1]
    if size <= SMALL_DENSE or (size <= DENSE_LIMIT and T.nnz >= DENSE_FRACTION * size):
        return T.toarray()
    return T


# ---- exact solvers ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Solution:
    """Optimal finite-horizon solution: Q[h] (H, S, A), V[h] (H+1, S) with V[H] = 0, and the
    greedy non-stationary policy[h] (H, S) of action indices."""

    Q: np.ndarray
    V: np.ndarray
    policy: np.ndarray


def backward_induction(mdp: TabularMDP, R: np.ndarray | None = None,
                       confidence: Callable[[int, np.ndarray], np.ndarray] | None = None,
                       bounds: tuple[float, float] | None = None) -> Solution:
    """Optimal Q_h, V_h and policy over the horizon by dynamic programming (float64, exact):

        Q_h(s, a) = R(s, a) + c_h(s, a) + gamma * sum_s' P(s'|s, a) V_{h+1}(s'),
        Q_h       = clip(Q_h, (H - h) r_lo, (H - h) r_hi)     where bounds = (r_lo, r_hi),
        V_h = max_a Q_h,  V_H = 0,  and states of `mdp.terminal` worth 0.

    `R` optionally replaces the mean rewards. `confidence(h, V_{h+1})` gives c_h (S, A): a bonus
    (> 0) for optimism, minus a penalty for pessimism, and +inf / -inf for an unvisited pair,
    which the bounds turn into the largest / smallest value an (H - h)-step return can have
    (the baselines' optimistic and pessimistic planning; see `rlfm.agents._planning`).
    """
    H, S, A = mdp.horizon, mdp.n_states, mdp.n_actions
    ensure_memory(8.0 * H * S * (A + 1), f"backward induction over H={H}, S={S}, A={A}")
    R = mdp.R if R is None else R
    Q = np.empty((H, S, A))
    V = np.zeros((H + 1, S))
    for h in range(H - 1, -1, -1):
        rewards = R if confidence is None else R + confidence(h, V[h + 1])
        Q[h] = rewards + mdp.gamma * mdp.expect(V[h + 1])
        if bounds is not None:
            Q[h] = np.clip(Q[h], (H - h) * bounds[0], (H - h) * bounds[1])
        Q[h, mdp.terminal] = 0.0
        V[h] = Q[h].max(axis=1)
    return Solution(Q=Q, V=V, policy=Q.argmax(axis=2))


def value_iteration(mdp: TabularMDP, gamma: float | None = None, tol: float = 1e-8,
                    max_iter: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """Discounted infinite-horizon optimum (Q (S, A), V (S,)); gamma defaults to mdp.gamma < 1."""
    gamma = mdp.gamma if gamma is None else gamma
    if not 0.0 < gamma < 1.0:
        raise InvalidMDPError(f"discounted value iteration needs 0 < gamma < 1, got {gamma}")
    V = np.zeros(mdp.n_states)
    # Stop when the sup-norm change guarantees |V - V*| < tol (contraction bound).
    threshold = tol * (1 - gamma) / gamma
    for _ in range(max_iter):
        Q = mdp.R + gamma * mdp.expect(V)
        V_new = Q.max(axis=1)
        delta = np.abs(V_new - V).max()
        V = V_new
        if delta < threshold:
            break
    return mdp.R + gamma * mdp.expect(V), V


def as_action_probabilities(policy, mdp: TabularMDP) -> np.ndarray:
    """`action_probabilities` for the sizes of `mdp`."""
    return action_probabilities(policy, mdp.n_states, mdp.n_actions, mdp.horizon)


def action_probabilities(policy, S: int, A: int, H: int) -> np.ndarray:
    """Normalise a policy to probabilities: (S, A) or (H, S, A) floats from action indices
    ((S,) or (H, S) ints) or probabilities; checks shapes and that rows sum to 1."""
    pi = np.asarray(policy)
    if np.issubdtype(pi.dtype, np.integer):
        if pi.shape not in ((S,), (H, S)):
            raise ValueError(f"a deterministic policy must have shape ({S},) or ({H}, {S}), "
                             f"got {pi.shape}")
        if pi.size and (pi.min() < 0 or pi.max() >= A):
            raise ValueError(f"policy actions must lie in [0, {A})")
        return np.eye(A)[pi]
    pi = pi.astype(float)
    if pi.shape not in ((S, A), (H, S, A)):
        raise ValueError(f"a policy must have shape ({S}, {A}) or ({H}, {S}, {A}), got {pi.shape}")
    if not np.isfinite(pi).all() or (pi < 0).any() or not np.allclose(pi.sum(-1), 1.0, atol=1e-5):
        raise ValueError("policy rows must be probability distributions")
    return pi


def policy_values(mdp: TabularMDP, policy) -> np.ndarray:
    """V^pi_h(s) for h = 0..H (H+1, S), for a stationary or time-dependent policy."""
    pi = as_action_probabilities(policy, mdp)
    H = mdp.horizon
    V = np.zeros((H + 1, mdp.n_states))
    for h in range(H - 1, -1, -1):
        Q = mdp.R + mdp.gamma * mdp.expect(V[h + 1])
        V[h] = (Q * (pi[h] if pi.ndim == 3 else pi)).sum(axis=1)
    return V


def evaluate_policy(mdp: TabularMDP, policy) -> float:
    """J(pi): the exact expected return over the horizon from the initial distribution."""
    return float(mdp.initial @ policy_values(mdp, policy)[0])


def uniform_policy(mdp: TabularMDP) -> np.ndarray:
    return np.full((mdp.n_states, mdp.n_actions), 1.0 / mdp.n_actions)


@dataclass(frozen=True)
class ScoreReference:
    """J(pi*) and J(uniform) of one MDP: the two ends of the normalised score."""

    optimal_return: float
    uniform_return: float

    @classmethod
    def of(cls, mdp: TabularMDP) -> ScoreReference:
        optimal = float(mdp.initial @ backward_induction(mdp).V[0])
        return cls(optimal, evaluate_policy(mdp, uniform_policy(mdp)))

    def normalise(self, ret: float) -> float:
        gap = self.optimal_return - self.uniform_return
        if gap <= 1e-12 * max(1.0, abs(self.optimal_return)):
            return 1.0  # every policy is optimal: nothing to learn
        return (ret - self.uniform_return) / gap


def normalized_score(mdp: TabularMDP, policy, reference: ScoreReference | None = None) -> float:
    """(J(pi) - J(uniform)) / (J(pi*) - J(uniform)): 0 = uniform random, 1 = optimal."""
    reference = reference or ScoreReference.of(mdp)
    return reference.normalise(evaluate_policy(mdp, policy))


# ---- validation helpers ----------------------------------------------------------------------
def _float_array(x, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise InvalidMDPError(f"{name} must be numeric") from None
    if not np.isfinite(arr).all():
        raise InvalidMDPError(f"{name} contains NaN or infinite values")
    return arr


def _positive_int(x, name: str) -> int:
    arr = np.asarray(x)
    if arr.ndim != 0 or not np.issubdtype(arr.dtype, np.number) or arr != np.round(arr):
        raise InvalidMDPError(f"{name} must be a positive integer, got {x!r}")
    if arr < 1:
        raise InvalidMDPError(f"{name} must be a positive integer, got {int(arr)}")
    return int(arr)


def _transition_operator(P, S: int, A: int):
    if sp.issparse(P):
        T = sp.csr_array(P, dtype=float)
        try:
            T.check_format(full_check=True)  # indices in range, consistent index pointers
        except (ValueError, IndexError) as e:
            raise InvalidMDPError(f"sparse P is malformed ({e})") from None
        T.sum_duplicates()
        if T.shape != (S * A, S):
            raise InvalidMDPError(f"sparse P must have shape (S*A, S) = ({S * A}, {S}), "
                                  f"got {T.shape}")
        values = T.data
        sums = np.asarray(T.sum(axis=1)).ravel()
    else:
        P = _float_array(P, "P")
        if P.shape == (S * A, S):
            P = P.reshape(S, A, S)
        if P.shape != (S, A, S):
            raise InvalidMDPError(f"P must have shape (S, A, S) = ({S}, {A}, {S}) to match R, "
                                  f"got {P.shape}")
        T = np.ascontiguousarray(P.reshape(S * A, S))
        values, sums = T, T.sum(axis=1)
    if not np.isfinite(values).all():
        raise InvalidMDPError("P contains NaN or infinite values")
    if (values < 0).any():
        raise InvalidMDPError("P has negative probabilities")
    bad = np.flatnonzero(np.abs(sums - 1.0) > ROW_SUM_TOL)
    if bad.size:
        s, a = divmod(int(bad[0]), A)
        raise InvalidMDPError(f"rows of P must sum to 1: P[{s}, {a}, :] sums to {sums[bad[0]]:.6g}"
                              f" ({bad.size} bad row(s))")
    return T


def _env_name(env) -> str:
    spec = getattr(env, "spec", None)
    return spec.id if spec is not None else type(env.unwrapped).__name__
