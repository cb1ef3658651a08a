"""The rlfm agent's acting rule under the suite's episode budget: online AUC on held-out prior
MDPs (synthetic, never trained on; the stream of benchmarks/exploration.py) over 200 episodes,
the middle of the suite's budgets (100 to 300), per-step sampling with rlfm-v3 against
persistent sampling at several persistences and "mixed" acting with rlfm-v3-posterior (rlfm-v3
plus its posterior sampler) at the agent's default spread (the agent's default rule, chosen
here), and the same with rlfm-v5 (rlfm-v3-posterior fine-tuned on offline-like contexts, the
default checkpoint since), paired per MDP (the same MDP and seed). The first
50 episodes of each run give exploration.py's 50-episode protocol on the same MDPs.

With --batched N, per-step sampling is also run on the first N of those MDPs by the batched
world (`rlfm.world.online` with `RLFM.batch_policies`: --chunk MDPs step in lockstep, the
network asked once per round for all of them; --device cuda on a GPU), the path that trains
with the network in the loop: its mean AUC must agree with the per-MDP agent's (other random
numbers, the same law); the table gives its rate.

Each (rule, MDP) row is saved in benchmarks/results/acting_rule.json as soon as it is done and
is not run again while rlfm-v3's weights (and those of a rule's own checkpoint),
the package version and the episode budget are the same, so that a run can be stopped,
resumed, or spread over a machine with more cores (--workers).

    python benchmarks/acting_rule.py [--mdps 900] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np
import torch

import rlfm
from exploration import held_out_mdp, prior_run  # a sibling script
from rlfm.agents.rlfm import SPREAD, load_network
from rlfm.checkpoint import pretrained_path, read_config
from rlfm.io import atomic_write_text
from rlfm.world import MDPBatch, online

from common import RESULTS_DIR, machine, write_section

ROWS = RESULTS_DIR / "acting_rule.json"
EPISODES = 200
EARLY = 50
RULES = {"sample": {"exploration": "sample"},
         **{f"persistent {p}": {"exploration": "persistent", "persistence": p}
            for p in (0.3, 0.5, 0.65, 0.8)},
         f"mixed {SPREAD:g}": {"exploration": "mixed", "checkpoint": "rlfm-v3-posterior",
                               "spread": SPREAD},
         **{f"mixed {SPREAD:g}, share {share}": {
             "exploration": "mixed", "checkpoint": "rlfm-v3-posterior", "spread": SPREAD,
             "share": share} for share in (0.25, 0.75)},
         f"mixed {SPREAD:g}, rlfm-v5": {"exploration": "mixed", "checkpoint": "rlfm-v5",
                                         "spread": SPREAD}}
BASE = "sample"
CHECKPOINT = "rlfm-v3"  # of the rules that name none (the network of rlfm-v3-posterior, less its
                        # sampler, which those rules do not use)
BATCHED = RESULTS_DIR / "acting_rule_batched.json"


def _row(rule: str, i: int) -> tuple[str, int, float, float, str]:
    scores, family = prior_run({"checkpoint": CHECKPOINT, **RULES[rule]}, EPISODES, i)
    return rule, i, float(scores.mean()), float(scores[:EARLY].mean()), family


def load_rows(key: dict) -> tuple[dict, list[str]]:
    """Saved rows {rule: {i: (auc, early auc, family)}} made under `key` (others dropped), and
    the machines that made them."""
    if ROWS.exists():
        saved = json.loads(ROWS.read_text())
        if saved.get("key") == key:
            return ({rule: {int(i): tuple(row) for i, row in rows.items()}
                     for rule, rows in saved["rows"].items()}, saved["machines"])
    return {}, []


def save_rows(key: dict, rows: dict, machines: list[str]) -> None:
    atomic_write_text(ROWS, json.dumps({"key": key, "machines": machines, "rows": rows},
                                       indent=0, sort_keys=True))


def stored_name(rule: str) -> str:
    """A rule's name in the saved rows: with its own checkpoint, that checkpoint's weights too."""
    own = RULES[rule].get("checkpoint")
    return rule if own is None else \
        f"{rule}|{read_config(pretrained_path(own))['weights_sha256'][:16]}"


def run(mdps: int, rules: list[str], workers: int) -> tuple[dict, list[str]]:
    key = {"weights_sha256": read_config(pretrained_path(CHECKPOINT))["weights_sha256"],
           "rlfm": rlfm.__version__, "episodes": EPISODES}
    saved, machines = load_rows(key)
    names = {rule: stored_name(rule) for rule in RULES}
    rows = {rule: saved[names[rule]] for rule in RULES if names[rule] in saved}
    todo = [(rule, i) for i in range(mdps) for rule in rules if i not in rows.get(rule, {})]
    if todo and machine() not in machines:
        machines.append(machine())
    with ProcessPoolExecutor(workers) as pool:
        for done, job in enumerate(as_completed([pool.submit(_row, *t) for t in todo]), 1):
            rule, i, *row = job.result()
            rows.setdefault(rule, {})[i] = tuple(row)
            if done % 20 == 0 or done == len(todo):
                save_rows(key, {names[r]: v for r, v in rows.items()}, machines)
    return rows, machines


def paired(rows: dict, rule: str, column: int, where=lambda family: True) -> tuple:
    """(n, mean of rule, mean of BASE, mean difference, its standard error) over the MDPs both
    rules have."""
    both = [i for i in rows[rule] if i in rows[BASE] and where(rows[BASE][i][2])]
    a = np.array([rows[rule][i][column] for i in both])
    base = np.array([rows[BASE][i][column] for i in both])
    d = a - base
    se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
    return len(both), a.mean(), base.mean(), d.mean(), se


def batched(n: int, chunk: int, device: str, rows: dict) -> dict:
    """Per-step sampling on held-out MDPs 0..n-1 by the batched world on `device`, `chunk`
    MDPs at a time (torch on every core): its mean AUC against the per-MDP agent's rows on the
    same MDPs, and the seconds it took."""
    network, auc = load_network(device=device), np.empty(n)
    start = time.perf_counter()
    for lo in range(0, n, chunk):
        world = MDPBatch.from_mdps([held_out_mdp(i) for i in range(lo, min(n, lo + chunk))],
                                   device)
        J = online(world, EPISODES, lambda stats, w=world: network.batch_policies(
            stats, w.horizon), torch.Generator(device).manual_seed(lo))
        auc[lo + world.source.cpu().numpy()] = \
            world.normalise(J).clamp(-1.0, 1.0).mean(1).cpu().numpy()
    seconds = time.perf_counter() - start
    d = auc - np.array([rows[BASE][i][0] for i in range(n)])
    name = torch.cuda.get_device_name() if device == "cuda" else \
        f"{machine()}, torch on {torch.get_num_threads()} threads"
    return {"device": name, "mdps": n, "chunk": chunk, "seconds": seconds,
            "auc": float(auc.mean()), "difference": float(d.mean()),
            "se": float(d.std(ddof=1) / np.sqrt(n))}


def section(rows: dict, machines: list[str]) -> str:
    families = sorted({row[2] for row in rows[BASE].values()})
    lines = ["## Acting rule at the suite's budget", "",
             f"`python benchmarks/acting_rule.py` (rows made on {'; '.join(machines)}): the "
             f"rlfm-v3 online on held-out prior MDPs (the stream of exploration.py; mixed, the "
             f"agent's default: rlfm-v3-posterior, the same acting weights plus the posterior "
             f"sampler), "
             f"one seed each, {EPISODES} episodes (the suite's budgets are 100 to 300), scores "
             f"clipped to [-1, 1]; differences from per-step sampling paired per MDP (± SE). "
             f"The first {EARLY} episodes of the same runs are exploration.py's protocol.", "",
             f"| rule | MDPs | AUC ({EPISODES} episodes) | per-step sampling, same MDPs | "
             f"difference | AUC (first {EARLY}) | per-step sampling, same MDPs | difference | "
             + " | ".join(families) + " |",
             "|---|---|---|---|---|---|---|---|" + "---|" * len(families)]
    for rule in (r for r in RULES if r in rows and r != BASE):
        n, auc, base, d, se = paired(rows, rule, 0)
        _, early, base_early, d_early, se_early = paired(rows, rule, 1)
        per_family = [paired(rows, rule, 0, lambda f, fam=fam: f == fam) for fam in families]
        lines.append(f"| {rule} | {n} | {auc:.4f} | {base:.4f} | {d:+.4f} ± {se:.4f} | "
                     f"{early:.4f} | {base_early:.4f} | {d_early:+.4f} ± {se_early:.4f} | "
                     + " | ".join(f"{m[3]:+.3f} ({m[0]})" for m in per_family) + " |")
    lines += ["", "Family columns: mean difference from per-step sampling at "
              f"{EPISODES} episodes (number of MDPs)."]
    if BATCHED.exists():
        lines += ["", "The batched world (`--batched N [--device cuda] [--chunk C]`): per-step "
                  "sampling on MDPs 0 to N - 1, C of them in lockstep at a time, against the "
                  "per-MDP agent's rows on the same MDPs (other random numbers, the same law).",
                  "", "| device | MDPs | MDPs in lockstep | AUC | difference | MDP-episodes "
                  "| seconds | MDP-episodes/s |", "|---|---|---|---|---|---|---|---|"]
        for r in json.loads(BATCHED.read_text()).values():
            episodes = r["mdps"] * EPISODES
            lines.append(f"| {r['device']} | {r['mdps']} | {r['chunk']} | {r['auc']:.4f} | "
                         f"{r['difference']:+.4f} ± {r['se']:.4f} | {episodes:,} | "
                         f"{r['seconds']:.0f} | {episodes / r['seconds']:,.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mdps", type=int, default=900, help="held-out MDPs 0..mdps-1")
    parser.add_argument("--rules", nargs="+", default=list(RULES), choices=list(RULES))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batched", type=int, default=0,
                        help="also run per-step sampling on this many MDPs by the batched world")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--chunk", type=int, default=100, help="MDPs in lockstep (--batched)")
    args = parser.parse_args()
    all_rows, made_on = run(args.mdps, args.rules, args.workers)
    if args.batched:
        result = batched(args.batched, args.chunk, args.device, all_rows)
        runs = json.loads(BATCHED.read_text()) if BATCHED.exists() else {}
        runs[f"{result['device']} {result['mdps']} {result['chunk']}"] = result
        atomic_write_text(BATCHED, json.dumps(runs, indent=1))
    text = section(defaultdict(dict, all_rows), made_on)
    write_section("35b_acting_rule", text)
    print(text)
