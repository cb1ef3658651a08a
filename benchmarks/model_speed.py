"""Speed of the shipped model on ONE CPU core: checkpoint load time, and the time to get a
policy from a statistic (featurisation + network), for FrozenLake 8x8, Taxi and a 2,000-state
grid; the time of what the agent computes after each episode, the acting policy with the
time-dependent exploitation policy (`RLFM.logits`, then `RLFM.exploitation_policy` given the
whole task's logits: one batched pass over the shorter horizons of its grid); and the time of one
hypothesis of the posterior sampler with its plan (`RLFM.posterior_actions`, 8 draws,
checkpoint rlfm-v3-posterior), what the agent computes per episode in the posterior mode.
Targets (docs/protocol.md): <= 5 ms for FrozenLake 8x8, <= 50 ms for Taxi.

    python benchmarks/model_speed.py [--checkpoint FILE]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

import rlfm  # noqa: E402
from rlfm.checkpoint import load_model, pretrained_path  # noqa: E402
from rlfm.evaluate import collect_dataset  # noqa: E402
from rlfm.features import encode_statistics  # noqa: E402

from common import best_time, machine, write_section  # noqa: E402
from solver_speed import big_grid  # noqa: E402  (a sibling script)

REPEATS = 20   # calls timed for featurise, network and the policy (the best kept); 5 for the rest


def main(checkpoint) -> str:
    torch.set_num_threads(1)
    path = checkpoint or pretrained_path()
    start = time.perf_counter()
    model = load_model(path)
    load_s = time.perf_counter() - start
    posterior = load_model(pretrained_path("rlfm-v3-posterior"))
    cases = []
    for name, env_id in (("FrozenLake 8x8", "FrozenLake8x8-v1"), ("Taxi", "Taxi-v3")):
        env = rlfm.envs.make(env_id)
        cases.append((name, rlfm.TabularMDP.from_gymnasium(env), env))
    grid = big_grid()
    cases.append(("Grid 40x50", grid, rlfm.envs.TabularEnv(grid)))
    n_params = sum(p.numel() for p in model.parameters())
    lines = ["## Model speed", "",
             f"`python benchmarks/model_speed.py` on {machine()}, one thread; checkpoint "
             f"`{os.path.basename(path)}` ({n_params:,} parameters) loads in "
             f"{load_s * 1e3:.0f} ms. Statistic: 100 episodes of uniform-random data. Best of "
             f"{REPEATS} calls (5 for the last two columns).", "",
             "| MDP | S | A | H | observed (s,a,s') | featurise | network | policy total | target "
             "| acting + time-dependent exploitation | posterior hypothesis and plan (8 draws) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    targets = {"FrozenLake 8x8": "≤ 5 ms", "Taxi": "≤ 50 ms"}
    for name, mdp, env in cases:
        stats = collect_dataset(env, mdp, "uniform", 100, seed=0)
        with torch.inference_mode():   # as the model featurises: no autograd bookkeeping
            featurise = best_time(lambda s=stats, h=mdp.horizon: encode_statistics(s, h),
                                  REPEATS)
            graph = encode_statistics(stats, mdp.horizon)
            network = best_time(lambda g=graph: model(g), REPEATS)
        total = best_time(lambda s=stats, h=mdp.horizon: model.policy(s, h), REPEATS)
        both = best_time(lambda s=stats, h=mdp.horizon: model.exploitation_policy(
            s, h, whole=model.logits(s, h)[1])) if model.exploit_head is not None else None
        hypothesis = best_time(lambda s=stats, h=mdp.horizon: posterior.posterior_actions(
            s, h, torch.Generator().manual_seed(0), samples=8))
        lines.append(f"| {name} | {mdp.n_states} | {mdp.n_actions} | {mdp.horizon} | "
                     f"{stats.n_distinct_transitions:,} | {featurise * 1e3:.1f} ms | "
                     f"{network * 1e3:.1f} ms | {total * 1e3:.1f} ms | {targets.get(name, '—')} | "
                     + (f"{both * 1e3:.1f} ms |" if both is not None else "— |")
                     + f" {hypothesis * 1e3:.1f} ms |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None)
    text = main(parser.parse_args().checkpoint)
    write_section("40_model_speed", text)
    print(text)
