"""Where rlfm's online gap comes from: the data its acting rule collects, or what its
exploitation policy makes of data. Each learner (rlfm, PSRL at its defaults) runs online; after
every episode, three policies are scored exactly on the same statistic: the learner's own
exploitation policy, rlfm's exploitation policy fitted to that statistic, and CE-VI's greedy
plan on it. AUC over the episodes, mean over seeds.

    python benchmarks/online_diagnosis.py [--seeds 3]

If rlfm's exploitation on PSRL's data is close to PSRL's own AUC while rlfm's own AUC is far
below, the gap is in the data (exploration), not in the decisions.
"""

from __future__ import annotations

import argparse

import numpy as np

from rlfm import agents, envs
from rlfm.evaluate import exact_score, online_run
from rlfm.mdp import ScoreReference, TabularMDP

from common import machine, write_section

ENVS = {"FrozenLake-v1": 300, "rlfm/SixArms-v0": 300, "rlfm/NChain-v0": 300,
        "rlfm/FourRooms-v0": 300, "rlfm/DeepSea-v0": 300}
LEARNERS = ("rlfm", "psrl")


def diagnose(env_id: str, learner: str, episodes: int, seeds: int) -> np.ndarray:
    """Mean AUC over seeds of (the learner's own policy, rlfm fitted to its data, CE-VI on its
    data)."""
    env = envs.make(env_id)
    mdp = TabularMDP.from_gymnasium(env)
    scored = exact_score(mdp, ScoreReference.of(mdp))
    score = lambda pi: scored(pi, 0)  # noqa: E731
    aucs = []
    for seed in range(seeds):
        agent, rlfm, cevi = (agents.make(name, mdp.n_states, mdp.n_actions, mdp.horizon,
                                         seed=seed) for name in (learner, "rlfm", "cevi"))
        curve = []

        def record(policy, _episode, agent=agent, rlfm=rlfm, cevi=cevi, curve=curve):
            curve.append((score(policy), score(rlfm.fit(agent.stats).policy()),
                          score(cevi.fit(agent.stats).policy())))
            return curve[-1][0]

        online_run(env, mdp, agent, episodes, seed=seed, score=record)
        aucs.append(np.mean(curve, axis=0))
    return np.mean(aucs, axis=0)


def main(seeds: int) -> str:
    lines = ["## Online: data or decisions", "",
             f"`python benchmarks/online_diagnosis.py --seeds {seeds}` on {machine()}: shipped "
             f"checkpoint; each learner runs online (seeds 0–{seeds - 1}, E episodes), and "
             "after every episode three policies are scored exactly on its statistic. AUC.", "",
             "| env | E | learner | its own policy | rlfm on its data | CE-VI on its data |",
             "|---|---|---|---|---|---|"]
    for env_id, episodes in ENVS.items():
        for learner in LEARNERS:
            own, rlfm, cevi = diagnose(env_id, learner, episodes, seeds)
            lines.append(f"| {env_id} | {episodes} | {learner} | {own:.2f} | {rlfm:.2f} | "
                         f"{cevi:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    text = main(parser.parse_args().seeds)
    write_section("37_online_diagnosis", text)
    print(text)
