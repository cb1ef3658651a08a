"""Suite environments: Gymnasium's checker, and exact conversion back to their TabularMDP."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rlfm
from rlfm import TabularMDP
from rlfm.envs import SUITE_BUILDERS, TabularEnv


@pytest.mark.parametrize("env_id", sorted(SUITE_BUILDERS))
def test_suite_env_passes_checker_and_converts_back(env_id):
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    mdp = TabularMDP.from_gymnasium(env)
    expected = SUITE_BUILDERS[env_id]()
    np.testing.assert_array_equal(mdp.P, expected.P)
    np.testing.assert_array_equal(mdp.R, expected.R)
    np.testing.assert_array_equal(mdp.terminal, expected.terminal)
    assert mdp.horizon == expected.horizon


def test_tabular_env_from_any_mdp_samples_its_dynamics():
    mdp = rlfm.envs.load_mdp("FrozenLake-v1")
    env = TabularEnv(mdp)
    check_env(env, skip_render_check=True)
    counts = np.zeros(16)
    env.reset(seed=0)
    for _ in range(3000):
        env._state = 14  # sample the successors of (14, right) many times
        s, *_ = env.step(2)
        counts[s] += 1
    np.testing.assert_allclose(counts / counts.sum(), mdp.P[14, 2], atol=0.04)


def test_episode_ends_at_terminal_or_horizon():
    env = gym.make("rlfm/DeepSea-v0")
    env.reset(seed=1)
    for t in range(10):
        _, _, terminated, truncated, _ = env.step(0)
        if t < 9:
            assert not (terminated or truncated)
    assert terminated  # the bottom row leads to the terminal state after `size` steps
    garnet = gym.make("rlfm/Garnet-v0", n_states=5, horizon=3)
    garnet.reset(seed=0)
    flags = [garnet.step(0)[3] for _ in range(3)]
    assert flags == [False, False, True]


def test_garnet_kwargs_and_npz_env(tmp_path):
    mdp = rlfm.envs.load_mdp("rlfm/Garnet-v0", n_states=30, n_actions=3, branching=2, seed=7)
    assert (mdp.n_states, mdp.n_actions) == (30, 3)
    assert np.all((mdp.P > 0).sum(-1) == 2)
    mdp.save(tmp_path / "g.npz")
    back = rlfm.envs.load_mdp(str(tmp_path / "g.npz"))
    np.testing.assert_array_equal(back.P, mdp.P)
