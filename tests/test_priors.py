"""The synthetic MDP prior: family invariants, permutation, contexts, targets, streaming, packing."""

import numpy as np
import pytest
import torch

from rlfm.errors import InvalidMDPError
from rlfm.mdp import ScoreReference, TabularMDP, backward_induction
from rlfm.priors import (
    FAMILIES,
    PriorConfigError,
    PriorDataset,
    load_config,
    make_loader,
    permute,
    sample_batch,
    sample_family,
    sample_mdp,
)
from rlfm.priors.batch import buckets, draw_episodes

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


def test_deep_structures_are_off_by_default_and_deep_when_on():
    """Square layered graphs and mazes draw nothing when off (the default stream is unchanged);
    when on, a square's corner pays only at the end of `side` rightward moves in a row, and a
    maze is connected with its main goal out of reach of short random walks."""
    from rlfm.mdp import evaluate_policy
    from rlfm.priors.families import _bfs, _maze, graph, grid

    # (S, H, the generator's next draw) of graph and grid, seeds 0-5, as the generators gave
    # them before squares and mazes existed: the default stream is the same
    before = [(5, 5, 581389558, 16, 26, 757355867), (55, 29, 632540899, 69, 92, 1043344166),
              (7, 9, 843544655, 8, 25, 512120297), (6, 7, 1009766576, 95, 26, 715516774),
              (13, 19, 60039043, 52, 27, 254054117), (31, 10, 366826725, 14, 21, 557862915)]
    for seed, expected in enumerate(before):
        rng = np.random.default_rng(seed)
        m = graph(rng)
        after = (m.n_states, m.horizon, int(rng.integers(1 << 30)))
        rng = np.random.default_rng(seed)
        m = grid(rng)
        assert (*after, m.n_states, m.horizon, int(rng.integers(1 << 30))) == expected
    for seed in range(10):
        mdp = graph(np.random.default_rng(seed), square_prob=1.0, square_side=(6, 10),
                    n_actions=(2, 2), n_subgoals=(0, 0), cost_prob=0.0)
        _check_mdp(mdp)
        L, W = mdp.info["layered"]
        assert L == W and 6 <= W <= 10 and mdp.n_states == W * W + 1
        uniform = np.full((mdp.n_states, mdp.n_actions), 1 / mdp.n_actions)
        assert evaluate_policy(mdp, uniform) == pytest.approx(0.5 ** W)  # W rights in a row
        assert mdp.initial @ backward_induction(mdp).V[0] == pytest.approx(float(mdp.horizon >= L))
    for seed, (rows, cols) in enumerate([(11, 13), (5, 5), (6, 9), (17, 16), (5, 17)] * 2):
        rng = np.random.default_rng(seed)
        free = _maze(rng, rows, cols)
        assert free[::2, ::2].all(), "every junction is open"
        cells = np.argwhere(free)
        assert (_bfs(free, tuple(cells[0]))[free] >= 0).all(), "a maze is connected"
        edges = (free[1:] & free[:-1]).sum() + (free[:, 1:] & free[:, :-1]).sum()
        assert len(cells) - 1 <= edges < 1.2 * len(cells), "a tree plus a few loops"
        mdp = grid(np.random.default_rng(seed), maze_prob=1.0)
        _check_mdp(mdp)
        assert mdp.info["deep"] == "maze" and mdp.n_states <= 200


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


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_relabelled_and_rescaled_mdps_pass_the_checking_constructor(family):
    """`relabelled` and `with_rewards` skip the constructor's validation: what they make
    passes it unchanged (sparse stays sparse), and rewards on a terminal state are refused."""
    mdp = sample_family(np.random.default_rng(3), family)
    again = TabularMDP(mdp.transition_matrix, mdp.R, mdp.initial, mdp.horizon,
                       terminal=mdp.terminal, gamma=mdp.gamma)
    assert again.is_sparse == mdp.is_sparse
    np.testing.assert_array_equal(again.P, mdp.P)
    if mdp.terminal.any():
        R = mdp.R.copy()
        R[np.flatnonzero(mdp.terminal)[0]] = 1.0
        with pytest.raises(InvalidMDPError, match="0 on terminal states"):
            mdp.with_rewards(R)


def test_sampled_mdps_are_always_permuted():
    changed = 0
    for seed in range(20):
        mdp = sample_family(np.random.default_rng(seed), "chain")
        changed += not np.array_equal(mdp.info["state_perm"], np.arange(mdp.n_states))
    assert changed >= 18


def _graph_equal(x, y):
    for name in ("sa_x", "sa_state", "state_x", "edge_sa", "edge_next", "edge_x", "policy_target",
                 "value_target", "graph_states"):
        if not torch.equal(getattr(x, name), getattr(y, name)):
            return False
    return x.families == y.families


def test_batch_is_deterministic_for_seed_and_index():
    a, b = sample_batch(5, 2, 24), sample_batch(5, 2, 24)
    assert _graph_equal(a.graph, b.graph)
    assert not _graph_equal(a.graph, sample_batch(5, 3, 24).graph)
    assert a.batch_size == 24


def _check_graph(batch):
    """The packed graph of a PriorBatch: shapes, indices within their own MDP, targets."""
    g = batch.graph
    S, A = g.graph_states, g.graph_actions
    N_s, N_sa = int(S.sum()), int((S * A).sum())
    assert g.sa_x.shape == (N_sa, 14) and g.state_x.shape[0] == N_s
    for name in ("sa_state", "policy_target"):
        assert getattr(g, name).shape == (N_sa,), name
    for name in ("state_graph", "value_target", "state_terminal"):
        assert getattr(g, name).shape == (N_s,), name
    sa_graph = g.state_graph[g.sa_state]
    assert torch.equal(g.state_graph[g.edge_next], sa_graph[g.edge_sa])
    assert (g.sa_state[1:] >= g.sa_state[:-1]).all()
    # P̂ sums to 1 over the successors of every visited pair; targets are distributions
    p_sum = torch.zeros(N_sa).index_add_(0, g.edge_sa, g.edge_log_p.exp())
    visited = g.sa_x[:, 1] == 0
    torch.testing.assert_close(p_sum[visited], torch.ones(int(visited.sum())))
    per_state = torch.zeros(N_s).index_add_(0, g.sa_state, g.policy_target)
    torch.testing.assert_close(per_state, torch.ones(N_s))
    assert (g.value_target >= -1e-6).all() and (g.value_target <= 1 + 1e-6).all()


def test_batch_packs_graphs_of_every_size_and_valid_targets():
    batch = sample_batch(0, 0, 64, dtype=torch.float64)
    _check_graph(batch)
    assert len(set(batch.graph.graph_states.tolist())) > 10
    for chunk in batch.chunks:
        world = chunk.world
        for i in range(world.batch_size):
            mdp = world.to_mdp(i)
            lo = int(world.first_state[i])
            Q = backward_induction(mdp).Q[0]
            target = chunk.targets["policy"][lo:lo + mdp.n_states, :mdp.n_actions].numpy()
            greedy = target.argmax(axis=1)  # the target's greedy policy is optimal at step 0
            np.testing.assert_allclose(Q[np.arange(mdp.n_states), greedy], Q.max(axis=1),
                                       rtol=1e-9, atol=1e-9)


def test_buckets_hold_every_mdp_once():
    rng = np.random.default_rng(0)
    mdps = [sample_mdp(rng) for _ in range(300)]
    groups = buckets(mdps)
    assert sorted(i for g in groups for i in g) == list(range(300))
    assert 1 < len(groups) < 60
    # a dearer time step (a GPU's) makes fewer, larger buckets, each MDP still in one
    fewer = buckets(mdps, step_overhead=10_000_000)
    assert sorted(i for g in fewer for i in g) == list(range(300))
    assert len(fewer) < len(groups)


def test_amount_of_data_spans_none_to_plenty():
    rng = np.random.default_rng(0)
    n = draw_episodes(rng, np.full(4000, 20), np.full(4000, 20), **CONFIG.context)
    assert 0.02 < np.mean(n == 0) < 0.1
    assert 950 <= n.max() <= 1000 and np.mean(n >= 300) > 0.05 and np.mean((n > 0) & (n <= 3)) > 0.1
    batch = sample_batch(0, 1, 150)
    transitions = torch.cat([torch.zeros(c.world.batch_size).index_add_(
        0, c.world.state_mdp, c.stats.visits.sum(-1)) for c in batch.chunks])
    assert transitions.min() == 0 and transitions.max() > 10_000


@pytest.mark.parametrize("behaviour", ["uniform", "epsilon_greedy", "fixed_policy", "optimistic",
                                       "psrl"])
def test_every_behaviour_gives_consistent_statistics(behaviour):
    config = CONFIG.replace(context={**CONFIG.context, "behaviours": {behaviour: 1.0},
                                     "zero_data_prob": 0.0})
    batch = sample_batch(1, 0, 24, config)
    for chunk in batch.chunks:
        world, stats = chunk.world, chunk.stats
        assert set(chunk.behaviours) == {behaviour} and (chunk.episodes >= 1).all()
        per_mdp = torch.zeros(world.batch_size).index_add_(0, world.state_mdp,
                                                          stats.visits.sum(-1))
        assert (per_mdp >= chunk.episodes).all()   # every episode has at least one step
        assert (per_mdp <= chunk.episodes * world.horizon).all()
        assert stats.visits[world.terminal].sum() == 0, "no step starts in a terminal state"
        assert stats.terminal_entries[~world.terminal].sum() == 0
        assert (stats.counts[world.probs == 0] == 0).all(), "only possible transitions"
        assert (stats.visits[~world.action_mask] == 0).all(), "only real actions"


def test_fixed_policy_contexts_take_one_action_per_state():
    config = CONFIG.replace(context={**CONFIG.context, "behaviours": {"fixed_policy": 1.0}})
    for chunk in sample_batch(2, 0, 16, config).chunks:
        assert ((chunk.stats.visits > 0).sum(-1) <= 1).all()


def test_batch_stream_is_the_same_whatever_the_number_of_workers():
    single = list(make_loader(seed=3, batch_size=5, num_workers=0, n_batches=4))
    double = list(make_loader(seed=3, batch_size=5, num_workers=2, n_batches=4))
    assert len(single) == len(double) == 4
    for x, y in zip(single, double, strict=True):
        assert _graph_equal(x, y)
    assert _graph_equal(single[1], PriorDataset(3, batch_size=5).batch(1))


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
    bad.write_text("[context.behaviours]\nmodel = 1\n")
    with pytest.raises(PriorConfigError, match="unknown behaviour"):
        load_config(bad)


def test_a_training_configuration_gives_its_prior():
    """The deep prior of configs/rlfm-v4-deep.toml, read from that file's [prior] table, holds
    squares and mazes; the default holds neither."""
    from pathlib import Path

    deep = load_config(Path(__file__).parent.parent / "configs" / "rlfm-v4-deep.toml")
    assert deep.families["graph"]["square_prob"] > 0 and deep.families["grid"]["maze_prob"] > 0
    rng = np.random.default_rng(0)
    tags = [sample_mdp(rng, deep).info.get("deep") for _ in range(300)]
    assert 0.03 < tags.count("square") / 300 < 0.15 and 0.03 < tags.count("maze") / 300 < 0.15
    rng = np.random.default_rng(0)
    assert not any(sample_mdp(rng).info.get("deep") for _ in range(100))


def test_cli_prints_a_table_and_draws(tmp_path):
    from typer.testing import CliRunner

    from rlfm.priors.cli import prior_app

    result = CliRunner().invoke(prior_app, ["sample", "--n", "5", "--seed", "2",
                                            "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "family" in result.output and "optimal" in result.output
    png = tmp_path / "prior_samples.png"
    assert png.stat().st_size > 10_000
