"""The shipped checkpoints on held-out prior MDPs: the validation of `rlfm train`
(`rlfm.train.validate`, 256 MDPs of the default prior from a seed never used for training, each
with the context its behaviour made) for every checkpoint in the package, beside
certainty-equivalent planning on the same statistics.

    python benchmarks/checkpoints.py
"""

from __future__ import annotations

import torch

from rlfm.checkpoint import load_model, pretrained_path
from rlfm.train import RunConfig, cevi_reference, validate, validation_set

from common import machine, write_section


def main() -> None:
    torch.set_num_threads(1)
    val = validation_set(RunConfig())
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
        f"first-step plan on the same statistics, as a stationary greedy policy.",
        "",
        "| checkpoint | held-out policy loss | acting score | exploitation score |",
        "|---|---|---|---|",
    ]
    for path in shipped:
        metrics = validate(load_model(path), val)
        exploit = metrics.get("val_exploit_score", metrics["val_prior_score"])
        lines.append(f"| {path.name} | {metrics['val_policy_loss']:.3f} | "
                     f"{metrics['val_prior_score']:.3f} | {exploit:.3f} |")
    lines.append(f"| CE-VI | — | — | {cevi_reference(val)['val_prior_score']:.3f} |")
    text = "\n".join(lines)
    write_section("25_checkpoints", text)
    print(text)


if __name__ == "__main__":
    main()
