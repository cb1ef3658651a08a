"""What the deep prior teaches: a checkpoint fine-tuned on it (`configs/rlfm-v4-deep.toml`:
the default prior plus DeepSea-like square triangles and mazes) against the checkpoint it
started from (rlfm-v3), on held-out MDPs (seeds never used for training) of the deep prior and
of the default prior:

- validation, as `rlfm train` does it, on 2,048 MDPs of each prior with their sampled contexts:
  exact normalised scores of the acting head's greedy policy and of the exploitation policy;
- online, the suite's protocol on prior MDPs: 100 episodes, one seed per MDP, AUC of the
  reported policy's normalised score (each clipped to [-1, 1]), paired per MDP, overall, on the
  deep structures alone and per family; per-step sampling for both checkpoints, and rlfm-v3
  with persistent sampling (the acting rule that the default prior could not reward) at
  persistences 0.5 and 0.8. A third prior, "structures", holds only the deep structures (as
  many squares as mazes), for a closer look at them.

Online rows are saved in benchmarks/results/deep_prior.json as they are done, keyed by the
checkpoint's weights, the rule and the prior's settings, and not run again while those, the
package version and the budget are the same.

    python benchmarks/deep_prior.py [--candidate rlfm-v4-deep] [--mdps 200] [--workers 2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

import rlfm
from exploration import held_out_mdp, prior_run  # a sibling script
from rlfm.checkpoint import load_model, read_config, resolve
from rlfm.priors import load_config
from rlfm.train import RunConfig, validate, validation_set

from common import RESULTS_DIR, machine, saved_rows, write_section

ROWS = RESULTS_DIR / "deep_prior.json"
DEEP = load_config(Path(__file__).parent.parent / "configs" / "rlfm-v4-deep.toml").to_dict()
# the deep structures alone: DeepSea-like squares and mazes, half and half
STRUCTURES = {**DEEP, "mixture": {"graph": 1.0, "grid": 1.0}, "families": {
    **DEEP["families"], "graph": {**DEEP["families"]["graph"], "square_prob": 1.0},
    "grid": {**DEEP["families"]["grid"], "maze_prob": 1.0}}}
PRIORS = {"deep": DEEP, "default": {}, "structures": STRUCTURES}
SHOWN = {"deep": ("all", "squares", "mazes", "other"), "default": ("all",),
         "structures": ("squares", "mazes")}   # the subsets of MDPs in the online table
BASE = "rlfm-v3"
EPISODES = 100
VALIDATION = 2048
RULES = {"sample": {"exploration": "sample"},
         **{f"persistent {p}": {"exploration": "persistent", "persistence": p} for p in (0.5, 0.8)}}


def _row(checkpoint: str, rule: str, prior: str, i: int) -> tuple:
    config = load_config(PRIORS[prior] or None)
    scores, family = prior_run({"checkpoint": checkpoint, **RULES[rule]}, EPISODES, i, config)
    deep = held_out_mdp(i, config).info.get("deep", "")
    return float(scores.mean()), family, deep


def online_rows(runs: list[tuple[str, str, str]], mdps: int, workers: int) -> dict:
    """{(checkpoint, rule, prior): {i: (auc, family, deep)}} for held-out MDPs 0..mdps-1. Saved
    rows are keyed by the checkpoint's weights, so a new candidate leaves the others' rows."""
    key = {"rlfm": rlfm.__version__, "episodes": EPISODES}
    sha = {c: read_config(resolve(c))["weights_sha256"] for c, _, _ in runs}
    settings = {p: hashlib.sha256(json.dumps(load_config(PRIORS[p] or None).to_dict(),
                                             sort_keys=True).encode()).hexdigest()[:16]
                for _, _, p in runs}   # the resolved prior, the default's too
    # a saved row's name: the weights, the rule, the prior's name and its settings
    return saved_rows(ROWS, key, {run: ("|".join((sha[run[0]], run[1], run[2],
                                                  settings[run[2]])), mdps) for run in runs},
                      _row, workers)


def paired(base: dict, new: dict, mdps: int, where) -> str:
    """Means of `base` and `new` over the MDPs both have where `where` holds, the mean paired
    difference, its standard error, and their number."""
    both = [i for i in range(mdps) if i in base and i in new and where(base[i])]
    if not both:
        return "— | — | — | 0"
    a, b = np.array([new[i][0] for i in both]), np.array([base[i][0] for i in both])
    d = a - b
    se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
    return f"{b.mean():.3f} | {a.mean():.3f} | {d.mean():+.3f} ± {se:.3f} | {len(both)}"


def main(candidate: str, mdps: int, workers: int, validation: int = VALIDATION) -> str:
    torch.set_num_threads(1)
    checkpoints = [BASE, candidate]
    runs = [(c, "sample", p) for p in PRIORS for c in checkpoints] + \
        [(BASE, rule, p) for rule in RULES if rule != "sample" for p in ("deep", "structures")]
    lines = ["## The deep prior: DeepSea-like squares and mazes", "",
             f"`python benchmarks/deep_prior.py` on {machine()}: `{candidate}` (fine-tuned from "
             f"{BASE} on the deep prior, `configs/rlfm-v4-deep.toml`) against {BASE}, on "
             "held-out MDPs of the deep prior, of the default prior and of the deep structures "
             "alone (squares and mazes, half and half).", "",
             f"Validation ({validation:,} MDPs of each prior with their sampled contexts, "
             "`rlfm.train.validate`; exact normalised scores, each clipped to [-1, 1]):", "",
             "| prior | checkpoint | policy loss | acting score | exploitation score |",
             "|---|---|---|---|---|"]
    for prior, overrides in PRIORS.items():
        cfg = RunConfig(prior=overrides)
        cfg.validation.prior_examples = validation
        val = validation_set(cfg)
        for c in checkpoints:
            m = validate(load_model(resolve(c)), val)
            lines.append(f"| {prior} | {c} | {m['val_policy_loss']:.4f} | "
                         f"{m['val_prior_score']:.4f} | {m['val_exploit_score']:.4f} |")
    rows = online_rows(runs, mdps, workers)
    lines += ["", f"Online ({mdps} held-out MDPs of each prior, one seed each, {EPISODES} "
              "episodes; mean AUC, paired difference ± its standard error; per-step sampling "
              "unless said):", "",
              "| prior | MDPs | compared | first | second | difference | n |",
              "|---|---|---|---|---|---|---|"]
    subsets = {"all": lambda r: True, "squares": lambda r: r[2] == "square",
               "mazes": lambda r: r[2] == "maze", "other": lambda r: r[2] == ""}
    base = {p: rows[(BASE, "sample", p)] for p in PRIORS}
    new = {p: rows[(candidate, "sample", p)] for p in PRIORS}
    versus = f"{BASE} → {candidate}"
    for prior in PRIORS:
        for name, where in subsets.items():
            if name not in SHOWN[prior]:
                continue
            lines.append(f"| {prior} | {name} | {versus} | "
                         f"{paired(base[prior], new[prior], mdps, where)} |")
    for family in sorted({r[1] for r in base["deep"].values()}):
        lines.append(f"| deep | {family} | {versus} | "
                     f"{paired(base['deep'], new['deep'], mdps, lambda r, f=family: r[1] == f)} |")
    for rule in RULES:
        if rule == "sample":
            continue
        for prior in ("deep", "structures"):
            for name, where in subsets.items():
                if name in SHOWN[prior]:
                    pair = paired(rows[(BASE, "sample", prior)], rows[(BASE, rule, prior)],
                                  mdps, where)
                    lines.append(f"| {prior} | {name} | {BASE}: sample → {rule} | {pair} |")
    text = "\n".join(lines)
    write_section("27_deep_prior", text)
    return text


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", default="rlfm-v4-deep")
    parser.add_argument("--mdps", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--validation", type=int, default=VALIDATION, help="MDPs per prior")
    args = parser.parse_args()
    print(main(args.candidate, args.mdps, args.workers, args.validation))
