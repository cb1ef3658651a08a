"""The evaluation protocol (SPEC §3): summary figures, determinism, datasets and results files."""

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

from rlfm import InvalidDataError
from rlfm.datasets import load_dataset
from rlfm.evaluate import OnlineRun, run_offline, run_online, summarize_online


def runs(*curves, returns=0.0):
    return [OnlineRun(scores=np.array(c, float), returns=np.full(len(c), returns)) for c in curves]


@pytest.mark.parametrize("curves, expected", [
    ([[0.0, 0.5, 0.95, 0.99, 1.0]], 3),          # stays >= 0.9 from episode 3
    ([[0.95, 0.5, 0.95, 0.91, 0.92]], 3),        # an early success that does not last
    ([[0.0, 0.95, 0.95, 0.95, 0.5]], None),       # falls below at the end: never
    ([[0.95] * 4], 1),
    ([[1.0, 1.0, 1.0], [0.7, 0.7, 0.9]], 3),       # the seed-averaged curve decides
])
def test_episodes_to_90(curves, expected):
    assert summarize_online(runs(*curves), optimal_return=1.0)["episodes_to_90"] == expected


def test_auc_final_regret():
    summary = summarize_online(runs([0.0, 0.5, 1.0], [0.0, 0.5, 0.0], returns=0.25),
                               optimal_return=1.0)
    assert summary["auc"] == pytest.approx(np.mean([0.0, 0.5, 0.5]))
    assert summary["final"] == pytest.approx(0.5)
    assert summary["regret"] == pytest.approx(3 * 0.75)
    assert summary["seeds"] == 2


def test_online_results_are_deterministic_and_in_spec_format():
    first = run_online("rlfm/RiverSwim-v0", ["uniform"], episodes=4, seeds=2, workers=2)
    second = run_online("rlfm/RiverSwim-v0", ["uniform"], episodes=4, seeds=2, workers=1)
    assert first == second
    assert {"env", "protocol", "n_states", "n_actions", "horizon", "agents"} <= set(first)
    entry = first["agents"]["uniform"]
    assert {"episodes_to_90", "auc", "final", "regret", "curve"} <= set(entry)
    assert len(entry["curve"]) == 4
    # The uniform agent collects J(uniform) on average: its regret is J* - J(u) per episode.
    gap = first["optimal_return"] - first["uniform_return"]
    big = run_online("rlfm/RiverSwim-v0", ["uniform"], episodes=50, seeds=4, workers=2)
    assert big["agents"]["uniform"]["regret"] == pytest.approx(50 * gap, rel=0.1)


def test_offline_results_format():
    res = run_offline("FrozenLake-v1", ["uniform"], "expert", [1, 5], seeds=3)
    entry = res["agents"]["uniform"]
    assert res["protocol"] == "offline"
    assert entry["dataset_episodes"] == [1, 5]
    assert len(entry["score"]) == len(entry["score_std"]) == 2
    assert entry["score"] == pytest.approx([0.0, 0.0])


def write_npz(path, **overrides):
    arrays = dict(observations=[0, 1, 2], actions=[1, 2, 1], rewards=[0.0, 0.0, 1.0],
                  next_observations=[1, 2, 3], terminations=[False, False, True], n_states=16,
                  n_actions=4)
    arrays.update(overrides)
    np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()})
    return str(path)


def test_npz_dataset(tmp_path):
    stats, episodes = load_dataset(write_npz(tmp_path / "d.npz"), 16, 4)
    assert stats.n_transitions == 3 and stats.observed_terminal[3] and episodes is None
    with pytest.raises(InvalidDataError, match="out of range"):
        load_dataset(write_npz(tmp_path / "bad.npz", next_observations=[1, 2, 16]), 16, 4)
    with pytest.raises(InvalidDataError, match="environment has 16 states and 4 actions"):
        load_dataset(write_npz(tmp_path / "size.npz", n_states=10), 16, 4)
    with pytest.raises(InvalidDataError, match="missing key"):
        np.savez(tmp_path / "empty.npz", observations=[0])
        load_dataset(str(tmp_path / "empty.npz"), 16, 4)


def test_minari_dataset(tmp_path, monkeypatch):
    import gymnasium as gym
    import minari
    from minari.data_collector import EpisodeBuffer

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    env = gym.make("FrozenLake-v1")
    rng = np.random.default_rng(0)
    buffers, n_steps = [], 0
    for episode in range(4):
        obs, _ = env.reset(seed=episode)
        record = dict(observations=[obs], actions=[], rewards=[], terminations=[], truncations=[])
        done = False
        while not done:
            action = int(rng.integers(4))
            obs, reward, terminated, truncated, _ = env.step(action)
            for key, value in zip(("observations", "actions", "rewards", "terminations",
                                   "truncations"), (obs, action, reward, terminated, truncated),
                                  strict=True):
                record[key].append(value)
            done = terminated or truncated
        n_steps += len(record["actions"])
        buffers.append(EpisodeBuffer(**{k: np.array(v) for k, v in record.items()}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers("rlfmtest/frozenlake-v0", buffers, env=env,
                                           algorithm_name="random")
    stats, episodes = load_dataset("rlfmtest/frozenlake-v0", 16, 4)
    assert (stats.n_transitions, episodes) == (n_steps, 4)
    by_path, _ = load_dataset(str(tmp_path / "rlfmtest" / "frozenlake-v0"), 16, 4)
    assert by_path == stats
    with pytest.raises(InvalidDataError, match="environment has 16 states and 5 actions"):
        load_dataset("rlfmtest/frozenlake-v0", 16, 5)


def test_cli_online_writes_results(tmp_path):
    out = subprocess.run([sys.executable, "-m", "rlfm", "online", "rlfm/NChain-v0", "--agents",
                          "uniform", "--episodes", "3", "--seeds", "2", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["protocol"] == "online" and "uniform" in results["agents"]
    assert (tmp_path / "online.png").stat().st_size > 0
    assert "uniform" in (tmp_path / "table.txt").read_text()


def test_cli_offline_with_dataset_file(tmp_path):
    path = write_npz(tmp_path / "d.npz")
    out = subprocess.run([sys.executable, "-m", "rlfm", "offline", "FrozenLake-v1", "--agents",
                          "uniform", "--dataset", path, "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "o" / "results.json").read_text())["agents"]["uniform"]
    bad = write_npz(tmp_path / "bad.npz", observations=[0, 1, 99])
    out = subprocess.run([sys.executable, "-m", "rlfm", "offline", "FrozenLake-v1", "--agents",
                          "uniform", "--dataset", bad], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "out of range" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_bench_resumes_and_reruns_rlfm_only_after_its_checkpoint_changes(tmp_path):
    import torch

    from rlfm.bench import run_suite
    from rlfm.checkpoint import load_model, save_model
    from rlfm.model import RLFM, ModelConfig

    def checkpoint(name, seed):
        torch.manual_seed(seed)
        save_model(RLFM(ModelConfig(width=8, steps=1)), tmp_path / name)
        return {"rlfm": {"checkpoint": str(tmp_path / name)}}

    def bench(fixed):
        ran = []
        run_suite("public", tmp_path / "out", online_agents=["rlfm", "uniform"],
                  offline_agents=["rlfm", "cevi"], seeds=1, episodes_scale=0.01,
                  dataset_episodes=(1, 2), envs=["rlfm/RiverSwim-v0"], fixed=fixed,
                  log=ran.append)
        return ran

    first, second = checkpoint("a", 0), checkpoint("b", 1)
    assert len(bench(first)) == 4                       # online + three behaviours
    assert bench(first) == []                           # nothing left to run
    rerun = bench(second)
    assert len(rerun) == 4 and all(": rlfm:" in line for line in rerun)
    cell = json.loads((tmp_path / "out" / "rlfm_RiverSwim-v0" / "online" / "results.json")
                      .read_text())
    assert set(cell["agents"]) == {"rlfm", "uniform"}
    summary = (tmp_path / "out" / "SUMMARY.md").read_text()
    assert "| rlfm/RiverSwim-v0 | 3 | " in summary.split("### Online")[0]   # the headline table
    # the same policy weights plus a posterior sampler: offline results stand, online ones
    # (now in the default "mixed" mode) are rerun
    with_sampler = RLFM(ModelConfig(width=8, steps=1, noise_dim=2))
    policy = load_model(tmp_path / "b").state_dict()
    with_sampler.load_state_dict({**with_sampler.state_dict(), **policy})
    save_model(with_sampler, tmp_path / "c")
    rerun = bench({"rlfm": {"checkpoint": str(tmp_path / "c")}})
    assert len(rerun) == 1 and rerun[0].startswith("online ") and ": rlfm:" in rerun[0]
