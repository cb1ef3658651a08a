"""The sufficient statistic of observed transitions: the model's only input.

Whatever the number or order of episodes, everything a tabular learner needs from its data is
held in arrays whose shape depends on S and A only: visit counts N(s,a), transition counts
N(s,a,s') (sparse: memory grows with the distinct transitions observed, not with S*A*S), reward
sums and sums of squares, and termination counts.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from rlfm.errors import InvalidDataError
from rlfm.limits import ensure_memory
from rlfm.mdp import TabularMDP, transitions_from_coo


class Statistics:
    """Counts of transitions (s, a, r, s', terminated) in an MDP with S states and A actions.

    Attributes (all indexed by the transition's (s, a) unless said otherwise):
      visits (S, A) int: N(s, a)
      reward_sum, reward_sq_sum (S, A) float: sum of r and of r**2
      terminations (S, A) int: transitions from (s, a) that ended the episode
      terminal_entries (S,) int: times each state was entered by a terminating transition
      transition_counts: N(s, a, s') as a sparse (S*A, S) array (row s*A + a)
    """

    def __init__(self, n_states: int, n_actions: int):
        if int(n_states) < 1 or int(n_actions) < 1:
            raise InvalidDataError(f"need n_states >= 1 and n_actions >= 1, got {n_states}, "
                                   f"{n_actions}")
        self.n_states, self.n_actions = int(n_states), int(n_actions)
        S, A = self.n_states, self.n_actions
        ensure_memory(8.0 * (4 * S * A + S), f"a statistic of S={S}, A={A}")
        self.visits = np.zeros((S, A), np.int64)
        self.reward_sum = np.zeros((S, A))
        self.reward_sq_sum = np.zeros((S, A))
        self.terminations = np.zeros((S, A), np.int64)
        self.terminal_entries = np.zeros(S, np.int64)
        # Distinct (s, a, s') keys, sorted, with their counts; new keys wait in _pending until
        # read, so that one update costs O(1) and the stored form is canonical (order-free).
        self._keys = np.zeros(0, np.int64)
        self._key_counts = np.zeros(0, np.int64)
        self._pending: list = []

    # ---- adding data -----------------------------------------------------------------------
    def update(self, s: int, a: int, r: float, s_next: int, terminated: bool = False) -> None:
        """Record one transition."""
        S, A = self.n_states, self.n_actions
        if not (0 <= s < S and 0 <= s_next < S):
            raise InvalidDataError(f"state out of range [0, {S}): s={s}, s'={s_next}")
        if not 0 <= a < A:
            raise InvalidDataError(f"action out of range [0, {A}): a={a}")
        r = float(r)
        if not np.isfinite(r):
            raise InvalidDataError(f"reward must be finite, got {r}")
        self.visits[s, a] += 1
        self.reward_sum[s, a] += r
        self.reward_sq_sum[s, a] += r * r
        if terminated:
            self.terminations[s, a] += 1
            self.terminal_entries[s_next] += 1
        self._pending.append((s * A + a) * S + s_next)

    def add_transitions(self, states, actions, rewards, next_states, terminated=None) -> None:
        """Record arrays of transitions in bulk (vectorised)."""
        s, a, r, s2, done = self._check_arrays(states, actions, rewards, next_states, terminated)
        S, A = self.n_states, self.n_actions
        np.add.at(self.visits, (s, a), 1)
        np.add.at(self.reward_sum, (s, a), r)
        np.add.at(self.reward_sq_sum, (s, a), r * r)
        np.add.at(self.terminations, (s[done], a[done]), 1)
        np.add.at(self.terminal_entries, s2[done], 1)
        self._pending.append((s * A + a) * S + s2)

    @classmethod
    def from_transitions(cls, n_states: int, n_actions: int, states, actions, rewards,
                         next_states, terminated=None) -> Statistics:
        stats = cls(n_states, n_actions)
        stats.add_transitions(states, actions, rewards, next_states, terminated)
        return stats

    @classmethod
    def from_counts(cls, n_states: int, n_actions: int, *, visits, reward_sum, reward_sq_sum,
                    terminations, terminal_entries, rows, next_states, counts) -> Statistics:
        """A statistic from its arrays (as a batched world holds them): (S, A) visits, reward
        sums and termination counts, (S,) terminal entries, and the transition counts as
        (row = s*A + a, next state, count) triplets."""
        stats = cls(n_states, n_actions)
        stats.visits[...] = visits
        stats.reward_sum[...] = reward_sum
        stats.reward_sq_sum[...] = reward_sq_sum
        stats.terminations[...] = terminations
        stats.terminal_entries[...] = terminal_entries
        keys = (np.asarray(rows, np.int64) * n_states + np.asarray(next_states, np.int64))
        stats._pending.append(np.repeat(keys, np.asarray(counts, np.int64)))
        return stats

    ARRAYS = ("visits", "reward_sum", "reward_sq_sum", "terminations", "terminal_entries")

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The statistic as plain arrays (for an .npz); `from_arrays` reads them back exactly."""
        rows, next_states, counts = self.transition_triplets()
        return {**{name: getattr(self, name) for name in self.ARRAYS}, "rows": rows,
                "next_states": next_states, "counts": counts}

    @classmethod
    def from_arrays(cls, n_states: int, n_actions: int, arrays: dict) -> Statistics:
        missing = [k for k in (*cls.ARRAYS, "rows", "next_states", "counts") if k not in arrays]
        if missing:
            raise InvalidDataError(f"statistic arrays miss {', '.join(missing)}")
        return cls.from_counts(n_states, n_actions, **{k: arrays[k] for k in cls.ARRAYS},
                               rows=arrays["rows"], next_states=arrays["next_states"],
                               counts=arrays["counts"])

    def merge(self, other: Statistics) -> Statistics:
        """A new statistic holding the data of both (equal to building it from all the data)."""
        if (self.n_states, self.n_actions) != (other.n_states, other.n_actions):
            raise InvalidDataError(
                f"cannot merge statistics of different MDP sizes: ({self.n_states}, "
                f"{self.n_actions}) and ({other.n_states}, {other.n_actions})")
        out = self.copy()
        for name in self.ARRAYS:
            getattr(out, name)[...] += getattr(other, name)
        other._consolidate()
        out._pending.append(np.repeat(other._keys, other._key_counts))
        return out

    __add__ = merge

    def copy(self) -> Statistics:
        self._consolidate()
        out = Statistics(self.n_states, self.n_actions)
        for name in (*self.ARRAYS, "_keys", "_key_counts"):
            setattr(out, name, getattr(self, name).copy())
        return out

    # ---- reading ---------------------------------------------------------------------------
    @property
    def n_transitions(self) -> int:
        return int(self.visits.sum())

    @property
    def n_distinct_transitions(self) -> int:
        self._consolidate()
        return int(self._keys.size)

    def transition_triplets(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row = s*A + a, s', count) for every observed (s, a, s'), sorted by row then s'."""
        self._consolidate()
        rows, cols = np.divmod(self._keys, self.n_states)
        return rows, cols, self._key_counts

    @property
    def transition_counts(self) -> sp.csr_array:
        rows, cols, counts = self.transition_triplets()
        shape = (self.n_states * self.n_actions, self.n_states)
        return sp.csr_array((counts, (rows, cols)), shape=shape)

    @property
    def mean_reward(self) -> np.ndarray:
        """R̂(s, a); 0 for an unvisited pair."""
        return self.reward_sum / np.maximum(self.visits, 1)

    @property
    def reward_std(self) -> np.ndarray:
        """Empirical standard deviation of the reward of each pair; 0 where unvisited."""
        n = np.maximum(self.visits, 1)
        var = self.reward_sq_sum / n - (self.reward_sum / n) ** 2
        return np.sqrt(np.maximum(var, 0.0))

    @property
    def observed_terminal(self) -> np.ndarray:
        """States that some observed transition entered with terminated=True."""
        return self.terminal_entries > 0

    def empirical_mdp(self, horizon: int, initial=None, gamma: float = 1.0) -> TabularMDP:
        """The certainty-equivalent model (P̂, R̂).

        Convention: P̂(s'|s,a) = N(s,a,s')/N(s,a) and R̂ = mean observed reward; an unvisited
        pair stays where it is (P̂(s|s,a) = 1) with reward 0; a state observed as terminal is
        absorbing with zero reward. `initial` defaults to uniform (the statistic does not
        record where episodes start).
        """
        S, A = self.n_states, self.n_actions
        rows, cols, counts = self.transition_triplets()
        terminal = self.observed_terminal
        keep = ~terminal[rows // A]
        rows, cols = rows[keep], cols[keep]
        probs = counts[keep] / self.visits.ravel()[rows]
        # Unvisited pairs and terminal states: self-loops.
        loop_rows = np.flatnonzero((self.visits.ravel() == 0) | np.repeat(terminal, A))
        rows = np.concatenate([rows, loop_rows])
        cols = np.concatenate([cols, loop_rows // A])
        probs = np.concatenate([probs, np.ones(loop_rows.size)])
        R = np.where(terminal[:, None], 0.0, self.mean_reward)
        initial = np.full(S, 1.0 / S) if initial is None else initial
        return TabularMDP(transitions_from_coo(rows, cols, probs, S, A), R, initial, horizon,
                          terminal=terminal, gamma=gamma)

    def __eq__(self, other) -> bool:
        if not isinstance(other, Statistics):
            return NotImplemented
        self._consolidate()
        other._consolidate()
        return ((self.n_states, self.n_actions) == (other.n_states, other.n_actions)
                and all(np.array_equal(getattr(self, k), getattr(other, k))
                        for k in ("visits", "terminations", "terminal_entries", "_keys",
                                  "_key_counts"))
                and np.allclose(self.reward_sum, other.reward_sum)
                and np.allclose(self.reward_sq_sum, other.reward_sq_sum))

    def __repr__(self) -> str:
        return (f"Statistics(S={self.n_states}, A={self.n_actions}, "
                f"transitions={self.n_transitions}, distinct={self.n_distinct_transitions})")

    # ---- internals -------------------------------------------------------------------------
    def _consolidate(self) -> None:
        if not self._pending:
            return
        new = np.concatenate([np.atleast_1d(np.asarray(p, np.int64)) for p in self._pending])
        keys = np.concatenate([self._keys, new])
        weights = np.concatenate([self._key_counts, np.ones(new.size, np.int64)])
        self._keys, inverse = np.unique(keys, return_inverse=True)
        self._key_counts = np.bincount(inverse, weights=weights).astype(np.int64)
        self._pending = []

    def _check_arrays(self, states, actions, rewards, next_states, terminated):
        S, A = self.n_states, self.n_actions
        arrays = [np.asarray(x) for x in (states, actions, next_states)]
        for name, arr in zip(("states", "actions", "next_states"), arrays, strict=True):
            if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
                raise InvalidDataError(f"{name} must be a 1-D array of integers")
        s, a, s2 = (arr.astype(np.int64) for arr in arrays)
        r = np.asarray(rewards, dtype=float)
        done = (np.zeros(s.size, bool) if terminated is None
                else np.asarray(terminated).astype(bool))
        if not (s.size == a.size == r.size == s2.size == done.size) or r.ndim != 1 or \
                done.ndim != 1:
            raise InvalidDataError(
                f"transition arrays must have one length: states {s.size}, actions {a.size}, "
                f"rewards {r.size}, next_states {s2.size}, terminated {done.size}")
        for name, arr, n in (("states", s, S), ("actions", a, A), ("next_states", s2, S)):
            if arr.size and (arr.min() < 0 or arr.max() >= n):
                raise InvalidDataError(f"{name} out of range [0, {n}): found {arr.min()}.."
                                       f"{arr.max()}")
        if not np.isfinite(r).all():
            raise InvalidDataError("rewards contain NaN or infinite values")
        return s, a, r, s2, done
