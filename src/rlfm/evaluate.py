"""The evaluation protocol (docs/protocol.md): online learning curves scored after every
episode, and offline datasets from a behaviour policy, scored once.

Agents act in a real Gymnasium environment (for toy-text environments, with the environment's own
per-transition rewards). Scores are computed exactly on the environment's TabularMDP by backward
induction (normalised), or, for an environment that can only be stepped, estimated by the mean
return of evaluation rollouts ("sampled" scoring; see `Problem`).
"""

from __future__ import annotations

import itertools
import multiprocessing
import signal
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from rlfm import __version__, agents
from rlfm.agents.base import Agent
from rlfm.envs import has_model
from rlfm.envs import make as make_env
from rlfm.errors import RlfmError
from rlfm.limits import ensure_memory
from rlfm.mdp import (
    FALLBACK_HORIZON,
    ScoreReference,
    TabularMDP,
    backward_induction,
    evaluate_policy,
)
from rlfm.stats import Statistics


def env_seed(seed: int) -> int:
    """The environment's seed for run `seed`: a stream of its own, independent of the agent's
    (seeded with `seed` itself); equal seeds would make the agent's draws replay the env's."""
    return int(np.random.SeedSequence([seed, 0x5EED]).generate_state(1)[0])


def run_episode(env: gym.Env, agent: Agent, horizon: int, seed: int | None = None,
                gamma: float = 1.0) -> float:
    """One episode of `agent` in `env` (at most `horizon` steps); returns the reward collected,
    discounted by `gamma` per step as J is. `seed` (a run's seed) reseeds the
    environment: pass it for the first episode of a run only."""
    state, _ = env.reset(seed=None if seed is None else env_seed(seed))
    total, discount = 0.0, 1.0
    for step in range(horizon):
        action = agent.act(int(state), step)
        next_state, reward, terminated, truncated, _ = env.step(action)
        agent.observe(int(state), int(action), float(reward), int(next_state), bool(terminated))
        total += discount * float(reward)
        discount *= gamma
        state = next_state
        if terminated or truncated:
            break
    agent.end_episode()
    return total


@dataclass
class OnlineRun:
    """One seed of online learning: the normalised score of the exploitation policy after each
    episode, and the return actually collected in each episode."""

    scores: np.ndarray
    returns: np.ndarray


def online_run(env: gym.Env, mdp: TabularMDP | None, agent: Agent, episodes: int, seed: int,
               reference: ScoreReference | None = None,
               score: Callable[[np.ndarray, int], float] | None = None) -> OnlineRun:
    """E episodes of `agent` in `env`, its exploitation policy scored after each: exactly on
    `mdp` (normalised by `reference`), or by `score(policy, episode)` where given."""
    if score is None:
        score = exact_score(mdp, reference or ScoreReference.of(mdp))
    gamma = mdp.gamma if mdp is not None else 1.0
    scores, returns = np.empty(episodes), np.empty(episodes)
    for k in range(episodes):
        returns[k] = run_episode(env, agent, agent.horizon, seed=seed if k == 0 else None,
                                 gamma=gamma)
        scores[k] = score(agent.policy(), k)
    return OnlineRun(scores=scores, returns=returns)


def exact_score(mdp: TabularMDP, reference: ScoreReference) -> Callable[[np.ndarray, int], float]:
    """score(policy, k): the policy's exact normalised score on `mdp` (k is unused)."""
    return lambda pi, _: reference.normalise(evaluate_policy(mdp, pi))


def rollout_return(env: gym.Env, policy: np.ndarray, episodes: int, seed: int) -> float:
    """The mean return of `episodes` episodes of the (H, S, A) policy in `env`, each at most H
    steps (the environment and the action draws seeded from `seed`)."""
    rng = np.random.default_rng([seed, 0xE7A1])
    cdf = policy.cumsum(-1)
    total = 0.0
    for _ in range(episodes):
        state, _ = env.reset(seed=int(rng.integers(2**31)))
        for step in range(len(policy)):
            row = cdf[step, int(state)]
            action = min(int(np.searchsorted(row, rng.random() * row[-1], side="right")),
                         len(row) - 1)
            state, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
    return total / episodes


ROLLOUTS = 20  # evaluation episodes per score where the environment can only be stepped


@dataclass(frozen=True)
class Problem:
    """An environment as the protocol sees it: what makes it, its sizes, and how a policy is
    scored: exactly on its model, normalised by `reference` ("exact"), or, where the
    environment exposes no model and can only be stepped, by the mean return of `rollouts`
    evaluation episodes in a separate instance of it ("sampled", not normalised)."""

    env_id: str
    env_kwargs: dict
    n_states: int
    n_actions: int
    horizon: int
    reference: ScoreReference | None
    rollouts: int = ROLLOUTS

    @classmethod
    def of(cls, env_id: str, env_kwargs: dict | None = None) -> tuple[Problem, TabularMDP | None]:
        env_kwargs = dict(env_kwargs or {})
        env = make_env(env_id, **env_kwargs)
        if has_model(env):
            mdp = TabularMDP.from_gymnasium(env)
            return cls(env_id, env_kwargs, mdp.n_states, mdp.n_actions, mdp.horizon,
                       ScoreReference.of(mdp)), mdp
        horizon = (env.spec.max_episode_steps if env.spec else None) or FALLBACK_HORIZON
        return cls(env_id, env_kwargs, int(env.observation_space.n), int(env.action_space.n),
                   int(horizon), None), None

    @property
    def scoring(self) -> str:
        return "exact" if self.reference is not None else "sampled"

    def make(self) -> tuple[gym.Env, TabularMDP | None]:
        env = make_env(self.env_id, **self.env_kwargs)
        return env, (TabularMDP.from_gymnasium(env) if self.reference is not None else None)

    def scorer(self, mdp: TabularMDP | None, seed: int) -> Callable[[np.ndarray, int], float]:
        """score(policy, k): the k-th evaluation of run `seed`'s policy."""
        if self.reference is not None:
            return exact_score(mdp, self.reference)
        evaluation = make_env(self.env_id, **self.env_kwargs)
        return lambda pi, k: rollout_return(evaluation, pi, self.rollouts, seed * 1_000_003 + k)

    def uniform_return(self) -> float:
        if self.reference is not None:
            return self.reference.uniform_return
        uniform = np.full((self.horizon, self.n_states, self.n_actions), 1 / self.n_actions)
        return rollout_return(make_env(self.env_id, **self.env_kwargs), uniform,
                              10 * self.rollouts, seed=0)


# ---- offline datasets ------------------------------------------------------------------------
BEHAVIOR_EPSILON = {"uniform": 1.0, "medium": 0.5, "expert": 0.1}


class BehaviorAgent(Agent):
    """ε-greedy with respect to the optimal Q*_h of the true MDP (ε = 1: uniform random)."""

    name = "behavior"

    def __init__(self, mdp: TabularMDP, epsilon: float, seed: int | None = 0):
        super().__init__(mdp.n_states, mdp.n_actions, mdp.horizon, seed)
        self.epsilon = epsilon
        self.greedy = backward_induction(mdp).policy if epsilon < 1.0 else None

    def act(self, state: int, step: int) -> int:
        if self.greedy is None or self.rng.random() < self.epsilon:
            return int(self.rng.integers(self.n_actions))
        return int(self.greedy[min(step, self.horizon - 1), state])

    def exploit(self) -> np.ndarray:
        return np.full((self.n_states, self.n_actions), 1.0 / self.n_actions)


class _Recorder(Agent):
    """Wraps a behaviour agent and records its transitions into a Statistics (and, with
    `keep_episodes`, each episode's transitions (s, a, r, s', terminated) in order)."""

    def __init__(self, behavior: Agent, keep_episodes: bool = False):
        super().__init__(behavior.n_states, behavior.n_actions, behavior.horizon)
        self.behavior = behavior
        self.stats = Statistics(behavior.n_states, behavior.n_actions)
        self.episodes: list | None = [] if keep_episodes else None
        self._episode: list = []

    def act(self, state, step):
        return self.behavior.act(state, step)

    def observe(self, state, action, reward, next_state, terminated):
        self.stats.update(state, action, reward, next_state, terminated)
        if self.episodes is not None:
            self._episode.append((state, action, reward, next_state, terminated))

    def end_episode(self):
        if self.episodes is not None:
            self.episodes.append(self._episode)
            self._episode = []

    def exploit(self):
        return self.behavior.exploit()


def _record(env: gym.Env, mdp: TabularMDP, behavior: str, episodes: int, seed: int,
            keep_episodes: bool = False) -> _Recorder:
    if behavior not in BEHAVIOR_EPSILON:
        raise RlfmError(f"unknown behaviour {behavior!r}; choose from {', '.join(BEHAVIOR_EPSILON)}")
    recorder = _Recorder(BehaviorAgent(mdp, BEHAVIOR_EPSILON[behavior], seed=seed), keep_episodes)
    for k in range(episodes):
        run_episode(env, recorder, mdp.horizon, seed=seed if k == 0 else None)
    return recorder


def collect_dataset(env: gym.Env, mdp: TabularMDP, behavior: str, episodes: int,
                    seed: int) -> Statistics:
    """The statistic of `episodes` episodes of the named behaviour in `env`."""
    return _record(env, mdp, behavior, episodes, seed).stats


def collect_episodes(env: gym.Env, mdp: TabularMDP, behavior: str, episodes: int,
                     seed: int) -> list[list[tuple]]:
    """The transitions (s, a, r, s', terminated) of each of `episodes` episodes of the named
    behaviour in `env`, in order (the data behind `collect_dataset`'s statistic)."""
    return _record(env, mdp, behavior, episodes, seed, keep_episodes=True).episodes


# ---- the protocol over seeds, in worker processes -------------------------------------------
THRESHOLD = 0.9
DEFAULT_DATASET_EPISODES = (1, 3, 10, 30, 100, 300)
# Seeds on which a baseline's knob is picked; disjoint from the reported seeds 0, 1, 2, ...
TUNING_SEEDS = range(10_000, 10_003)


@dataclass(frozen=True)
class AgentSpec:
    """An agent as the harness runs it: its registry name and knobs, and the label it is
    reported under (the name given on the command line, or 'name (tuned)')."""

    name: str
    knobs: tuple = ()
    label: str | None = None

    @property
    def title(self) -> str:
        return self.label or self.name


def _online_task(args) -> OnlineRun:
    problem, spec, episodes, seed = args
    env, mdp = problem.make()
    agent = _agent(spec, problem, seed)
    return online_run(env, mdp, agent, episodes, seed, score=problem.scorer(mdp, seed))


def _offline_task(args) -> list[float]:
    problem, specs, behavior, n_episodes, seed = args
    env, mdp = problem.make()
    stats = collect_dataset(env, mdp, behavior, n_episodes, seed)
    score = problem.scorer(mdp, seed)
    return [score(_agent(spec, problem, seed).fit(stats).policy(), 0) for spec in specs]


def _agent(spec: AgentSpec, problem: Problem, seed: int) -> Agent:
    return agents.make(spec.name, problem.n_states, problem.n_actions, horizon=problem.horizon,
                       seed=seed, **dict(spec.knobs))


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run. `results` holds what was finished: the protocol's results dict with
    `"complete": false` and only the seeds that finished (from `run_online`/`run_offline`)."""

    def __init__(self, results=None):
        super().__init__()
        self.results = results


def _map(fn: Callable, tasks: list, workers: int, progress: Callable[[], None] | None = None):
    """Run tasks in worker processes; results in the order of the tasks; `progress` is called
    per finished task. Ctrl-C stops the workers at once (queued tasks never start) and raises
    Interrupted whose `results` list holds the finished tasks' results and None elsewhere; a
    worker that dies (killed, out of memory) ends the run with an RlfmError."""
    results = [None] * len(tasks)
    if workers <= 1 or len(tasks) <= 1:
        try:
            for i, task in enumerate(tasks):
                results[i] = fn(task)
                if progress:
                    progress()
        except KeyboardInterrupt:
            raise Interrupted(results) from None
        return results
    pool = ProcessPoolExecutor(min(workers, len(tasks)), multiprocessing.get_context("fork"),
                               initializer=_worker_init)
    futures = []
    try:
        futures = [pool.submit(fn, task) for task in tasks]
        if progress:
            for future in futures:
                future.add_done_callback(lambda _: progress())
        for i, future in enumerate(futures):
            results[i] = future.result()
    except KeyboardInterrupt:
        for i, future in enumerate(futures):
            if future.done() and not future.cancelled() and future.exception() is None:
                results[i] = future.result()
        _stop(pool)
        raise Interrupted(results) from None
    except BrokenProcessPool:
        _stop(pool)
        raise RlfmError("a worker process died (killed by a signal, or out of memory); "
                        "try fewer --workers") from None
    except BaseException:
        _stop(pool)
        raise
    pool.shutdown()
    return results


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel the queued tasks and terminate the workers now (a second Ctrl-C is held back
    meanwhile, so that none is left behind)."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        # no public way to stop running workers before Python 3.14's terminate_workers()
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=5)
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)


def _worker_init() -> None:
    """Workers leave Ctrl-C to the main process (which stops them), and use one torch thread
    each: they already share the cores."""
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)


def _check_memory(mdp: TabularMDP | None, workers: int, n_tasks: int) -> None:
    """Every process holds its own copy of the MDP (the main one, and each worker's)."""
    if mdp is None:
        return
    copies = 1 + (min(workers, n_tasks) if workers > 1 else 0)
    ensure_memory(copies * mdp.nbytes, f"{copies} copies of the MDP (one per process; "
                                       f"use fewer --workers)")


def summarize_online(runs: list[OnlineRun], optimal_return: float | None,
                     seed_ids: list[int] | None = None) -> dict:
    """The protocol's figures from the runs of one agent over seeds, and each seed's curve
    (`optimal_return` None: sampled scoring, no threshold nor regret)."""
    scores = np.stack([r.scores for r in runs])
    curve = scores.mean(axis=0)
    below = np.flatnonzero(curve < THRESHOLD)
    if optimal_return is None:  # sampled scoring: raw returns, no normalised threshold
        to_90 = None
    elif below.size == 0:
        to_90 = 1
    elif below[-1] == len(curve) - 1:
        to_90 = None
    else:
        to_90 = int(below[-1]) + 2  # episodes are counted from 1
    regret = None if optimal_return is None else float(
        np.mean([np.sum(optimal_return - r.returns) for r in runs]))
    return {"episodes_to_90": to_90, "auc": float(curve.mean()), "final": float(curve[-1]),
            "regret": regret, "curve": curve.tolist(),
            "curve_std": scores.std(axis=0).tolist(), "seeds": len(runs),
            "seed_ids": list(seed_ids) if seed_ids is not None else list(range(len(runs))),
            "curves": scores.tolist()}


def tuning_candidates(name: str) -> list[tuple]:
    """Every knob combination of an agent's TUNING_GRID, as sorted (knob, value) tuples."""
    grid = getattr(agents.agent_class(name), "TUNING_GRID", {}) or {}
    if not grid:
        return []
    keys = sorted(grid)
    return [tuple(zip(keys, values, strict=True))
            for values in itertools.product(*(grid[k] for k in keys))]


def default_specs(names: Iterable[str], fixed: dict | None = None) -> list[AgentSpec]:
    """One AgentSpec per name (`NAME` or `NAME(knob=value, ...)`, see `agents.parse_spec`),
    with the fixed knobs given for NAME (e.g. rlfm's checkpoint) under the ones it names."""
    fixed = fixed or {}
    specs = []
    for text in names:
        name, knobs = agents.parse_spec(text)
        specs.append(AgentSpec(name, tuple(sorted({**fixed.get(name, {}), **knobs}.items())),
                               text.strip()))
    return specs


def run_online(env_id: str, names: Iterable[str], episodes: int, seeds: int, *,
               tune: bool = False, workers: int = 1, progress=None,
               fixed: dict | None = None, env_kwargs: dict | None = None) -> dict:
    """Online protocol: every named agent at its defaults (plus `fixed[name]` knobs); with
    `tune`, also every tunable baseline at the grid value with the best AUC on TUNING_SEEDS
    seeds (reported on all seeds). Ctrl-C raises Interrupted with the seeds finished so far.
    `env_kwargs` go to `gymnasium.make`."""
    names = list(names)
    specs = default_specs(names, fixed)
    problem, mdp = Problem.of(env_id, env_kwargs)
    _check_memory(mdp, workers, seeds * len(specs))
    finished: list = []  # (task, run or None)

    def run(group: list[AgentSpec]) -> None:
        # seed by seed, so that an interrupted run holds about as many seeds of every agent
        tasks = [(problem, spec, episodes, seed) for seed in range(seeds) for spec in group]
        try:
            finished.extend(zip(tasks, _map(_online_task, tasks, workers, progress), strict=True))
        except Interrupted as stop:
            finished.extend(zip(tasks, stop.results, strict=True))
            raise

    complete = False
    try:  # the defaults first: a run stopped while tuning still holds them
        run(specs)
        if tune:
            tuned = _tuned_specs(names, lambda candidates: _best_online(
                problem, candidates, episodes, workers, progress))
            specs += tuned
            run(tuned)
        complete = True
    except Interrupted:
        pass
    by_spec: dict[AgentSpec, list] = {spec: [] for spec in specs}
    for task, result in finished:
        if result is not None:
            by_spec[task[1]].append((task[3], result))
    optimal = problem.reference.optimal_return if problem.reference is not None else None
    entries = {spec.title: {"knobs": dict(spec.knobs), **summarize_online(
        [r for _, r in done], optimal, [seed for seed, _ in done])}
        for spec, done in by_spec.items() if done}
    return _finish(_envelope(problem, "online", entries, complete, specs))


def _finish(results: dict) -> dict:
    """The results of a run; raise Interrupted with them when the run was stopped early."""
    if not results["complete"]:
        raise Interrupted(results)
    return results


def _best_online(problem, candidates, episodes, workers, progress) -> AgentSpec:
    tasks = [(problem, spec, episodes, seed) for spec in candidates
             for seed in TUNING_SEEDS]
    runs = _map(_online_task, tasks, workers, progress)
    seeds = len(TUNING_SEEDS)
    aucs = [np.mean([r.scores.mean() for r in runs[i * seeds:(i + 1) * seeds]])
            for i in range(len(candidates))]
    return candidates[int(np.argmax(aucs))]


def _tuned_specs(names, pick_best) -> list[AgentSpec]:
    tuned = []
    for name in dict.fromkeys(agents.parse_spec(text)[0] for text in names):
        candidates = [AgentSpec(name, knobs, f"{name} (tuned)") for knobs in tuning_candidates(name)]
        if candidates:
            tuned.append(pick_best(candidates))
    return tuned


def run_offline(env_id: str, names: Iterable[str], behavior: str,
                dataset_episodes: Iterable[int], seeds: int, *, tune: bool = False,
                workers: int = 1, progress=None, fixed: dict | None = None,
                env_kwargs: dict | None = None) -> dict:
    """Offline protocol: for each dataset size D and seed, one dataset of D episodes of the
    behaviour; every agent fits it and its policy is scored exactly. With `tune`, tunable
    baselines are also reported at the knob with the best mean score over all D (per env)."""
    names = list(names)
    if behavior not in BEHAVIOR_EPSILON:
        raise RlfmError(f"unknown behaviour {behavior!r}; choose from {', '.join(BEHAVIOR_EPSILON)}")
    specs = default_specs(names, fixed)
    sizes = [int(d) for d in dataset_episodes]
    if not sizes or min(sizes) < 1:
        raise RlfmError("dataset sizes must be positive numbers of episodes")
    problem, mdp = Problem.of(env_id, env_kwargs)
    if mdp is None:
        raise RlfmError(f"{env_id}: generated datasets need the environment's model (the "
                        f"behaviours act on its Q*); it exposes none, so bring your own data "
                        f"with --dataset")
    _check_memory(mdp, workers, seeds * len(sizes))
    seed_ids, reporting, complete = [], False, False
    try:
        if tune:
            specs += _tuned_specs(names, lambda candidates: _best_offline(
                problem, candidates, behavior, sizes, workers, progress))
        reporting = True
        scores, seed_ids = _offline_scores(problem, specs, behavior, sizes,
                                           range(seeds), workers, progress)
        complete = True
    except Interrupted as stop:
        if reporting:  # the reported seeds had started (not only the tuning ones)
            scores, seed_ids = stop.results
    entries = {spec.title: {"knobs": dict(spec.knobs), "behavior": behavior,
                            "dataset_episodes": sizes,
                            "score": scores[:, :, i].mean(axis=0).tolist(),
                            "score_std": scores[:, :, i].std(axis=0).tolist(),
                            "seeds": len(seed_ids), "seed_ids": seed_ids,
                            "scores": scores[:, :, i].tolist()}
               for i, spec in enumerate(specs)} if seed_ids else {}
    return _finish(_envelope(problem, "offline", entries, complete, specs))


def _offline_scores(problem, specs, behavior, sizes, seeds, workers,
                    progress) -> tuple[np.ndarray, list[int]]:
    """Scores of shape (len(seeds), len(sizes), len(specs)) (every spec fits the same datasets)
    and the seeds. Interrupted: raised with the same pair for the seeds whose every D finished."""
    seeds = list(seeds)
    tasks = [(problem, specs, behavior, d, seed) for seed in seeds for d in sizes]
    try:
        flat = _map(_offline_task, tasks, workers, progress)
    except Interrupted as stop:
        rows = [stop.results[i * len(sizes):(i + 1) * len(sizes)] for i in range(len(seeds))]
        done = [i for i, row in enumerate(rows) if all(r is not None for r in row)]
        scores = np.array([rows[i] for i in done]).reshape(len(done), len(sizes), len(specs))
        raise Interrupted((scores, [seeds[i] for i in done])) from None
    return np.array(flat).reshape(len(seeds), len(sizes), len(specs)), seeds


def _best_offline(problem, candidates, behavior, sizes, workers, progress) -> AgentSpec:
    scores, _ = _offline_scores(problem, candidates, behavior, sizes, TUNING_SEEDS,
                                workers, progress)
    return candidates[int(np.argmax(scores.mean(axis=(0, 1))))]


def run_offline_dataset(env_id: str, names: Iterable[str], stats: Statistics,
                        n_episodes: int | None, fixed: dict | None = None,
                        env_kwargs: dict | None = None) -> dict:
    """Offline protocol on the user's own dataset: each agent fits it once and is scored once
    (exactly, or by rollouts where the environment exposes no model)."""
    problem, mdp = Problem.of(env_id, env_kwargs)
    score = problem.scorer(mdp, seed=0)
    results, specs = {}, default_specs(names, fixed)
    for spec in specs:
        policy = _agent(spec, problem, seed=0).fit(stats).policy()
        value = score(policy, 0)
        results[spec.title] = {"knobs": dict(spec.knobs), "behavior": "dataset",
                               "dataset_episodes": [n_episodes], "score": [value],
                               "score_std": [0.0], "seeds": 1, "seed_ids": [0],
                               "scores": [[value]]}
    return _envelope(problem, "offline", results, True, specs)


def checkpoints_used(specs: Iterable[AgentSpec]) -> dict:
    """Where the rlfm agent runs, the checkpoint of its weights (name, SHA-256): `checkpoint`
    for one, or `checkpoints` by agent label where several run with different ones."""
    from rlfm.checkpoint import read_config, resolve

    used = {}
    for spec in specs:
        if spec.name == "rlfm":
            path = resolve(dict(spec.knobs).get("checkpoint") or "pretrained")
            stem = path.stem if path.suffix in (".json", ".safetensors") else path.name
            used[spec.title] = {"name": stem, "sha256": read_config(path)["weights_sha256"]}
    if len({tuple(v.items()) for v in used.values()}) == 1:
        return {"checkpoint": next(iter(used.values()))}
    return {"checkpoints": used} if used else {}


def _envelope(problem: Problem, protocol: str, results: dict, complete: bool,
              specs: list[AgentSpec]) -> dict:
    extra = {"env_kwargs": problem.env_kwargs} if problem.env_kwargs else {}
    if problem.reference is None:
        extra["rollouts"] = problem.rollouts
    optimal = problem.reference.optimal_return if problem.reference is not None else None
    return {"env": problem.env_id, **extra, "protocol": protocol, "complete": complete,
            "scoring": problem.scoring, "rlfm_version": __version__,
            "n_states": problem.n_states, "n_actions": problem.n_actions,
            "horizon": problem.horizon, "optimal_return": optimal,
            "uniform_return": problem.uniform_return(), **checkpoints_used(specs),
            "agents": results}
