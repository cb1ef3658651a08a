"""`rlfm bench`: the whole evaluation protocol over a benchmark suite, online and offline, every
baseline at its defaults and tuned; per-environment results plus one markdown summary.

Resumable: an (environment, protocol) whose results.json already exists is not run again
(unless `force`), so a long run that is stopped loses at most the cell in progress. The rlfm
agent's entries record what decides its results (online: the SHA-256 of the checkpoint's weights
and the exploration mode; offline: that of the weights its exploitation policy reads); an entry
made with other ones counts as missing, so after retraining or a change of default a rerun
recomputes rlfm and keeps the baselines.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from rlfm import evaluate
from rlfm.envs import PUBLIC_SUITE
from rlfm.errors import RlfmError
from rlfm.io import atomic_write_text
from rlfm.plots import plot_offline, plot_online

SUITES = {"public": PUBLIC_SUITE}
BEHAVIORS = ("uniform", "medium", "expert")


def slug(env_id: str) -> str:
    return env_id.replace("/", "_")


def run_suite(suite: str, out: Path, *, online_agents: list[str], offline_agents: list[str],
              seeds: int = 10, episodes_scale: float = 1.0,
              dataset_episodes=evaluate.DEFAULT_DATASET_EPISODES, workers: int = 1,
              force: bool = False, envs: list[str] | None = None, fixed: dict | None = None,
              log: Callable[[str], None] = print) -> str:
    """Run the suite; returns (and writes to out/SUMMARY.md) the markdown summary. A cell that
    already has results gets only the agents it lacks (merged in), unless `force`."""
    if suite not in SUITES:
        raise RlfmError(f"unknown suite {suite!r}; available: {', '.join(SUITES)}")
    budgets = SUITES[suite]
    online_print, offline_print = rlfm_fingerprints(fixed)
    for env_id in envs or []:
        if env_id not in budgets:
            raise RlfmError(f"{env_id!r} is not in the {suite} suite")
    for env_id in envs or budgets:
        episodes = max(1, round(budgets[env_id] * episodes_scale))
        cell = out / slug(env_id) / "online"
        missing, previous = _missing(cell, online_agents, force, seeds, online_print, episodes)
        if missing:
            log(f"online  {env_id}: {', '.join(missing)}: {episodes} episodes x {seeds} seeds")
            with _saved_if_interrupted(previous, online_print, cell, plot_online):
                results = evaluate.run_online(env_id, missing, episodes, seeds, tune=True,
                                              workers=workers, fixed=fixed)
            _save(_merge(previous, results, online_print), cell, plot_online)
        for behavior in BEHAVIORS:
            cell = out / slug(env_id) / f"offline-{behavior}"
            missing, previous = _missing(cell, offline_agents, force, seeds, offline_print)
            if missing:
                log(f"offline {env_id}: {', '.join(missing)}: {behavior} behaviour x {seeds} seeds")
                with _saved_if_interrupted(previous, offline_print, cell, plot_offline):
                    results = evaluate.run_offline(env_id, missing, behavior, dataset_episodes,
                                                   seeds, tune=True, workers=workers, fixed=fixed)
                _save(_merge(previous, results, offline_print), cell, plot_offline)
    summary = summarize(out, list(budgets))  # every cell that has results, not only this run's
    atomic_write_text(out / "SUMMARY.md", summary)
    return summary


@contextmanager
def _saved_if_interrupted(previous: dict | None, fingerprint: str, cell: Path, plot):
    """On Ctrl-C, keep the seeds a cell finished (marked incomplete: a later run redoes it)."""
    try:
        yield
    except evaluate.Interrupted as stop:
        if stop.results is not None and stop.results["agents"]:
            _save(_merge(previous, stop.results, fingerprint), cell, plot)
        raise


def rlfm_fingerprints(fixed: dict | None) -> tuple[str, str]:
    """What the rlfm agent's results depend on besides the seed, (online, offline). Online: the
    SHA-256 of the weights it runs with (the --checkpoint, or the shipped one), its exploration
    mode and that mode's knobs; offline, where only its exploitation policy is scored: the
    SHA-256 of the weights that policy reads (not the posterior sampler's). Both: the horizons
    at which it asks for its time-dependent exploitation policy."""
    from rlfm.agents.rlfm import PERSISTENCE, POSTERIOR_SHARE, SAMPLES, SPREAD, default_exploration
    from rlfm.checkpoint import policy_sha256, read_config, resolve
    from rlfm.model import EXACT_LAST_STEPS, REMAINING_FRACTIONS

    knobs = (fixed or {}).get("rlfm", {})
    path = resolve(knobs.get("checkpoint") or "pretrained")
    config = read_config(path)
    exploration = knobs.get("exploration") or default_exploration(config["model"].get("noise_dim", 0))
    online = f"{config['weights_sha256']} exploration={exploration}"
    if exploration == "persistent":
        online += f" persistence={knobs.get('persistence', PERSISTENCE)}"
    if exploration in ("posterior", "mixed"):
        online += f" spread={knobs.get('spread', SPREAD)} samples={knobs.get('samples', SAMPLES)}"
    if exploration == "mixed":
        online += f" share={knobs.get('share', POSTERIOR_SHARE)}"
    offline = f"policy {policy_sha256(path)}"
    if config["model"].get("exploit_head"):
        horizons = (f" exploit_horizons={','.join(map(str, REMAINING_FRACTIONS))}"
                    f" exact_last={EXACT_LAST_STEPS}")
        online, offline = online + horizons, offline + horizons
    return online, offline


def _is_rlfm(entry_name: str) -> bool:
    """An entry of the rlfm agent ("rlfm", "rlfm(knob=...)" or "rlfm (...)")."""
    return entry_name.split(" ")[0].split("(")[0] == "rlfm"


def _missing(cell: Path, names: list[str], force: bool, seeds: int, fingerprint: str,
             episodes: int | None = None) -> tuple[list[str], dict | None]:
    """The agents a cell still lacks (an rlfm entry of another fingerprint counts as lacking), and
    its previous results (None when rerun from scratch: forced, or run with other seeds or
    episodes, which must not be merged)."""
    previous = None if force else _read(cell)
    if previous is not None and not previous.get("complete", True):
        previous = None  # an interrupted cell is run again
    if previous is not None:
        for entry in previous["agents"].values():
            if entry["seeds"] != seeds or (episodes and len(entry["curve"]) != episodes):
                previous = None
                break
    if previous is None:
        return list(names), None
    have = {n for n, e in previous["agents"].items()
            if not _is_rlfm(n) or e.get("fingerprint") == fingerprint}
    return [n for n in names if n not in have], previous


def _merge(previous: dict | None, new: dict, fingerprint: str) -> dict:
    for name, entry in new["agents"].items():
        if _is_rlfm(name):
            entry["fingerprint"] = fingerprint
    if previous is None:
        return new
    merged = dict(previous)
    merged["agents"] = {**previous["agents"], **new["agents"]}
    merged["complete"] = previous.get("complete", True) and new["complete"]
    return merged


def _save(results: dict, cell: Path, plot) -> None:
    cell.mkdir(parents=True, exist_ok=True)
    plot(results, cell / f"{results['protocol']}.png")
    atomic_write_text(cell / "results.json", json.dumps(results, indent=1))


def _fmt_knobs(entry: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in entry.get("knobs", {}).items())


HEADLINE = ("rlfm", "ucbvi (tuned)", "psrl (tuned)", "opsrl (tuned)", "rlsvi (tuned)",
            "qlearning (tuned)")
SCARCE = 10  # D <= SCARCE counts as scarce data (docs/protocol.md)
TOLERANCE = 0.02  # offline: "at least tuned VI-LCB" allows this much below its mean


def headline(out: Path, env_ids: list[str]) -> str:
    """rlfm against the tuned baselines: online episodes to 0.9 / AUC per environment, and how
    often rlfm's offline score is at least tuned VI-LCB's (within one standard error)."""
    lines = ["### Headline: rlfm against tuned baselines", "",
             "Online: episodes to 0.9 / AUC (missing environments not run).", "",
             "| env | E | " + " | ".join(HEADLINE) + " |", "|---|---|" + "---|" * len(HEADLINE)]
    for env_id in env_ids:
        res = _read(out / slug(env_id) / "online")
        if res is None:
            continue
        cells = [f"{e['episodes_to_90'] or 'never'} / {e['auc']:.2f}" if e else "—"
                 for e in (res["agents"].get(name) for name in HEADLINE)]
        E = len(next(iter(res["agents"].values()))["curve"])
        lines.append(f"| {env_id} | {E} | " + " | ".join(cells) + " |")
    counts = {"cells": 0, "at_least": 0, "within": 0, "scarce": 0, "above": 0, "below": 0}
    short = []
    for env_id in env_ids:
        for behavior in BEHAVIORS:
            res = _read(out / slug(env_id) / f"offline-{behavior}")
            ours, theirs = ((res or {}).get("agents", {}).get(k) for k in ("rlfm", "vilcb (tuned)"))
            if not (ours and theirs):
                continue
            for d, m, s, m2, s2 in zip(ours["dataset_episodes"], ours["score"], ours["score_std"],
                                       theirs["score"], theirs["score_std"], strict=True):
                margin = (s ** 2 / ours["seeds"] + s2 ** 2 / theirs["seeds"]) ** 0.5
                counts["cells"] += 1
                counts["at_least"] += m >= m2 - margin
                counts["within"] += m >= m2 - TOLERANCE
                if m < m2 - TOLERANCE:
                    short.append(f"{env_id} {behavior} D={d}: {m:.2f} vs {m2:.2f}")
                if d <= SCARCE:
                    counts["scarce"] += 1
                    counts["above"] += m > m2 + margin
                    counts["below"] += m < m2 - margin
    if counts["cells"]:
        lines += ["", f"Offline: rlfm's mean score is at least tuned VI-LCB's minus {TOLERANCE} in "
                  f"{counts['within']} of {counts['cells']} (env, behaviour, D) cells, and at "
                  f"least tuned VI-LCB's within one standard error of the difference in "
                  f"{counts['at_least']}; with D ≤ {SCARCE} ({counts['scarce']} cells) it is "
                  f"above by more than one standard error in {counts['above']} and below in "
                  f"{counts['below']}."]
        if short:
            lines += ["", f"Cells where rlfm is below tuned VI-LCB by more than {TOLERANCE} "
                      f"(rlfm vs VI-LCB): " + "; ".join(short) + "."]
    return "\n".join(lines) + "\n"


def summarize(out: Path, env_ids: list[str]) -> str:
    """Markdown tables from the results.json files under `out` (missing cells are skipped)."""
    lines = [headline(out, env_ids), "### Online: episodes to 0.9 / AUC / final normalised score",
             ""]
    online = {e: _read(out / slug(e) / "online") for e in env_ids}
    names = _agent_names(online.values())
    if names:
        lines += ["| env | E | " + " | ".join(names) + " |",
                  "|---|---|" + "---|" * len(names)]
        for env_id, res in online.items():
            if res is None:
                continue
            cells = []
            for name in names:
                e = res["agents"].get(name)
                cells.append("—" if e is None else
                             f"{e['episodes_to_90'] or 'never'} / {e['auc']:.2f} / {e['final']:.2f}")
            E = len(next(iter(res["agents"].values()))["curve"])
            lines.append(f"| {env_id} | {E} | " + " | ".join(cells) + " |")
        tuned = [f"{env}: " + ", ".join(f"{n} {_fmt_knobs(e)}" for n, e in res["agents"].items()
                                        if e.get("knobs"))
                 for env, res in online.items() if res is not None]
        lines += ["", "Tuned knobs (online): " + "; ".join(tuned), ""]
    for behavior in BEHAVIORS:
        offline = {e: _read(out / slug(e) / f"offline-{behavior}") for e in env_ids}
        names = _agent_names(offline.values())
        if not names:
            continue
        first = next(r for r in offline.values() if r is not None)
        sizes = next(iter(first["agents"].values()))["dataset_episodes"]
        lines += [f"### Offline, {behavior} behaviour: normalised score by dataset episodes D", "",
                  "| env | agent | " + " | ".join(f"D={d}" for d in sizes) + " |",
                  "|---|---|" + "---|" * len(sizes)]
        for env_id, res in offline.items():
            if res is None:
                continue
            for name in names:
                e = res["agents"].get(name)
                if e is None:
                    continue
                label = f"{name} ({_fmt_knobs(e)})" if e.get("knobs") else name
                cells = [f"{m:.2f}±{s:.2f}" for m, s in zip(e["score"], e["score_std"], strict=True)]
                lines.append(f"| {env_id} | {label} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _read(cell: Path) -> dict | None:
    path = cell / "results.json"
    return json.loads(path.read_text()) if path.exists() else None


def _agent_names(results) -> list[str]:
    names: list[str] = []
    for res in results:
        for name in (res or {}).get("agents", {}):
            if name not in names:
                names.append(name)
    return names


RESULTS_HEADER = """# rlfm benchmark results

Generated by `python benchmarks/run_all.py` (each section names the command that produced it and
can be regenerated alone with `python benchmarks/run_all.py NAME`; `rlfm bench` regenerates the
suite section). Figures are measurements on the machine stated in each section; nothing here is
typed by hand.
"""


def assemble_results(benchmarks_dir: Path) -> Path:
    """benchmarks/RESULTS.md from the sections in benchmarks/results/*.md, in name order."""
    sections = [p.read_text() for p in sorted((benchmarks_dir / "results").glob("*.md"))]
    return atomic_write_text(benchmarks_dir / "RESULTS.md",
                             RESULTS_HEADER + "\n" + "\n".join(sections))
