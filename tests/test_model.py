"""The network: equivariance, masking, the loss, and checkpoint round-trips."""

import json

import numpy as np
import pytest
import torch

import rlfm
from rlfm import CheckpointError
from rlfm.checkpoint import load_model, save_model
from rlfm.evaluate import collect_dataset
from rlfm.features import GraphBatch, encode_statistics, in_context_plans
from rlfm.mdp import backward_induction
from rlfm.model import RLFM, ModelConfig, policy_loss, sample_plan, segment_softmax
from rlfm.stats import Statistics
from rlfm.world import StatsBatch


def frozen_lake_stats(episodes=30, seed=0):
    env = rlfm.envs.make("FrozenLake-v1")
    mdp = rlfm.TabularMDP.from_gymnasium(env)
    return mdp, collect_dataset(env, mdp, "uniform", episodes, seed)


def permuted(stats: Statistics, state_perm: np.ndarray, action_perm: np.ndarray) -> Statistics:
    """The same data with states renamed s -> state_perm[s] and actions a -> action_perm[a]."""
    rows, cols, counts = stats.transition_triplets()
    s, a = np.divmod(rows, stats.n_actions)
    out = Statistics(stats.n_states, stats.n_actions)
    ps, pa = state_perm[s], action_perm[a]
    out.add_transitions(np.repeat(ps, counts), np.repeat(pa, counts),
                        np.zeros(counts.sum()), np.repeat(state_perm[cols], counts))
    # moments and termination counts move with their (s, a)
    inv_s, inv_a = np.argsort(state_perm), np.argsort(action_perm)
    out.reward_sum = stats.reward_sum[inv_s][:, inv_a]
    out.reward_sq_sum = stats.reward_sq_sum[inv_s][:, inv_a]
    out.terminations = stats.terminations[inv_s][:, inv_a]
    out.terminal_entries = stats.terminal_entries[inv_s]
    return out


def perturbed(model: RLFM) -> RLFM:
    """`model` with noise on every weight, so that zero-initialised layers take part too."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("tied", [True, False])
def test_permutation_equivariance(tied):
    torch.manual_seed(0)
    model = perturbed(RLFM(ModelConfig(width=16, steps=3, weight_tying=tied)).double())
    mdp, stats = frozen_lake_stats()
    rng = np.random.default_rng(1)
    sp, ap = rng.permutation(16), rng.permutation(4)
    pi = model.policy(stats, mdp.horizon)
    pi_perm = model.policy(permuted(stats, sp, ap), mdp.horizon)
    np.testing.assert_allclose(pi_perm[sp][:, ap], pi, atol=1e-5)


def test_policy_shapes_for_any_size():
    model = RLFM(ModelConfig(width=16, steps=2))
    for S, A in [(1, 2), (1, 1), (7, 3), (2000, 4)]:
        stats = Statistics(S, A)
        if S > 1:
            stats.add_transitions([0, 1], [0, A - 1], [1.0, 0.0], [1, S - 1])
        pi = model.policy(stats, horizon=20)
        assert pi.shape == (S, A)
        np.testing.assert_allclose(pi.sum(1), 1.0, atol=1e-5)


def test_batching_equals_one_by_one():
    torch.manual_seed(0)
    model = perturbed(RLFM(ModelConfig(width=16, steps=3)).double()).eval()
    items = [encode_statistics(frozen_lake_stats(e, s)[1], 100) for e, s in [(5, 0), (40, 1)]]
    items.append(encode_statistics(Statistics.from_transitions(3, 2, [0], [1], [2.0], [2]), 7))
    with torch.no_grad():
        together = model.log_policy(_double(GraphBatch.concatenate(items)))
        alone = torch.cat([model.log_policy(_double(it)) for it in items])
    torch.testing.assert_close(together, alone)


def _double(g):
    return g.to(dtype=torch.float64)


@pytest.mark.parametrize("env_id, behavior, episodes", [
    ("FrozenLake-v1", "uniform", 30), ("CliffWalking-v1", "expert", 5), ("Taxi-v3", "medium", 10)])
def test_in_context_plans_equal_the_two_solvers(env_id, behavior, episodes):
    """features.in_context_plans computes both in-context plans in one batched pass: it must give
    the same Q_0 as backward induction and bounded backward induction with the bonus."""
    env = rlfm.envs.make(env_id)
    mdp = rlfm.TabularMDP.from_gymnasium(env)
    stats = collect_dataset(env, mdp, behavior, episodes, seed=0)
    model = stats.empirical_mdp(mdp.horizon)
    n = stats.visits
    bonus = np.where(n > 0, 0.5 / np.sqrt(np.maximum(n, 1)), np.inf)
    one = torch.ones(1, dtype=torch.float64)
    q_ce, q_opt = (q.numpy() for q in in_context_plans(
        StatsBatch.from_statistics([stats]), torch.tensor([mdp.horizon]), torch.from_numpy(bonus),
        -2.0 * one, 3.0 * one))
    np.testing.assert_allclose(q_ce, backward_induction(model).Q[0], rtol=1e-12, atol=1e-9)
    expected = backward_induction(model, confidence=lambda h, v: bonus, bounds=(-2.0, 3.0)).Q[0]
    np.testing.assert_allclose(q_opt, expected, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("env_id, behavior, episodes", [
    ("FrozenLake-v1", "uniform", 30), ("CliffWalking-v1", "expert", 5)])
def test_a_hypothesis_with_no_offset_is_the_certainty_equivalent_model(env_id, behavior, episodes):
    """The posterior sampler's plan is built from the graph alone: with delta = 0 it must be the
    certainty-equivalent plan of the statistic (in the unit of the reward features)."""
    env = rlfm.envs.make(env_id)
    mdp = rlfm.TabularMDP.from_gymnasium(env)
    stats = collect_dataset(env, mdp, behavior, episodes, seed=0)
    g = _double(encode_statistics(stats, mdp.horizon))
    slot, _ = g.action_slots()
    q = sample_plan(g, torch.zeros(g.sa_x.shape[0], dtype=torch.float64)).q.reshape(-1)[slot]
    expected = backward_induction(stats.empirical_mdp(mdp.horizon)).Q[0].ravel()
    np.testing.assert_allclose(q.numpy() * float(g.reward_scale[0]), expected, rtol=1e-5,
                               atol=1e-5 * np.abs(expected).max())


def test_the_posterior_checkpoint_is_v3_plus_a_sampler():
    from rlfm.checkpoint import pretrained_path

    v3 = load_model(pretrained_path("rlfm-v3")).state_dict()
    posterior = load_model(pretrained_path("rlfm-v3-posterior")).state_dict()
    assert all(torch.equal(posterior[name], value) for name, value in v3.items())
    assert {name.split(".")[0] for name in set(posterior) - set(v3)} == {"sampler"}


@pytest.mark.parametrize("name, parent", [("rlfm-v4-deep", "rlfm-v3"),
                                          ("rlfm-v5", "rlfm-v3-posterior")])
def test_a_fine_tuned_checkpoint_records_its_config_file(name, parent):
    """rlfm-v4-deep (the deep prior) and rlfm-v5 (the offline-like contexts) record the training
    configuration of their configs/NAME.toml, started from `parent`, with its architecture;
    rlfm-v5 trains no posterior sampler, so its sampler is its parent's, bit for bit."""
    from pathlib import Path

    from rlfm.checkpoint import SAMPLER, pretrained_path, read_config
    from rlfm.train import RunConfig

    config = RunConfig.load(Path(__file__).parent.parent / "configs" / f"{name}.toml")
    shipped = read_config(pretrained_path(name))
    # read back as a config: a setting added since (precision) takes its default, what they ran
    recorded = RunConfig.from_dict(shipped["training"])
    assert json.loads(json.dumps(recorded.to_dict())) == json.loads(json.dumps(config.to_dict()))
    assert set(shipped["training"]["train"]) - {"precision"} == set(config.to_dict()["train"]) \
        - {"precision"}
    assert shipped["training"]["train"]["init"] == parent
    before, after = (load_model(pretrained_path(n)).state_dict() for n in (parent, name))
    assert {k: v.shape for k, v in before.items()} == {k: v.shape for k, v in after.items()}
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith(SAMPLER))


def test_posterior_actions_are_a_plan_drawn_by_the_seed():
    torch.manual_seed(0)
    model = RLFM(ModelConfig(width=16, steps=2, noise_dim=2))
    for p in model.sampler.reward_head[-1].parameters():
        torch.nn.init.normal_(p)            # hypotheses that differ with the noise
    _, stats = frozen_lake_stats()
    draw = lambda seed: model.posterior_actions(  # noqa: E731
        stats, 20, torch.Generator().manual_seed(seed))
    first = draw(1)
    assert first.shape == (20, 16) and first.min() >= 0 and first.max() < 4
    np.testing.assert_array_equal(first, draw(1))
    assert any((draw(seed) != first).any() for seed in range(2, 6))
    with pytest.raises(ValueError, match="no posterior sampler"):
        RLFM(ModelConfig(width=16, steps=2)).posterior_actions(stats, 20)


@pytest.mark.parametrize("spread", [1.0, 4.0])
def test_several_draws_make_the_pairwise_maximum_of_single_draws(spread):
    """`samples` draws run as one pass over copies of the graph: the hypothesis is the
    pairwise maximum of the rewards of the same draws made one at a time, its distance from
    their mean multiplied by `spread`."""
    torch.manual_seed(0)
    model = RLFM(ModelConfig(width=16, steps=2, noise_dim=2))
    for p in model.sampler.reward_head[-1].parameters():
        torch.nn.init.normal_(p)
    _, stats = frozen_lake_stats()
    g = model._graph(stats, 20)
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        deltas = torch.stack([model.sampler(g, model.sampler.draw_noise(g, gen))
                              for _ in range(3)])
    tie = torch.rand(g.n_states, 4, generator=gen).to(deltas)
    top, mean = deltas.amax(0), deltas.mean(0)
    hypothesis = top if spread == 1.0 else mean + spread * (top - mean)
    alone = sample_plan(g, hypothesis, greedy_actions=True, tie_noise=tie).actions.T.numpy()
    batched = model.posterior_actions(stats, 20, torch.Generator().manual_seed(4), samples=3,
                                      spread=spread)
    np.testing.assert_array_equal(batched, alone)


def test_segment_softmax():
    logits = torch.tensor([0.0, np.log(3.0), 5.0], dtype=torch.float32)
    out = segment_softmax(logits, torch.tensor([0, 0, 2]), 3)
    torch.testing.assert_close(out, torch.tensor([0.25, 0.75, 1.0]))


def test_attention_starts_as_the_empirical_transition_model():
    torch.manual_seed(0)
    model = RLFM(ModelConfig(width=16, steps=1))
    _, stats = frozen_lake_stats()
    g = encode_statistics(stats, 100)
    h_sa, h_s = model.sa_in(g.sa_x), model.state_in(g.state_x)
    alpha = model.blocks[0].attention(h_sa, h_s, g)
    rows, _, counts = stats.transition_triplets()
    p_hat = counts / stats.visits.ravel()[rows]
    torch.testing.assert_close(alpha.double(), torch.from_numpy(p_hat), atol=1e-5, rtol=1e-5)


def test_loss_is_cross_entropy_and_masks_other_mdps():
    items = [encode_statistics(Statistics(2, 2), 5), encode_statistics(Statistics(1, 3), 5)]
    items[0].policy_target = torch.tensor([1.0, 0.0, 0.5, 0.5])
    items[0].value_target = torch.zeros(2)
    items[0].state_terminal = torch.tensor([False, True])
    items[1].policy_target = torch.tensor([0.0, 0.0, 1.0])
    items[1].value_target = torch.zeros(1)
    items[1].state_terminal = torch.tensor([False])
    g = GraphBatch.concatenate(items)
    log_pi = torch.log(torch.tensor([0.5, 0.5, 0.9, 0.1, 1 / 3, 1 / 3, 1 / 3]))
    # graph 0: its terminal state 1 is left out, CE of state 0 = log 2; graph 1: log 3.
    expected = (np.log(2) + np.log(3)) / 2
    assert policy_loss(log_pi, g).item() == pytest.approx(expected, rel=1e-6)


def test_checkpoint_round_trip_and_refusals(tmp_path):
    model = RLFM(ModelConfig(width=8, steps=2))
    save_model(model, tmp_path / "m", metrics={"val": 1.0})
    back = load_model(tmp_path / "m.safetensors")
    for (k, v), (k2, v2) in zip(model.state_dict().items(), back.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)
    assert back.checkpoint_info["metrics"] == {"val": 1.0}
    weights = tmp_path / "m.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:-10])
    with pytest.raises(CheckpointError, match="checksum"):
        load_model(tmp_path / "m")
    weights.write_bytes(data)
    config = json.loads((tmp_path / "m.json").read_text())
    config["format_version"] = 99
    (tmp_path / "m.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="version 99"):
        load_model(tmp_path / "m")
    with pytest.raises(CheckpointError, match="no such file"):
        load_model(tmp_path / "absent")


def test_shipped_checkpoint_gives_a_policy_for_any_size():
    from rlfm.gridworld import grid_mdp

    model = rlfm.load_pretrained()
    assert model.checkpoint_info["steps"] > 0
    cases = [Statistics(1, 3)]
    for env_id in ("FrozenLake-v1", "Taxi-v3"):
        cases.append(_random_data(env_id))
    goal = (39, 49)  # a 2,000-state slippery grid
    grid = grid_mdp(np.ones((40, 50), bool), (0, 0), {goal: 1.0}, 400, slip=0.2,
                    terminal_cells=[goal])
    assert grid.n_states == 2000
    cases.append(collect_dataset(rlfm.envs.TabularEnv(grid), grid, "uniform", 3, seed=0))
    for stats in cases:
        pi = model.policy(stats, horizon=50)
        assert pi.shape == (stats.n_states, stats.n_actions)
        np.testing.assert_allclose(pi.sum(1), 1.0, atol=1e-5)


def _random_data(env_id):
    env = rlfm.envs.make(env_id)
    mdp = rlfm.TabularMDP.from_gymnasium(env)
    return collect_dataset(env, mdp, "uniform", 5, seed=0)
