"""The baseline agents: the literature's qualitative results at small budgets, the terminal-state
convention, determinism, and knob validation."""

import numpy as np
import pytest

import rlfm
from rlfm import agents
from rlfm.errors import RlfmError
from rlfm.evaluate import collect_dataset, online_run
from rlfm.mdp import ScoreReference, TabularMDP, evaluate_policy

BASELINES = ["ucbvi", "psrl", "opsrl", "rlsvi", "qlearning", "vilcb", "cevi", "uniform"]


def _online_curves(env_id, name, episodes, seeds, **knobs):
    env = rlfm.envs.make(env_id)
    mdp = TabularMDP.from_gymnasium(env)
    reference = ScoreReference.of(mdp)
    return np.array([
        online_run(env, mdp, agents.make(name, mdp.n_states, mdp.n_actions, mdp.horizon,
                                         seed=seed, **knobs), episodes, seed, reference).scores
        for seed in seeds])


# ---- (a) online: deep exploration beats dithering ---------------------------------------------
@pytest.mark.parametrize("env_id", ["rlfm/RiverSwim-v0", "rlfm/NChain-v0"])
def test_optimistic_and_posterior_sampling_explore_where_qlearning_does_not(env_id):
    episodes, seeds = 40, range(5)
    # Measured over 30 seeds: tuned UCB-VI and PSRL are all >= 0.999 from episode 25 on, while the
    # seed-averaged Q-learning curve ends at 0.02 (RiverSwim) and 0.3 (NChain).
    for name, knobs in [("ucbvi", {"bonus_scale": 0.001}), ("psrl", {})]:
        curves = _online_curves(env_id, name, episodes, seeds, **knobs)
        assert curves[:, 25:].min() >= 0.9, (name, curves.round(2))
    qlearning = _online_curves(env_id, "qlearning", episodes, seeds).mean(axis=0)
    assert qlearning[-10:].mean() < 0.5, qlearning.round(2)


def test_bernstein_bonus_explores_riverswim():
    curves = _online_curves("rlfm/RiverSwim-v0", "ucbvi", 40, range(2), bonus="bernstein",
                            bonus_scale=0.01)
    assert curves[:, 30:].min() >= 0.9


# ---- (b) offline: pessimism pays on scarce data ----------------------------------------------
def test_vilcb_beats_cevi_on_scarce_uniform_data():
    # CliffWalking's rewards are negative, so CE-VI's convention (an untried action is worth 0)
    # makes it chase untried actions along the cliff; VI-LCB makes them worth the minimum.
    env = rlfm.envs.make("CliffWalking-v0")
    mdp = TabularMDP.from_gymnasium(env)
    reference = ScoreReference.of(mdp)
    scores = {"cevi": [], "vilcb": []}
    for seed in range(10):
        stats = collect_dataset(env, mdp, "uniform", 10, seed=seed)
        for name, knobs in [("cevi", {}), ("vilcb", {"penalty_scale": 0.001})]:
            agent = agents.make(name, mdp.n_states, mdp.n_actions, mdp.horizon, seed=seed, **knobs)
            scores[name].append(reference.normalise(evaluate_policy(mdp, agent.fit(stats).policy())))
    # Measured on seeds 0-39 in blocks of 10: VI-LCB 0.92 every time, CE-VI 0.11 to 0.63.
    assert np.mean(scores["vilcb"]) > np.mean(scores["cevi"]) + 0.2, scores


# ---- (c) determinism -------------------------------------------------------------------------
@pytest.mark.parametrize("name, knobs", [(name, {}) for name in BASELINES] + [
    ("ucbvi", {"bonus": "bernstein"}), ("qlearning", {"optimistic": True, "lr": 0.5})])
def test_same_seed_same_behaviour(name, knobs):
    first, second = (_online_curves("FrozenLake-v1", name, 6, [3], **knobs) for _ in range(2))
    np.testing.assert_array_equal(first, second)


def test_offline_fit_is_deterministic():
    env = rlfm.envs.make("FrozenLake-v1")
    mdp = TabularMDP.from_gymnasium(env)
    stats = collect_dataset(env, mdp, "uniform", 20, seed=0)
    for name in ["ucbvi", "psrl", "opsrl", "rlsvi", "vilcb", "cevi"]:
        policies = [agents.make(name, mdp.n_states, mdp.n_actions, mdp.horizon, seed=7).fit(stats)
                    .policy() for _ in range(2)]
        np.testing.assert_array_equal(*policies)
        assert policies[0].shape == (mdp.horizon, mdp.n_states, mdp.n_actions)


# ---- (d) terminal states are absorbing and worth 0, never optimistic --------------------------
def _terminal_statistics(n_visits=50):
    """State 0: action 0 pays 0.5 and enters terminal state 2; action 1 pays 0.1 and goes to 1;
    state 1: both actions pay 0.2 and return to 0. State 2 is never acted in."""
    stats = rlfm.Statistics(3, 2)
    for _ in range(n_visits):
        stats.update(0, 0, 0.5, 2, terminated=True)
        stats.update(0, 1, 0.1, 1)
        stats.update(1, 0, 0.2, 0)
        stats.update(1, 1, 0.2, 0)
    return stats


def test_ucbvi_value_of_entering_a_terminal_state_is_its_reward():
    H = 10
    exact = agents.make("ucbvi", 3, 2, horizon=H, bonus_scale=0.0)
    exact.fit(_terminal_statistics())
    np.testing.assert_allclose(exact.Q[:, 0, 0], 0.5)  # not H * r_max: state 2 is worth 0
    np.testing.assert_array_equal(exact.Q[:, 2, :], 0.0)
    # Cycling 0 -> 1 -> 0 earns 0.3 per two steps: better than ending, except in the last two.
    assert exact.policy()[:, 0].argmax(-1).tolist() == [1] * (H - 2) + [0, 0]
    # With a bonus, the optimistic value of entering the terminal state is reward + own bonus:
    # no optimism flows back from the (unvisited) terminal state.
    optimistic = agents.make("ucbvi", 3, 2, horizon=H, bonus_scale=0.001)
    optimistic.fit(_terminal_statistics())
    bonus = optimistic.Q[0, 0, 0] - 0.5
    assert 0 < bonus < 0.2
    np.testing.assert_allclose(optimistic.Q[:, 0, 0], 0.5 + bonus)
    np.testing.assert_array_equal(optimistic.Q[:, 2, :], 0.0)
    # An unvisited pair gets the cap (H - h) r_max, here r_max = 1 (the nominal range).
    sparse = rlfm.Statistics(3, 2)
    sparse.update(0, 0, 0.5, 2, terminated=True)
    agent = agents.make("ucbvi", 3, 2, horizon=H)
    agent.fit(sparse)
    np.testing.assert_allclose(agent.Q[:, 0, 1], H - np.arange(H))
    np.testing.assert_array_equal(agent.Q[:, 2, :], 0.0)


def test_vilcb_unvisited_is_pessimistic_and_terminal_worth_zero():
    stats = rlfm.Statistics(3, 2)
    stats.update(0, 0, 0.5, 2, terminated=True)
    stats.update(0, 1, -2.0, 1)
    agent = agents.make("vilcb", 3, 2, horizon=5, penalty_scale=0.0)
    agent.fit(stats)
    r_lo = -2.0  # the nominal [0, 1] widened to the observed -2
    floor = np.repeat((5 - np.arange(5))[:, None] * r_lo, 2, axis=1)  # (H - h) r_lo
    np.testing.assert_allclose(agent.Q[:, 1, :], floor)
    np.testing.assert_array_equal(agent.Q[:, 2, :], 0.0)
    np.testing.assert_allclose(agent.Q[:, 0, 0], 0.5)
    assert (agent.policy()[:, 0].argmax(-1) == 0).all()


def test_psrl_samples_keep_observed_terminals_absorbing():
    agent = agents.make("psrl", 3, 2, horizon=10, prior_strength=3.0)
    agent.fit(_terminal_statistics(n_visits=200))
    mdp = agent._mdp(np.full((6, 3), 1 / 3), np.ones((3, 2)))
    assert mdp.terminal.tolist() == [False, False, True]
    np.testing.assert_array_equal(mdp.P[2, :, 2], 1.0)
    np.testing.assert_array_equal(mdp.R[2], 0.0)
    assert agent.policy()[:, 0].argmax(-1).tolist() == [1] * 8 + [0, 0]  # as the exact model's


# ---- (e) knobs --------------------------------------------------------------------------------
@pytest.mark.parametrize("name, knobs", [
    ("ucbvi", {"bonus": "optimism"}), ("ucbvi", {"bonus_scale": -1.0}),
    ("ucbvi", {"bonus_scale": "big"}), ("ucbvi", {"reward_range": (1.0, 2.0)}),
    ("psrl", {"prior_strength": 0.0}), ("psrl", {"reward_range": "wide"}),
    ("qlearning", {"epsilon": 1.5}), ("qlearning", {"lr": 0.0}), ("qlearning", {"gamma": 0.0}),
    ("qlearning", {"optimistic": "yes"}), ("vilcb", {"penalty_scale": float("nan")}),
    ("cevi", {"bonus_scale": 1.0}), ("ucbvi", {"temperature": 1.0}),
    ("opsrl", {"samples": 0}), ("opsrl", {"samples": 2.5}), ("opsrl", {"prior_count": 0.0}),
    ("opsrl", {"prior": "flat"}), ("rlsvi", {"sigma": -0.1}), ("rlsvi", {"sigma": "x"}),
])
def test_bad_knob_raises_rlfm_error(name, knobs):
    with pytest.raises(RlfmError):
        agents.make(name, 4, 2, horizon=5, **knobs)


@pytest.mark.parametrize("name", BASELINES)
def test_tuning_grid_values_are_accepted(name):
    grid = agents.agent_class(name).TUNING_GRID
    assert isinstance(grid, dict)
    assert (grid == {}) == (name in ("uniform", "cevi"))
    for knob, values in grid.items():
        assert isinstance(values, list) and values
        for value in values:
            agent = agents.make(name, 4, 2, horizon=5, **{knob: value})
            assert agent.act(0, 0) in range(2)


def test_psrl_plans_taxi_quickly():
    """A smoke check of the vectorised sampler at S = 500 (timings are benchmarks, not tests)."""
    mdp = rlfm.envs.load_mdp("Taxi-v3")
    agent = agents.make("psrl", mdp.n_states, mdp.n_actions, mdp.horizon, seed=0)
    agent.end_episode()
    assert agent.policy().shape == (mdp.horizon, mdp.n_states, mdp.n_actions)


# ---- (f) optimistic PSRL and RLSVI against what they reduce to ---------------------------------
def _random_mdp(seed: int, S: int = 6, A: int = 3, H: int = 8) -> TabularMDP:
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.full(S, 0.3), size=(S, A))
    return TabularMDP(P, rng.uniform(0, 1, (S, A)), np.eye(S)[0], H)


def _act_along(agent_list, mdp: TabularMDP, episodes: int, seed: int) -> list:
    """Drive several agents through the same episodes (the first one's actions decide), and
    return every agent's acting tables after every episode."""
    env = rlfm.envs.TabularEnv(mdp)
    tables = []
    state, _ = env.reset(seed=seed)
    for _ in range(episodes):
        for step in range(mdp.horizon):
            action = agent_list[0].act(state, step)
            nxt, reward, terminated, truncated, _ = env.step(action)
            for agent in agent_list:
                agent.observe(state, action, reward, nxt, terminated)
            state = nxt
            if terminated or truncated:
                break
        for agent in agent_list:
            agent.end_episode()
        tables.append([agent.acting.copy() for agent in agent_list])
        state, _ = env.reset()
    return tables


@pytest.mark.parametrize("seed", range(3))
def test_opsrl_with_one_sample_and_psrls_prior_is_psrl(seed):
    mdp = _random_mdp(seed)
    psrl = agents.make("psrl", 6, 3, 8, seed=seed, prior_strength=0.5)
    opsrl = agents.make("opsrl", 6, 3, 8, seed=seed, samples=1, prior="uniform", prior_count=0.5)
    for psrl_table, opsrl_table in _act_along([psrl, opsrl], mdp, 15, seed):
        np.testing.assert_array_equal(psrl_table, opsrl_table)


def test_opsrl_is_optimistic_where_data_are_missing_and_not_where_they_abound():
    # state 0: action 0 tried 10^6 times (reward 0, stays), action 1 never: the ghost makes the
    # untried action worth the most any remaining steps can return, so it is taken at every step
    stats = rlfm.Statistics(2, 2)
    stats.add_transitions(np.zeros(10**6, int), np.zeros(10**6, int), np.zeros(10**6),
                          np.zeros(10**6, int))
    agent = agents.make("opsrl", 2, 2, horizon=5, seed=0)
    agent.fit(stats)
    assert (agent.acting[:, 0] == 1).all()
    # with 10^6 tries of both actions, the sampled envelope is the empirical model: action 1
    # (reward 1) wins at every step, and the ghost's mass (1e-6) changes no decision
    stats.add_transitions(np.zeros(10**6, int), np.ones(10**6, int), np.ones(10**6),
                          np.zeros(10**6, int))
    agent.fit(stats)
    assert (agent.acting[:, 0] == 1).all()
    stats.add_transitions(np.zeros(10**6, int), np.zeros(10**6, int), np.full(10**6, 3.0),
                          np.zeros(10**6, int))  # action 0 now pays 1.5 on average
    agent.fit(stats)
    assert (agent.acting[:, 0] == 0).all()


@pytest.mark.parametrize("seed", range(3))
def test_rlsvi_without_noise_is_certainty_equivalent_planning(seed):
    mdp = _random_mdp(seed)
    rlsvi = agents.make("rlsvi", 6, 3, 8, seed=seed, sigma=0.0)
    cevi = agents.make("cevi", 6, 3, 8, seed=seed)
    _act_along([rlsvi, cevi], mdp, 10, seed)
    np.testing.assert_allclose(rlsvi.Q, cevi.Q, rtol=0, atol=1e-12)
    noisy = agents.make("rlsvi", 6, 3, 8, seed=seed, sigma=1.0)
    noisy.fit(rlsvi.stats)
    assert not np.allclose(noisy.Q, cevi.Q)
    np.testing.assert_array_equal(noisy.policy(), rlsvi.policy())  # exploitation: unperturbed
