"""The shipped checkpoints on held-out prior MDPs: the validation of `rlfm train`
(`rlfm.train.validate`, 256 MDPs of the default prior from a seed never used for training, each
with the context its behaviour made) for every checkpoint in the package, beside
certainty-equivalent planning on the same statistics; and the same on 2,048 held-out MDPs,
whose smaller noise separates checkpoints that the 256 of training's validation cannot, with
the time-dependent exploitation policy the agent deploys (`RLFM.exploitation_policy`). Then,
for the default checkpoint, the grid of horizons that policy is asked at: the five fractions
of H alone, and with each of the last k steps of an episode at its own horizon
(`model.EXACT_LAST_STEPS`, the default marked), paired per MDP, with the time each takes.

    python benchmarks/checkpoints.py
"""

from __future__ import annotations

import time

import numpy as np
import torch

import rlfm.model
from rlfm.checkpoint import load_model, pretrained_path
from rlfm.evaluate import exact_score
from rlfm.mdp import ScoreReference
from rlfm.train import RunConfig, cevi_reference, mean_score, validate, validation_set

from common import machine, write_section

LARGE = 2048


def deployed_score(model, val) -> float:
    """Mean clipped exact score of the agent's time-dependent exploitation policy, computed for
    one statistic at a time exactly as the agent does."""
    return mean_score(deployed_scores(model, val))


def deployed_scores(model, val) -> torch.Tensor:
    """Each MDP's exact score (unclipped) of the agent's time-dependent exploitation policy."""
    scores = []
    for chunk in val.chunks:
        for i in range(chunk.world.batch_size):
            mdp = chunk.world.to_mdp(i)
            policy = model.exploitation_policy(chunk.stats.to_statistics(i), mdp.horizon)
            scores.append(exact_score(mdp, ScoreReference.of(mdp))(policy, 0))
    return torch.tensor(scores)


GRID_VARIANTS = (0, 4, 8, 16, 32, 10**9)   # exact last steps; 10**9: every step


def grid_rows(model, val) -> list[str]:
    """The exploitation grid's variants on `val`, paired per MDP against the default."""
    default, scores, seconds = rlfm.model.EXACT_LAST_STEPS, {}, {}
    try:
        for k in GRID_VARIANTS:
            rlfm.model.EXACT_LAST_STEPS = k
            start = time.perf_counter()
            scores[k] = deployed_scores(model, val).clamp(-1.0, 1.0).numpy()
            seconds[k] = time.perf_counter() - start
    finally:
        rlfm.model.EXACT_LAST_STEPS = default
    rows = ["| exact last steps | score | difference from the default (± SE) | time |",
            "|---|---|---|---|"]
    for k in GRID_VARIANTS:
        d = scores[k] - scores[default]
        name = "every step" if k >= 10**9 else ("none (the five fractions alone)" if k == 0
                                                else str(k))
        rows.append(f"| {name}{' (default)' if k == default else ''} | {scores[k].mean():.4f} | "
                    f"{d.mean():+.4f} ± {d.std(ddof=1) / np.sqrt(len(d)):.4f} | "
                    f"{seconds[k]:.0f} s |")
    return rows


def main() -> None:
    torch.set_num_threads(1)
    val = validation_set(RunConfig())
    large_cfg = RunConfig()
    large_cfg.validation.prior_examples = LARGE
    large = validation_set(large_cfg)
    shipped = sorted(p.with_suffix("") for p in pretrained_path().parent.glob("*.json"))
    lines = [
        "## Shipped checkpoints on held-out prior MDPs",
        "",
        f"`python benchmarks/checkpoints.py` on {machine()}: `rlfm.train.validate` on "
        f"{val.batch_size} MDPs of the default prior (seed {RunConfig().validation.prior_seed}, "
        f"never used for training), each with its sampled context. Scores are exact and "
        f"normalised (1 = optimal, 0 = uniform), each clipped to [-1, 1] before the mean. "
        f"Acting: the greedy policy of the acting head; exploitation: what the agent reports, "
        f"softmax of the exploitation head (greedy on the acting head without one). CE-VI: its "
        f"first-step plan on the same statistics, as a stationary greedy policy. Then the same "
        f"on {LARGE:,} held-out MDPs (the same seed's stream), and there the time-dependent "
        f"exploitation policy the agent deploys (the head asked again for the steps left).",
        "",
        "| checkpoint | held-out policy loss | acting score | exploitation score | "
        f"policy loss ({LARGE:,}) | exploitation score ({LARGE:,}) | "
        f"time-dependent exploitation ({LARGE:,}) |",
        "|---|---|---|---|---|---|---|",
    ]
    exploit = lambda m: m.get("val_exploit_score", m["val_prior_score"])  # noqa: E731
    for path in shipped:
        model = load_model(path)
        metrics, wide = validate(model, val), validate(model, large)
        lines.append(f"| {path.name} | {metrics['val_policy_loss']:.3f} | "
                     f"{metrics['val_prior_score']:.3f} | {exploit(metrics):.3f} | "
                     f"{wide['val_policy_loss']:.4f} | {exploit(wide):.4f} | " +
                     (f"{deployed_score(model, large):.4f} |" if model.exploit_head is not None else "— |"))
    lines.append(f"| CE-VI | — | — | {cevi_reference(val)['val_prior_score']:.3f} | — | "
                 f"{cevi_reference(large)['val_prior_score']:.4f} | — |")
    lines += ["", f"The time-dependent exploitation policy's grid ({pretrained_path().stem}, the "
              f"same {LARGE:,} MDPs): the head is asked at H, H/2, H/4, H/8, H/16 steps left and "
              "at each of the last k; time for all the MDPs, one thread.", ""]
    lines += grid_rows(load_model(pretrained_path()), large)
    text = "\n".join(lines)
    write_section("25_checkpoints", text)
    print(text)


if __name__ == "__main__":
    main()
