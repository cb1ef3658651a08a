"""Pretraining throughput of the batched world: examples per second generated (default prior:
MDPs, contexts simulated by every behaviour, statistics, features and targets) and through
whole training steps (data included), in one process.

    python benchmarks/world_throughput.py [--device cpu|cuda] [--seconds 60] [--batch 1024]
                                          [--threads N] [--step-overhead CELLS] [--json]

With --json the last line is one JSON object: world_examples_per_s, train_examples_per_s,
device, threads. Unless --json, the run's figures are kept in
benchmarks/results/world_throughput.json under the device's name (a CPU run does not erase a
GPU run's figures, measured where a GPU was at hand) and the section
benchmarks/results/20_world_throughput.md (see run_all.py) is rewritten from all of them.
"""

from __future__ import annotations

import argparse
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
from rlfm.train import RunConfig, compute_loss

from common import RESULTS_DIR, machine, write_section

CONFIG = "../configs/rlfm-v2.toml"
MEASURED = RESULTS_DIR / "world_throughput.json"

# Measured once, in the run that replaced it (training batches of 32 there).
OLD_PIPELINE = ("The per-example numpy pipeline that the batched world replaced was measured "
                "in the same run as the batched world, on the 2-core CPU, at commit fe9920a "
                "(`--old` there, rlfm-v1 network): 122 examples/s generated and 81 through "
                "training, against 169 and 92 for the batched world of that commit.")


def context_summary(sizes, transitions) -> dict:
    sizes, transitions = np.array(sizes), np.array(transitions)
    q = lambda x: [float(np.percentile(x, p)) for p in (10, 50, 90)]  # noqa: E731
    return {"n": len(transitions), "S": (sizes[:, 0].mean(), *q(sizes[:, 0])),
            "SA": (sizes[:, 1].mean(), *q(sizes[:, 1])), "H": (sizes[:, 2].mean(), *q(sizes[:, 2])),
            "transitions": (transitions.mean(), *q(transitions))}


def world_rate(seconds: float, batch: int, device, step_overhead=None) -> tuple[float, dict]:
    sizes, transitions, n, index = [], [], 0, 0
    sample_batch(0, 10_000, 64, device=device)   # warm-up
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or n == 0:
        out = sample_batch(0, index, batch, device=device, step_overhead=step_overhead)
        for chunk in out.chunks:
            w = chunk.world
            visits = torch.zeros(w.batch_size, device=w.R.device).index_add_(
                0, w.state_mdp, chunk.stats.visits.sum(-1).float())
            sizes += list(zip(w.n_states.tolist(), (w.n_states * w.n_actions).tolist(),
                              w.horizon.tolist(), strict=True))
            transitions += visits.tolist()
        n += batch
        index += 1
    return n / (time.perf_counter() - start), context_summary(sizes, transitions)


def train_rate(seconds: float, batch: int, device, config: str, step_overhead=None) -> float:
    cfg = RunConfig.load(config)
    model = RLFM(cfg.model).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    n, index = 0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or n == 0:
        graph = sample_batch(1, index, batch, device=device, step_overhead=step_overhead).graph
        loss, _ = compute_loss(model, graph, cfg.train)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += batch
        index += 1
    return n / (time.perf_counter() - start)


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
        "configuration (forward, backward, AdamW), data made in the same process. One process "
        "per row.",
        "",
        "| device | machine | torch threads | configuration | MDPs per world batch / training "
        "step | examples/s generated | examples/s through training | command |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in measured.items():
        lines.append(f"| {name} | {r['machine']} | {r['threads']} | `{r['config']}` | "
                     f"{r['batch']} / "
                     f"{r['train_batch']} | {r['world_examples_per_s']:.0f} | "
                     f"{r['train_examples_per_s']:.0f} | `{r['command']}` |")
    lines += ["", OLD_PIPELINE, "",
              "What the contexts look like (mean / 10th / 50th / 90th percentile):", "",
              "| device | examples | S | S·A | H | transitions per context |",
              "|---|---|---|---|---|---|"]
    for name, r in measured.items():
        lines += summary_rows(name, r["contexts"])
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
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    world, summary = world_rate(args.seconds, args.batch, device, args.step_overhead)
    train = train_rate(args.seconds, args.train_batch, device, args.config, args.step_overhead)
    result = {"world_examples_per_s": world, "train_examples_per_s": train,
              "device": device_name(device), "threads": torch.get_num_threads(),
              "batch": args.batch, "train_batch": args.train_batch,
              "config": Path(args.config).relative_to("..").as_posix()
              if args.config.startswith("../") else args.config}
    if not args.json:
        measured = json.loads(MEASURED.read_text()) if MEASURED.exists() else {}
        measured[result["device"]] = {
            **result, "machine": machine(), "contexts": summary,
            "command": "python benchmarks/world_throughput.py " + shlex.join(sys.argv[1:])}
        atomic_write_text(MEASURED, json.dumps(measured, indent=1) + "\n")
        text = section(measured)
        write_section("20_world_throughput", text)
        print(text)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
