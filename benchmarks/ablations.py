"""Ablations of the architecture and the prior, each a short training run from the same seed and
data stream (the same steps for all), compared on the same validation statistics.

    python benchmarks/ablations.py [--steps 1000] [--only NAME ...]

Writes runs/ablations/<name>/ and the section benchmarks/results/50_ablations.md.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

from rlfm.checkpoint import read_config
from rlfm.train import RunConfig, train

from common import machine, write_section

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).parent.parent
BASE = ROOT / "configs" / "rlfm-v1.toml"

# name -> (what changes, overrides of the base config)
VARIANTS = {
    "base": ("the shipped architecture (d=64, K=8, tied, transition bias, plan skip)", {}),
    "no-plan-skip": ("logits from the head alone (no linear term in the plans' gaps)",
                     {"model": {"plan_skip": False}}),
    "no-transition-bias": ("attention without the β·log P̂ bias", {"model": {"transition_bias": False}}),
    "untied": ("K distinct blocks instead of one weight-tied block", {"model": {"weight_tying": False}}),
    "K=4": ("4 steps of the tied block", {"model": {"steps": 4}}),
    "K=12": ("12 steps of the tied block", {"model": {"steps": 12}}),
    "width=32": ("width 32", {"model": {"width": 32}}),
    "prior:no-learner-contexts": ("contexts from uniform / ε-greedy / fixed policies only",
                                  {"prior": {"context": {"behaviours": {
                                      "uniform": 1, "epsilon_greedy": 1, "fixed_policy": 1}}}}),
    "prior:uniform-only": ("contexts from uniform-random behaviour only",
                           {"prior": {"context": {"behaviours": {"uniform": 1}}}}),
    "targets:tau_rel=0.01": ("sharper policy targets (tau = 0.01 span Q*; loss not comparable)",
                             {"prior": {"targets": {"tau_rel": 0.01}}}),
}


def merged(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = merged(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def main(steps: int, only: list[str]) -> str:
    base = tomllib.loads(BASE.read_text())
    rows = []
    for name, (what, over) in VARIANTS.items():
        if only and name not in only:
            continue
        data = merged(base, over)
        data["train"].update(steps=steps, eval_every=steps, checkpoint_every=steps,
                             warmup_steps=min(200, steps // 5))
        out = ROOT / "runs" / "ablations" / name
        if not (out / "model.json").exists():
            train(RunConfig.from_dict(data, name), out, resume=True, log=lambda _: None)
        info = read_config(out / "model")
        rows.append((name, what, info["metrics"], info["validation_cevi"]))
    suite = [k for k in rows[0][2] if k.startswith("val_") and k != "val_prior_score"]
    lines = ["## Ablations", "",
             f"`python benchmarks/ablations.py --steps {steps}` on {machine()}: each variant "
             f"trained {steps} steps of 32 MDPs from the same seed; greedy-policy score on 64 "
             "held-out prior MDPs (statistics of their sampled contexts) and on suite MDPs from "
             "100 episodes of uniform-random data. Short runs: they rank the choices, they are "
             "not the shipped model's figures.", "",
             "| variant | change | final policy loss | prior score | "
             + " | ".join(k[4:] for k in suite) + " |",
             "|---|---|---|---|" + "---|" * len(suite)]
    cevi = rows[0][3]
    lines.append("| CE-VI (reference) | plans on the empirical model | — | "
                 f"{cevi['val_prior_score']:.3f} | " + " | ".join(f"{cevi[k]:.3f}" for k in suite)
                 + " |")
    for name, what, m, _ in rows:
        lines.append(f"| {name} | {what} | {m['policy_loss']:.3f} | {m['val_prior_score']:.3f} | "
                     + " | ".join(f"{m[k]:.3f}" for k in suite) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--only", nargs="*", default=[])
    args = parser.parse_args()
    text = main(args.steps, args.only)
    write_section("50_ablations", text)
    print(text)
