"""Pretraining throughput of the batched world: examples per second generated (default prior:
MDPs, contexts simulated by every behaviour, statistics, features and targets) and through
whole training steps (data included), the world in the training process or, as `rlfm train`
makes it, in --workers data processes.

    python benchmarks/world_throughput.py [--device cpu|cuda] [--seconds 60] [--batch 1024]
                                          [--threads N] [--workers W] [--step-overhead CELLS]
                                          [--precision float32|bfloat16] [--json]

With --json the last line is one JSON object: world_examples_per_s, train_examples_per_s,
device, threads, workers, precision. Unless --json, the run's figures are kept in
benchmarks/results/world_throughput.json under the device's name and the training precision (a
CPU run does not erase a GPU run's figures, measured where a GPU was at hand) and the section
benchmarks/results/20_world_throughput.md (see run_all.py) is rewritten from all of them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from rlfm.io import atomic_write_text
from rlfm.model import RLFM
from rlfm.priors.batch import sample_batch
from rlfm.priors.dataset import make_loader
from rlfm.train import RunConfig, TrainConfig, compute_loss

from common import RESULTS_DIR, machine, write_section

REPO = Path(__file__).resolve().parent.parent
CONFIG = "configs/rlfm-v5.toml"   # the shipped checkpoint's, relative to the repository
MEASURED = RESULTS_DIR / "world_throughput.json"

# Measured once, in the run that replaced it (training batches of 32 there).
OLD_PIPELINE = ("The per-example numpy pipeline that the batched world replaced was measured "
                "in the same run as the batched world, on the 2-core CPU, at commit fe9920a "
                "(`--old` there, rlfm-v1 network): 122 examples/s generated and 81 through "
                "training, against 169 and 92 for the batched world of that commit.")

BEFORE_MERGE = ("Before the buckets of a world batch were simulated and planned together (commit "
                "0c1778e, measured in the same session as the rows above, 2 cores, world and "
                "training in one process on 2 threads, float32): 404 examples/s generated, 214 "
                "through training, 608 for the steps alone.")

BEFORE_SPLIT = ("Rows without the steps-alone figure were measured at commit a6e6132, before "
                "world batches were split into training steps (there the world made batches "
                "of the training step's size).")


def world_batches(batch: int, device, workers: int, step_overhead=None):
    """An endless stream of world batches (packed graphs with targets) of the default prior:
    made in this process (workers 0), or, as `rlfm train` makes them, in `workers` DataLoader
    processes (one torch thread each)."""
    if workers:
        if step_overhead is not None:
            raise SystemExit("--step-overhead applies to the world made in this process only "
                             "(--workers 0)")
        yield from make_loader(seed=1, batch_size=batch, num_workers=workers)
    else:
        for index in itertools.count():
            yield sample_batch(1, index, batch, device=device, step_overhead=step_overhead).graph


def timed(stream, seconds: float, workers: int, use=lambda graph: graph.n_graphs) -> float:
    """Examples per second that `use` gets through from `stream` in `seconds`; with workers,
    counted from when each has had time to fill what the loader keeps ready (two batches)."""
    for _ in range(1 + 2 * workers):
        next(stream)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or n == 0:
        n += use(next(stream))
    return n / (time.perf_counter() - start)


def context_summary(batch: int, device, batches: int = 3) -> dict:
    """What the contexts look like: sizes and transitions per context on a few world batches."""
    sizes, transitions = [], []
    for index in range(batches):
        for chunk in sample_batch(0, index, batch, device=device).chunks:
            w = chunk.world
            visits = torch.zeros(w.batch_size, device=w.R.device).index_add_(
                0, w.state_mdp, chunk.stats.visits.sum(-1).float())
            sizes += list(zip(w.n_states.tolist(), (w.n_states * w.n_actions).tolist(),
                              w.horizon.tolist(), strict=True))
            transitions += visits.tolist()
    sizes, transitions = np.array(sizes), np.array(transitions)
    q = lambda x: [float(np.percentile(x, p)) for p in (10, 50, 90)]  # noqa: E731
    return {"n": len(transitions), "S": (sizes[:, 0].mean(), *q(sizes[:, 0])),
            "SA": (sizes[:, 1].mean(), *q(sizes[:, 1])), "H": (sizes[:, 2].mean(), *q(sizes[:, 2])),
            "transitions": (transitions.mean(), *q(transitions))}


def train_rate(seconds: float, batch: int, train_batch: int, device, cfg: RunConfig,
               workers: int, step_overhead=None) -> tuple[float, float]:
    """Examples per second through whole training steps of `train_batch` MDPs (`cfg`'s), each
    world batch of `batch` MDPs split into steps as `rlfm train` splits it; and through the
    steps alone (forward, backward, AdamW), on the first world batch's steps over and over."""
    model = RLFM(cfg.model).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    parts = max(1, batch // train_batch)

    def steps(graph) -> int:
        for part in graph.split(parts):
            loss, _ = compute_loss(model, part.to(device), cfg.train)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return graph.n_graphs

    first = sample_batch(1, 0, batch, device=device, step_overhead=step_overhead).graph
    steps(first)   # warm-up
    whole = timed(world_batches(batch, device, workers, step_overhead), seconds, workers, steps)
    alone = timed(itertools.repeat(first), seconds, 0, steps)
    return whole, alone


def summary_rows(name: str, s: dict) -> list[str]:
    fmt = lambda v: " / ".join(f"{x:.0f}" if x >= 10 else f"{x:.1f}" for x in v)  # noqa: E731
    return [f"| {name} | {s['n']} | {fmt(s['S'])} | {fmt(s['SA'])} | {fmt(s['H'])} | "
            f"{fmt(s['transitions'])} |"]


def device_name(device: torch.device) -> str:
    return "cpu" if device.type == "cpu" else torch.cuda.get_device_name(device)


def section(measured: dict) -> str:
    lines = [
        "## Pretraining throughput (batched world)",
        "",
        "Generated: MDPs from the default prior, a context simulated in each by its behaviour, "
        "the statistic, the model's input (in-context plans included) and the targets (the "
        "true MDP for the return loss included). Training: whole steps of the row's "
        "configuration (forward, backward, AdamW), each world batch split into training steps "
        "as `rlfm train` splits it, the data made in the training process (data workers 0) "
        "or in worker processes as `rlfm train` makes them (the world runs on one torch thread "
        "per process; rows measured before it did ran it on the process's threads). "
        "Training precision bfloat16: the networks' forward pass under autocast (`precision` "
        "in a config's [train] table).",
        "",
        "| device | machine | torch threads | data workers | configuration | training "
        "precision | MDPs per world batch / training step | examples/s generated | examples/s "
        "through training | training steps alone | command |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in measured.values():
        steps_alone = f"{r['train_step_examples_per_s']:.0f}" \
            if "train_step_examples_per_s" in r else "not measured"
        lines.append(f"| {r['device']} | {r['machine']} | {r['threads']} | "
                     f"{r.get('workers', 0)} | `{r['config']}` | "
                     f"{r.get('precision', 'float32')} | {r['batch']} / "
                     f"{r['train_batch']} | {r['world_examples_per_s']:.0f} | "
                     f"{r['train_examples_per_s']:.0f} | {steps_alone} | `{r['command']}` |")
    lines += ["", BEFORE_MERGE, OLD_PIPELINE, BEFORE_SPLIT, "",
              "What the contexts look like (mean / 10th / 50th / 90th percentile):", "",
              "| device | examples | S | S·A | H | transitions per context |",
              "|---|---|---|---|---|---|"]
    shown = {}   # the contexts depend on the device's bucketing only: one row per device
    for r in measured.values():
        shown.setdefault(r["device"], r["contexts"])
    for device, contexts in shown.items():
        lines += summary_rows(device, contexts)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--batch", type=int, default=1024, help="MDPs per world batch")
    parser.add_argument("--train-batch", type=int, default=256, help="MDPs per training step")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--config", default=CONFIG, help="training configuration")
    parser.add_argument("--step-overhead", type=int, default=None,
                        help="bucketing's cost of a time step in cells (default: the device's)")
    parser.add_argument("--precision", choices=TrainConfig.CHOICES["precision"], default=None,
                        help="the training forward pass's precision (default: the config's)")
    parser.add_argument("--workers", type=int, default=0,
                        help="data processes, as rlfm train's (default 0: this process)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = RunConfig.load(args.config if Path(args.config).exists() else REPO / args.config)
    device = torch.device(args.device)
    world = timed(world_batches(args.batch, device, args.workers, args.step_overhead),
                  args.seconds, args.workers)
    summary = context_summary(args.batch, device)
    cfg.train.precision = precision = args.precision or cfg.train.precision
    train, steps = train_rate(args.seconds, args.batch, args.train_batch, device, cfg,
                              args.workers, args.step_overhead)
    result = {"world_examples_per_s": world, "train_examples_per_s": train,
              "train_step_examples_per_s": steps,
              "device": device_name(device), "threads": torch.get_num_threads(),
              "workers": args.workers,
              "precision": precision,
              "batch": args.batch, "train_batch": args.train_batch,
              "config": args.config}
    if not args.json:
        measured = json.loads(MEASURED.read_text()) if MEASURED.exists() else {}
        name = f"{result['device']}, {precision}, {result['threads']} threads, " \
               f"{args.workers} data workers"
        measured[name] = {
            **result, "machine": machine(), "contexts": summary,
            "command": "python benchmarks/world_throughput.py " + shlex.join(sys.argv[1:])}
        atomic_write_text(MEASURED, json.dumps(measured, indent=1) + "\n")
        text = section(measured)
        write_section("20_world_throughput", text)
        print(text)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
