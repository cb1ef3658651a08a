"""Posterior sampling with a learned prior, online on the whole public suite: the rlfm agent
with the checkpoint rlfm-v3-posterior (rlfm-v3 plus its posterior sampler) acting by
exploration="posterior" (the plan of one hypothesis per episode) and "mixed" (that on half of
the episodes, per-step sampling on the others), under the suite's protocol (10 seeds, the
suite's episode budgets), beside the suite's rows for rlfm's default (per-step sampling), PSRL
and tuned UCB-VI (benchmarks/suite/, made by suite.py: run that first).

    python benchmarks/posterior_online.py [--seeds 10]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rlfm import evaluate
from rlfm.bench import SUITES, slug

from common import machine, write_section

SUITE = Path(__file__).parent / "suite"
MODES = ("posterior", "mixed")
COLUMNS = ("rlfm", "psrl", "psrl (tuned)", "ucbvi (tuned)")


def cell(entry: dict | None) -> str:
    if entry is None:
        return "—"
    return f"{entry['episodes_to_90'] or 'never'} / {entry['auc']:.2f}"


def meets(entry: dict | None, psrl: dict | None) -> bool:
    """The exploration issue's bar: AUC at least PSRL's and episodes to 0.9 no more than
    PSRL's."""
    if entry is None or psrl is None:
        return False
    never = float("inf")
    return (entry["auc"] >= psrl["auc"] - 1e-9
            and (entry["episodes_to_90"] or never) <= (psrl["episodes_to_90"] or never))


def main(seeds: int) -> str:
    lines = ["## Posterior sampling online (learned prior)", "",
             f"`python benchmarks/posterior_online.py` on {machine()}: the rlfm agent with the "
             "checkpoint `rlfm-v3-posterior`, acting by `exploration=\"posterior\"` (the plan "
             "of one hypothesis per episode, 8 draws) and `\"mixed\"` (that on a random half "
             f"of the episodes, per-step sampling on the others), {seeds} seeds, the suite's "
             "episode budgets E; the other columns are the suite's (rlfm: the default, "
             "per-step sampling). Episodes to 0.9 / AUC. The last column: which rlfm rows "
             "reach PSRL's bar (AUC at least PSRL's and episodes to 0.9 no more than PSRL's).",
             "",
             "| env | E | rlfm posterior | rlfm mixed | rlfm (default) | psrl | psrl (tuned) | "
             "ucbvi (tuned) | ≥ PSRL |",
             "|---|---|---|---|---|---|---|---|---|"]
    wins = dict.fromkeys((*MODES, "default"), 0)
    for env_id, episodes in SUITES["public"].items():
        ours = {mode: evaluate.run_online(
            env_id, ["rlfm"], episodes, seeds, workers=2,
            fixed={"rlfm": {"exploration": mode, "checkpoint": "rlfm-v3-posterior"}})[
                "agents"]["rlfm"] for mode in MODES}
        path = SUITE / slug(env_id) / "online" / "results.json"
        suite = json.loads(path.read_text())["agents"] if path.exists() else {}
        ours["default"] = suite.get("rlfm")
        reached = [name for name, entry in ours.items() if meets(entry, suite.get("psrl"))]
        for name in reached:
            wins[name] += 1
        lines.append(f"| {env_id} | {episodes} | {cell(ours['posterior'])} | "
                     f"{cell(ours['mixed'])} | "
                     + " | ".join(cell(suite.get(c)) for c in COLUMNS)
                     + f" | {', '.join(reached) or '—'} |")
        print(lines[-1], flush=True)
    n = len(SUITES["public"])
    lines += ["", "At PSRL's bar: " + ", ".join(f"{name} {k} of {n}"
                                                 for name, k in wins.items()) + "."]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    text = main(parser.parse_args().seeds)
    write_section("36_posterior_online", text)
    print(text)
