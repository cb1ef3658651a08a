"""Backward-induction time and memory for FrozenLake 8x8, Taxi and a 2,000-state gridworld.

    python benchmarks/solver_speed.py
"""

from __future__ import annotations

import numpy as np

import rlfm
from rlfm.gridworld import grid_mdp
from rlfm.mdp import backward_induction, evaluate_policy, uniform_policy

from common import best_time, machine, write_section


def big_grid(rows: int = 40, cols: int = 50):
    """An open slippery grid with 2,000 states: start top-left, goal bottom-right."""
    free = np.ones((rows, cols), bool)
    goal = (rows - 1, cols - 1)
    return grid_mdp(free, (0, 0), {goal: 1.0}, horizon=400, slip=0.2, terminal_cells=[goal],
                    step_reward=-0.01, name="Grid-2000")


def main() -> str:
    cases = [("FrozenLake 8x8", rlfm.envs.load_mdp("FrozenLake8x8-v1")),
             ("Taxi", rlfm.envs.load_mdp("Taxi-v3")),
             ("Grid 40x50", big_grid())]
    lines = ["## Exact solvers", "",
             f"`python benchmarks/solver_speed.py` on {machine()}; best of 5 runs, one process.", "",
             "| MDP | S | A | H | storage | non-zeros | P memory | backward induction | "
             "policy evaluation |", "|---|---|---|---|---|---|---|---|---|"]
    for name, mdp in cases:
        T = mdp.transition_matrix
        nbytes = T.data.nbytes + T.indices.nbytes + T.indptr.nbytes if mdp.is_sparse else T.nbytes
        solve = best_time(lambda m=mdp: backward_induction(m))
        uniform = uniform_policy(mdp)
        evaluate = best_time(lambda m=mdp, u=uniform: evaluate_policy(m, u))
        lines.append(f"| {name} | {mdp.n_states} | {mdp.n_actions} | {mdp.horizon} | "
                     f"{'sparse' if mdp.is_sparse else 'dense'} | {mdp.nnz:,} | "
                     f"{nbytes / 2**20:.2f} MiB | {solve * 1e3:.1f} ms | {evaluate * 1e3:.1f} ms |")
    dense_grid = 2000 * 4 * 2000 * 8 / 2**20
    lines += ["", f"A dense (S, A, S) array for the 2,000-state grid would take {dense_grid:.0f} MiB."]
    return "\n".join(lines)


if __name__ == "__main__":
    text = main()
    write_section("10_solver_speed", text)
    print(text)
