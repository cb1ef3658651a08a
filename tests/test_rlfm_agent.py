"""The rlfm agent: exploration modes, determinism, offline fit, checkpoint errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import rlfm
from rlfm import RlfmError
from rlfm.checkpoint import save_model
from rlfm.evaluate import collect_dataset, collect_episodes, online_run
from rlfm.model import EXACT_LAST_STEPS, RLFM, ModelConfig, horizon_grid


@pytest.fixture(scope="module")
def plain_checkpoint(tmp_path_factory):
    """A network without an exploitation head (it exploits greedily on its policy)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "plain"
    save_model(RLFM(ModelConfig(width=16, steps=2)), path)
    return str(path)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_model(RLFM(ModelConfig(width=16, steps=2, exploit_head=True, noise_dim=2)), path)
    return str(path)


@pytest.mark.parametrize("exploration", ["gumbel", "sample", "persistent", "greedy", "posterior",
                                         "mixed"])
def test_online_is_deterministic_for_a_seed(checkpoint, exploration):
    env = rlfm.envs.make("rlfm/RiverSwim-v0")
    mdp = rlfm.TabularMDP.from_gymnasium(env)
    runs = [online_run(env, mdp, rlfm.agents.make("rlfm", 6, 2, horizon=20, seed=3,
                                                   checkpoint=checkpoint, exploration=exploration),
                       episodes=5, seed=3) for _ in range(2)]
    np.testing.assert_array_equal(runs[0].scores, runs[1].scores)
    np.testing.assert_array_equal(runs[0].returns, runs[1].returns)


def test_gumbel_policy_is_fixed_within_an_episode(checkpoint):
    agent = rlfm.agents.make("rlfm", 6, 2, horizon=20, seed=0, checkpoint=checkpoint,
                             exploration="gumbel")
    first = [agent.act(s, 0) for s in range(6)]
    assert [agent.act(s, 7) for s in range(6)] == first
    draws = set()
    for _ in range(30):
        agent.end_episode()
        draws.add(tuple(agent.act(s, 0) for s in range(6)))
    assert len(draws) > 1  # a new deterministic policy each episode


def test_persistent_acting_draws_each_action_from_the_policy_and_keeps_its_quantile(
        checkpoint):
    """Each step's action has the law of the acting policy (the quantile is uniform, and maps
    to the actions ranked by probability); the quantile is redrawn with probability
    1 - persistence at each step, so consecutive steps share it."""
    from rlfm.agents.rlfm import PERSISTENCE, softmax

    env = rlfm.envs.make("FrozenLake-v1")
    mdp = rlfm.TabularMDP.from_gymnasium(env)
    agent = rlfm.agents.make("rlfm", 16, 4, horizon=mdp.horizon, seed=0, checkpoint=checkpoint,
                             exploration="persistent")
    agent.fit(collect_dataset(env, mdp, "uniform", 5, seed=0))
    pi = softmax(agent.logits)
    grid = (np.arange(2000) + 0.5) / 2000
    for state in (0, 5, 14):
        counts = np.zeros(4)
        for u in grid:
            agent.quantile = u
            counts[agent.act(state, 0)] += 1     # step 0: the episode's quantile, kept
        np.testing.assert_allclose(counts / len(grid), pi[state], atol=1e-3)
        agent.quantile = 0.0            # the smallest quantile: a favourite action (of tied
        assert pi[state, agent.act(state, 0)] == pi[state].max()   # ones, a random one)
    for persistence in (PERSISTENCE, 0.3):
        agent.persistence = persistence
        kept = []
        for step in range(1, 4001):
            before = agent.quantile
            agent.act(3, step)
            kept.append(agent.quantile == before)
        assert abs(np.mean(kept) - persistence) < 0.03
    assert rlfm.agents.make("rlfm", 16, 4, horizon=5, checkpoint=checkpoint,
                            persistence=np.float32(0.25)).persistence == 0.25
    for bad in (-0.1, 1.5, "high", True, float("nan"), None):
        with pytest.raises(RlfmError, match="persistence"):
            rlfm.agents.make("rlfm", 16, 4, horizon=5, checkpoint=checkpoint, persistence=bad)


def test_posterior_acting_follows_one_plan_per_episode(checkpoint, plain_checkpoint):
    agent = rlfm.agents.make("rlfm", 6, 2, horizon=20, seed=0, checkpoint=checkpoint,
                             exploration="posterior", samples=2)
    assert agent.acting is None        # a hypothesis is drawn when the episode starts
    first = agent.act(0, 0)
    plan = agent.acting.copy()
    assert plan.shape == (20, 6) and plan[0, 0] == first
    assert [[agent.act(s, h) for s in range(6)] for h in range(20)] == plan.tolist()
    agent.end_episode()
    agent.fit(agent.stats)
    assert agent.acting is None        # fitting offline never pays for one
    with pytest.raises(RlfmError, match="posterior sampler"):
        rlfm.agents.make("rlfm", 6, 2, horizon=20, checkpoint=plain_checkpoint,
                         exploration="posterior")


def test_mixed_exploration_alternates_posterior_plans_and_sampling(checkpoint, plain_checkpoint):
    agent = rlfm.agents.make("rlfm", 6, 2, horizon=20, seed=0, checkpoint=checkpoint,
                             exploration="mixed")
    modes = set()
    for _ in range(20):
        modes.add(agent.mode)
        agent.end_episode()
    assert modes == {"posterior", "sample"}
    for share, only in ((0.0, "sample"), (1.0, "posterior")):
        agent = rlfm.agents.make("rlfm", 6, 2, horizon=20, seed=0, checkpoint=checkpoint,
                                 exploration="mixed", share=share)
        modes = set()
        for _ in range(20):
            modes.add(agent.mode)
            agent.end_episode()
        assert modes == {only}
    for bad in (-0.1, 1.5, "half", True, float("nan"), None):
        with pytest.raises(RlfmError, match="share"):
            rlfm.agents.make("rlfm", 6, 2, horizon=20, checkpoint=checkpoint, share=bad)
    # the default: mixed where the checkpoint has a posterior sampler, per-step sampling without
    assert rlfm.agents.make("rlfm", 6, 2, horizon=20, checkpoint=checkpoint).exploration == "mixed"
    assert rlfm.agents.make("rlfm", 6, 2, horizon=20,
                            checkpoint=plain_checkpoint).exploration == "sample"
    with pytest.raises(RlfmError, match="samples"):
        rlfm.agents.make("rlfm", 6, 2, horizon=20, checkpoint=checkpoint, samples=0)
    for bad in (0.0, -1.0, float("inf"), float("nan"), "wide", True, None):
        with pytest.raises(RlfmError, match="spread"):
            rlfm.agents.make("rlfm", 6, 2, horizon=20, checkpoint=checkpoint, spread=bad)


def test_offline_fit_returns_the_exploitation_heads_policy(checkpoint):
    env = rlfm.envs.make("FrozenLake-v1")
    mdp = rlfm.TabularMDP.from_gymnasium(env)
    stats = collect_dataset(env, mdp, "expert", 20, seed=0)
    agent = rlfm.agents.make("rlfm", 16, 4, horizon=mdp.horizon, checkpoint=checkpoint)
    probabilities = agent.fit(stats).policy()
    assert probabilities.shape == (mdp.horizon, 16, 4)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-6)
    softmax = lambda x: np.exp(x) / np.exp(x).sum(1, keepdims=True)  # noqa: E731
    # time-dependent: at step h, the head as asked for a task of the steps left (on the grid)
    grid, serves = horizon_grid(mdp.horizon)
    for h in (0, mdp.horizon // 2, mdp.horizon - 1):
        acting, exploit = agent.network.logits(stats, grid[serves[h]])
        np.testing.assert_allclose(probabilities[h], softmax(exploit), atol=1e-6)
    assert not np.allclose(acting, exploit)                   # the exploitation head's policy
    for i in range(len(grid)):   # one policy for all the steps a grid horizon serves
        served = probabilities[serves == i]
        assert (served == served[0]).all()
    np.testing.assert_array_equal(agent.network.exploitation_policy(stats, mdp.horizon),
                                  probabilities)
    chosen = agent.predict(3)
    assert probabilities[0, 3, chosen] == probabilities[0, 3].max()


def test_exploitation_policy_follows_data_observed_since_the_last_plan(checkpoint):
    """The agent reuses the whole task's logits that acting computed only while the statistic
    is the one they came from."""
    env = rlfm.envs.make("FrozenLake-v1")
    mdp = rlfm.TabularMDP.from_gymnasium(env)
    agent = rlfm.agents.make("rlfm", 16, 4, horizon=mdp.horizon, checkpoint=checkpoint)
    np.testing.assert_array_equal(agent.policy(),
                                  agent.network.exploitation_policy(agent.stats, mdp.horizon))
    agent = rlfm.agents.make("rlfm", 16, 4, horizon=mdp.horizon, checkpoint=checkpoint)
    for state, action, reward, next_state, done in collect_episodes(env, mdp, "expert", 3, 0)[0]:
        agent.observe(state, action, reward, next_state, done)      # no plan since
    np.testing.assert_array_equal(agent.policy(),
                                  agent.network.exploitation_policy(agent.stats, mdp.horizon))


def test_a_grid_exact_at_every_step_stops_at_the_task(monkeypatch):
    """EXACT_LAST_STEPS = 10**9 (benchmarks/checkpoints.py's "every step") asks each step at its
    own horizon, without a level past the longest task."""
    monkeypatch.setattr(rlfm.model, "EXACT_LAST_STEPS", 10**9)
    grid, serves = horizon_grid(250)
    assert grid == list(range(1, 251)) and (np.array(grid)[serves] == 250 - np.arange(250)).all()
    assert rlfm.model.grid_levels(torch.tensor([3, 7])).shape == (5 + 7, 2)


@pytest.mark.parametrize("horizon", [1, 2, 3, 7, 16, 100, 250])
def test_horizon_grid_serves_each_step_with_the_shortest_horizon_left(horizon):
    grid, serves = horizon_grid(horizon)
    assert grid == sorted(set(grid)) and grid[-1] == horizon and len(serves) == horizon
    for h, i in enumerate(serves):
        left = horizon - h
        assert grid[i] >= left and (i == 0 or grid[i - 1] < left)
        if left <= EXACT_LAST_STEPS:   # the last steps each at their own horizon
            assert grid[i] == left


def test_without_an_exploitation_head_it_exploits_greedily(plain_checkpoint):
    network = rlfm.agents.make("rlfm", 6, 2, horizon=5, checkpoint=plain_checkpoint).network
    with pytest.raises(ValueError, match="no exploitation head"):
        network.exploitation_policy(rlfm.Statistics(6, 2), 5)
    env = rlfm.envs.make("FrozenLake-v1")
    mdp = rlfm.TabularMDP.from_gymnasium(env)
    stats = collect_dataset(env, mdp, "expert", 20, seed=0)
    agent = rlfm.agents.make("rlfm", 16, 4, horizon=mdp.horizon,
                             checkpoint=plain_checkpoint).fit(stats)
    policy = agent.policy()[0]
    assert set(np.unique(policy)) == {0.0, 1.0}               # one-hot
    logits, exploit = agent.network.logits(stats, mdp.horizon)
    np.testing.assert_array_equal(logits, exploit)
    np.testing.assert_array_equal(logits[np.arange(16), policy.argmax(1)], logits.max(1))


def test_tied_actions_are_broken_at_random(checkpoint, plain_checkpoint):
    """With no data every action of a state has the same logit: the greedy policy must not be
    'always action 0' (a fixed arbitrary policy), but differ across seeds."""
    policies = {tuple(rlfm.agents.make("rlfm", 16, 4, horizon=100, seed=seed,
                                       checkpoint=plain_checkpoint).exploit())
                for seed in range(5)}
    assert len(policies) > 1
    acting = {tuple(rlfm.agents.make("rlfm", 16, 4, horizon=100, seed=seed, checkpoint=checkpoint,
                                     exploration="greedy").act(s, 0) for s in range(16))
              for seed in range(5)}
    assert len(acting) > 1


def test_bad_knobs_and_checkpoints(checkpoint, tmp_path):
    with pytest.raises(RlfmError, match="exploration"):
        rlfm.agents.make("rlfm", 2, 2, horizon=5, checkpoint=checkpoint, exploration="boltzmann")
    with pytest.raises(RlfmError, match="no such file"):
        rlfm.agents.make("rlfm", 2, 2, horizon=5, checkpoint=str(tmp_path / "absent"))


def test_cli_checkpoint_option(checkpoint, tmp_path):
    out = subprocess.run([sys.executable, "-m", "rlfm", "online", "rlfm/NChain-v0", "--agents",
                          "rlfm", "--episodes", "3", "--seeds", "2", "--checkpoint", checkpoint,
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    entry = json.loads((tmp_path / "results.json").read_text())["agents"]["rlfm"]
    assert entry["knobs"] == {"checkpoint": checkpoint}
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    out = subprocess.run([sys.executable, "-m", "rlfm", "online", "rlfm/NChain-v0", "--agents",
                          "rlfm", "--checkpoint", str(bad)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0 and "not valid JSON" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_results_identical_for_a_seed_for_every_agent(checkpoint):
    from rlfm.evaluate import run_offline, run_online

    names = rlfm.agents.available()
    fixed = {"rlfm": {"checkpoint": checkpoint}}
    first = run_online("rlfm/NChain-v0", names, 3, 2, workers=1, fixed=fixed)
    assert first == run_online("rlfm/NChain-v0", names, 3, 2, workers=2, fixed=fixed)
    offline = [n for n in names if n != "qlearning"]  # Q-learning does not learn offline
    first = run_offline("rlfm/NChain-v0", offline, "medium", [2], 2, fixed=fixed)
    assert first == run_offline("rlfm/NChain-v0", offline, "medium", [2], 2, workers=2,
                                fixed=fixed)


def test_batch_policies_are_the_agents_policies(checkpoint):
    """The batched world's learner (`RLFM.batch_policies`) gives, for every statistic of a
    packed batch, the acting and time-dependent exploitation policies of the per-MDP agent."""
    from rlfm.agents.rlfm import load_network, softmax
    from rlfm.world import StatsBatch

    network = load_network(checkpoint)
    cases = []
    for env_id, behaviour, episodes in (("FrozenLake-v1", "uniform", 5),
                                        ("rlfm/DeepSea-v0", "expert", 2),
                                        ("CliffWalking-v1", "medium", 1)):
        env = rlfm.envs.make(env_id)
        mdp = rlfm.TabularMDP.from_gymnasium(env)
        cases.append((mdp, collect_dataset(env, mdp, behaviour, episodes, seed=0)))
    stats = StatsBatch.from_statistics([st for _, st in cases])
    acting, exploit = network.batch_policies(stats, torch.tensor([m.horizon for m, _ in cases]))
    lo = 0
    for mdp, st in cases:
        rows = slice(lo, lo + mdp.n_states)
        logits, _ = network.logits(st, mdp.horizon)
        np.testing.assert_allclose(acting[rows, :mdp.n_actions].numpy(), softmax(logits),
                                   atol=1e-5)
        policy = exploit[rows, :mdp.horizon, :mdp.n_actions].numpy().transpose(1, 0, 2)
        np.testing.assert_allclose(policy, network.exploitation_policy(st, mdp.horizon),
                                   atol=1e-5)
        assert not exploit[rows, mdp.horizon:].any()
        lo += mdp.n_states
    with pytest.raises(ValueError, match="one horizon per statistic"):
        network.batch_policies(stats, torch.tensor([10]))
