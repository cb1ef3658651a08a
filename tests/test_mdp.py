"""Exact solvers against hand-solved MDPs, validation errors, files and Gymnasium conversion."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import rlfm
from rlfm import InvalidEnvironmentError, InvalidMDPError, TabularMDP
from rlfm.envs.classic import river_swim
from rlfm.mdp import (
    ScoreReference,
    backward_induction,
    evaluate_policy,
    normalized_score,
    policy_values,
    uniform_policy,
    value_iteration,
)


def two_state_chain(p: float, horizon: int, gamma: float = 1.0) -> TabularMDP:
    """State 0 pays nothing; action 1 moves to state 1 with probability p; state 1 is absorbing
    and pays 1 per step whatever the action."""
    P = np.zeros((2, 2, 2))
    P[0, 0, 0] = 1.0
    P[0, 1] = [1 - p, p]
    P[1, :, 1] = 1.0
    R = np.array([[0.0, 0.0], [1.0, 1.0]])
    return TabularMDP(P, R, [1.0, 0.0], horizon, gamma=gamma)


@settings(max_examples=30, deadline=None)
@given(p=st.floats(0.05, 1.0), H=st.integers(2, 60))
def test_two_state_chain_closed_form(p, H):
    mdp = two_state_chain(p, H)
    sol = backward_induction(mdp)
    # Always pushing: P(in state 1 at step t) = 1 - (1-p)^t, summed over t = 0..H-1.
    optimal = H - (1 - (1 - p) ** H) / p
    assert sol.V[0, 0] == pytest.approx(optimal, rel=1e-9, abs=1e-9)
    assert np.all(sol.V[np.arange(H + 1), 1] == H - np.arange(H + 1))
    assert sol.policy[0, 0] == 1
    # Uniform: moves with probability p/2 per step.
    q = p / 2
    assert evaluate_policy(mdp, uniform_policy(mdp)) == pytest.approx(H - (1 - (1 - q) ** H) / q)
    ref = ScoreReference.of(mdp)
    stay = np.zeros(2, int)
    assert normalized_score(mdp, stay, ref) == pytest.approx(ref.normalise(0.0))
    assert normalized_score(mdp, sol.policy, ref) == pytest.approx(1.0)
    assert normalized_score(mdp, uniform_policy(mdp), ref) == pytest.approx(0.0, abs=1e-12)


def test_degenerate_mdp_scores_one():
    # With one step, state 0 pays 0 whatever the action: every policy is optimal.
    mdp = two_state_chain(0.5, 1)
    assert normalized_score(mdp, uniform_policy(mdp)) == 1.0


def test_discounted_value_iteration_closed_form():
    gamma = 0.9
    Q, V = value_iteration(two_state_chain(1.0, 10, gamma=gamma))
    assert V[1] == pytest.approx(1 / (1 - gamma), rel=1e-7)
    assert V[0] == pytest.approx(gamma / (1 - gamma), rel=1e-7)
    assert Q[0, 0] == pytest.approx(gamma * V[0], rel=1e-7)
    with pytest.raises(InvalidMDPError, match="gamma"):
        value_iteration(two_state_chain(1.0, 10))


def test_time_dependent_policy_evaluation_matches_optimum():
    mdp = river_swim()
    sol = backward_induction(mdp)
    V = policy_values(mdp, sol.policy)
    np.testing.assert_allclose(V, sol.V)
    one_hot = np.eye(2)[sol.policy]
    assert evaluate_policy(mdp, one_hot) == pytest.approx(mdp.initial @ sol.V[0])


def test_river_swim_optimal_policy_swims_right():
    sol = backward_induction(river_swim())
    # With 20 steps left, swimming right is optimal from every state; near the end of the
    # episode, the safe reward on the left wins again from the leftmost state.
    assert np.all(sol.policy[0] == 1)
    assert sol.policy[-1, 0] == 0


def test_sparse_and_dense_agree():
    mdp = rlfm.envs.load_mdp("FrozenLake8x8-v1")
    sparse = TabularMDP(sp.csr_array(mdp.transition_matrix), mdp.R, mdp.initial, mdp.horizon,
                        mdp.terminal)
    assert sparse.is_sparse and not mdp.is_sparse
    np.testing.assert_allclose(backward_induction(sparse).V, backward_induction(mdp).V)
    np.testing.assert_allclose(sparse.P, mdp.P)


@pytest.mark.parametrize("change, message", [
    (dict(P=np.ones((2, 2, 3)) / 3), "shape"),
    (dict(P=np.full((2, 2, 2), 0.4)), "sum to 1"),
    (dict(R=np.array([[0.0, np.nan], [1.0, 1.0]])), "NaN"),
    (dict(horizon=-3), "horizon"),
    (dict(horizon=2.5), "horizon"),
    (dict(initial=[0.5, 0.6]), "initial"),
    (dict(initial=[1.0, 0.0, 0.0]), "initial"),
    (dict(terminal=np.array([True, False])), "terminal state 0"),
    (dict(gamma=1.5), "gamma"),
])
def test_validation_names_the_problem(change, message):
    base = two_state_chain(0.5, 5)
    args = dict(P=base.P, R=base.R, initial=base.initial, horizon=5, terminal=None)
    args.update(change)
    with pytest.raises(InvalidMDPError, match=message):
        TabularMDP(args["P"], args["R"], args["initial"], args["horizon"],
                   terminal=args["terminal"], gamma=change.get("gamma", 1.0))


@pytest.mark.parametrize("sparse", [False, True])
def test_npz_round_trip(tmp_path, sparse):
    mdp = rlfm.envs.load_mdp("FrozenLake-v1")
    if sparse:
        mdp = TabularMDP(sp.csr_array(mdp.transition_matrix), mdp.R, mdp.initial, mdp.horizon,
                         mdp.terminal)
    mdp.save(tmp_path / "m.npz")
    back = TabularMDP.load(tmp_path / "m.npz")
    assert back.is_sparse == sparse
    np.testing.assert_array_equal(back.P, mdp.P)
    np.testing.assert_array_equal(back.terminal, mdp.terminal)
    assert (back.horizon, back.gamma) == (mdp.horizon, mdp.gamma)


def test_malformed_npz_files(tmp_path):
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(InvalidMDPError, match="not an .npz"):
        TabularMDP.load(tmp_path / "text.npz")
    np.savez(tmp_path / "nokeys.npz", R=np.zeros((2, 2)))
    with pytest.raises(InvalidMDPError, match="missing key.*'P'.*'initial'.*'horizon'"):
        TabularMDP.load(tmp_path / "nokeys.npz")
    np.savez(tmp_path / "obj.npz", P=np.array([None, 1], dtype=object), R=np.zeros((1, 1)),
             initial=[1.0], horizon=3)
    with pytest.raises(InvalidMDPError, match="obj.npz"):
        TabularMDP.load(tmp_path / "obj.npz")
    with pytest.raises(InvalidMDPError, match="no such file"):
        TabularMDP.load(tmp_path / "absent.npz")


def test_from_gymnasium_frozen_lake():
    mdp = rlfm.envs.load_mdp("FrozenLake-v1")
    assert (mdp.n_states, mdp.n_actions, mdp.horizon) == (16, 4, 100)
    assert set(np.flatnonzero(mdp.terminal)) == {5, 7, 11, 12, 15}  # holes and the goal
    assert mdp.initial[0] == 1.0
    for s in np.flatnonzero(mdp.terminal):
        assert np.all(mdp.P[s, :, s] == 1.0) and np.all(mdp.R[s] == 0.0)
    # Entering the goal pays 1: from 14, moving right reaches 15 with probability 1/3.
    assert mdp.R[14, 2] == pytest.approx(1 / 3)


def test_from_gymnasium_taxi_and_cliff():
    taxi = rlfm.envs.load_mdp("Taxi-v3")  # legacy id, same dynamics as Taxi-v4
    assert (taxi.n_states, taxi.n_actions, taxi.horizon) == (500, 6, 200)
    assert taxi.terminal.sum() == 4
    cliff = rlfm.envs.load_mdp("CliffWalking-v1")
    assert cliff.horizon == rlfm.mdp.FALLBACK_HORIZON  # no registered time limit
    assert backward_induction(cliff).V[0, 36] == pytest.approx(-13)


def test_unknown_and_non_discrete_environments():
    with pytest.raises(InvalidEnvironmentError, match="unknown environment"):
        rlfm.envs.make("NoSuchEnv-v0")
    with pytest.raises(InvalidEnvironmentError, match="Discrete"):
        rlfm.envs.make("CartPole-v1")
