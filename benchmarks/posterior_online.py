"""The rlfm agent's other exploration modes and checkpoints, online on the whole public suite,
under the suite's protocol (10 seeds, the suite's episode budgets), beside the suite's rows for
rlfm's default ("mixed" with rlfm-v3-posterior: one hypothesis of the posterior sampler per
episode on half of the episodes, per-step sampling on the others), PSRL and tuned UCB-VI
(benchmarks/suite/, made by suite.py: run that first): with rlfm-v3 (the same network without
the sampler), exploration="sample" (per-step sampling, the default before "mixed") and
"persistent" (per-step sampling with a quantile kept from step to step); with
rlfm-v3-posterior, "posterior" (the plan of one hypothesis on every episode); and rlfm-v4-deep
(fine-tuned on the deep prior) with per-step sampling. Each (MDP, mode) is saved under
benchmarks/suite/<MDP>/online-<mode>/ when done, and not run again while its knobs and the
checkpoint's weights, the package version and the agent's constants are the same.

    python benchmarks/posterior_online.py [--seeds 10]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import rlfm
from rlfm import evaluate
from rlfm.agents import rlfm as agent
from rlfm.bench import SUITES, slug
from rlfm.checkpoint import pretrained_path, read_config
from rlfm.io import atomic_write_text

from common import machine, write_section

SUITE = Path(__file__).parent / "suite"
KNOBS = {"sample": {"exploration": "sample", "checkpoint": "rlfm-v3"},
         "persistent": {"exploration": "persistent", "checkpoint": "rlfm-v3"},
         "posterior": {"exploration": "posterior", "checkpoint": "rlfm-v3-posterior"},
         "v4-deep": {"checkpoint": "rlfm-v4-deep"}}
MODES = tuple(KNOBS)
CONSTANTS = {"sample": (), "persistent": ("PERSISTENCE",), "posterior": ("SPREAD",),
             "v4-deep": ()}
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


def run_mode(env_id: str, episodes: int, seeds: int, mode: str) -> dict:
    """rlfm's summary on `env_id` in `mode`, from its saved cell when that was made by the same
    knobs, weights, seeds, package version and the agent's constants that the mode uses."""
    knobs = KNOBS[mode]
    weights = read_config(pretrained_path(knobs.get("checkpoint")))["weights_sha256"]
    key = {"knobs": knobs, "weights_sha256": weights, "seeds": seeds, "episodes": episodes,
           "rlfm": rlfm.__version__,
           **{name.lower(): getattr(agent, name) for name in CONSTANTS[mode]}}
    cell = SUITE / slug(env_id) / f"online-{mode}" / "results.json"
    if cell.exists():
        saved = json.loads(cell.read_text())
        if saved.get("key") == key:
            return saved["rlfm"]
    entry = evaluate.run_online(env_id, ["rlfm"], episodes, seeds, workers=2,
                                fixed={"rlfm": knobs})["agents"]["rlfm"]
    cell.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cell, json.dumps({"key": key, "rlfm": entry}, indent=1))
    return entry


def main(seeds: int) -> str:
    lines = ["## Other exploration modes and checkpoints online (sample, persistent, "
             "posterior, rlfm-v4-deep)", "",
             f"`python benchmarks/posterior_online.py` on {machine()}: the rlfm agent with the "
             "checkpoint `rlfm-v3` acting by `exploration=\"sample\"` (per-step sampling, the "
             "default before `\"mixed\"`) and `\"persistent\"` (per-step sampling, the quantile "
             f"kept from step to step with probability {agent.PERSISTENCE}); with "
             "`rlfm-v3-posterior`, `\"posterior\"` (the plan of one hypothesis on every "
             f"episode, 8 draws, spread {agent.SPREAD:g}); and the checkpoint `rlfm-v4-deep` "
             "(rlfm-v3 fine-tuned on the deep prior) with per-step sampling; "
             f"{seeds} seeds, the suite's episode budgets E; the other columns are the "
             "suite's (rlfm: the default, `\"mixed\"` with `rlfm-v3-posterior`: the posterior "
             "plan on a random half of the episodes, per-step sampling on the others). "
             "Episodes to 0.9 / AUC. The last column: which rlfm rows reach PSRL's bar (AUC at "
             "least PSRL's and episodes to 0.9 no more than PSRL's).",
             "",
             "| env | E | rlfm-v3 sample | rlfm-v3 persistent | rlfm posterior | rlfm-v4-deep | "
             "rlfm (default: mixed) | psrl | psrl (tuned) | ucbvi (tuned) | ≥ PSRL |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    wins = dict.fromkeys((*MODES, "default"), 0)
    for env_id, episodes in SUITES["public"].items():
        ours = {mode: run_mode(env_id, episodes, seeds, mode) for mode in MODES}
        path = SUITE / slug(env_id) / "online" / "results.json"
        suite = json.loads(path.read_text())["agents"] if path.exists() else {}
        ours["default"] = suite.get("rlfm")
        reached = [name for name, entry in ours.items() if meets(entry, suite.get("psrl"))]
        for name in reached:
            wins[name] += 1
        lines.append(f"| {env_id} | {episodes} | "
                     + " | ".join(cell(ours[mode]) for mode in MODES) + " | "
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
