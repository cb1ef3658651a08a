"""Can the network plan? The rlfm agent's exploitation policy (offline `fit`, shipped
checkpoint) from the statistic of D episodes of uniform-random data against CE-VI's first-step
plan on the same statistic (both stationary), scored exactly. With plentiful data it must match
CE-VI.

    python benchmarks/planning.py
"""

import rlfm
from rlfm.checkpoint import PRETRAINED
from rlfm.evaluate import collect_dataset
from rlfm.mdp import ScoreReference, backward_induction, evaluate_policy

from common import machine, write_section

ENVS = ["FrozenLake-v1", "FrozenLake8x8-v1", "CliffWalking-v1", "rlfm/SixArms-v0",
        "rlfm/Garnet50-v0"]
SIZES = [10, 100, 1000]


def main(seeds: int = 3) -> str:
    lines = ["## Planning from random data", "",
             f"`python benchmarks/planning.py` on {machine()}: checkpoint `{PRETRAINED}`; mean "
             f"over {seeds} datasets of D uniform-random episodes; the rlfm agent's exploitation "
             "policy / CE-VI's first-step plan.", "", "| env | " + " | ".join(f"D={d}" for d in SIZES) + " |",
             "|---|" + "---|" * len(SIZES)]
    for env_id in ENVS:
        env = rlfm.envs.make(env_id)
        mdp = rlfm.TabularMDP.from_gymnasium(env)
        ref = ScoreReference.of(mdp)
        cells = []
        for d in SIZES:
            net = cevi = 0.0
            for seed in range(seeds):
                stats = collect_dataset(env, mdp, "uniform", d, seed)
                agent = rlfm.agents.make("rlfm", mdp.n_states, mdp.n_actions, mdp.horizon, seed)
                net += ref.normalise(evaluate_policy(mdp, agent.fit(stats).policy()[0]))
                plan = backward_induction(stats.empirical_mdp(mdp.horizon)).policy[0]
                cevi += ref.normalise(evaluate_policy(mdp, plan))
            cells.append(f"{net / seeds:.2f} / {cevi / seeds:.2f}")
        lines.append(f"| {env_id} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    text = main()
    write_section("36_planning", text)
    print(text)
