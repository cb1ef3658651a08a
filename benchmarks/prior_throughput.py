"""Pretraining-data throughput of the synthetic prior on ONE CPU core (single process, one thread):
full examples per second for the default mixture and for each family alone, split into MDP
generation (family + reward rescaling + permutation), Q* solve (backward induction + targets)
and context generation (behaviour data simulated and summarised as a Statistics), plus
featurisation and packing into the model's GraphBatch (done in the DataLoader workers too).

    python benchmarks/prior_throughput.py [--seconds 20]

Writes the section benchmarks/results/20_prior_throughput.md (see run_all.py).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from rlfm.mdp import backward_induction  # noqa: E402
from rlfm.priors import FAMILIES, collate, load_config, sample_context, sample_mdp, targets  # noqa: E402
from rlfm.priors.sampler import TrainingExample  # noqa: E402

from common import machine, write_section  # noqa: E402


def timed_examples(config, seconds: float, seed: int):
    """Sample examples exactly as rlfm.priors.sample_example does, timing each phase."""
    rng = np.random.default_rng(seed)
    tau_rel = float(config.targets["tau_rel"])
    phases = np.zeros(3)
    sizes, transitions, examples, by_behaviour = [], [], [], {}
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        mdp = sample_mdp(rng, config)
        t1 = time.perf_counter()
        solution = backward_induction(mdp)
        tg = targets(solution, tau_rel)
        t2 = time.perf_counter()
        ctx = sample_context(rng, mdp, config.context, solution.policy)
        t3 = time.perf_counter()
        phases += (t1 - t0, t2 - t1, t3 - t2)
        sizes.append((mdp.n_states, mdp.n_states * mdp.n_actions, mdp.horizon))
        transitions.append(ctx.stats.n_transitions)
        by_behaviour.setdefault(ctx.behaviour, []).append(t3 - t2)
        if len(examples) < 256:
            examples.append(TrainingExample(
                stats=ctx.stats, horizon=mdp.horizon, **tg, terminal=mdp.terminal,
                family=mdp.name, behaviour=ctx.behaviour, n_episodes=ctx.n_episodes,
                optimal_return=0.0))
    n = len(sizes)
    t_pack = time.perf_counter()
    for i in range(0, len(examples), 32):
        collate(examples[i:i + 32])
    pack_ms = (time.perf_counter() - t_pack) / max(1, len(examples)) * 1e3
    sizes = np.array(sizes)
    total_s = phases.sum() / n + pack_ms / 1e3
    return dict(n=n, rate=1.0 / total_s, ms=phases / n * 1e3, pack_ms=pack_ms,
                S=sizes[:, 0].mean(), SA=sizes[:, 1].mean(), H=sizes[:, 2].mean(),
                transitions=float(np.mean(transitions)), p90=float(np.percentile(transitions, 90)),
                by_behaviour=by_behaviour)


def main(seconds: float) -> str:
    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    config = load_config()
    rows = [("**mixture**", timed_examples(config, seconds, 0))]
    for family in sorted(FAMILIES):
        rows.append((family, timed_examples(config.only(family), seconds / 5, 1)))
    weights = ", ".join(f"{k} {v:g}" for k, v in config.mixture.items())
    lines = [
        "## Prior throughput",
        "",
        f"`python benchmarks/prior_throughput.py --seconds {seconds:g}` on {machine()}: one "
        "process pinned to one core, one thread; the default prior (`rlfm/priors/default.toml`; "
        f"mixture weights {weights}). One example = sample an MDP, solve Q* exactly, simulate a "
        "context (random behaviour and amount of data) and build its statistic and targets. "
        "Times are means per example; examples/s counts every phase, featurisation (the "
        "in-context CE and optimistic plans of `rlfm.features.encode`) and packing included.",
        "",
        "| prior | examples/s | MDP generation | Q* + targets | context | featurise + pack | mean S | "
        "mean S·A | mean H | mean transitions | p90 transitions | n |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        gen, solve, ctx = r["ms"]
        lines.append(f"| {name} | {r['rate']:.0f} | {gen:.2f} ms | {solve:.2f} ms | {ctx:.2f} ms | "
                     f"{r['pack_ms']:.2f} ms | {r['S']:.1f} | {r['SA']:.0f} | {r['H']:.0f} | "
                     f"{r['transitions']:.0f} | {r['p90']:.0f} | {r['n']} |")
    lines += ["", "Context generation by behaviour (mixture):", "",
              "| behaviour | share of examples | mean context time | share of context time |",
              "|---|---|---|---|"]
    by = rows[0][1]["by_behaviour"]
    total_n, total_t = sum(len(v) for v in by.values()), sum(sum(v) for v in by.values())
    for name, times in sorted(by.items(), key=lambda kv: -sum(kv[1])):
        lines.append(f"| {name} | {len(times) / total_n:.0%} | {np.mean(times) * 1e3:.2f} ms | "
                     f"{sum(times) / total_t:.0%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="time for the mixture (each family gets a fifth of it)")
    text = main(parser.parse_args().seconds)
    write_section("20_prior_throughput", text)
    print(text)
