"""The batched world: planning kernel, exact evaluation, statistics and simulation in batch,
each checked against the per-MDP reference implementations (rlfm.mdp, rlfm.stats)."""

import numpy as np
import pytest
import torch

from rlfm import envs
from rlfm.mdp import (
    ScoreReference,
    TabularMDP,
    backward_induction,
    evaluate_policy,
    policy_values,
)
from rlfm.priors import load_config, sample_batch, sample_mdp
from rlfm.stats import Statistics
from rlfm.world import (
    Actor,
    MDPBatch,
    Observations,
    StatsBatch,
    online,
    optimistic_problem,
    posterior_problem,
    run_learners,
    simulate,
    targets,
)

SUITE = ["FrozenLake-v1", "CliffWalking-v1", "rlfm/RiverSwim-v0", "rlfm/DeepSea-v0",
         "rlfm/NChain-v0", "rlfm/FourRooms-v0", "rlfm/Garnet20-v0"]


def prior_mdps(n, seed=0):
    rng = np.random.default_rng(seed)
    return [sample_mdp(rng) for _ in range(n)]


@pytest.fixture(scope="module")
def mixed():
    """Prior MDPs of every size and horizon, plus suite MDPs, in one batch (in the batch's own
    order: longest horizon first)."""
    mdps = prior_mdps(24) + [envs.load_mdp(e) for e in SUITE]
    world = MDPBatch.from_mdps(mdps)
    return [mdps[i] for i in world.source.tolist()], world


def part(world, i):
    """The packed rows of MDP i."""
    lo = int(world.first_state[i])
    return slice(lo, lo + int(world.n_states[i]))


def test_round_trip_to_tabular_mdp(mixed):
    mdps, world = mixed
    for i, mdp in enumerate(mdps):
        back = world.to_mdp(i)
        np.testing.assert_allclose(back.P, mdp.P, atol=1e-12)
        np.testing.assert_array_equal(back.R, mdp.R)
        np.testing.assert_array_equal(back.terminal, mdp.terminal)
        assert back.horizon == mdp.horizon


def test_solve_equals_exact_backward_induction(mixed):
    mdps, world = mixed
    plan = world.solve(greedy_actions=True)
    assert (world.horizon[1:] <= world.horizon[:-1]).all()
    for i, mdp in enumerate(mdps):
        A, H = mdp.n_actions, mdp.horizon
        exact = backward_induction(mdp)
        np.testing.assert_allclose(plan.q[part(world, i), :A].numpy(), exact.Q[0], atol=1e-6,
                                   rtol=1e-9)
        np.testing.assert_allclose(plan.v[part(world, i)].numpy(), exact.V[0], atol=1e-6,
                                   rtol=1e-9)
        # the greedy actions of every step are optimal at that step
        acts = plan.actions[part(world, i), :H].numpy().T
        chosen = np.take_along_axis(exact.Q, acts[..., None], axis=2)[..., 0]
        np.testing.assert_allclose(chosen, exact.Q.max(axis=2), atol=1e-6, rtol=1e-9)


def test_evaluate_equals_exact_policy_evaluation(mixed):
    mdps, world = mixed
    rng = np.random.default_rng(1)
    N, A, _ = world.successors.shape
    Hmax = int(world.horizon.max())
    mask = world.action_mask
    stationary = torch.softmax(torch.as_tensor(rng.normal(size=(N, A)))
                               .masked_fill(~mask, -torch.inf), -1)
    steps = torch.softmax(torch.as_tensor(rng.normal(size=(N, Hmax, A)))
                          .masked_fill(~mask[:, None], -torch.inf), -1)
    J, J_steps = world.evaluate(stationary), world.evaluate(steps)
    for i, mdp in enumerate(mdps):
        Ab, H = mdp.n_actions, mdp.horizon
        pi = stationary[part(world, i), :Ab].numpy()
        assert J[i].item() == pytest.approx(evaluate_policy(mdp, pi), abs=1e-6, rel=1e-9)
        pi_h = steps[part(world, i), :H, :Ab].numpy().transpose(1, 0, 2)
        assert J_steps[i].item() == pytest.approx(float(mdp.initial @ policy_values(mdp, pi_h)[0]),
                                                  abs=1e-6, rel=1e-9)


def test_evaluate_is_differentiable_in_the_policy():
    mdp = envs.load_mdp("rlfm/RiverSwim-v0")
    world = MDPBatch.from_mdps([mdp])
    logits = torch.zeros(world.R.shape, dtype=torch.float64, requires_grad=True)
    J = world.evaluate(torch.softmax(logits, -1))
    J.sum().backward()
    # finite differences on one logit
    eps = 1e-6
    bumped = logits.detach().clone()
    bumped[0, 0] += eps
    fd = (world.evaluate(torch.softmax(bumped, -1)) - J.detach()) / eps
    assert logits.grad[0, 0].item() == pytest.approx(fd.item(), rel=1e-4, abs=1e-8)


def reference_targets(solution, tau_rel):
    """The targets of one MDP, written out with numpy from its exact solution."""
    Q, V = solution.Q[0], solution.V[0]
    scale = Q.max() - Q.min()
    logits = (Q - Q.max(axis=1, keepdims=True)) / (tau_rel * scale + 1e-12)
    policy = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return dict(policy_target=policy, value_target=(V - V.min()) / (scale if scale > 0 else 1.0),
                value_scale=scale)


def test_targets_are_the_boltzmann_policy_of_the_optimum(mixed):
    mdps, world = mixed
    out = targets(world, tau_rel=0.03)
    for i, mdp in enumerate(mdps):
        ref = reference_targets(backward_induction(mdp), 0.03)
        A = mdp.n_actions
        np.testing.assert_allclose(out["policy"][part(world, i), :A].numpy(),
                                   ref["policy_target"], atol=1e-6)
        np.testing.assert_allclose(out["value"][part(world, i)].numpy(), ref["value_target"],
                                   atol=1e-6)
        assert out["value_scale"][i].item() == pytest.approx(ref["value_scale"], abs=1e-6)


def test_statistics_round_trip():
    rng = np.random.default_rng(3)
    stats = []
    for S, A, n in ((5, 3, 40), (1, 2, 7), (12, 4, 0), (30, 2, 300)):
        s, a, s2 = rng.integers(S, size=n), rng.integers(A, size=n), rng.integers(S, size=n)
        stats.append(Statistics.from_transitions(S, A, s, a, rng.normal(size=n), s2,
                                                 rng.random(n) < 0.1))
    batch = StatsBatch.from_statistics(stats)
    for i, st in enumerate(stats):
        assert batch.to_statistics(i) == st


def _recorded_statistics(record, world, b):
    lo = int(world.first_state[b])

    def cat(name):
        x = torch.cat([getattr(r, name)[r.mdp == b] for r in record]).numpy()
        return x - lo if name in ("states", "next_states") else x

    return Statistics.from_transitions(int(world.n_states[b]), int(world.n_actions[b]),
                                       cat("states"), cat("actions"), cat("rewards"),
                                       cat("next_states"), cat("terminated"))


def test_simulated_statistic_equals_statistic_of_the_same_transitions(mixed):
    _, world = mixed
    gen = torch.Generator().manual_seed(0)
    stats = StatsBatch.empty(world)
    episodes = torch.arange(world.batch_size) % 7
    record = []
    observe = Observations(use_entry=world.has_entry, noise=torch.full((world.batch_size,), 0.1,
                                                                        dtype=torch.float64))
    simulate(world, stats, episodes, Actor(), gen, observe, record=record)
    for b in range(world.batch_size):
        assert stats.to_statistics(b) == _recorded_statistics(record, world, b)
        ended = sum(int(((r.mdp == b) & r.terminated).sum()) for r in record)
        assert ended <= int(episodes[b])


def test_buckets_simulated_together_each_get_the_statistic_of_their_transitions():
    """Several batches of different padding (actions, successors) in one lockstep simulation:
    each bucket's statistic is that of its own recorded transitions (global indices: the
    buckets end to end), and the start states and transitions stay in their own MDP."""
    mdps = prior_mdps(30, seed=11)
    worlds = [MDPBatch.from_mdps(mdps[:10]), MDPBatch.from_mdps(mdps[10:]),
              MDPBatch.from_mdps([envs.load_mdp("FrozenLake-v1")])]
    assert len({w.successors.shape[1:] for w in worlds}) == 3
    stats = [StatsBatch.empty(w) for w in worlds]
    episodes = torch.arange(sum(w.batch_size for w in worlds)) % 5 + 1
    observe = [Observations(use_entry=w.has_entry, noise=torch.full((w.batch_size,), 0.1,
                                                                     dtype=torch.float64))
               for w in worlds]
    record = []
    simulate(worlds, stats, episodes, Actor(), torch.Generator().manual_seed(0), observe,
             record=record)
    mdp_offset = state_offset = 0
    for w, st in zip(worlds, stats, strict=True):
        for b in range(w.batch_size):
            lo = state_offset + int(w.first_state[b])
            mine = [(r, r.mdp == mdp_offset + b) for r in record]
            got = Statistics.from_transitions(
                int(w.n_states[b]), int(w.n_actions[b]),
                *[torch.cat([getattr(r, name)[m] for r, m in mine]).numpy() - (
                    lo if name in ("states", "next_states") else 0)
                  for name in ("states", "actions", "rewards", "next_states", "terminated")])
            assert st.to_statistics(b) == got
            assert int(st.visits[part(w, b)].sum()) >= int(episodes[mdp_offset + b])
        mdp_offset, state_offset = mdp_offset + w.batch_size, state_offset + w.n_total_states


def test_concatenated_planning_problems_give_each_problem_its_own_plan():
    """Problems of buckets with different actions and successors, solved as one (an edge list,
    actions padded): the same greedy actions as each solved alone."""
    from rlfm.world import PlanningProblem

    problems = []
    for k, mdps in enumerate((prior_mdps(8, seed=1), prior_mdps(8, seed=2),
                              [envs.load_mdp("rlfm/RiverSwim-v0")])):
        world = MDPBatch.from_mdps(mdps)
        stats = StatsBatch.empty(world)
        gen = torch.Generator().manual_seed(k)
        simulate(world, stats, torch.full((world.batch_size,), 3), Actor(), gen)
        ones = torch.ones(world.batch_size, dtype=torch.float64)
        problems.append(optimistic_problem(stats, world.horizon, 0.5 * ones, 0 * ones, ones, gen))
    alone = [p.greedy() for p in problems]
    together = PlanningProblem.concatenate(problems).greedy()
    start = 0
    for p, actions in zip(problems, alone, strict=True):
        n = p.R.shape[0]
        torch.testing.assert_close(together[start:start + n, :actions.shape[1]], actions,
                                   rtol=0, atol=0)
        start += n


def test_episodes_respect_horizon_and_terminal_states(mixed):
    mdps, world = mixed
    gen = torch.Generator().manual_seed(1)
    stats = StatsBatch.empty(world)
    episodes = torch.full((world.batch_size,), 5)
    record = []
    simulate(world, stats, episodes, Actor(), gen, record=record)
    for b, mdp in enumerate(mdps):
        n = stats.visits[part(world, b)].sum().item()
        assert n <= 5 * mdp.horizon
        st = stats.to_statistics(b)
        # transitions only from non-terminal states and only along true transitions
        rows, cols, _ = st.transition_triplets()
        s, a = np.divmod(rows, mdp.n_actions)
        assert not mdp.terminal[s].any()
        assert (mdp.P[s, a, cols] > 0).all()
        # an episode that never terminates lasts exactly H steps
        if not mdp.terminal.any():
            assert n == 5 * mdp.horizon


def test_a_compact_statistic_is_laid_out_as_the_packed_statistics(mixed):
    """Slots of the observed next states only, as packing the per-MDP statistics gives."""
    mdps, world = mixed
    stats = StatsBatch.empty(world)
    simulate(world, stats, torch.full((world.batch_size,), 3), Actor(),
             torch.Generator().manual_seed(4))
    compact = stats.compact()
    packed = StatsBatch.from_statistics([stats.to_statistics(b) for b in range(len(mdps))])
    assert compact.counts.shape[2] < stats.counts.shape[2]
    for name in ("successors", "counts", "slots", "visits", "reward_sum", "terminations"):
        torch.testing.assert_close(getattr(compact, name), getattr(packed, name), rtol=0, atol=0)


def test_empirical_next_state_frequencies_converge():
    mdp = envs.load_mdp("FrozenLake-v1")
    world = MDPBatch.from_mdps([mdp])
    stats = StatsBatch.empty(world)
    simulate(world, stats, torch.tensor([4000]), Actor(), torch.Generator().manual_seed(2))
    st = stats.to_statistics(0)
    P_hat = st.empirical_mdp(mdp.horizon).P
    visited = st.visits > 500
    assert visited.sum() > 10
    np.testing.assert_allclose(P_hat[visited], mdp.P[visited], atol=0.06)


def test_simulation_is_deterministic_per_seed(mixed):
    _, world = mixed

    def run(seed):
        stats = StatsBatch.empty(world)
        simulate(world, stats, torch.full((world.batch_size,), 3), Actor(),
                 torch.Generator().manual_seed(seed))
        return stats.counts

    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))


def test_policy_tables_are_followed():
    mdp = envs.load_mdp("rlfm/DeepSea-v0")
    world = MDPBatch.from_mdps([mdp])
    optimal = world.solve(greedy_actions=True).actions     # (N, H)
    stats = StatsBatch.empty(world)
    simulate(world, stats, torch.tensor([3]), Actor(optimal), torch.Generator().manual_seed(0))
    # DeepSea is deterministic: the optimal policy earns the optimal return every episode
    J = float(mdp.initial @ backward_induction(mdp).V[0])
    assert stats.reward_sum.sum().item() == pytest.approx(3 * J)


def _learn(world, episodes, problem, seed=0, every=float("inf")):
    """Run one adaptive learner per MDP of `world` (problem(stats, mdps) -> PlanningProblem),
    replanning after each of its first `every` episodes, then after rounds growing by half."""
    stats = StatsBatch.empty(world)
    gen = torch.Generator().manual_seed(seed)
    B = world.batch_size
    table = torch.zeros(world.n_total_states, int(world.horizon.max()), dtype=torch.int64)
    run_learners(world, stats, torch.full((B,), episodes), Actor(table),
                 lambda _, mdps, states: problem(stats.select(mdps), mdps, gen), gen,
                 adaptive=torch.ones(B, dtype=torch.bool), replan_every=torch.full((B,), every),
                 replan_growth=torch.full((B,), 0.5, dtype=torch.float64))
    return stats


def test_optimistic_learner_explores_deep_sea():
    """The optimistic behaviour finds DeepSea's far reward (uniform actions almost never do)."""
    mdp = envs.load_mdp("rlfm/DeepSea-v0")
    world = MDPBatch.from_mdps([mdp])
    one = torch.ones(1, dtype=torch.float64)
    stats = _learn(world, 60, lambda st, mdps, gen: optimistic_problem(
        st, world.horizon[mdps], 0.3 * one, 0 * one, one, gen))
    assert stats.visits.sum().item() == 60 * mdp.horizon
    assert stats.reward_sum.max().item() > 0


def test_posterior_sampling_learner_reaches_the_far_end_of_river_swim():
    mdp = envs.load_mdp("rlfm/RiverSwim-v0")
    world = MDPBatch.from_mdps([mdp] * 4)
    stats = _learn(world, 40, lambda st, mdps, gen: posterior_problem(st, world.horizon[mdps],
                                                                       gen))
    assert stats.visits.sum().item() == 4 * 40 * mdp.horizon
    big = float(mdp.R.max())
    per_mdp = [stats.reward_sum[part(world, i)].max().item() for i in range(4)]
    assert min(per_mdp) >= big


def test_features_of_a_batch_equal_features_of_each_statistic(mixed):
    """Training featurises a world batch, inference one Statistics: the same numbers."""
    from rlfm.features import GraphBatch, encode, encode_statistics

    mdps, world = mixed
    stats = StatsBatch.empty(world)
    gen = torch.Generator().manual_seed(4)
    observe = Observations(use_entry=world.has_entry,
                           noise=torch.full((world.batch_size,), 0.05, dtype=torch.float64))
    simulate(world, stats, torch.arange(world.batch_size) % 6, Actor(), gen, observe)
    single = [stats.to_statistics(i) for i in range(world.batch_size)]
    expected = GraphBatch.concatenate([encode_statistics(st, mdp.horizon)
                                       for st, mdp in zip(single, mdps, strict=True)])
    for batch in (stats, StatsBatch.from_statistics(single)):
        got = encode(batch, world.horizon)
        for name in ("sa_x", "sa_state", "state_x", "state_graph", "edge_sa", "edge_next",
                     "edge_log_p", "edge_x", "graph_states", "graph_actions"):
            torch.testing.assert_close(getattr(got, name), getattr(expected, name),
                                       atol=1e-6, rtol=1e-5, msg=name)


def test_episodes_stay_in_their_own_mdp_in_float32():
    """Many MDPs in one float32 batch: start states and transitions never cross into another
    MDP (global indices grow large; sampling must not lose precision)."""
    mdps = prior_mdps(12, seed=7) * 60
    world = MDPBatch.from_mdps(mdps, dtype=torch.float32)
    stats = StatsBatch.empty(world)
    record = []
    simulate(world, stats, torch.full((world.batch_size,), 3), Actor(),
             torch.Generator().manual_seed(0), record=record)
    for r in record:
        assert torch.equal(world.state_mdp[r.states], r.mdp)
        assert torch.equal(world.state_mdp[r.next_states], r.mdp)


def test_kernel_solves_batches_in_any_order_of_horizons():
    """States given longest horizon last are reordered inside the kernel: same answer."""
    from rlfm.planning import backward_induction as kernel

    short, long = envs.load_mdp("rlfm/RiverSwim-v0").with_horizon(5), envs.load_mdp("FrozenLake-v1")
    a, b = MDPBatch.from_mdps([short]), MDPBatch.from_mdps([long])
    N_a = a.n_total_states
    K = max(a.successors.shape[2], b.successors.shape[2])
    A = max(a.R.shape[1], b.R.shape[1])

    def pad(x, value=0):   # to (N, A, K) or (N, A)
        shape = (x.shape[0], A, K)[:x.dim()]
        out = torch.full(shape, value, dtype=x.dtype)
        out[tuple(slice(0, n) for n in x.shape)] = x
        return out

    successors = torch.cat([pad(a.successors), pad(b.successors) + N_a])
    probs = torch.cat([pad(a.probs), pad(b.probs)])
    R = torch.cat([pad(a.R), pad(b.R)])
    mask = torch.cat([pad(a.action_mask, False), pad(b.action_mask, False)])
    state_mdp = torch.cat([a.state_mdp, b.state_mdp + 1])
    plan = kernel(successors, probs, R, state_mdp, torch.tensor([5, long.horizon]),
                  action_mask=mask, greedy_actions=True)
    for world, rows in ((a, slice(0, N_a)), (b, slice(N_a, None))):
        alone = world.solve(greedy_actions=True)
        n_a = world.R.shape[1]
        torch.testing.assert_close(plan.q[rows, :n_a], alone.q)
        torch.testing.assert_close(plan.v[rows], alone.v)
        H = int(world.horizon[0])
        assert torch.equal(plan.actions[rows, :H], alone.actions)


def test_terminal_states_pass_no_gradient_with_value_bounds():
    """A terminal state's value is 0 whatever its reward: with value bounds too, no gradient may
    reach its reward (nor, through it, the rewards of states only it leads to)."""
    from rlfm.planning import backward_induction as kernel

    def solve(R):   # 0 -> 1 (terminal) -> 2, every reward 0: values sit on the terminal's bound
        return kernel(torch.tensor([1, 2, 2]).view(3, 1, 1),
                      torch.ones(3, 1, 1, dtype=torch.float64), R, torch.zeros(3, dtype=torch.long),
                      torch.tensor([4]), terminal=torch.tensor([False, True, False]),
                      bounds=(torch.tensor([-1.0]), torch.tensor([1.0])))

    R = torch.zeros(3, 1, dtype=torch.float64, requires_grad=True)
    plan = solve(R)
    plan.v[0].backward()
    assert R.grad.tolist() == [[1.0], [0.0], [0.0]]
    with torch.no_grad():    # the same values by the cheaper path taken without gradients
        assert torch.equal(solve(R.detach()).q, plan.q.detach())


@pytest.mark.parametrize("seed", range(4))
def test_kernel_gives_the_same_numbers_with_and_without_gradients(seed):
    """Without gradients the kernel updates its step in place and rewrites one tensor of
    bounds; with them, every step keeps its own tensors: the numbers must be identical."""
    from rlfm.planning import backward_induction as kernel

    gen = torch.Generator().manual_seed(seed)
    sizes, A, K = [3, 5, 2, 4], 3, 2
    state_mdp = torch.repeat_interleave(torch.arange(4), torch.tensor(sizes))
    first = torch.tensor([0, 3, 8, 10])[state_mdp]
    span = torch.tensor(sizes)[state_mdp]
    successors = first[:, None, None] + (torch.rand(14, A, K, generator=gen) * span[:, None, None]).long()
    probs = torch.rand(14, A, K, generator=gen, dtype=torch.float64)
    probs = probs / probs.sum(-1, keepdim=True)
    R = torch.randn(14, A, generator=gen, dtype=torch.float64)
    bonus = torch.rand(14, A, generator=gen, dtype=torch.float64).masked_fill(
        torch.rand(14, A, generator=gen) < 0.2, torch.inf)
    kwargs = dict(gamma=torch.tensor([1.0, 0.9, 0.5, 1.0], dtype=torch.float64), bonus=bonus,
                  bounds=(torch.full((4,), -2.0, dtype=torch.float64),
                          torch.full((4,), 1.5, dtype=torch.float64)),
                  terminal=torch.rand(14, generator=gen) < 0.2)
    horizon = torch.tensor([7, 3, 9, 1])
    with torch.no_grad():
        fast = kernel(successors, probs, R, state_mdp, horizon, **kwargs)
    slow = kernel(successors, probs, R.clone().requires_grad_(True), state_mdp, horizon, **kwargs)
    assert torch.equal(fast.q, slow.q.detach()) and torch.equal(fast.v, slow.v.detach())
    for name in ("probs", "gamma"):   # a gradient through any input takes the second path
        wanted = probs.clone().requires_grad_(True) if name == "probs" else \
            kwargs["gamma"].clone().requires_grad_(True)
        args = {**kwargs, "gamma": wanted} if name == "gamma" else kwargs
        plan = kernel(successors, wanted if name == "probs" else probs, R, state_mdp, horizon,
                      **args)
        plan.v.sum().backward()
        assert torch.equal(plan.v.detach(), fast.v) and wanted.grad is not None


def test_a_world_batch_splits_into_steps_of_whole_graphs():
    from rlfm.features import GraphBatch

    graph = sample_batch(0, 0, 12).graph
    parts = graph.split(3)
    assert [p.n_graphs for p in parts] == [4, 4, 4]
    for j, part in enumerate(parts):
        for i, g in enumerate(range(j, 12, 3)):      # graph i of part j is graph g of the batch
            whole = graph.select(torch.tensor([g]))
            alone = part.select(torch.tensor([i]))
            for name in ("sa_x", "sa_state", "state_x", "edge_sa", "edge_next", "edge_x",
                         "policy_target", "value_target", "state_terminal", "graph_states"):
                assert torch.equal(getattr(whole, name), getattr(alone, name)), name
    back = GraphBatch.concatenate(parts)
    assert back.n_graphs == 12 and back.sa_x.shape == graph.sa_x.shape


def test_optimistic_learner_breaks_ties_at_random_in_float32():
    """With no data every action sits at the same optimistic cap: the learner must pick one at
    random (not always the first), whatever the dtype."""
    bandit = sample_mdp(np.random.default_rng(0), load_config().only("bandit"))
    world = MDPBatch.from_mdps([bandit] * 400, dtype=torch.float32)
    stats = StatsBatch.empty(world)
    B = world.batch_size
    one = torch.ones(B, dtype=torch.float32)
    actions = optimistic_problem(stats, world.horizon, 0.3 * one, 0 * one, one,
                                 torch.Generator().manual_seed(0)).greedy()[:, 0]
    counts = torch.bincount(actions, minlength=bandit.n_actions)
    assert (counts > 400 / bandit.n_actions / 2).all(), counts


def test_actors_of_every_kind_are_followed(mixed):
    """Per-state probabilities (a network's policy, sampled every step), stationary actions and
    epsilon: the simulator takes exactly what it is told."""
    _, world = mixed
    N, A, _ = world.successors.shape
    last = world.n_actions[world.state_mdp] - 1                 # the last real action
    probs = torch.nn.functional.one_hot(last, A).double()
    stationary = torch.zeros(N, dtype=torch.int64)
    for actor, expected in ((Actor(probs), last), (Actor(stationary), stationary)):
        stats = StatsBatch.empty(world)
        simulate(world, stats, torch.full((world.batch_size,), 2), actor,
                 torch.Generator().manual_seed(0))
        visited = stats.visits > 0
        s, a = visited.nonzero(as_tuple=True)
        assert s.numel() > 0 and torch.equal(a, expected[s])
    stats = StatsBatch.empty(world)
    simulate(world, stats, torch.full((world.batch_size,), 20), Actor(stationary,
             torch.ones(world.batch_size)), torch.Generator().manual_seed(0))
    assert (stats.visits[:, 1:].sum() > 0) and (stats.visits[~world.action_mask] == 0).all()


def test_edge_list_transitions_plan_as_the_padded_slots(mixed):
    """The kernel on an `Edges` list (states in another order, so it reorders them) gives the
    plan it gives on padded slots."""
    from rlfm.planning import Edges
    from rlfm.planning import backward_induction as kernel

    _, world = mixed
    N, A, _ = world.successors.shape
    real = world.probs > 0
    rows = torch.arange(N * A).view(N, A, 1).expand_as(real)[real]
    order = torch.randperm(N, generator=torch.Generator().manual_seed(0))
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(N)
    edges = Edges(rows, world.successors[real], world.probs[real]).reorder(order, inverse, A)
    mine = kernel(edges, None, world.R[order], world.state_mdp[order], world.horizon,
                  action_mask=world.action_mask[order], greedy_actions=True)
    ref = world.solve(greedy_actions=True)
    torch.testing.assert_close(mine.q, ref.q[order])
    torch.testing.assert_close(mine.v, ref.v[order])
    assert torch.equal(mine.actions, ref.actions[order])


@pytest.mark.parametrize("discounted", [False, True])
def test_every_expectation_path_gives_the_same_plan(mixed, discounted):
    """The kernel takes E[V(s')] by a sparse matrix on CPU, and by gathers where a gradient
    through the probabilities is asked for (as on other devices), from padded slots or from an
    `Edges` list: the four give one plan, with and without a discount."""
    from rlfm.planning import Edges
    from rlfm.planning import backward_induction as kernel

    _, world = mixed
    N, A, _ = world.successors.shape
    real = world.probs > 0
    rows = torch.arange(N * A).view(N, A, 1).expand_as(real)[real]
    gamma = torch.linspace(0.5, 0.99, world.batch_size, dtype=torch.float64) if discounted \
        else None
    plans = []
    for listed in (False, True):
        for gradient in (False, True):
            probs = world.probs.clone().requires_grad_(gradient)
            transitions = (Edges(rows, world.successors[real], probs[real]), None) if listed \
                else (world.successors, probs)
            plan = kernel(*transitions, world.R, world.state_mdp, world.horizon, gamma=gamma,
                          action_mask=world.action_mask, terminal=world.terminal)
            plans.append(plan)
    for plan in plans[1:]:
        torch.testing.assert_close(plan.q.detach(), plans[0].q, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(plan.v.detach(), plans[0].v, rtol=1e-12, atol=1e-12)


def test_training_batches_score_policies_exactly_in_their_true_mdps():
    """A training batch carries its true MDPs: J of a policy given on the graph's nodes equals
    the exact evaluation, in the whole batch and in every part it splits into."""
    from rlfm.features import GraphBatch

    batch = sample_batch(0, 0, 16, dtype=torch.float64)
    graph = batch.graph
    rng = np.random.default_rng(0)
    policies = [torch.softmax(torch.as_tensor(rng.normal(size=c.world.R.shape))
                              .masked_fill(~c.world.action_mask, -torch.inf), -1)
                for c in batch.chunks]
    exact = torch.cat([torch.tensor([evaluate_policy(c.world.to_mdp(i),
                                                     pi[part(c.world, i), :int(c.world.n_actions[i])]
                                                     .numpy())
                                     for i in range(c.world.batch_size)], dtype=torch.float64)
                       for c, pi in zip(batch.chunks, policies, strict=True)])
    nodes = torch.cat([pi[c.world.action_mask] for c, pi in zip(batch.chunks, policies,
                                                                    strict=True)])
    torch.testing.assert_close(graph.true_return(nodes), exact)
    score, scored = graph.true_score(nodes)
    true = graph.true_mdp
    gap = true.optimal_return - true.uniform_return
    torch.testing.assert_close(score[scored], ((exact - true.uniform_return) / gap)[scored])
    parts = graph.split(3)
    for j, p in enumerate(parts):
        keep = torch.zeros(graph.n_graphs, dtype=torch.bool)
        keep[j::3] = True
        mine = nodes[keep[graph.state_graph][graph.sa_state]]
        torch.testing.assert_close(p.true_return(mine), exact[keep])
    back = GraphBatch.concatenate(parts)
    order = torch.cat([torch.arange(graph.n_graphs)[j::3] for j in range(3)])
    keep_nodes = torch.cat([nodes[(graph.state_graph[graph.sa_state] % 3) == j]
                            for j in range(3)])
    torch.testing.assert_close(back.true_return(keep_nodes), exact[order])


def test_mixed_offline_contexts_pool_two_epsilon_greedy_behaviours(mixed):
    """A `mixed` context (off in the default prior) pools episodes of two epsilon-greedy
    behaviours around the optimum: with both epsilons 0 it takes optimal actions only, with
    epsilons up to 1 it also tries others."""
    from rlfm.priors.batch import sample_contexts

    _, world = mixed
    plan = world.solve(greedy_actions=True)
    optimal = torch.zeros(world.R.shape, dtype=torch.bool)
    for h in range(plan.actions.shape[1]):
        optimal[torch.arange(world.n_total_states), plan.actions[:, h]] = True
    base = load_config().context
    for top, only_optimal in ((0.0, True), (1.0, False)):
        context = {**base, "zero_data_prob": 0.0, "behaviours": {"mixed": 1.0},
                   "mixed": {"epsilon": [0.0, top]}}
        [(stats, kinds, episodes)] = sample_contexts(np.random.default_rng(0),
                                                     torch.Generator().manual_seed(0), [world],
                                                     context, [plan.actions])
        assert set(kinds) == {"mixed"} and (episodes >= 1).all()
        visited = stats.visits > 0
        assert visited.any() and bool((visited & ~optimal).any()) != only_optimal


def test_online_scores_what_the_learner_reports_after_every_episode(mixed):
    """One episode of every MDP per round under the learner's acting probabilities; after
    each, the exact return of the policy it reports from the statistic so far."""
    mdps, world = mixed
    seen, reports = [], []

    def learner(stats):
        visits = stats.visits.clone()
        seen.append(visits)
        # a report that depends on the data: the least tried action of each state
        least = visits.masked_fill(~world.action_mask, torch.inf).argmin(-1)
        report = torch.nn.functional.one_hot(least, world.R.shape[1]).double()
        reports.append(report)
        return world.uniform_policy(), report

    returns = online(world, 3, learner, torch.Generator().manual_seed(0))
    assert returns.shape == (world.batch_size, 3) and len(seen) == 4
    assert online(world, 0, learner, torch.Generator()).shape == (world.batch_size, 0)
    assert float(seen[0].sum()) == 0
    for b, mdp in enumerate(mdps):
        rows = part(world, b)
        for k in range(3):
            steps = float(seen[k + 1][rows].sum() - seen[k][rows].sum())
            assert 1 <= steps <= mdp.horizon       # one episode more per round
            pi = reports[k + 1][rows, :mdp.n_actions].numpy()
            assert returns[b, k].item() == pytest.approx(evaluate_policy(mdp, pi), abs=1e-9)
    scores = world.normalise(returns)
    for b, mdp in enumerate(mdps):
        ref = ScoreReference.of(mdp)
        np.testing.assert_allclose(scores[b].numpy(),
                                   [ref.normalise(float(j)) for j in returns[b]], atol=1e-9)


def test_online_acts_by_the_learners_probabilities(mixed):
    """Every step takes an action the acting probabilities allow (here the last real action of
    each state's MDP, with certainty)."""
    world = mixed[1]
    last = torch.nn.functional.one_hot(world.n_actions[world.state_mdp] - 1,
                                       world.R.shape[1]).double()
    visits = []

    def learner(stats):
        visits.append(stats.visits.clone())
        return last, last

    online(world, 2, learner, torch.Generator().manual_seed(2))
    assert float(visits[-1].sum()) > 0
    assert float((visits[-1] * (1 - last)).sum()) == 0


def test_normalised_scores_of_mdps_where_every_policy_is_optimal_are_1():
    """In float32 too: rounding must not pass for a gap between J* and J(uniform)."""
    rng = np.random.default_rng(3)
    mdps = []
    for _ in range(20):
        P = rng.dirichlet(np.ones(6), size=(6, 3))
        mdps.append(TabularMDP(P, np.full((6, 3), rng.uniform(0.1, 10)), np.eye(6)[0], 30))
    for dtype in (torch.float64, torch.float32):
        world = MDPBatch.from_mdps(mdps, dtype=dtype)
        J = world.evaluate(world.uniform_policy())
        assert (world.normalise(J) == 1).all()
