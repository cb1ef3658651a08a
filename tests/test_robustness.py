"""Bad input never ends in a traceback or a silently wrong number; killed trainings resume;
limits are refused before allocation (issue 7)."""

import csv
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import rlfm
import rlfm.checkpoint
from rlfm import InvalidDataError, InvalidMDPError, ResourceLimitError, RlfmError
from rlfm.checkpoint import read_config
from rlfm.datasets import load_dataset

TINY = Path(__file__).parent.parent / "configs" / "tiny.toml"

arrays = hnp.arrays(dtype=st.sampled_from([np.float64, np.int64, np.bool_]),
                    shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=4))
# (any values of the dtype, NaN and inf included)


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(contents=st.dictionaries(st.sampled_from(["P", "R", "initial", "horizon", "terminal",
                                                 "gamma", "other"]), arrays))
def test_fuzzed_mdp_files_load_or_fail_cleanly(tmp_path, contents):
    path = tmp_path / "fuzz.npz"
    np.savez(path, **contents)
    try:
        mdp = rlfm.TabularMDP.load(path)
    except InvalidMDPError as e:
        assert str(e).startswith(str(path)) and "\n" not in str(e)
        return
    # Whatever loads is a valid MDP.
    assert np.allclose(mdp.P.sum(-1), 1.0) and np.isfinite(mdp.R).all() and mdp.horizon >= 1


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(contents=st.dictionaries(st.sampled_from(["observations", "actions", "rewards",
                                                 "next_observations", "terminations",
                                                 "n_states", "n_actions"]), arrays))
def test_fuzzed_dataset_files_load_or_fail_cleanly(tmp_path, contents):
    path = tmp_path / "data.npz"
    np.savez(path, **contents)
    try:
        stats, _ = load_dataset(str(path), 4, 3)
    except InvalidDataError as e:
        assert "\n" not in str(e)
        return
    assert stats.visits.sum() == stats.n_transitions


def _not_an_int(text: str) -> bool:
    if "\x00" in text:  # a command line cannot carry a null byte at all
        return False
    try:
        int(text)
    except ValueError:
        return True
    return False


@settings(max_examples=25, deadline=None)
@given(option=st.sampled_from(["--episodes", "--seeds", "--workers"]),
       value=st.one_of(st.integers(-5, 0), st.text(min_size=1, max_size=4).filter(_not_an_int)))
def test_fuzzed_command_line_values_fail_cleanly(option, value):
    out = subprocess.run([sys.executable, "-m", "rlfm", "online", "rlfm/NChain-v0", option,
                          str(value)], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "Traceback" not in out.stderr


def test_memory_limits_are_refused_before_allocation():
    with pytest.raises(ResourceLimitError, match="needs about .* TiB"):
        rlfm.Statistics(10**9, 100)
    mdp = rlfm.envs.classic.garnet(5, 2, 2)
    huge_horizon = mdp.with_horizon(10**12)
    with pytest.raises(ResourceLimitError, match="backward induction"):
        rlfm.backward_induction(huge_horizon)


def test_malformed_sparse_npz_and_checkpoint_configs(tmp_path):
    np.savez(tmp_path / "sparse.npz", P_data=[1.0, 1.0, 1.0, 1.0], P_indices=[0, 7, 1, 1],
             P_indptr=[0, 1, 2, 3, 4], R=np.zeros((2, 2)), initial=[1.0, 0.0], horizon=3)
    with pytest.raises(InvalidMDPError, match="sparse P is malformed"):
        rlfm.TabularMDP.load(tmp_path / "sparse.npz")
    (tmp_path / "c.json").write_text('{"format_version": 1}')
    (tmp_path / "c.safetensors").write_bytes(b"")
    with pytest.raises(rlfm.CheckpointError, match="missing model, weights_sha256"):
        rlfm.checkpoint.load_model(tmp_path / "c")
    with pytest.raises(InvalidDataError, match="one length"):
        rlfm.Statistics.from_transitions(2, 2, [0], [0], [0.0], [1], [[True]])


def test_agent_and_environment_draw_independent_streams():
    from rlfm.evaluate import env_seed

    env = rlfm.envs.make("rlfm/RiverSwim-v0")
    env.reset(seed=env_seed(0))
    agent = rlfm.agents.make("uniform", 6, 2, horizon=20, seed=0)
    assert env.unwrapped.np_random.random(8).tolist() != agent.rng.random(8).tolist()


def test_typed_exception_hierarchy():
    for cls in (InvalidDataError, InvalidMDPError, ResourceLimitError, rlfm.CheckpointError,
                rlfm.InvalidEnvironmentError):
        assert issubclass(cls, RlfmError)


def test_training_killed_with_sigkill_resumes(tmp_path):
    config = tmp_path / "slow.toml"
    config.write_text(TINY.read_text().replace("steps = 6", "steps = 200")
                      .replace("checkpoint_every = 3", "checkpoint_every = 10")
                      .replace("eval_every = 3", "eval_every = 1000"))
    out = tmp_path / "run"
    command = [sys.executable, "-m", "rlfm.train", "--config", str(config), "--out", str(out)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(out.glob("step-*.json")) and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(random.uniform(0.0, 2.0))  # a random moment after the first checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    logged = [int(r["step"]) for r in csv.DictReader((out / "log.csv").open())]
    newest = sorted(out.glob("step-*.json"))[-1].with_suffix("")
    kept = read_config(newest)["steps"]
    assert max(logged) - kept <= 10  # at most one checkpoint interval is lost
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from {newest} at step {kept}" in resumed.stdout
    assert read_config(out / "model")["steps"] == 200
