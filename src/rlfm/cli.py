"""The `rlfm` command line (docs/results.md, docs/environments.md). Every RlfmError ends as one
line on stderr, exit status 2."""

from __future__ import annotations

import functools
import io
import json
import os
import shlex
import signal
import sys
import threading
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from rlfm.errors import RlfmError
from rlfm.evaluate import DEFAULT_DATASET_EPISODES
from rlfm.io import OutputDir, atomic_write_text
from rlfm.priors.cli import prior_app

ENV_HELP = "Gymnasium id (Discrete spaces), module:EnvId (your own module), or MDP .npz file"
DEFAULT_ONLINE = "rlfm,ucbvi,psrl,qlearning"
DEFAULT_BENCH_ONLINE = "rlfm,ucbvi,psrl,opsrl,rlsvi,qlearning"
DEFAULT_OFFLINE = "rlfm,vilcb,cevi"
DEFAULT_WORKERS = max(1, min(4, os.cpu_count() or 1))
DATASET_EPISODES = ",".join(map(str, DEFAULT_DATASET_EPISODES))
CHECKPOINT_HELP = ("model checkpoint for the rlfm agent: a path, or the name of one shipped "
                   "in the package (rlfm-v5, the default: rlfm-v3-posterior fine-tuned on "
                   "offline-like contexts; rlfm-v3-posterior, rlfm-v3, rlfm-v4-deep, rlfm-v2, "
                   "rlfm-v1)")
# Options shared by several commands.
Env = Annotated[str, typer.Argument(help=ENV_HELP)]
EnvKwargs = Annotated[str | None, typer.Option(
    help='keyword arguments for gymnasium.make, as a JSON object, e.g. \'{"map_name": "8x8"}\'')]
Seeds = Annotated[int, typer.Option(min=1, help="independent runs (seeds) per cell")]
Workers = Annotated[int, typer.Option(min=1, help="worker processes")]
Out = Annotated[Path | None, typer.Option(help="directory for results.json, plot, table "
                                               "(checked before the run starts)")]
Overwrite = Annotated[bool, typer.Option(help="replace the results already in --out")]
Checkpoint = Annotated[Path | None, typer.Option(help=CHECKPOINT_HELP)]
Tune = Annotated[bool, typer.Option(help="also report baselines at their best grid knob")]
Device = Annotated[str, typer.Option(help="where the rlfm agent's network runs: cpu or cuda")]
AGENTS_HELP = ("comma-separated agents, each NAME or NAME(knob=value, ...), e.g. "
               "'rlfm(exploration=greedy),psrl'")
DEMO_ENV, DEMO_EPISODES, DEMO_SEEDS = "FrozenLake8x8-v1", 150, 4
LARGE_RUN = 2_000_000  # environment steps above which a run says how large it is first

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  pretty_exceptions_enable=False,
                  help="rlfm: a foundation model for tabular reinforcement learning.")


def _print_version(value: bool) -> None:
    if value:
        from rlfm import __version__

        print(f"rlfm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_print_version,
                                       is_eager=True, help="print the version and exit")) -> None:
    """rlfm: a foundation model for tabular reinforcement learning."""


def _env_kwargs(text: str | None) -> dict:
    """--env-kwargs: a JSON object, checked before any work."""
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise RlfmError(f"--env-kwargs must be a JSON object, got {text!r} ({e})") from None
    if not isinstance(value, dict):
        raise RlfmError(f"--env-kwargs must be a JSON object, got {text!r}")
    return value


app.add_typer(prior_app, name="prior")


@app.command()
def solve(env: Env,
          as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
          env_kwargs: EnvKwargs = None) -> None:
    """The exact optimum of ENV by backward induction, and the uniform policy's return."""
    from rlfm.envs import load_mdp
    from rlfm.mdp import ScoreReference

    mdp = load_mdp(env, **_env_kwargs(env_kwargs))
    ref = ScoreReference.of(mdp)
    result = {"n_states": mdp.n_states, "n_actions": mdp.n_actions, "horizon": mdp.horizon,
              "optimal_return": ref.optimal_return, "uniform_return": ref.uniform_return}
    if as_json:
        print(json.dumps(result))
        return
    table = Table(title=f"{env}: exact solution")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, f"{value:.6g}" if isinstance(value, float) else str(value))
    Console().print(table)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _n_tasks(names, seeds: int, tune: bool, grouped: list[str] | None = None) -> int:
    """Tasks the harness will run: one per (agent, seed), plus the tuning runs; offline, one task
    serves all agents of a group (`grouped`), so each group counts once per seed."""
    from rlfm.agents import parse_spec
    from rlfm.evaluate import TUNING_SEEDS, tuning_candidates

    bases = list(dict.fromkeys(parse_spec(n)[0] for n in (grouped or names)))
    tuned = [n for n in bases if tune and tuning_candidates(n)]
    if grouped is not None:
        return seeds + len(TUNING_SEEDS) * len(tuned)
    return seeds * (len(names) + len(tuned)) + len(TUNING_SEEDS) * sum(
        len(tuning_candidates(n)) for n in tuned)


def _fixed(checkpoint: Path | None, device: str = "cpu") -> dict:
    """Knobs fixed by the command line: the rlfm agent's checkpoint and device (checked before
    any work)."""
    knobs: dict = {}
    if checkpoint is not None:
        from rlfm.checkpoint import read_config, resolve

        read_config(resolve(checkpoint))
        knobs["checkpoint"] = str(checkpoint)
    if device != "cpu":
        from rlfm.agents.rlfm import cuda_available

        if device != "cuda":
            raise RlfmError(f"--device must be cpu or cuda, got {device!r}")
        if not cuda_available():
            raise RlfmError("--device cuda: no CUDA device is available")
        knobs["device"] = device
    return {"rlfm": knobs} if knobs else {}


def _agent_names(text: str) -> list[str]:
    """Agents from the command line (`NAME` or `NAME(knob=value, ...)`), each built once on a
    tiny MDP so that a bad name or knob is reported before any work starts."""
    from rlfm.agents import make, parse_spec
    from rlfm.agents.base import split_top_level

    names = split_top_level(text)
    if not names:
        raise RlfmError("--agents needs at least one agent name")
    for spec in names:
        name, knobs = parse_spec(spec)
        if "device" not in knobs:  # never touch a GPU in the parent of the worker processes
            make(name, 2, 2, horizon=2, **knobs)
    return names


@contextmanager
def _progress(total: int, description: str):
    """A rich progress bar over `total` tasks; yields the function that advances it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    console = Console(stderr=True)
    if not console.is_terminal:  # a log file gets no bar (nor the blank line it leaves)
        yield lambda: None
        return
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task(description, total=total or None)
        yield lambda: bar.advance(task)


def _interruptible(command):
    """Ctrl-C ends a command with one line on stderr and exit status 130 (what was finished is
    written first, see `_run_protocol`); a second Ctrl-C ends the process at once, status 130,
    whatever it is doing (atomic writes leave no half-written file; a KeyboardInterrupt raised
    inside a native library's callback during shutdown would abort the process instead)."""
    @functools.wraps(command)
    def run(*args, **kwargs):
        seen = []

        def on_ctrl_c(signum, frame):
            if seen:
                os._exit(130)
            seen.append(signum)
            raise KeyboardInterrupt

        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, on_ctrl_c) if main else None
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt:
            print("rlfm: interrupted", file=sys.stderr)
            raise typer.Exit(130) from None
        finally:
            if main and not seen:   # once interrupted, the process is on its way out
                signal.signal(signal.SIGINT, previous)
    return run


def _output_dir(out: Path | None, overwrite: bool):
    """--out checked (and locked against other runs) before any work starts."""
    return nullcontext() if out is None else OutputDir(out, overwrite, results="results.json")


def _run_protocol(run, out: Path | None, make_table) -> None:
    """Run a protocol; print and write its results, with how they were made. On Ctrl-C, the
    seeds that finished are printed and written (`"complete": false`), then the command stops."""
    from rlfm.evaluate import Interrupted

    try:
        results = _provenance(run())
    except Interrupted as stop:
        if stop.results is not None and stop.results["agents"]:
            results = _provenance(stop.results)
            _write_outputs(results, out, make_table(results))
        elif out is not None:  # keep what --out held rather than replace it by nothing
            print(f"rlfm: no seed had finished: nothing written to {out}", file=sys.stderr)
        raise
    _write_outputs(results, out, make_table(results))


def _provenance(results: dict) -> dict:
    """The results with the command line that made them (the rest of their provenance, version
    and checkpoint, the protocol records itself)."""
    return {**results, "command": shlex.join(["rlfm", *sys.argv[1:]])}


def _write_outputs(results: dict, out: Path | None, table) -> None:
    """With --out, write results.json (first), the plot and the table; print the table."""
    from rlfm.plots import plot_offline, plot_online

    console = Console()
    if out is None:
        console.print(table)
        return
    atomic_write_text(out / "results.json", json.dumps(results, indent=1))
    atomic_write_text(out / "results.csv", tidy_csv(results))
    plot = plot_online if results["protocol"] == "online" else plot_offline
    plot(results, out / f"{results['protocol']}.png")
    recorder = Console(record=True, width=120, file=io.StringIO())
    recorder.print(table)
    atomic_write_text(out / "table.txt", recorder.export_text())
    console.print(table)
    state = "" if results["complete"] else " (interrupted: only the seeds that finished)"
    console.print(f"wrote results.json, results.csv, {results['protocol']}.png, table.txt to "
                  f"{out}{state}")


def tidy_csv(results: dict) -> str:
    """One row per agent, seed and episode (online) or dataset size (offline)."""
    import csv

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    if results["protocol"] == "online":
        writer.writerow(["agent", "seed", "episode", "score"])
        for name, e in results["agents"].items():
            for seed, curve in zip(e["seed_ids"], e["curves"], strict=True):
                writer.writerows([name, seed, k + 1, v] for k, v in enumerate(curve))
    else:
        writer.writerow(["agent", "seed", "dataset_episodes", "score"])
        for name, e in results["agents"].items():
            seeds, scores = e["seed_ids"], e["scores"]
            for seed, row in zip(seeds, scores, strict=True):
                writer.writerows([name, seed, d, v]
                                 for d, v in zip(e["dataset_episodes"], row, strict=True))
    return text.getvalue()


def _title(results: dict, text: str) -> str:
    if "checkpoint" in results:
        text += f", checkpoint {results['checkpoint']['name']}"
    if not results["complete"]:
        text += " — interrupted, partial"
    return text


def _announce(env: str, env_kwargs: dict, runs: int, episodes: int) -> None:
    """Say how large a run is before it starts, when it is large."""
    from rlfm.evaluate import Problem

    steps = runs * episodes * Problem.of(env, env_kwargs)[0].horizon
    if steps > LARGE_RUN:
        print(f"rlfm: this run makes up to {steps:,} environment steps ({runs} runs of {episodes} "
              f"episodes); it may take a while", file=sys.stderr)


def _measure(results: dict) -> str:
    if results.get("scoring") == "sampled":
        return f"return (mean of {results['rollouts']} evaluation episodes, sampled)"
    return "normalised score"


def online_table(results: dict) -> Table:
    seeds = sorted({e["seeds"] for e in results["agents"].values()})
    sampled = results.get("scoring") == "sampled"
    table = Table(title=_title(results, f"{results['env']} — online, {_measure(results)} "
                                        f"(seeds={'/'.join(map(str, seeds)) or 0})"))
    for col in ("agent", "knobs", "episodes_to_90", "auc", "final", "regret"):
        table.add_column(col, justify="left" if col in ("agent", "knobs") else "right")
    for name, e in results["agents"].items():
        table.add_row(name, _knobs(e["knobs"]),
                      "—" if sampled else str(e["episodes_to_90"] or "never"),
                      f"{e['auc']:.3f}", f"{e['final']:.3f}",
                      "—" if e["regret"] is None else f"{e['regret']:.4g}")
    return table


def offline_table(results: dict) -> Table:
    first = next(iter(results["agents"].values()), {"behavior": "", "seeds": 0,
                                                     "dataset_episodes": []})
    table = Table(title=_title(results, f"{results['env']} — offline ({first['behavior']}), "
                                        f"{_measure(results)} mean ± std over "
                                        f"{first['seeds']} seed(s)"))
    table.add_column("agent")
    table.add_column("knobs")
    for d in first["dataset_episodes"]:
        table.add_column(f"D={d}" if d is not None else "dataset", justify="right")
    for name, e in results["agents"].items():
        cells = [f"{m:.2f}±{s:.2f}" for m, s in zip(e["score"], e["score_std"], strict=True)]
        table.add_row(name, _knobs(e["knobs"]), *cells)
    return table


def _knobs(knobs: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in knobs.items()) or "defaults"


@app.command()
@_interruptible
def online(env: Env,
           agents: str = typer.Option(DEFAULT_ONLINE, help=AGENTS_HELP),
           episodes: int = typer.Option(100, min=1, help="episodes per run (E)"),
           seeds: Seeds = 10, tune: Tune = False, workers: Workers = DEFAULT_WORKERS,
           out: Out = None, overwrite: Overwrite = False,
           checkpoint: Checkpoint = None, env_kwargs: EnvKwargs = None,
           device: Device = "cpu") -> None:
    """Online protocol: learning curves scored exactly after every episode."""
    from rlfm import evaluate

    fixed, kwargs = _fixed(checkpoint, device), _env_kwargs(env_kwargs)
    names = _agent_names(agents)
    with _output_dir(out, overwrite):
        tasks = _n_tasks(names, seeds, tune)
        _announce(env, kwargs, tasks, episodes)
        with _progress(tasks, f"online {env}") as advance:
            _run_protocol(lambda: evaluate.run_online(
                env, names, episodes, seeds, tune=tune, workers=workers, progress=advance,
                fixed=fixed, env_kwargs=kwargs), out, online_table)


@app.command()
@_interruptible
def offline(env: Env,
            agents: str = typer.Option(DEFAULT_OFFLINE, help=AGENTS_HELP),
            behavior: str | None = typer.Option(None, help="uniform (default) | medium | expert"),
            dataset_episodes: str | None = typer.Option(
                None, help=f"comma-separated dataset sizes D (default {DATASET_EPISODES})"),
            dataset: str | None = typer.Option(None, help="your own .npz or Minari dataset "
                                                          "(instead of --behavior and "
                                                          "--dataset-episodes)"),
            seeds: Seeds = 10, tune: Tune = False, workers: Workers = DEFAULT_WORKERS,
            out: Out = None, overwrite: Overwrite = False,
            checkpoint: Checkpoint = None, env_kwargs: EnvKwargs = None,
            device: Device = "cpu") -> None:
    """Offline protocol: each agent learns from a fixed dataset; scored exactly."""
    from rlfm import evaluate

    fixed, kwargs = _fixed(checkpoint, device), _env_kwargs(env_kwargs)
    names = _agent_names(agents)
    if dataset is not None:
        given = [flag for flag, value in (("--behavior", behavior),
                                          ("--dataset-episodes", dataset_episodes)) if value]
        if given:
            raise RlfmError(f"{' and '.join(given)} describe(s) generated datasets; with "
                            f"--dataset the data are your own: leave {' and '.join(given)} out")
        from rlfm.datasets import load_dataset

        with _output_dir(out, overwrite):
            problem, _ = evaluate.Problem.of(env, kwargs)
            stats, n_episodes = load_dataset(dataset, problem.n_states, problem.n_actions)
            _run_protocol(lambda: evaluate.run_offline_dataset(
                env, names, stats, n_episodes, fixed, env_kwargs=kwargs), out, offline_table)
        return
    try:
        sizes = [int(d) for d in _split(dataset_episodes or DATASET_EPISODES)]
    except ValueError:
        raise RlfmError(f"--dataset-episodes must be integers, got {dataset_episodes!r}") \
            from None
    with _output_dir(out, overwrite):
        tasks = len(sizes) * _n_tasks([], seeds, tune, names)
        _announce(env, kwargs, tasks, max(sizes, default=0))
        with _progress(tasks, f"offline {env}") as advance:
            _run_protocol(lambda: evaluate.run_offline(
                env, names, behavior or "uniform", sizes, seeds, tune=tune, workers=workers,
                progress=advance, fixed=fixed, env_kwargs=kwargs), out, offline_table)


@app.command()
@_interruptible
def collect(env: Env,
            behavior: str = typer.Option("uniform", help="uniform | medium | expert"),
            episodes: int = typer.Option(10, min=1, help="episodes to collect"),
            seed: int = typer.Option(0, min=0, help="seed of the behaviour and the environment"),
            out: Path | None = typer.Option(None, help="write a dataset .npz here"),
            minari_id: str | None = typer.Option(None, help="or create this Minari dataset "
                                                            "(e.g. mine/lake-expert-v0)"),
            env_kwargs: EnvKwargs = None) -> None:
    """Collect an offline dataset in ENV with a behaviour policy (ε-greedy around the optimal
    policy: uniform ε = 1, medium 0.5, expert 0.1), as an .npz or a Minari dataset."""
    from rlfm import datasets
    from rlfm.envs import make
    from rlfm.evaluate import collect_episodes
    from rlfm.mdp import TabularMDP

    if (out is None) == (minari_id is None):
        raise RlfmError("give exactly one of --out FILE.npz and --minari-id NAME")
    if out is not None and (out.exists() or not out.parent.is_dir()):
        raise RlfmError(f"--out {out}: " + ("already exists" if out.exists() else
                                            "its directory does not exist"))
    environment = make(env, **_env_kwargs(env_kwargs))
    mdp = TabularMDP.from_gymnasium(environment)
    recorded = collect_episodes(environment, mdp, behavior, episodes, seed)
    if out is not None:
        datasets.save_npz(out, recorded, mdp.n_states, mdp.n_actions)
        where = str(out)
    else:
        datasets.save_minari(minari_id, recorded, environment, algorithm=f"rlfm {behavior}")
        where = f"Minari dataset {minari_id}"
    steps = sum(len(e) for e in recorded)
    print(f"wrote {episodes} episodes ({steps} transitions) of {behavior} behaviour to {where}")


@app.command()
@_interruptible
def bench(suite: str = typer.Option("public", help="benchmark suite"),
          out: Path = typer.Option(Path("benchmarks/suite"), help="directory for all results"),
          seeds: Seeds = 10,
          online_agents: str = typer.Option(DEFAULT_BENCH_ONLINE,
                                            help="agents for the online protocol"),
          offline_agents: str = typer.Option(DEFAULT_OFFLINE, help="agents for the offline one"),
          env: list[str] | None = typer.Option(None, help="only these suite environments"),
          episodes_scale: float = typer.Option(1.0, min=0.01, help="scale the online budgets"),
          workers: Workers = DEFAULT_WORKERS,
          force: bool = typer.Option(False, help="rerun cells that already have results"),
          checkpoint: Checkpoint = None, device: Device = "cpu") -> None:
    """Run the whole protocol on a suite (resumable); regenerate benchmarks/RESULTS.md when run
    from a checkout of the repository."""
    from rlfm.bench import assemble_results, run_suite

    console = Console(stderr=True)
    fixed = _fixed(checkpoint, device)
    online_names, offline_names = _agent_names(online_agents), _agent_names(offline_agents)
    with OutputDir(out, overwrite=True):  # resumable: results already there are kept
        summary = run_suite(suite, out, online_agents=online_names, offline_agents=offline_names,
                            seeds=seeds, episodes_scale=episodes_scale, workers=workers,
                            force=force, envs=env, fixed=fixed,
                            log=lambda msg: console.print(f"[bold]bench[/] {msg}"))
    command = " ".join(["rlfm", *sys.argv[1:]])
    section = (f"## Suite `{suite}`: baselines, online and offline\n\n`{command}`; results, "
               f"plots and this summary under `{out}/`.\n\n{summary}")
    sections_dir = Path("benchmarks/results")
    if sections_dir.is_dir():
        atomic_write_text(sections_dir / f"30_suite_{suite}.md", section)
        console.print(f"wrote {assemble_results(sections_dir.parent)}")
    print(summary)


@app.command()
@_interruptible
def demo(out: Path = typer.Option(Path("results/demo"), help="directory for the results"),
         episodes: int = typer.Option(DEMO_EPISODES, min=1, help="episodes per run"),
         seeds: Seeds = DEMO_SEEDS, workers: Workers = DEFAULT_WORKERS,
         overwrite: Overwrite = False, checkpoint: Checkpoint = None,
         device: Device = "cpu") -> None:
    """The quick showcase: the online protocol on FrozenLake 8x8 (a table and a plot)."""
    online(env=DEMO_ENV, agents=DEFAULT_ONLINE, episodes=episodes, seeds=seeds, tune=False,
           workers=workers, out=out, overwrite=overwrite, checkpoint=checkpoint, device=device)


@app.command()
@_interruptible
def train(config: Path | None = typer.Option(None, help="run config TOML (see configs/)"),
          out: Path = typer.Option(Path("runs/train"), help="directory for checkpoints and logs"),
          resume: bool = typer.Option(False, help="continue the run in --out from its latest "
                                                  "checkpoint"),
          device: str = typer.Option("cpu", help="cpu or cuda (`torchrun -m rlfm.train` for "
                                                 "several processes, DDP)")) -> None:
    """Pretrain the network on the synthetic prior."""
    from rlfm.train import RunConfig
    from rlfm.train import train as run_training

    if device not in ("cpu", "cuda"):
        raise RlfmError(f"--device must be cpu or cuda, got {device!r}")
    console = Console(stderr=True)
    run_training(RunConfig.load(config), out, resume=resume, log=console.print, device=device)


def main() -> None:
    try:
        app()
    except RlfmError as e:
        print(f"rlfm: error: {e}", file=sys.stderr)
        sys.exit(2)
