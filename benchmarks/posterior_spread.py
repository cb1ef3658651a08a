"""The posterior sampler's spread (`rlfm-v3-posterior`): the agent's hypothesis is the pairwise
maximum of `samples` draws of rewards, its distance from the draws' mean multiplied by `spread`
(`RLFM.posterior_actions`). Two measures of the same knob:

- calibration, on held-out prior MDPs with their sampled contexts (`rlfm.train.validation_set`):
  single hypotheses mean + c (draw - mean) of 8 draws, planned; the energy score of their Q_0
  against the true Q*_0 (the sampler's training loss, in spans of Q*_0), the error
  E||X - y|| and the spread E||X - X'|| (medians over MDPs);
- online, on the held-out prior MDPs of benchmarks/exploration.py (one seed each, 50 episodes,
  AUC of scores clipped to [-1, 1]), the agent's "posterior" and "mixed" modes at each spread,
  paired with per-step sampling on the same MDPs, overall and per prior family; and on held-out
  DeepSea-like square triangles (benchmarks/deep_prior.py's, 100 episodes), where the prior's
  other MDPs leave spreads from 5 up alike.

Online rows are saved in benchmarks/results/posterior_spread.json as they are done, keyed by
the checkpoint's weights, the rule and the budget, and not run again while those and the
package version are the same.

    python benchmarks/posterior_spread.py [--mdps 200] [--squares 100] [--workers 2]
"""

from __future__ import annotations

import argparse

import torch

import rlfm
from deep_prior import STRUCTURES, paired  # sibling scripts
from exploration import prior_run
from rlfm.agents.rlfm import SPREAD
from rlfm.checkpoint import load_model, read_config, resolve
from rlfm.features import GraphBatch
from rlfm.model import sample_plan
from rlfm.priors import load_config
from rlfm.train import RunConfig, validation_set
from rlfm.world import segment_max, segment_min, segment_sum

from common import RESULTS_DIR, machine, saved_rows, write_section

CHECKPOINT = "rlfm-v3-posterior"
ROWS = RESULTS_DIR / "posterior_spread.json"
DRAWS = 8
SPREADS = (1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0, 100.0, 1000.0)
MIXED_SPREADS = (1.0, 5.0, 12.0, 1000.0)
SQUARE_SPREADS = (12.0, 1000.0)
BUDGET = {"default": 50, "squares": 100}   # episodes: exploration.py's and deep_prior.py's
# DeepSea-like square triangles alone (benchmarks/deep_prior.py's deep structures, mazes left
# out): the structure where per-step sampling fails and the spread matters
SQUARES = {**STRUCTURES, "mixture": {"graph": 1.0}}


def calibration(examples: int, spreads=SPREADS) -> list[str]:
    """Table rows: energy score, error and spread of single hypotheses at each spread."""
    model = load_model(resolve(CHECKPOINT)).eval()
    cfg = RunConfig()
    cfg.validation.prior_examples = examples
    g = validation_set(cfg).graph.to("cpu", torch.float32)
    many = GraphBatch.concatenate([g] * DRAWS)
    with torch.no_grad():
        delta = model.sampler(many, model.sampler.draw_noise(
            many, torch.Generator().manual_seed(0))).view(DRAWS, -1)
    mean = delta.mean(0)
    slot, _ = many.action_slots()
    sa_graph = g.state_graph[g.sa_state]
    G = g.n_graphs
    y = g.q_target.double()
    span = segment_max(y, sa_graph, G) - segment_min(y, sa_graph, G)
    scored = span > 1e-9 * y.abs().max().clamp_min(1.0)
    unit = torch.where(scored, span, torch.ones_like(span))[sa_graph]
    size = segment_sum(torch.ones_like(y), sa_graph, G)

    def norm(d):   # root mean square over each MDP's (s, a): (M, n_sa) -> (M, G)
        return (segment_sum((d ** 2).T, sa_graph, G).T / size).sqrt()

    rows = []
    i, j = torch.triu_indices(DRAWS, DRAWS, 1)
    for c in spreads:
        with torch.no_grad():
            q = sample_plan(many, (mean + c * (delta - mean)).reshape(-1)).q
        x = q.reshape(-1)[slot].view(DRAWS, -1).double() * g.reward_scale.double()[sa_graph]
        error, spread = norm(x / unit - y / unit).mean(0), norm((x[i] - x[j]) / unit).mean(0)
        energy = (error - spread / 2).clamp_max(5.0)[scored].mean()
        rows.append(f"| {c:g} | {energy:.3f} | {error[scored].median():.3f} | "
                    f"{spread[scored].median():.3f} |")
    return rows


def _row(rule: str, prior: str, i: int) -> tuple:
    mode, _, spread = rule.partition(" ")
    knobs = {"exploration": mode}
    if spread:
        knobs.update(checkpoint=CHECKPOINT, spread=float(spread))
    config = load_config(SQUARES) if prior == "squares" else None
    scores, family = prior_run(knobs, BUDGET[prior], i, config)
    return float(scores.mean()), family


def online_rows(runs: list[tuple[str, str]], mdps: dict, workers: int) -> dict:
    """{(rule, prior): {i: (auc, family)}} for held-out MDPs 0..mdps[prior]-1, from the saved
    rows where they were made by the same weights, budget and package version."""
    key = {"rlfm": rlfm.__version__, "budget": BUDGET,
           "weights_sha256": read_config(resolve(CHECKPOINT))["weights_sha256"]}
    return saved_rows(ROWS, key, {run: ("|".join(run), mdps[run[1]]) for run in runs}, _row,
                      workers)


def main(mdps: dict, workers: int, examples: int = 256) -> str:
    torch.set_num_threads(1)
    rules = [f"posterior {c:g}" for c in SPREADS] + [f"mixed {c:g}" for c in MIXED_SPREADS]
    square_rules = [f"posterior {c:g}" for c in SQUARE_SPREADS] + [f"mixed {SPREAD:g}"]
    runs = [("sample", "default")] + [(r, "default") for r in rules] + \
        [("sample", "squares")] + [(r, "squares") for r in square_rules]
    lines = ["## The posterior sampler's spread", "",
             f"`python benchmarks/posterior_spread.py` on {machine()}: checkpoint `{CHECKPOINT}`; "
             f"the hypothesis is the mean of {DRAWS} draws of the sampler plus `spread` times "
             "the distance to their pairwise maximum (the agent's default spread: "
             f"{SPREAD:g}).", "",
             f"Calibration ({examples} held-out prior MDPs with their sampled contexts; single "
             "hypotheses mean + c (draw − mean), planned; in spans of Q*_0; medians over "
             "MDPs): the energy score (the sampler's training loss, lower is better), the "
             "error E‖X − y‖ and the spread E‖X − X′‖.", "",
             "| spread c | energy score | error | spread |", "|---|---|---|---|",
             *calibration(examples)]
    rows = online_rows(runs, mdps, workers)
    families = sorted({r[1] for r in rows[("sample", "default")].values()})
    lines += ["", f"Online (held-out MDPs, one seed each: {mdps['default']} of the default "
              f"prior, {BUDGET['default']} episodes; {mdps['squares']} squares, "
              f"{BUDGET['squares']} episodes): mean AUC of "
              "per-step sampling and of the rule on the same MDPs, their paired difference "
              "± its standard error; then the mean difference per prior family (number of "
              "MDPs).", "",
              "| prior | rule | sample | rule | difference | MDPs | "
              + " | ".join(families) + " |",
              "|---|---|---|---|---|---|" + "---|" * len(families)]
    for prior, shown in (("default", rules), ("squares", square_rules)):
        base = rows[("sample", prior)]
        for rule in shown:
            new = rows[(rule, prior)]
            per_family = [paired(base, new, mdps[prior], lambda r, f=f: r[1] == f).split(" | ")
                          for f in families]
            cells = [f"{p[2].split(' ')[0]} ({p[3]})" if p[3] != "0" else "—"
                     for p in per_family]
            lines.append(f"| {prior} | {rule} | {paired(base, new, mdps[prior], lambda r: True)} | "
                         + " | ".join(cells) + " |")
    text = "\n".join(lines)
    write_section("35c_posterior_spread", text)
    return text


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mdps", type=int, default=200, help="of the default prior")
    parser.add_argument("--squares", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--examples", type=int, default=256, help="calibration MDPs")
    args = parser.parse_args()
    print(main({"default": args.mdps, "squares": args.squares}, args.workers, args.examples))
