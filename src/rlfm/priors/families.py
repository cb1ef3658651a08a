"""The families of the synthetic MDP prior: one small generator per kind of structure.

Every generator is `family(rng, **params) -> TabularMDP`; its parameters are *ranges* (or
probabilities) from which it draws one concrete MDP, and the defaults are those of
`default.toml`. A generator returns the MDP in its canonical, readable layout (state 0 is the
start of a chain, grid cells in row-major order, ...); `sample_family` then rescales the rewards
(`transform_rewards`) and ALWAYS applies a random permutation of states and of actions
(`permute`), so that no structure can be read off the indices.

Every MDP carries a plain dict `mdp.info`: its family and, for the data simulator and the plots,
optional per-state entries kept consistent by `permute`:
  entry_reward (S,): rewards defined on entering a state, R(s,a) = sum_s' P(s'|s,a) entry(s')
  reward_noise: std of Gaussian noise on observed rewards (bandits)
  cells (S, 2), cell_kind (S,), layout (rows, cols) bool: a gridworld's geometry
  state_perm (S,), action_perm (A,): new index of each canonical state / action
  deep: "square" or "maze" for the structures that only deep exploration solves
Terminal states are absorbing with zero reward; an episode ends on entering one.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from rlfm.gridworld import MOVES, grid_mdp
from rlfm.mdp import TabularMDP

PER_STATE_INFO = ("entry_reward", "cells", "cell_kind")
# cell kinds of a gridworld (info["cell_kind"])
FLOOR, GOAL, HOLE, CLIFF = 0, 1, 2, 3


# ---- drawing helpers -------------------------------------------------------------------------
def draw_int(rng: np.random.Generator, spec, log: bool = True) -> int:
    """An integer in [lo, hi] (inclusive), log-uniform by default (uniform when lo < 1)."""
    lo, hi = int(spec[0]), int(spec[1])
    if lo >= hi:
        return lo
    if log and lo >= 1:
        x = np.floor(np.exp(rng.uniform(np.log(lo), np.log(hi + 1))))
        return int(min(hi, max(lo, x)))
    return int(rng.integers(lo, hi + 1))


def draw_float(rng: np.random.Generator, spec, log: bool = False) -> float:
    lo, hi = float(spec[0]), float(spec[1])
    if lo >= hi:
        return lo
    if log:
        return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    return float(rng.uniform(lo, hi))


def draw_size(rng, normal, large=None, large_prob: float = 0.0) -> int:
    """A size from `normal`, or with probability `large_prob` from the rarer `large` range."""
    if large is not None and rng.random() < large_prob:
        return draw_int(rng, large)
    return draw_int(rng, normal)


def _clip_horizon(h: float, horizon) -> int:
    return int(np.clip(round(h), int(horizon[0]), int(horizon[1])))


def _rewards(rng, S: int, A: int, sparse_prob: float) -> np.ndarray:
    """Mean rewards: sparse (a few rewarding pairs, the best worth 1) or dense (uniform/normal)."""
    if rng.random() < sparse_prob:
        k = draw_int(rng, (1, max(1, S * A // 4)))
        R = np.zeros(S * A)
        pairs = rng.choice(S * A, size=k, replace=False)
        R[pairs] = rng.uniform(0.05, 1.0, size=k)
        R[pairs[0]] = 1.0
        return R.reshape(S, A)
    if rng.random() < 0.5:
        return rng.uniform(0.0, 1.0, size=(S, A))
    return rng.normal(size=(S, A))


def _pick_terminal(rng, S: int, prob: float, keep_free: int = 1) -> np.ndarray:
    """With probability `prob`, 1..S/8 terminal states among states >= keep_free."""
    terminal = np.zeros(S, bool)
    if S > keep_free and rng.random() < prob:
        k = draw_int(rng, (1, max(1, S // 8)))
        terminal[rng.choice(np.arange(keep_free, S), size=min(k, S - keep_free),
                            replace=False)] = True
    return terminal


def _absorbing(P: np.ndarray, R: np.ndarray, terminal: np.ndarray) -> None:
    """Make the terminal states absorbing with zero reward (in place)."""
    for t in np.flatnonzero(terminal):
        P[t] = 0.0
        P[t, :, t] = 1.0
    R[terminal] = 0.0


def _initial(rng, S: int, allowed: np.ndarray) -> np.ndarray:
    """One start state (70%) or a uniform start over a few allowed states."""
    candidates = np.flatnonzero(allowed)
    k = 1 if rng.random() < 0.7 else draw_int(rng, (1, max(1, len(candidates) // 4)))
    initial = np.zeros(S)
    initial[rng.choice(candidates, size=min(k, len(candidates)), replace=False)] = 1.0
    return initial / initial.sum()


def _mdp(P, R, initial, horizon, terminal, family: str, **info) -> TabularMDP:
    mdp = TabularMDP(P, R, initial, horizon, terminal=terminal, name=family)
    mdp.info = {"family": family, **{k: v for k, v in info.items() if v is not None}}
    return mdp


def _normalise_rows(g: np.ndarray) -> np.ndarray:
    return g / g.sum(axis=-1, keepdims=True)


# ---- the families ----------------------------------------------------------------------------
def dense(rng, n_states=(2, 64), large_states=(65, 200), large_prob=0.08, n_actions=(2, 8),
          horizon=(5, 150), concentration=(0.03, 3.0), sparse_reward_prob=0.5,
          terminal_prob=0.3) -> TabularMDP:
    """Dense random dynamics: every row P(.|s,a) ~ Dirichlet(alpha), alpha log-uniform in
    `concentration` (small alpha: nearly deterministic rows; large: close to uniform).

    n_states, large_states, large_prob: S log-uniform in n_states, or in large_states with
      probability large_prob. n_actions, horizon: log-uniform ranges.
    sparse_reward_prob: probability that only a few (s, a) pay (else all pairs pay at random).
    terminal_prob: probability of having 1..S/8 absorbing terminal states.
    """
    S = draw_size(rng, n_states, large_states, large_prob)
    A, H = draw_int(rng, n_actions), draw_int(rng, horizon)
    alpha = draw_float(rng, concentration, log=True)
    g = rng.gamma(alpha, size=(S * A, S))
    g[g < 1e-6 * g.max(axis=1, keepdims=True)] = 0.0      # drop negligible probabilities
    dead = g.sum(axis=1) == 0
    g[dead, rng.integers(S, size=int(dead.sum()))] = 1.0
    P = _normalise_rows(g).reshape(S, A, S)
    R = _rewards(rng, S, A, sparse_reward_prob)
    terminal = _pick_terminal(rng, S, terminal_prob)
    _absorbing(P, R, terminal)
    return _mdp(P, R, _initial(rng, S, ~terminal), H, terminal, "dense")


def garnet(rng, n_states=(2, 64), large_states=(65, 200), large_prob=0.1, n_actions=(2, 8),
           horizon=(5, 150), branching=(1, 6), sparse_reward_prob=0.5,
           terminal_prob=0.3) -> TabularMDP:
    """Garnet (Archibald et al. 1995): each (s, a) reaches `b` distinct random states (b drawn
    log-uniformly in `branching`, at most S) with probabilities from a flat Dirichlet; b = 1 is
    a random deterministic MDP. Other parameters as for `dense`."""
    S = draw_size(rng, n_states, large_states, large_prob)
    A, H = draw_int(rng, n_actions), draw_int(rng, horizon)
    b = min(S, draw_int(rng, branching))
    nexts = np.argsort(rng.random((S * A, S)), axis=1)[:, :b]
    probs = _normalise_rows(rng.exponential(size=(S * A, b)))
    P = np.zeros((S * A, S))
    np.put_along_axis(P, nexts, probs, axis=1)
    P = P.reshape(S, A, S)
    R = _rewards(rng, S, A, sparse_reward_prob)
    terminal = _pick_terminal(rng, S, terminal_prob)
    _absorbing(P, R, terminal)
    return _mdp(P, R, _initial(rng, S, ~terminal), H, terminal, "garnet")


def grid(rng, side=(2, 10), large_side=(11, 14), large_prob=0.1, wall_density=(0.0, 0.3),
         rooms_prob=0.3, slip_prob=0.6, slip=(0.0, 0.7), slip_any_prob=0.3, n_goals=(1, 3),
         goal_terminal_prob=0.7, far_goal_prob=0.6, hole_fraction=(0.0, 0.2), holes_prob=0.5,
         cliff_prob=0.12, cliff_penalty=(0.2, 2.0), step_cost_prob=0.3, stay_action_prob=0.2,
         horizon_factor=(1.0, 8.0), horizon=(5, 250), maze_prob=0.0,
         maze_side=(5, 17)) -> TabularMDP:
    """Gridworlds (built with rlfm.gridworld.grid_mdp): actions up/right/down/left.

    side, large_side, large_prob: rows and columns, each uniform in side (in large_side with
      probability large_prob); at least 2 cells. Only cells reachable from the start are kept.
    wall_density: fraction of random wall cells; rooms_prob: probability of wall lines with doors.
    slip_prob, slip, slip_any_prob: with probability slip_prob a move slips with probability
      U(slip) (FrozenLake is 2/3), to a perpendicular direction or, with slip_any_prob, to any other.
    n_goals, goal_terminal_prob, far_goal_prob: goals paying on entry (the main one 1, others
      U(0.05, 0.5)); terminal with goal_terminal_prob; the main goal is the farthest cell from
      the start with far_goal_prob.
    holes_prob, hole_fraction: terminal holes (reward 0, or negative 30% of the time).
    cliff_prob, cliff_penalty: cells that pay -U(cliff_penalty) and send back to the start
      (CliffWalking-like).
    step_cost_prob: a cost log-U(0.001, 0.1) on every move. stay_action_prob: a 5th action, stay.
    horizon_factor, horizon: H = U(horizon_factor) * (rows + cols), clipped to horizon (a
      maze: times its longest shortest path instead).
    maze_prob, maze_side: a maze instead (rows and columns uniform in maze_side, no rooms or
      random walls): corridors one cell wide carved by a random depth-first search, a few walls
      then opened to make loops; with a far goal, a long sparse path of which most turns lead
      to dead ends.
    """
    big = rng.random() < large_prob
    maze = maze_prob > 0 and rng.random() < maze_prob  # no draw when off: the stream stays
    for _ in range(20):
        rows, cols = (draw_int(rng, maze_side if maze else large_side if big else side,
                               log=False) for _ in range(2))
        if rows * cols < 2:
            continue
        if maze:
            free = _maze(rng, rows, cols)
        else:
            free = np.ones((rows, cols), bool)
            if rng.random() < rooms_prob:
                _add_rooms(rng, free)
            free &= rng.random((rows, cols)) >= draw_float(rng, wall_density)
        cells = np.argwhere(free)
        if len(cells) < 2:
            continue
        start = tuple(int(x) for x in cells[0 if rng.random() < 0.4 else rng.integers(len(cells))])
        dist = _bfs(free, start)
        free = dist >= 0
        if free.sum() >= 2:
            break
    else:  # practically unreachable: an open 1x2 corridor
        rows, cols, free, start = 1, 2, np.ones((1, 2), bool), (0, 0)
        dist = _bfs(free, start)

    cells = [tuple(int(x) for x in c) for c in np.argwhere(free)]
    others = [c for c in cells if c != start]
    rng.shuffle(others)
    goals = []
    if rng.random() < far_goal_prob:
        far = max(dist[c] for c in others)
        farthest = [c for c in others if dist[c] == far]
        goals.append(farthest[rng.integers(len(farthest))])
    goals += [c for c in others if c not in goals][:max(0, draw_int(rng, n_goals) - len(goals))]
    goals = goals or others[:1]
    rest = [c for c in others if c not in goals]
    rewards = {goals[0]: 1.0, **{g: float(rng.uniform(0.05, 0.5)) for g in goals[1:]}}
    terminal_goals = [g for g in goals if rng.random() < goal_terminal_prob]
    holes = []
    if rest and rng.random() < holes_prob:
        holes = rest[:round(draw_float(rng, hole_fraction) * len(cells))]
        negative = rng.random() < 0.3
        for h in holes:
            rewards[h] = -float(rng.uniform(0.1, 1.0)) if negative else 0.0
    cliffs = []
    rest = rest[len(holes):]
    if rest and rng.random() < cliff_prob:
        cliffs = rest[:max(1, len(rest) // draw_int(rng, (3, 10)))]
        penalty = -draw_float(rng, cliff_penalty)
        rewards.update({c: penalty for c in cliffs})
    step = -draw_float(rng, (0.001, 0.1), log=True) if rng.random() < step_cost_prob else 0.0
    p_slip = draw_float(rng, slip) if rng.random() < slip_prob else 0.0
    slip_to = "any" if rng.random() < slip_any_prob else "perpendicular"
    span = dist.max() if maze else rows + cols
    H = _clip_horizon(draw_float(rng, horizon_factor, log=True) * span, horizon)
    mdp = grid_mdp(free, start, rewards, H, slip=p_slip, slip_to=slip_to,
                   terminal_cells=[*terminal_goals, *holes], step_reward=step)

    S = mdp.n_states
    index = {c: i for i, c in enumerate(cells)}
    entry = np.full(S, step)
    kind = np.full(S, FLOOR)
    for c, r in rewards.items():
        entry[index[c]] += r
    kind[[index[c] for c in goals]] = GOAL
    kind[[index[c] for c in holes]] = HOLE
    kind[[index[c] for c in cliffs]] = CLIFF
    P, R, terminal = mdp.P.copy(), mdp.R.copy(), mdp.terminal
    if cliffs:  # entering a cliff pays its penalty (already in R) and lands on the start
        c_idx = [index[c] for c in cliffs]
        P[:, :, index[start]] += P[:, :, c_idx].sum(axis=2)
        P[:, :, c_idx] = 0.0
        _absorbing(P, R, terminal)
    if rng.random() < stay_action_prob:
        P = np.concatenate([P, np.eye(S)[:, None, :]], axis=1)
        R = np.concatenate([R, np.where(terminal, 0.0, entry)[:, None]], axis=1)
    return _mdp(P, R, mdp.initial, H, terminal, "grid",
                entry_reward=None if cliffs else entry, cells=np.array(cells), cell_kind=kind,
                layout=free, **({"deep": "maze"} if maze else {}))


def _add_rooms(rng, free: np.ndarray) -> None:
    """Wall lines across the grid, each with one or two doors."""
    rows, cols = free.shape
    for axis, n in ((0, rows), (1, cols)):
        if n >= 3 and rng.random() < 0.7:
            line = int(rng.integers(1, n - 1))
            length = cols if axis == 0 else rows
            doors = rng.choice(length, size=min(length, int(rng.integers(1, 3))), replace=False)
            wall = np.ones(length, bool)
            wall[doors] = False
            if axis == 0:
                free[line, wall] = False
            else:
                free[wall, line] = False


def _maze(rng, rows: int, cols: int) -> np.ndarray:
    """Free cells of a maze: junctions at even (row, column), joined through the cell between
    them along a random depth-first spanning tree (one path between any two), then each
    remaining wall between two junctions opened with a probability U(0, 0.15) (loops). An even
    number of rows (columns) leaves the last one all wall."""
    free = np.zeros((rows, cols), bool)
    jr, jc = (rows + 1) // 2, (cols + 1) // 2
    seen = np.zeros((jr, jc), bool)
    stack = [(int(rng.integers(jr)), int(rng.integers(jc)))]
    seen[stack[0]] = free[2 * stack[0][0], 2 * stack[0][1]] = True
    while stack:
        r, c = stack[-1]
        unseen = [(r + dr, c + dc) for dr, dc in MOVES
                  if 0 <= r + dr < jr and 0 <= c + dc < jc and not seen[r + dr, c + dc]]
        if not unseen:
            stack.pop()
            continue
        nr, nc = unseen[rng.integers(len(unseen))]
        seen[nr, nc] = free[2 * nr, 2 * nc] = free[r + nr, c + nc] = True
        stack.append((nr, nc))
    between = np.zeros_like(free)
    between[::2, 1:cols - 1:2] = True    # between two junctions of a row
    between[1:rows - 1:2, ::2] = True    # ... of a column
    free |= between & (rng.random(free.shape) < draw_float(rng, (0.0, 0.15)))
    return free


def _bfs(free: np.ndarray, start) -> np.ndarray:
    """Shortest move counts from `start` over free cells (-1: unreachable or wall)."""
    dist = -np.ones(free.shape, np.int64)
    dist[start] = 0
    queue = deque([start])
    rows, cols = free.shape
    while queue:
        r, c = queue.popleft()
        for dr, dc in MOVES:
            nr, nc = r + dr, c + dc
            if 0 <= nr < rows and 0 <= nc < cols and free[nr, nc] and dist[nr, nc] < 0:
                dist[nr, nc] = dist[r, c] + 1
                queue.append((nr, nc))
    return dist


def chain(rng, length=(3, 30), large_length=(31, 100), large_prob=0.1, nchain_prob=0.35,
          n_actions=(2, 4), forward=(0.2, 1.0), current=(0.0, 0.3), small_reward=(0.001, 0.3),
          goal_terminal_prob=0.2, horizon_factor=(1.0, 6.0), horizon=(5, 250)) -> TabularMDP:
    """Chains with a far, rare reward and a small nearby one; start at the left end.

    RiverSwim-like (probability 1 - nchain_prob): 'back' moves left surely and pays
      log-U(small_reward) in the leftmost state; 'forward' moves right with probability
      U(forward), is swept back with U(current) and otherwise stays; pushing forward at the right
      end pays 1 (or, with goal_terminal_prob, entering the right end pays 1 and terminates).
    n-chain-like (nchain_prob): 'forward' moves right (pays 1 at the end), 'back' returns to the
      start paying the small reward; each does the other's move with probability U(current).
    length, large_length, large_prob: the number of states. n_actions: the extra actions beyond
      two 'stay' or 'reset to start' with no reward. horizon: U(horizon_factor) * length, clipped.
    """
    n = draw_size(rng, length, large_length, large_prob)
    A = max(2, draw_int(rng, n_actions))
    FWD, BACK = 0, 1
    P = np.zeros((n, A, n))
    R = np.zeros((n, A))
    terminal = np.zeros(n, bool)
    small = draw_float(rng, small_reward, log=True)
    s = np.arange(n)
    right, left = np.minimum(s + 1, n - 1), np.maximum(s - 1, 0)
    if rng.random() < nchain_prob:
        slip = draw_float(rng, current)
        np.add.at(P, (s, FWD, right), 1.0 - slip)
        np.add.at(P, (s, FWD, 0), slip)
        np.add.at(P, (s, BACK, 0), 1.0 - slip)
        np.add.at(P, (s, BACK, right), slip)
        at_end = (s == n - 1).astype(float)
        R[:, FWD] = (1.0 - slip) * at_end + slip * small
        R[:, BACK] = (1.0 - slip) * small + slip * at_end
    else:
        p_fwd = draw_float(rng, forward)
        p_back = min(draw_float(rng, current), 1.0 - p_fwd)
        np.add.at(P, (s, FWD, right), p_fwd)
        np.add.at(P, (s, FWD, left), p_back)
        np.add.at(P, (s, FWD, s), 1.0 - p_fwd - p_back)
        P[s, BACK, left] = 1.0
        R[0, BACK] = small
        if rng.random() < goal_terminal_prob:  # entering the right end pays 1 and ends
            terminal[n - 1] = True
            R[:, FWD] = P[:, FWD, n - 1]
        else:
            R[n - 1, FWD] = 1.0
    for a in range(2, A):  # distractor actions
        if rng.random() < 0.5:
            P[s, a, s] = 1.0
        else:
            P[s, a, 0] = 1.0
    _absorbing(P, R, terminal)
    H = _clip_horizon(draw_float(rng, horizon_factor, log=True) * n, horizon)
    return _mdp(P, R, np.eye(n)[0], H, terminal, "chain")


def graph(rng, n_states=(3, 64), large_states=(65, 200), large_prob=0.08, n_actions=(2, 6),
          layered_prob=0.35, n_subgoals=(0, 4), cost_prob=0.4, goal_terminal_prob=0.5,
          trap_prob=0.3, horizon_factor=(1.0, 4.0), horizon=(5, 250), square_prob=0.0,
          square_side=(3, 14)) -> TabularMDP:
    """Deterministic graphs with sub-goals: every action leads to one next state.

    General (1 - layered_prob): a random spanning tree from the start (every state reachable;
      a random locality window makes it deep or bushy) plus random other edges (self-loops,
      returns to the start, jumps); the goal (entry pays 1) is a state farthest from the start;
      n_subgoals states pay U(0.05, 0.3) on entry; with trap_prob a few dead-end terminal states.
    Layered (DeepSea-like, layered_prob): L layers of W states; each action moves to the next
      layer, one column left, straight or right (meanings drawn per state); the last layer leads
      to a terminal state; the reward 1 is for moving right at the far corner.
      Width W <= min(8, sqrt(S)), L = S / W layers: usually longer than wide.
    Square (DeepSea-like triangle, square_prob, before the above): W = L = side drawn
      log-uniformly from square_side, so that the reward lies W rightward moves in a row from
      the start, out of reach of dithering as the side grows.
    cost_prob: probability that half of the actions (general) or the rightward moves (layered)
      cost a little. goal_terminal_prob: the goal ends the episode.
    horizon: U(horizon_factor) * (distance to the goal), clipped (layered: L half of the time).
    """
    S_target = draw_size(rng, n_states, large_states, large_prob)
    A = draw_int(rng, n_actions)
    layered = (n_subgoals, cost_prob, horizon_factor, horizon)
    if square_prob > 0 and rng.random() < square_prob:  # no draw when off: the stream stays
        side = draw_int(rng, square_side)
        return _layered_graph(rng, side, side, A, *layered, deep="square")
    if rng.random() < layered_prob and S_target >= 5:
        W = int(rng.integers(2, max(3, min(9, int(np.sqrt(S_target)) + 1))))
        return _layered_graph(rng, max(2, (S_target - 1) // W), W, A, *layered)
    S = S_target
    nxt = -np.ones((S, A), np.int64)
    window = draw_int(rng, (1, S))
    for v in range(1, S):  # spanning tree: v's parent is a recent state with a free action
        u = int(rng.integers(max(0, v - window), v))
        free = np.flatnonzero(nxt[u] < 0)
        if not free.size:
            u, free = v - 1, np.arange(A)     # v - 1 has no child yet
        nxt[u, free[rng.integers(free.size)]] = v
    rest = nxt < 0
    kind = rng.random(rest.shape)
    random_targets = rng.integers(S, size=rest.shape)
    nxt[rest] = np.where(kind < 0.4, np.arange(S)[:, None], np.where(kind < 0.6, 0, random_targets))[rest]
    dist = _graph_bfs(nxt, 0)
    far = np.flatnonzero(dist == dist.max())
    goal = int(far[rng.integers(far.size)])
    entry = np.zeros(S)
    entry[goal] = 1.0
    candidates = np.setdiff1d(np.arange(1, S), [goal])
    k = min(candidates.size, draw_int(rng, n_subgoals, log=False))
    entry[rng.choice(candidates, size=k, replace=False)] = rng.uniform(0.05, 0.3, size=k)
    terminal = np.zeros(S, bool)
    terminal[goal] = rng.random() < goal_terminal_prob
    if rng.random() < trap_prob:
        traps = np.setdiff1d(candidates, np.flatnonzero(entry))
        if traps.size:
            terminal[rng.choice(traps, size=min(traps.size, draw_int(rng, (1, 3))),
                                replace=False)] = True
    R = entry[nxt]
    if rng.random() < cost_prob:
        R -= draw_float(rng, (0.001, 0.05), log=True) * (rng.random((S, A)) < 0.5)
    P = np.zeros((S, A, S))
    np.put_along_axis(P, nxt[..., None], 1.0, axis=2)
    _absorbing(P, R, terminal)
    H = _clip_horizon(draw_float(rng, horizon_factor, log=True) * max(1, dist[goal]), horizon)
    return _mdp(P, R, np.eye(S)[0], H, terminal, "graph")


def _layered_graph(rng, L, W, A, n_subgoals, cost_prob, horizon_factor, horizon, **info):
    S = L * W + 1
    end = S - 1
    layer, col = np.divmod(np.arange(L * W), W)
    offsets = rng.integers(-1, 2, size=(L * W, A))
    two = np.argsort(rng.random((L * W, A)), axis=1)[:, :2]    # right and left always possible
    offsets[np.arange(L * W), two[:, 0]] = 1
    offsets[np.arange(L * W), two[:, 1]] = -1
    new_col = np.clip(col[:, None] + offsets, 0, W - 1)
    nxt = np.where(layer[:, None] < L - 1, (layer[:, None] + 1) * W + new_col, end)
    R = np.zeros((S, A))
    corner = (L - 1) * W + (W - 1)
    R[corner] = np.where(offsets[corner] == 1, 1.0, 0.0)
    if rng.random() < cost_prob:
        R[:end] -= np.where(offsets == 1, draw_float(rng, (0.001, 0.05), log=True) / L, 0.0)
    k = draw_int(rng, n_subgoals, log=False)
    if k:
        states = rng.choice(L * W, size=min(k, L * W), replace=False)
        R[states, rng.integers(A, size=states.size)] += rng.uniform(0.01, 0.2, size=states.size)
    P = np.zeros((S, A, S))
    P[np.arange(L * W)[:, None], np.arange(A), nxt] = 1.0
    terminal = np.zeros(S, bool)
    terminal[end] = True
    _absorbing(P, R, terminal)
    H = L if rng.random() < 0.5 else _clip_horizon(draw_float(rng, horizon_factor, log=True) * L,
                                                    horizon)
    H = int(np.clip(H, horizon[0], horizon[1]))
    return _mdp(P, R, np.eye(S)[0], H, terminal, "graph", layered=(L, W), **info)


def _graph_bfs(nxt: np.ndarray, start: int) -> np.ndarray:
    dist = np.full(nxt.shape[0], -1)
    dist[start] = 0
    frontier = [start]
    while frontier:
        new = np.unique(nxt[frontier].ravel())
        new = new[dist[new] < 0]
        dist[new] = dist[frontier[0]] + 1
        frontier = list(new)
    return dist


def tree(rng, depth=(1, 5), branching=(2, 6), max_states=200, back_action_prob=0.5,
         stochastic_prob=0.5, success=(0.05, 1.0), leaf_terminal_prob=0.4, n_subgoals=(0, 3),
         horizon=(5, 200)) -> TabularMDP:
    """Trees and hubs with sub-goals: the root is the start; action i goes to child i.

    depth, branching: a complete tree (depth reduced until at most max_states states); depth 1
      is a hub with rooms (SixArms-like). back_action_prob: an extra action to the parent.
    stochastic_prob, success: moves down succeed with probability U(success) (else stay); half
      the time the richest leaves are the hardest to enter.
    leaf_terminal_prob: leaves are terminal and pay on entry; otherwise a leaf is a room where
      action 0 stays and pays the leaf's value and the others go back up.
    Leaf values: one is 1, the others U(0, 0.6). n_subgoals: inner states paying U(0.01, 0.2)
      on entry. horizon: log-uniform, at least depth + 1.
    """
    b, d = draw_int(rng, branching), draw_int(rng, depth)
    while d > 1 and (b ** (d + 1) - 1) // (b - 1) > max_states:
        d -= 1
    S = (b ** (d + 1) - 1) // (b - 1)
    back = rng.random() < back_action_prob
    A = b + int(back)
    s = np.arange(S)
    parent = np.maximum((s - 1) // b, 0)
    leaf = b * s + 1 >= S
    leaves = np.flatnonzero(leaf)
    value = np.zeros(S)
    value[leaves] = rng.uniform(0.0, 0.6, size=leaves.size)
    value[leaves[rng.integers(leaves.size)]] = 1.0
    p = np.ones((S, b))
    if rng.random() < stochastic_prob:
        p = rng.uniform(*success, size=(S, b))
        if rng.random() < 0.5:  # the richer a leaf, the harder to enter
            into = leaves[np.argsort(-value[leaves])]
            p_sorted = np.sort(p[parent[into], (into - 1) % b])
            p[parent[into], (into - 1) % b] = p_sorted
    terminal_leaves = rng.random() < leaf_terminal_prob
    entry = np.where(leaf, value, 0.0) if terminal_leaves else np.zeros(S)
    inner = np.flatnonzero(~leaf)[1:]
    k = min(inner.size, draw_int(rng, n_subgoals, log=False))
    entry[rng.choice(inner, size=k, replace=False)] = rng.uniform(0.01, 0.2, size=k)
    P = np.zeros((S, A, S))
    R_stay = np.zeros((S, A))
    for a in range(b):
        child = b * s + 1 + a
        ok = ~leaf
        P[s[ok], a, child[ok]] = p[ok, a]
        P[s[ok], a, s[ok]] += 1.0 - p[ok, a]
    if back:
        P[s, b, parent] = 1.0
    terminal = leaf if terminal_leaves else np.zeros(S, bool)
    if not terminal_leaves:  # rooms: action 0 stays and pays, others climb back
        P[leaves] = 0.0
        P[leaves, 0, leaves] = 1.0
        P[leaves[:, None], np.arange(1, A), parent[leaves][:, None]] = 1.0
        R_stay[leaves, 0] = value[leaves]
    R = P.reshape(S * A, S) @ entry
    R = R.reshape(S, A) + R_stay
    _absorbing(P, R, terminal)
    H = max(d + 1, draw_int(rng, horizon))
    return _mdp(P, R, np.eye(S)[0], H, terminal, "tree",
                entry_reward=entry if terminal_leaves else None)


def bandit(rng, n_actions=(2, 8), horizon=(5, 250), noise=(0.05, 1.0)) -> TabularMDP:
    """Multi-armed bandits: one state (S = 1), arm means U(0, 1) or Beta(0.5, 0.5); observed
    rewards carry Gaussian noise of std U(noise); H pulls per episode (log-uniform)."""
    A, H = draw_int(rng, n_actions), draw_int(rng, horizon)
    R = (rng.uniform(size=(1, A)) if rng.random() < 0.5 else rng.beta(0.5, 0.5, size=(1, A)))
    return _mdp(np.ones((1, A, 1)), R, np.ones(1), H, None, "bandit",
                reward_noise=draw_float(rng, noise))


FAMILIES = {"dense": dense, "garnet": garnet, "grid": grid, "chain": chain, "graph": graph,
            "tree": tree, "bandit": bandit}


# ---- shared post-processing ------------------------------------------------------------------
def transform_rewards(mdp: TabularMDP, rng, scale_log10=(-2.0, 2.0), negate_prob=0.15,
                      offset_prob=0.2, offset=(-1.0, 1.0)) -> TabularMDP:
    """R <- scale * (sign * R + offset) on non-terminal states (terminal rewards stay 0).

    scale = 10**U(scale_log10); sign = -1 with probability negate_prob; offset = U(offset) times
    max|R| with probability offset_prob, else 0 (with terminal states, an offset is a living
    reward or cost and changes the problem: intended). Entry rewards and reward noise follow.
    """
    live = ~mdp.terminal
    magnitude = float(np.abs(mdp.R[live]).max()) if live.any() else 0.0
    magnitude = magnitude if magnitude > 0 else 1.0
    scale = 10.0 ** rng.uniform(*scale_log10)
    sign = -1.0 if rng.random() < negate_prob else 1.0
    shift = rng.uniform(*offset) * magnitude if rng.random() < offset_prob else 0.0
    R = np.where(live[:, None], scale * (sign * mdp.R + shift), 0.0)
    info = dict(getattr(mdp, "info", {}))
    if "entry_reward" in info:
        info["entry_reward"] = scale * (sign * info["entry_reward"] + shift)
    if "reward_noise" in info:
        info["reward_noise"] = scale * info["reward_noise"]
    info["reward_transform"] = (scale, sign, shift)
    out = mdp.with_rewards(R)
    out.info = info
    return out


def permute(mdp: TabularMDP, rng) -> TabularMDP:
    """The same MDP under a random relabelling of its states and of its actions.

    info["state_perm"][s] is the new index of (canonical) state s, info["action_perm"][a] that
    of action a; per-state info entries are permuted along.
    """
    S, A = mdp.n_states, mdp.n_actions
    state_perm, action_perm = rng.permutation(S), rng.permutation(A)
    inv_s = np.argsort(state_perm)
    out = mdp.relabelled(state_perm, action_perm)
    info = dict(getattr(mdp, "info", {}))
    for key in PER_STATE_INFO:
        if key in info:
            info[key] = np.asarray(info[key])[inv_s]
    if "state_perm" in info:  # compose with an earlier relabelling
        state_perm = state_perm[info["state_perm"]]
        action_perm = action_perm[info["action_perm"]]
    info["state_perm"], info["action_perm"] = state_perm, action_perm
    out.info = info
    return out
