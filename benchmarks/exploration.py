"""How the rlfm agent should explore: the modes of agents/rlfm.py compared online with the
shipped checkpoint (rlfm-v3-posterior: rlfm-v3 plus its posterior sampler) over 50 episodes
on held-out prior MDPs (synthetic, never trained on), and on a few suite MDPs; the posterior
modes at spread 1. The default is chosen on held-out prior MDPs, not on the suite, at the
suite's budget (acting_rule.py).

    python benchmarks/exploration.py
"""

from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch

from rlfm import agents, evaluate
from rlfm.envs import TabularEnv
from rlfm.mdp import ScoreReference
from rlfm.priors.sampler import sample_mdp

from common import machine, write_section

ENVS = ["FrozenLake-v1", "CliffWalking-v1", "rlfm/RiverSwim-v0", "rlfm/NChain-v0",
        "rlfm/FourRooms-v0", "rlfm/DeepSea-v0", "rlfm/Garnet20-v0"]
MODES = ["greedy", "gumbel", "sample", "persistent", "posterior", "mixed"]
KNOBS = {mode: {"exploration": mode} for mode in MODES}
for _mode in ("posterior", "mixed"):   # at spread 1, the sampler's own draws (other spreads:
    KNOBS[_mode].update(checkpoint="rlfm-v3-posterior", spread=1.0)   # posterior_spread.py)
PRIOR_SEED = 2_000_003  # a stream used neither for training nor for validation
PRIOR_MDPS = 200  # 40 once ranked a mode first that 200 fresh ones ranked second


def held_out_mdp(i: int, prior=None):
    """Held-out MDP i of `prior` (the default prior when None)."""
    return sample_mdp(np.random.default_rng(np.random.SeedSequence(PRIOR_SEED, spawn_key=(i,))),
                      prior)


def prior_run(knobs: dict, episodes: int, i: int, prior=None) -> tuple[np.ndarray, str]:
    """The rlfm agent's online scores (clipped to [-1, 1]) on held-out MDP i of `prior` (the
    default prior when None), seed i, and the MDP's prior family."""
    torch.set_num_threads(1)
    mdp = held_out_mdp(i, prior)
    agent = agents.make("rlfm", mdp.n_states, mdp.n_actions, mdp.horizon, seed=i, **knobs)
    run = evaluate.online_run(TabularEnv(mdp), mdp, agent, episodes, seed=i,
                              reference=ScoreReference.of(mdp))
    return np.clip(run.scores, -1.0, 1.0), mdp.info["family"]


def _prior_run(args) -> float:
    mode, episodes, i = args
    return float(prior_run(KNOBS[mode], episodes, i)[0].mean())


def prior_aucs(mode: str, episodes: int) -> np.ndarray:
    """Online AUC (scores clipped to [-1, 1]) of each held-out prior MDP, one seed each."""
    with ProcessPoolExecutor(2) as pool:
        return np.array(list(pool.map(_prior_run, [(mode, episodes, i)
                                                   for i in range(PRIOR_MDPS)])))


def main(episodes: int = 100, seeds: int = 5) -> str:
    lines = ["## rlfm exploration modes", "",
             f"`python benchmarks/exploration.py` on {machine()}: shipped checkpoint, online "
             f"protocol. First row: mean AUC over {PRIOR_MDPS} held-out prior MDPs (one seed "
             f"each, {episodes // 2} episodes, scores clipped to [-1, 1]); posterior and mixed at "
             f"spread 1 (other spreads in \"The posterior sampler's spread\"; the agent's "
             f"default, mixed at spread 1,000, is chosen at the suite's budget in \"Acting rule "
             f"at the suite's budget\"). Other rows: {seeds} seeds, {episodes} episodes; "
             "episodes to 0.9 / AUC / regret.", "",
             "| env | " + " | ".join(MODES) + " |", "|---|" + "---|" * len(MODES)]
    aucs = {mode: prior_aucs(mode, episodes // 2) for mode in MODES}
    lines.append("| held-out prior MDPs (AUC) | "
                 + " | ".join(f"{aucs[mode].mean():.3f}" for mode in MODES) + " |")
    lines.append("| paired difference from sample (± SE) | " + " | ".join(
        f"{d.mean():+.3f} ± {d.std(ddof=1) / np.sqrt(len(d)):.3f}"
        for d in (aucs[mode] - aucs["sample"] for mode in MODES)) + " |")
    for env in ENVS:
        cells = []
        for mode in MODES:
            e = evaluate.run_online(env, ["rlfm"], episodes, seeds, workers=2,
                                    fixed={"rlfm": KNOBS[mode]})["agents"]["rlfm"]
            cells.append(f"{e['episodes_to_90'] or 'never'} / {e['auc']:.2f} / {e['regret']:.1f}")
        lines.append(f"| {env} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    text = main()
    write_section("35_exploration", text)
    print(text)
