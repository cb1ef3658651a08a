"""The synthetic MDP prior: family invariants, permutation, contexts, targets, streaming, packing."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from rlfm.agents import Agent
from rlfm.mdp import ScoreReference, backward_induction, normalized_score
from rlfm.priors import (
    FAMILIES,
    PriorConfigError,
    PriorDataset,
    Simulator,
    collate,
    draw_episodes,
    load_config,
    make_loader,
    permute,
    sample_context,
    sample_example,
    sample_family,
    sample_mdp,
)
from rlfm.priors.context import optimistic_rollouts
from rlfm.stats import Statistics

CONFIG = load_config()
SEEDS = range(25)


def _ranges(family: str) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """The (S, A, H) bounds that the configured ranges of a family imply."""
    p = CONFIG.families[family]
    if family in ("dense", "garnet", "graph"):
        S = (p["n_states"][0], p["large_states"][1])
    elif family == "grid":
        S = (2, p["large_side"][1] ** 2)
    elif family == "chain":
        S = (p["length"][0], p["large_length"][1])
    elif family == "tree":
        S = (1 + p["branching"][0], p["max_states"])
    else:
        S = (1, 1)
    if family == "grid":
        A = (4, 5)
    elif family == "tree":
        A = (p["branching"][0], p["branching"][1] + 1)  # + the optional 'back' action
    else:
        A = tuple(p["n_actions"])
    return S, A, tuple(p["horizon"])


def _check_mdp(mdp):
    P = mdp.P
    np.testing.assert_allclose(P.sum(axis=2), 1.0, atol=1e-9)
    assert (P >= 0).all()
    for t in np.flatnonzero(mdp.terminal):
        np.testing.assert_array_equal(P[t, :, t], 1.0)
        np.testing.assert_array_equal(mdp.R[t], 0.0)
    assert mdp.initial[mdp.terminal].sum() == 0, "episodes must not start in a terminal state"
    for key in ("entry_reward", "cells", "cell_kind"):
        if key in mdp.info:
            assert len(mdp.info[key]) == mdp.n_states
    if "entry_reward" in mdp.info:  # observed entry rewards average to R(s, a)
        live = ~mdp.terminal
        np.testing.assert_allclose((P @ mdp.info["entry_reward"])[live], mdp.R[live], atol=1e-9)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_invariants_and_ranges(family):
    (s_lo, s_hi), (a_lo, a_hi), (h_lo, h_hi) = _ranges(family)
    sizes = []
    for seed in SEEDS:
        mdp = sample_family(np.random.default_rng(seed), family, CONFIG)
        _check_mdp(mdp)
        assert mdp.name == mdp.info["family"] == family
        assert s_lo <= mdp.n_states <= s_hi
        assert a_lo <= mdp.n_actions <= a_hi and 2 <= mdp.n_actions <= 8
        assert h_lo <= mdp.horizon <= h_hi and 5 <= mdp.horizon <= 250
        sizes.append(mdp.n_states)
    if family != "bandit":
        assert len(set(sizes)) > 5, "sizes should vary"


def test_generator_defaults_are_the_shipped_config():
    import inspect

    for name, family in FAMILIES.items():
        for key, param in inspect.signature(family).parameters.items():
            if key != "rng":
                default = list(param.default) if isinstance(param.default, tuple) else param.default
                assert CONFIG.families[name][key] == default, (name, key)


def test_bandit_has_one_state_and_noisy_rewards():
    for seed in SEEDS:
        mdp = sample_family(np.random.default_rng(seed), "bandit")
        assert mdp.n_states == 1 and mdp.info["reward_noise"] > 0


def test_mixture_covers_every_family_and_large_mdps():
    rng = np.random.default_rng(0)
    mdps = [sample_mdp(rng) for _ in range(300)]
    assert {m.name for m in mdps} == set(CONFIG.mixture)
    S = np.array([m.n_states for m in mdps])
    assert S.min() == 1 and S.max() > 64 and np.mean(S <= 64) > 0.85
    scales = [np.abs(m.R).max() for m in mdps if np.abs(m.R).max() > 0]
    assert max(scales) / min(scales) > 1e3, "reward scales should span orders of magnitude"
    assert any((m.R < 0).any() for m in mdps) and any((m.R > 0).any() for m in mdps)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_permutation_preserves_the_optimal_value(family):
    for seed in range(8):
        canonical = FAMILIES[family](np.random.default_rng(seed))
        permuted = permute(canonical, np.random.default_rng(seed + 100))
        a, b = ScoreReference.of(canonical), ScoreReference.of(permuted)
        assert a.optimal_return == pytest.approx(b.optimal_return, rel=1e-9, abs=1e-12)
        assert a.uniform_return == pytest.approx(b.uniform_return, rel=1e-9, abs=1e-12)
        sp, ap = permuted.info["state_perm"], permuted.info["action_perm"]
        np.testing.assert_array_equal(permuted.P[np.ix_(sp, ap, sp)], canonical.P)
        np.testing.assert_array_equal(permuted.R[np.ix_(sp, ap)], canonical.R)


def test_sampled_mdps_are_always_permuted():
    changed = 0
    for seed in range(20):
        mdp = sample_family(np.random.default_rng(seed), "chain")
        changed += not np.array_equal(mdp.info["state_perm"], np.arange(mdp.n_states))
    assert changed >= 18


def _same_example(x, y):
    assert x.stats == y.stats and x.family == y.family and x.behaviour == y.behaviour
    assert x.horizon == y.horizon
    np.testing.assert_array_equal(x.policy_target, y.policy_target)
    np.testing.assert_array_equal(x.value_target, y.value_target)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_sampler_is_deterministic_for_a_seed(seed):
    _same_example(sample_example(np.random.default_rng(seed)),
                  sample_example(np.random.default_rng(seed)))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_targets_are_valid(seed):
    ex = sample_example(np.random.default_rng(seed), keep_mdp=True)
    S, A = ex.n_states, ex.n_actions
    assert ex.policy_target.shape == (S, A) and ex.value_target.shape == (S,)
    assert (ex.policy_target >= 0).all()
    np.testing.assert_allclose(ex.policy_target.sum(axis=1), 1.0, atol=1e-9)
    assert (ex.value_target >= -1e-12).all() and (ex.value_target <= 1 + 1e-9).all()
    Q = backward_induction(ex.mdp).Q[0]
    greedy = ex.policy_target.argmax(axis=1)
    np.testing.assert_allclose(Q[np.arange(S), greedy], Q.max(axis=1), rtol=1e-9, atol=1e-12)
    # the target's greedy policy is optimal at the first step
    assert ex.value_scale >= 0 and ex.stats.n_states == S and ex.horizon == ex.mdp.horizon


def test_amount_of_data_spans_none_to_plenty():
    rng = np.random.default_rng(0)
    n = np.array([draw_episodes(rng, 20, 20, **CONFIG.context) for _ in range(4000)])
    assert 0.02 < np.mean(n == 0) < 0.1
    assert n.max() == 1000 and np.mean(n >= 300) > 0.05 and np.mean((n > 0) & (n <= 3)) > 0.1
    transitions = [sample_example(np.random.default_rng(seed)).stats.n_transitions
                   for seed in range(150)]
    assert min(transitions) == 0 and max(transitions) > 10_000


@pytest.mark.parametrize("behaviour", ["uniform", "epsilon_greedy", "fixed_policy", "optimistic",
                                       "agent:psrl", "custom"])
def test_every_behaviour_gives_consistent_statistics(behaviour):
    class FirstAction(Agent):
        def act(self, state, step):
            return 0

        def policy(self):
            return np.zeros(self.n_states, np.int64)

    config = CONFIG.replace(context={**CONFIG.context, "behaviours": {behaviour: 1.0},
                                     "zero_data_prob": 0.0})
    for seed in range(6):
        rng = np.random.default_rng(seed)
        mdp = sample_mdp(rng, config)
        ctx = sample_context(rng, mdp, config.context, agents={"custom": FirstAction})
        stats = ctx.stats
        assert ctx.behaviour == behaviour and ctx.n_episodes >= 1
        assert stats.n_transitions >= ctx.n_episodes  # every episode has at least one step
        assert stats.visits[mdp.terminal].sum() == 0, "no step starts in a terminal state"
        assert stats.terminal_entries[~mdp.terminal].sum() == 0
        rows, cols, _ = stats.transition_triplets()
        s, a = np.divmod(rows, mdp.n_actions)
        assert (mdp.P[s, a, cols] > 0).all(), "only possible transitions are observed"
        if behaviour == "custom":  # the agent's actions are the ones recorded
            assert (stats.visits[:, 1:] == 0).all()


@pytest.mark.parametrize("n_episodes", [1, 4000])
def test_simulator_samples_the_transition_probabilities(n_episodes):
    mdp = sample_family(np.random.default_rng(3), "dense")
    sim = Simulator(mdp)
    rng = np.random.default_rng(0)
    if n_episodes == 1:  # the one-step-at-a-time path
        tr = optimistic_rollouts(sim, rng, 300, bonus_scale=5.0, replan_every_episode=300)
    else:
        tr = sim.rollout(rng, n_episodes)
    stats = Statistics.from_transitions(mdp.n_states, mdp.n_actions, tr.states, tr.actions,
                                        tr.rewards, tr.next_states, tr.terminated)
    P_hat = stats.transition_counts.toarray() / np.maximum(stats.visits.ravel(), 1)[:, None]
    well = stats.visits.ravel() >= 400
    assert well.sum() >= 3
    P = mdp.transition_matrix
    assert np.abs(P_hat[well] - P[well]).max() < 0.09
    np.testing.assert_allclose(stats.mean_reward.ravel()[well], mdp.R.ravel()[well])


def test_optimistic_learner_explores_deep():
    """A deterministic chain where only a long run of 'forward' pays: uniform data from 60
    episodes almost never reaches it; the optimistic learner finds it."""
    from rlfm.envs.classic import deep_sea

    mdp = deep_sea(size=8)
    sim = Simulator(mdp)
    scores = {}
    for name in ("uniform", "optimistic"):
        rng = np.random.default_rng(1)
        tr = (sim.rollout(rng, 60) if name == "uniform" else
              optimistic_rollouts(sim, rng, 60, bonus_scale=0.3, reward_range=(-0.01, 1.0)))
        stats = Statistics.from_transitions(mdp.n_states, mdp.n_actions, tr.states, tr.actions,
                                            tr.rewards, tr.next_states, tr.terminated)
        policy = backward_induction(stats.empirical_mdp(mdp.horizon)).policy
        scores[name] = normalized_score(mdp, policy)
    assert scores["optimistic"] > 0.99 > scores["uniform"]


def _check_batch(batch, examples):
    G = len(examples)
    assert batch.n_graphs == G
    S = torch.tensor([e.n_states for e in examples])
    A = torch.tensor([e.n_actions for e in examples])
    assert torch.equal(batch.graph_states, S) and torch.equal(batch.graph_actions, A)
    N_s, N_sa = int(S.sum()), int((S * A).sum())
    assert batch.sa_x.shape[0] == N_sa and batch.state_x.shape[0] == N_s
    for name in ("sa_state", "policy_target"):
        assert getattr(batch, name).shape == (N_sa,), name
    for name in ("state_graph", "value_target", "state_terminal"):
        assert getattr(batch, name).shape == (N_s,), name
    # indices point within their own graph; a state's pairs are contiguous
    sa_graph = batch.state_graph[batch.sa_state]
    assert torch.equal(batch.state_graph[batch.edge_next], sa_graph[batch.edge_sa])
    assert (batch.sa_state[1:] >= batch.sa_state[:-1]).all()
    assert (batch.edge_sa[1:] >= batch.edge_sa[:-1]).all()
    # P̂ sums to 1 over the successors of every visited pair; targets are distributions
    p_sum = torch.zeros(N_sa).index_add_(0, batch.edge_sa, batch.edge_log_p.exp())
    visits = torch.cat([torch.from_numpy(e.stats.visits.ravel()) for e in examples])
    torch.testing.assert_close(p_sum[visits > 0], torch.ones(int((visits > 0).sum())))
    per_state = torch.zeros(N_s).index_add_(0, batch.sa_state, batch.policy_target)
    torch.testing.assert_close(per_state, torch.ones(N_s))
    # round trip: graph g's block holds example g's targets
    offset = 0
    for e in examples:
        n = e.n_states * e.n_actions
        np.testing.assert_array_equal(batch.policy_target[offset:offset + n].numpy(),
                                      e.policy_target.ravel().astype(np.float32))
        offset += n


def test_collate_packs_graphs_of_different_sizes():
    examples = [sample_example(np.random.default_rng(seed)) for seed in range(12)]
    assert len({e.n_states for e in examples}) > 3
    batch = collate(examples)
    _check_batch(batch, examples)
    assert batch.families == tuple(e.family for e in examples)
    moved = batch.to("cpu")
    assert torch.equal(moved.edge_sa, batch.edge_sa) and moved.families == batch.families


def _examples_via_loader(seed, num_workers):
    loader = DataLoader(PriorDataset(seed, length=6), batch_size=3, collate_fn=collate,
                        num_workers=num_workers)
    return list(loader)


def test_dataset_is_deterministic_for_seed_and_workers():
    for workers in (0, 2):
        a, b = _examples_via_loader(7, workers), _examples_via_loader(7, workers)
        assert len(a) == len(b) == 2
        for x, y in zip(a, b, strict=True):
            for name in ("edge_sa", "edge_x", "sa_x", "policy_target"):
                assert torch.equal(getattr(x, name), getattr(y, name))
    other = _examples_via_loader(8, 0)
    assert other[0].sa_x.shape != a[0].sa_x.shape or not torch.equal(other[0].sa_x, a[0].sa_x)


def test_batch_stream_is_the_same_whatever_the_number_of_workers():
    single = list(make_loader(seed=3, batch_size=3, num_workers=0, n_batches=4))
    double = list(make_loader(seed=3, batch_size=3, num_workers=2, n_batches=4))
    assert len(single) == len(double) == 4
    for x, y in zip(single, double, strict=True):
        assert x.families == y.families
        for name in ("sa_x", "edge_next", "edge_x", "value_target", "graph_states"):
            assert torch.equal(getattr(x, name), getattr(y, name))
    ds = PriorDataset(3, batch_size=3)
    _check_batch(single[1], [ds.example(i) for i in range(3, 6)])


def test_config_file_overrides_and_errors(tmp_path):
    path = tmp_path / "prior.toml"
    path.write_text("[mixture]\ngrid = 1\n\n[families.grid]\nside = [3, 4]\n")
    config = load_config(path)
    assert config.mixture == {"grid": 1}
    assert config.families["grid"]["side"] == [3, 4]
    assert config.families["grid"]["slip"] == CONFIG.families["grid"]["slip"]
    for seed in range(5):
        mdp = sample_mdp(np.random.default_rng(seed), config)
        assert mdp.name == "grid" and mdp.n_states <= 16
    bad = tmp_path / "bad.toml"
    for text, message in [("[mixture]\nspaceships = 1\n", "unknown family"),
                          ("[families.grid]\nwarp = 2\n", "unknown key"),
                          ("[context]\nbudget = 3\n", "unknown prior setting"),
                          ("[mixture\n", "not a valid TOML")]:
        bad.write_text(text)
        with pytest.raises(PriorConfigError, match=message):
            load_config(bad)
    with pytest.raises(PriorConfigError, match="no such"):
        load_config(tmp_path / "missing.toml")
    for name in ("model", "agent:nonexistent"):
        with pytest.raises(PriorConfigError, match="neither built in"):
            PriorDataset(0, CONFIG.with_behaviours(**{name: 0.5}))
    PriorDataset(0, CONFIG.with_behaviours(model=0.5), agents={"model": Agent})  # provided


def test_cli_prints_a_table_and_draws(tmp_path):
    from typer.testing import CliRunner

    from rlfm.priors.cli import prior_app

    result = CliRunner().invoke(prior_app, ["sample", "--n", "5", "--seed", "2",
                                            "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "family" in result.output and "optimal" in result.output
    png = tmp_path / "prior_samples.png"
    assert png.stat().st_size > 10_000
