"""Ablations of the architecture and the prior, each a short training run from the same seed and
data stream (the same steps for all), compared on the same validation statistics.

    python benchmarks/ablations.py [--steps 600] [--only NAME ...]

Writes runs/ablations/<name>/ and the section benchmarks/results/50_ablations.md.
"""

from __future__ import annotations

import argparse
import copy
import csv
from pathlib import Path

import numpy as np

from rlfm import envs
from rlfm.agents import make
from rlfm.checkpoint import load_model
from rlfm.evaluate import online_run
from rlfm.features import CE_GAP
from rlfm.model import policy_loss, segment_log_softmax
from rlfm.priors.config import load_config
from rlfm.train import RunConfig, cevi_reference, train, validate, validation_set

from common import machine, write_section

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).parent.parent
BASE = ROOT / "configs" / "rlfm-v1.toml"

# name -> (what changes, overrides of the base config)
VARIANTS = {
    "base": ("the shipped architecture (d=64, K=8, tied, transition bias)", {}),
    "no-transition-bias": ("attention without the β·log P̂ bias", {"model": {"transition_bias": False}}),
    "untied": ("K distinct blocks instead of one weight-tied block", {"model": {"weight_tying": False}}),
    "K=4": ("4 steps of the tied block", {"model": {"steps": 4}}),
    "K=12": ("12 steps of the tied block", {"model": {"steps": 12}}),
    "width=32": ("width 32", {"model": {"width": 32}}),
    "width=128": ("width 128", {"model": {"width": 128}}),
    "prior:no-learner-contexts": ("contexts from uniform / ε-greedy / fixed policies only",
                                  {"prior": {"context": {"behaviours": {
                                      "uniform": 1, "epsilon_greedy": 1, "fixed_policy": 1}}}}),
    "prior:uniform-only": ("contexts from uniform-random behaviour only",
                           {"prior": {"context": {"behaviours": {"uniform": 1}}}}),
    "prior:sticky-contexts": ("more contexts whose visits say little about optimality: fixed "
                              "policies 0.3, near-greedy learners (bonus scale from 0.001)",
                              {"prior": {"context": {
                                  "behaviours": {"uniform": 0.15, "epsilon_greedy": 0.15,
                                                 "fixed_policy": 0.3, "optimistic": 0.3,
                                                 "psrl": 0.1},
                                  "optimistic": {"bonus_scale": [0.001, 1.0]}}}}),
    "targets:tau_rel=0.01": ("sharper policy targets (tau = 0.01 span Q*)",
                             {"prior": {"targets": {"tau_rel": 0.01}}}),
}


def merged(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = merged(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


HELD_OUT = 256  # prior examples each variant is scored on (more than training's periodic check)
ONLINE = ("FrozenLake-v1", 50, 3)  # online check: environment, episodes, seeds


def online_auc(checkpoint: Path) -> float:
    """Mean AUC of the rlfm agent (default exploration) learning online with this checkpoint."""
    env_id, episodes, seeds = ONLINE
    env, mdp = envs.make(env_id), envs.load_mdp(env_id)
    return float(np.mean([online_run(env, mdp, make("rlfm", mdp.n_states, mdp.n_actions,
                                                       mdp.horizon, seed=seed,
                                                       checkpoint=str(checkpoint)),
                                     episodes, seed).scores.mean() for seed in range(seeds)]))


def boltzmann_loss(batch, prior_overrides: dict, tau_rel: float | None = None) -> float:
    """Held-out policy loss of softmax(CE gap / tau_rel), the targets' form applied to the CE
    plan (tau_rel=inf: the uniform policy)."""
    tau_rel = tau_rel or load_config(prior_overrides or None).targets["tau_rel"]
    logits = batch.sa_x[:, CE_GAP] / tau_rel
    return policy_loss(segment_log_softmax(logits, batch.sa_state, batch.n_states), batch).item()


def main(steps: int, only: list[str]) -> str:
    base = tomllib.loads(BASE.read_text())
    rows = []
    # Every variant is scored on the default prior's held-out MDPs (the distribution the shipped
    # model is for), whatever prior it was trained on.
    reference_cfg = RunConfig.from_dict(base, "base")
    reference_cfg.validation.prior_examples = HELD_OUT
    val = validation_set(reference_cfg)
    cevi = cevi_reference(val)
    cevi_loss = boltzmann_loss(val.graph, base["prior"])
    uniform_loss = boltzmann_loss(val.graph, base["prior"], tau_rel=float("inf"))
    for name, (what, over) in VARIANTS.items():
        if only and name not in only and name != "base":  # base: the reference row
            continue
        data = merged(base, over)
        data["train"].update(steps=steps, eval_every=steps, checkpoint_every=steps,
                             warmup_steps=min(200, steps // 5))
        out = ROOT / "runs" / "ablations" / name
        if not (out / "model.json").exists():
            train(RunConfig.from_dict(data, name), out, resume=True, log=lambda _: None)
        metrics = validate(load_model(out / "model"), val)
        metrics["online_auc"] = online_auc(out / "model")
        metrics["mdps_per_s"] = float(list(csv.DictReader((out / "log.csv").open()))[-1]["mdps_per_s"])
        rows.append((name, what, metrics))
    lines = ["## Ablations", "",
             f"`python benchmarks/ablations.py --steps {steps}"
             + (f" --only {' '.join(only)}" if only else "") + f"` on {machine()}: each variant "
             f"trained {steps} steps of 32 MDPs from the same seed and data stream; held-out "
             f"policy loss (cross-entropy to the default prior's targets) and greedy-policy score "
             f"on {HELD_OUT} held-out MDPs of the default prior (statistics of their sampled "
             "contexts; every variant, whatever prior it trained on); online: mean AUC of the "
             "rlfm agent (its default exploration) over "
             f"{ONLINE[1]} episodes x {ONLINE[2]} seeds on {ONLINE[0]}. Short runs: they rank "
             "the choices, they are not the shipped model's figures.", "",
             "| variant | change | training MDPs/s | held-out policy loss | prior score | "
             f"online AUC, {ONLINE[0]} |",
             "|---|---|---|---|---|---|"]
    lines.append("| CE-VI (reference) | its first-step plan; loss of the Boltzmann policy of its "
                 f"Q at the targets' temperature | — | {cevi_loss:.3f} | "
                 f"{cevi['val_prior_score']:.3f} | — |")
    lines.append(f"| uniform policy (reference) | | — | {uniform_loss:.3f} | 0 | 0 |")
    for name, what, m in rows:
        cells = [f"{m['mdps_per_s']:.0f}", f"{m['val_policy_loss']:.3f}",
                 f"{m['val_prior_score']:.3f}", f"{m['online_auc']:.3f}"]
        lines.append(f"| {name} | {what} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--only", nargs="*", default=[])
    args = parser.parse_args()
    text = main(args.steps, args.only)
    write_section("50_ablations", text)
    print(text)
