"""Users' offline datasets (docs/datasets.md): a Minari dataset with Discrete spaces, or an `.npz` of flat
transition arrays `observations, actions, rewards, next_observations, terminations` plus
`n_states`, `n_actions`. Either becomes a Statistics of the MDP it is scored on."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from rlfm.errors import InvalidDataError
from rlfm.io import read_npz
from rlfm.stats import Statistics

NPZ_KEYS = ("observations", "actions", "rewards", "next_observations", "terminations")
OPTIONAL_KEYS = ("episodes",)


def load_dataset(source: str, n_states: int, n_actions: int) -> tuple[Statistics, int | None]:
    """The statistic of a dataset file (or Minari dataset id / directory), checked against an MDP
    with `n_states` states and `n_actions` actions; also the number of episodes when known."""
    path = Path(source)
    if source.endswith(".npz") or path.is_file():
        return _load_npz(path, n_states, n_actions)
    return _load_minari(source, n_states, n_actions)


def _load_npz(path: Path, n_states: int, n_actions: int):
    data = read_npz(path, InvalidDataError)
    required = (*NPZ_KEYS, "n_states", "n_actions")
    missing = [k for k in required if k not in data]
    if missing:
        raise InvalidDataError(f"{path}: missing key(s) {', '.join(repr(k) for k in missing)}")
    unknown = sorted(set(data) - {*required, *OPTIONAL_KEYS})
    if unknown:
        raise InvalidDataError(f"{path}: unknown key(s) {', '.join(repr(k) for k in unknown)} "
                               f"(a dataset holds {', '.join(required + OPTIONAL_KEYS)})")
    _check_sizes(path, _count(data, "n_states", path), _count(data, "n_actions", path), n_states,
                 n_actions)
    try:
        stats = Statistics.from_transitions(n_states, n_actions, *(data[k] for k in NPZ_KEYS))
    except InvalidDataError as e:
        raise InvalidDataError(f"{path}: {e}") from None
    if stats.n_transitions == 0:
        raise InvalidDataError(f"{path}: the dataset holds no transitions")
    n_episodes = _count(data, "episodes", path) if "episodes" in data else None
    return stats, n_episodes


def _load_minari(source: str, n_states: int, n_actions: int):
    import gymnasium as gym
    import minari

    try:
        path = Path(source)
        if path.is_dir():
            dataset = minari.MinariDataset(path / "data" if (path / "data").is_dir() else path)
        else:
            dataset = minari.load_dataset(source)
    except Exception as e:  # Minari raises many kinds; all mean "cannot read it"
        raise InvalidDataError(f"{source}: not a .npz file nor a readable Minari dataset ({e})") \
            from None
    spaces = (dataset.observation_space, dataset.action_space)
    if not all(isinstance(space, gym.spaces.Discrete) for space in spaces):
        raise InvalidDataError(f"{source}: rlfm needs Discrete observation and action spaces")
    _check_sizes(source, int(spaces[0].n), int(spaces[1].n), n_states, n_actions)
    stats = Statistics(n_states, n_actions)
    n_episodes = 0
    for episode in dataset.iterate_episodes():
        obs = np.asarray(episode.observations)
        try:
            stats.add_transitions(obs[:-1], np.asarray(episode.actions), episode.rewards, obs[1:],
                                  episode.terminations)
        except InvalidDataError as e:
            raise InvalidDataError(f"{source}, episode {episode.id}: {e}") from None
        n_episodes += 1
    if stats.n_transitions == 0:
        raise InvalidDataError(f"{source}: the dataset holds no transitions")
    return stats, n_episodes


def _count(data: dict, key: str, path) -> int:
    value = np.asarray(data[key])
    if value.ndim != 0 or not np.issubdtype(value.dtype, np.integer) or value < 0:
        raise InvalidDataError(f"{path}: {key!r} must be a non-negative integer scalar")
    return int(value)


def _check_sizes(source, data_states, data_actions, n_states, n_actions) -> None:
    if (data_states, data_actions) != (n_states, n_actions):
        raise InvalidDataError(
            f"{source}: dataset has {data_states} states and {data_actions} actions, but the "
            f"environment has {n_states} states and {n_actions} actions")


# ---- writing datasets --------------------------------------------------------------------------
def save_npz(path: str | Path, episodes: list[list[tuple]], n_states: int, n_actions: int) -> Path:
    """Write episodes of transitions (s, a, r, s', terminated) as a dataset .npz (atomically)."""
    from rlfm.io import atomic_write

    flat = [t for episode in episodes for t in episode]
    if not flat:
        raise InvalidDataError("no transitions to write")
    s, a, r, s2, done = (np.array(x) for x in zip(*flat, strict=True))
    arrays = dict(observations=s.astype(np.int64), actions=a.astype(np.int64),
                  rewards=r.astype(float), next_observations=s2.astype(np.int64),
                  terminations=done.astype(bool), n_states=np.int64(n_states),
                  n_actions=np.int64(n_actions), episodes=np.int64(len(episodes)))

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    return atomic_write(path, write)


def save_minari(dataset_id: str, episodes: list[list[tuple]], env, algorithm: str):
    """Write episodes of transitions as a Minari dataset `dataset_id` in the local Minari store
    (MINARI_DATASETS_PATH, default ~/.minari/datasets); an episode that did not terminate is
    marked truncated at its last step."""
    import minari
    from minari.data_collector import EpisodeBuffer

    buffers = []
    for episode in episodes:
        if not episode:
            continue
        s, a, r, s2, done = (np.array(x) for x in zip(*episode, strict=True))
        truncated = np.zeros(len(episode), bool)
        truncated[-1] = not done[-1]
        buffers.append(EpisodeBuffer(observations=np.append(s, s2[-1]), actions=a, rewards=r,
                                     terminations=done, truncations=truncated))
    try:
        with warnings.catch_warnings():  # Minari warns about metadata it fills in itself
            warnings.simplefilter("ignore")
            return minari.create_dataset_from_buffers(dataset_id, buffers, env=env,
                                                      algorithm_name=algorithm)
    except Exception as e:  # Minari raises many kinds (an id taken, a bad name, ...)
        raise InvalidDataError(f"cannot create Minari dataset {dataset_id!r}: {e}") from None
