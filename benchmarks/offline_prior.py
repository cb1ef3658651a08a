"""The offline protocol on held-out prior MDPs (synthetic, never trained on; the stream of
exploration.py): for each MDP, datasets of D episodes of uniform, medium and expert behaviour
(D as in the suite), and the exact normalised score of what rlfm's exploitation policy
(`fit`, the shipped checkpoint) and certainty-equivalent planning (CE-VI: the time-dependent
greedy plan of the empirical model) make of the same data. The ground on which offline
settings and checkpoints are to be chosen (the suite is for reporting), and a map of where the
network's decisions fall short of planning on the data: by behaviour, amount of data and prior
family.

With --against NAME, another checkpoint's exploitation policy (a shipped name or a path) is
run on the same datasets, and a table gives the shipped one's paired difference from it per
cell (how a new default was chosen: held-out prior MDPs, not the suite).

Each MDP's row is saved in benchmarks/results/offline_prior.json when done and is not run
again while the weights the exploitation policies read, the horizons they are asked at and the
package version are the same.

    python benchmarks/offline_prior.py [--mdps 400] [--workers 2] [--against rlfm-v3-posterior]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import rlfm
from exploration import held_out_mdp  # a sibling script
from rlfm import agents
from rlfm.bench import rlfm_fingerprints
from rlfm.envs import TabularEnv
from rlfm.evaluate import DEFAULT_DATASET_EPISODES, collect_dataset, exact_score
from rlfm.mdp import ScoreReference

from common import RESULTS_DIR, machine, saved_rows, write_section

ROWS = RESULTS_DIR / "offline_prior.json"
BEHAVIORS = ("uniform", "medium", "expert")
SIZES = DEFAULT_DATASET_EPISODES
AGENTS = ("rlfm", "cevi")
CELLS = [(b, d) for b in BEHAVIORS for d in SIZES]
SHORT = 0.02  # a cell where rlfm is below CE-VI by more than this counts as short


def _row(_run: str, checkpoint: str | None, i: int) -> tuple[str, list]:
    """The MDP's family and, per (behaviour, D) of CELLS, the clipped scores of AGENTS (rlfm
    with `checkpoint`, the shipped one when None)."""
    torch.set_num_threads(1)
    mdp = held_out_mdp(i)
    env, score = TabularEnv(mdp), exact_score(mdp, ScoreReference.of(mdp))
    fitted = [agents.make(name, mdp.n_states, mdp.n_actions, mdp.horizon, seed=i,
                          **({"checkpoint": checkpoint} if name == "rlfm" and checkpoint else {}))
              for name in AGENTS]
    scores = []
    for behavior, episodes in CELLS:
        data = collect_dataset(env, mdp, behavior, episodes, seed=i)
        scores.append([float(np.clip(score(agent.fit(data).policy(), 0), -1.0, 1.0))
                       for agent in fitted])
    return mdp.info["family"], scores


def cell_table(cell) -> list[str]:
    """A behaviour x D table whose cells are `cell(index in CELLS)`."""
    return (["| behaviour | " + " | ".join(f"D={d}" for d in SIZES) + " |",
             "|---|" + "---|" * len(SIZES)] +
            [f"| {b} | " + " | ".join(cell(CELLS.index((b, d))) for d in SIZES) + " |"
             for b in BEHAVIORS])


def section(rows: dict) -> str:
    families = np.array([row[0] for row in rows.values()])
    s = np.array([row[1] for row in rows.values()])          # (MDPs, cells, agents)
    n = len(rows)
    diff = s[:, :, 0] - s[:, :, 1]
    lines = ["## Offline on held-out prior MDPs", "",
             f"`python benchmarks/offline_prior.py` on {machine()}: {n} held-out prior MDPs "
             "(the stream of exploration.py), datasets of D episodes of each behaviour (seed = "
             "the MDP's index), the shipped checkpoint's exploitation policy (`fit`) against "
             "CE-VI (the time-dependent greedy plan of the empirical model) on the same data; "
             "exact normalised scores clipped to [-1, 1]. Cells: mean rlfm / mean CE-VI "
             f"(difference ± SE; MDPs where rlfm is below CE-VI by more than {SHORT}).", ""]
    lines += cell_table(lambda c: f"{s[:, c, 0].mean():.3f} / {s[:, c, 1].mean():.3f} "
                        f"({diff[:, c].mean():+.3f} ± {diff[:, c].std(ddof=1) / np.sqrt(n):.3f}; "
                        f"{int((diff[:, c] < -SHORT).sum())})")
    rich = [c for c, (_, d) in enumerate(CELLS) if d >= 100]
    lines += ["", "By prior family, with plentiful data (D ≥ 100, all behaviours): mean rlfm / "
              "mean CE-VI, the difference, and the worst MDP-cell difference.", "",
              "| family | MDPs | rlfm | CE-VI | difference | worst |", "|---|---|---|---|---|---|"]
    for family in sorted(set(families)):
        m = families == family
        x = diff[m][:, rich]
        lines.append(f"| {family} | {int(m.sum())} | {s[m][:, rich, 0].mean():.3f} | "
                     f"{s[m][:, rich, 1].mean():.3f} | {x.mean():+.3f} | {x.min():+.3f} |")
    return "\n".join(lines)


def comparison(rows: dict, other: dict, against: str) -> str:
    """The shipped checkpoint's paired difference from `against`, per cell."""
    s = np.array([row[1] for row in rows.values()])[:, :, 0]
    o = np.array([row[1] for row in other.values()])[:, :, 0]
    n = len(rows)
    lines = ["", f"The shipped checkpoint against `{against}` on the same datasets (`--against "
             f"{against}`): mean {against} → mean shipped (paired difference ± SE).", ""]
    d = s - o
    lines += cell_table(lambda c: f"{o[:, c].mean():.3f} → {s[:, c].mean():.3f} "
                        f"({d[:, c].mean():+.3f} ± {d[:, c].std(ddof=1) / np.sqrt(n):.3f})")
    x = d.mean(axis=1)
    lines += ["", f"Over all cells: {x.mean():+.4f} ± {x.std(ddof=1) / np.sqrt(n):.4f}."]
    return "\n".join(lines)


def main(mdps: int, workers: int, against: str | None = None) -> str:
    # the weights the exploitation policies read and the horizons they are asked at
    policy = lambda name: rlfm_fingerprints(name and {"rlfm": {"checkpoint": name}})[1]  # noqa: E731
    key = {"policy": policy(None), "rlfm": rlfm.__version__,
           "cells": [f"{b}:{d}" for b, d in CELLS], "agents": list(AGENTS)}
    runs = {("rlfm", None): ("rows", mdps)}
    if against:
        runs[("rlfm", against)] = (f"against {policy(against)}", mdps)
    rows = saved_rows(ROWS, key, runs, _row, workers)
    shipped = {i: rows[("rlfm", None)][i] for i in range(mdps)}
    text = section(shipped)
    if against:
        text += "\n" + comparison(shipped, {i: rows[("rlfm", against)][i] for i in range(mdps)},
                                   against)
    return text


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mdps", type=int, default=400, help="held-out MDPs 0..mdps-1")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--against", default=None,
                        help="another checkpoint to compare the shipped one with, paired")
    args = parser.parse_args()
    text = main(args.mdps, args.workers, args.against)
    write_section("26_offline_prior", text)
    print(text)
