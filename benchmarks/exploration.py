"""How the rlfm agent should explore: the three modes of agents/rlfm.py compared online with
the shipped checkpoint. The default is chosen on held-out prior MDPs (synthetic, never trained
on), not on the suite; the suite rows show how the choice carries over.

    python benchmarks/exploration.py
"""

import numpy as np

from rlfm import agents, evaluate
from rlfm.envs import TabularEnv
from rlfm.mdp import ScoreReference
from rlfm.priors.sampler import sample_mdp

from common import machine, write_section

ENVS = ["FrozenLake-v1", "CliffWalking-v1", "rlfm/RiverSwim-v0", "rlfm/NChain-v0",
        "rlfm/DeepSea-v0", "rlfm/Garnet20-v0"]
MODES = ["greedy", "gumbel", "sample"]
PRIOR_SEED = 2_000_003  # a stream used neither for training nor for validation
PRIOR_MDPS = 40


def prior_auc(mode: str, episodes: int) -> float:
    """Mean online AUC (scores clipped to [-1, 1]) over held-out prior MDPs, one seed each."""
    aucs = []
    for i in range(PRIOR_MDPS):
        mdp = sample_mdp(np.random.default_rng(np.random.SeedSequence(PRIOR_SEED, spawn_key=(i,))))
        agent = agents.make("rlfm", mdp.n_states, mdp.n_actions, mdp.horizon, seed=i,
                            exploration=mode)
        run = evaluate.online_run(TabularEnv(mdp), mdp, agent, episodes, seed=i,
                                  reference=ScoreReference.of(mdp))
        aucs.append(np.clip(run.scores, -1.0, 1.0).mean())
    return float(np.mean(aucs))


def main(episodes: int = 100, seeds: int = 5) -> str:
    lines = ["## rlfm exploration modes", "",
             f"`python benchmarks/exploration.py` on {machine()}: shipped checkpoint, online "
             f"protocol. First row: mean AUC over {PRIOR_MDPS} held-out prior MDPs (one seed "
             f"each, {episodes // 2} episodes, scores clipped to [-1, 1]) — the default mode is "
             f"the best there. Other rows: {seeds} seeds, {episodes} episodes; episodes to 0.9 "
             "/ AUC / regret.", "",
             "| env | " + " | ".join(MODES) + " |", "|---|" + "---|" * len(MODES)]
    lines.append("| held-out prior MDPs (AUC) | "
                 + " | ".join(f"{prior_auc(mode, episodes // 2):.3f}" for mode in MODES) + " |")
    for env in ENVS:
        cells = []
        for mode in MODES:
            e = evaluate.run_online(env, ["rlfm"], episodes, seeds, workers=2,
                                    fixed={"rlfm": {"exploration": mode}})["agents"]["rlfm"]
            cells.append(f"{e['episodes_to_90'] or 'never'} / {e['auc']:.2f} / {e['regret']:.1f}")
        lines.append(f"| {env} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    text = main()
    write_section("35_exploration", text)
    print(text)
