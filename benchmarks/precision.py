"""Does training in bfloat16 learn what float32 learns? Two runs from scratch, identical but for
`[train] precision` (the rlfm-v5 network shape, exploitation head and return loss, one data
worker, the default prior), validated on the same held-out prior MDPs; the table puts their
validation rows side by side.

    python benchmarks/precision.py [--steps 800] [--out /tmp/rlfm-precision]

A run already finished in --out is read back, not redone. Writes the section
benchmarks/results/22_precision.md (see run_all.py).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from rlfm.train import RunConfig, train

from common import machine, write_section

PRECISIONS = ("float32", "bfloat16")


def config(precision: str, steps: int) -> RunConfig:
    return RunConfig.from_dict({
        "model": {"width": 64, "steps": 4, "exploit_head": True},
        "train": {"seed": 3, "steps": steps, "batch_size": 64, "world_batch": 512, "lr": 1e-3,
                  "warmup_steps": 50, "return_weight": 2.0, "workers": 1, "threads": 2,
                  "log_every": 50, "checkpoint_every": 400, "eval_every": 200,
                  "precision": precision},
        "validation": {"prior_examples": 256}})


def validation_rows(out: Path) -> list[dict]:
    with open(out / "log.csv") as f:
        return [row for row in csv.DictReader(f) if row.get("val_policy_loss")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--out", default="/tmp/rlfm-precision")
    args = parser.parse_args()
    rows = {}
    for precision in PRECISIONS:
        out = Path(args.out) / f"{precision}-{args.steps}"
        if not (out / "model.json").exists():
            train(config(precision, args.steps), out, resume=out.exists(),
                  log=lambda line: print(line, flush=True))
        rows[precision] = validation_rows(out)
    lines = ["## Training precision", "",
             f"`python benchmarks/precision.py --steps {args.steps}` on {machine()}: two runs "
             "from scratch, identical but for `[train] precision` (width 64, 4 weight-tied "
             "blocks, exploitation head with return weight 2, 64 MDPs per step, one data "
             "worker, seed 3), validated on the same 256 held-out prior MDPs: policy loss "
             "(cross-entropy to the Boltzmann target), the exact normalised score of the greedy "
             "acting policy and of the exploitation policy. MDPs/s: the run's training rate "
             "(data worker and training share the 2 cores).", "",
             "| step | " + " | ".join(f"{p} {c}" for c in ("policy loss", "greedy score",
                                                              "exploitation score")
                                      for p in PRECISIONS) + " | MDPs/s float32 | MDPs/s bfloat16 |",
             "|---" * 9 + "|"]
    for a, b in zip(*rows.values(), strict=True):
        cells = [f"{float(r[k]):.3f}" for k in ("val_policy_loss", "val_prior_score",
                                               "val_exploit_score") for r in (a, b)]
        lines.append(f"| {a['step']} | " + " | ".join(cells) +
                     f" | {float(a['mdps_per_s']):.0f} | {float(b['mdps_per_s']):.0f} |")
    text = "\n".join(lines)
    write_section("22_precision", text)
    print(text)


if __name__ == "__main__":
    main()
