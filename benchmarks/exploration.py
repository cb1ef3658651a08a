"""How the rlfm agent should explore: the three modes of agents/rlfm.py compared online with
the shipped checkpoint (5 seeds, 100 episodes).

    python benchmarks/exploration.py
"""

from rlfm import evaluate

from common import machine, write_section

ENVS = ["FrozenLake-v1", "rlfm/RiverSwim-v0", "rlfm/NChain-v0", "rlfm/DeepSea-v0"]
MODES = ["greedy", "gumbel", "sample"]


def main(episodes: int = 100, seeds: int = 5) -> str:
    lines = ["## rlfm exploration modes", "",
             f"`python benchmarks/exploration.py` on {machine()}: shipped checkpoint, online "
             f"protocol, {seeds} seeds, {episodes} episodes; episodes to 0.9 / AUC / regret.", "",
             "| env | " + " | ".join(MODES) + " |", "|---|" + "---|" * len(MODES)]
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
