"""Training examples in batch: MDPs from the prior, contexts simulated in the batched world
(`rlfm.world`), their statistics, the model's input and the targets, all at once.

    batch = sample_batch(seed=0, index=0, batch_size=256)   # a PriorBatch
    batch.graph                                             # packed GraphBatch with targets

A batch of MDPs of mixed sizes is split into size buckets (`buckets`), so that padding to the
largest MDP of a bucket costs little; each bucket is one `Chunk` (an MDPBatch, the StatsBatch of
its contexts, the targets) and the graphs of all chunks are packed into one GraphBatch. The
contexts of all buckets are simulated, and their learners planned, together (one step of the
simulation, one backward induction per round, for the whole batch).

Context behaviours (weights `[context.behaviours]` of the prior):
  uniform          uniformly random actions;
  epsilon_greedy   epsilon-greedy around the true optimal policy (Q*_h), epsilon ~ U(epsilon);
  fixed_policy     one random deterministic stationary policy;
  optimistic       an optimistic certainty-equivalent learner (`world.optimistic_problem`), acting
                   epsilon-greedily with probability epsilon_prob, replanning after each of
                   its first `replan_every_episode` episodes and then after growing rounds;
  psrl             posterior sampling (`world.posterior_problem`), at most `max_episodes`
                   episodes, replanning on the same kind of schedule;
  mixed            an offline dataset pooled from two epsilon-greedy behaviours around the
                   optimal policy, each epsilon ~ U(epsilon), a share ~ U(0, 1) of the episodes
                   from the first.
Example b of a batch depends on the seed, the batch index, the batch size and the bucketing
(`step_overhead`, by default the device's) only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rlfm.features import GraphBatch, TrueMDP, encode
from rlfm.mdp import TabularMDP
from rlfm.planning import one_thread
from rlfm.priors.config import PriorConfig, load_config
from rlfm.priors.sampler import sample_mdp
from rlfm.world import (
    Actor,
    MDPBatch,
    Observations,
    StatsBatch,
    optimistic_problem,
    per_mdp_max,
    per_mdp_min,
    posterior_problem,
    run_learners,
    simulate,
    targets,
)

# The fixed cost of one time step of a bucket, in cells, by device type: launching a step's
# operations costs far more cells' worth on a GPU, so buckets there are fewer and larger.
STEP_OVERHEAD = {"cpu": 100_000, "cuda": 10_000_000}


@dataclass
class Chunk:
    """A bucket of a PriorBatch: its MDPs, the statistic of their contexts, the targets
    (`world.targets`), each context's behaviour and number of episodes, and each MDP's index
    in the batch."""

    world: MDPBatch
    stats: StatsBatch
    targets: dict
    behaviours: list
    episodes: torch.Tensor
    index: torch.Tensor


@dataclass
class PriorBatch:
    chunks: list
    graph: GraphBatch

    @property
    def batch_size(self) -> int:
        return self.graph.n_graphs


def example_generators(seed: int, index: int, device=None):
    """The numpy and torch generators of batch `index` of the stream of `seed`."""
    sequence = np.random.SeedSequence(seed, spawn_key=(index,))
    torch_seed = int(sequence.spawn(1)[0].generate_state(1, np.uint64)[0] >> np.uint64(1))
    gen = torch.Generator(device=device or "cpu").manual_seed(torch_seed)
    return np.random.default_rng(sequence), gen


def buckets(mdps: list[TabularMDP], step_overhead: int = STEP_OVERHEAD["cpu"]) -> list[list[int]]:
    """Indices of `mdps` grouped into buckets, each planned and simulated as one padded batch.

    Buckets are packed (`world.MDPBatch`): only actions and successors per pair are padded,
    and a plan solves every MDP over its own horizon, so a bucket costs sum(S x H) x (its
    largest actions x successors per pair) cells, plus a fixed `step_overhead` per step of its
    longest horizon (the cost of launching the operations). MDPs sorted by size join the
    current bucket while that costs less than opening a new one."""
    dims = np.array([[m.n_actions, _max_successors(m) + 1] for m in mdps])
    weight = np.array([m.n_states for m in mdps])
    H = np.array([m.horizon for m in mdps])
    order = np.argsort(dims.prod(1), kind="stable")
    groups, current = [], []
    top, h_sum, h_max = np.zeros(2, np.int64), 0, 0

    def cost(top, h_sum, h_max):
        return h_sum * int(top.prod()) + step_overhead * h_max

    for i in order:
        joined = np.maximum(top, dims[i])
        extra = cost(joined, h_sum + H[i] * weight[i], max(h_max, H[i])) - cost(top, h_sum, h_max)
        if current and extra > cost(dims[i], H[i] * weight[i], H[i]):
            groups.append(current)
            current, top, h_sum, h_max = [], np.zeros(2, np.int64), 0, 0
            joined = dims[i]
        current.append(int(i))
        top, h_sum, h_max = joined, h_sum + int(H[i] * weight[i]), max(h_max, int(H[i]))
    if current:
        groups.append(current)
    return groups


def _max_successors(mdp: TabularMDP) -> int:
    T = mdp.transition_matrix
    nz = np.diff(T.indptr) if mdp.is_sparse else np.count_nonzero(T, axis=1)
    return int(nz.max())


def draw_episodes(rng: np.random.Generator, n_states: np.ndarray, horizon: np.ndarray,
                  zero_data_prob: float = 0.05, transitions_per_state: int = 1000,
                  max_transitions: int = 50_000, min_max_episodes: int = 10, **_) -> np.ndarray:
    """Episodes per context: 0 with probability zero_data_prob, otherwise log-uniform in [1, E]
    with E = max(min_max_episodes, budget // H), budget = min(transitions_per_state * S,
    max_transitions) transitions."""
    budget = np.minimum(transitions_per_state * n_states, max_transitions)
    most = np.maximum(min_max_episodes, budget // horizon)
    n = np.minimum(most, np.floor(np.exp(rng.uniform(0.0, np.log(most + 1)))))
    return np.where(rng.random(n.shape) < zero_data_prob, 0, n).astype(np.int64)


@dataclass
class _Drawn:
    """One bucket's context draws (per MDP): behaviour, episodes (and, of a mixed dataset, how
    many come from its second epsilon), what is observed, the action table (N, Hmax) and
    epsilon, and the learners' settings."""

    kind: np.ndarray
    episodes: np.ndarray
    second: np.ndarray
    second_epsilon: np.ndarray
    observe: Observations
    table: torch.Tensor
    epsilon: np.ndarray
    bonus_scale: torch.Tensor
    known_lo: torch.Tensor
    known_hi: torch.Tensor
    replan_every: np.ndarray
    replan_growth: np.ndarray


def _draw(rng: np.random.Generator, gen: torch.Generator, world: MDPBatch, context: dict,
          optimal_actions: torch.Tensor | None) -> _Drawn:
    B = world.batch_size
    device, dtype = world.R.device, world.R.dtype
    names = list(context["behaviours"])
    weights = np.array([context["behaviours"][k] for k in names], float)
    which = rng.choice(len(names), size=B, p=weights / weights.sum())
    S, H = world.n_states.cpu().numpy(), world.horizon.cpu().numpy()
    episodes = draw_episodes(rng, S, H, **context)
    psrl = np.array([names[w] == "psrl" for w in which])
    episodes[psrl] = np.minimum(episodes[psrl], int(context["psrl"]["max_episodes"]))

    # what is observed: entry rewards (where the family has them) and reward noise
    use_entry = world.has_entry.cpu().numpy() & (rng.random(B) < context["entry_reward_prob"])
    live = (~world.terminal)[:, None] & world.action_mask
    live_hi = per_mdp_max(world.R, live, world.state_mdp, B)
    live_lo = per_mdp_min(world.R, live, world.state_mdp, B)
    live_hi = torch.where(torch.isfinite(live_hi), live_hi, torch.zeros_like(live_hi))
    live_lo = torch.where(torch.isfinite(live_lo), live_lo, torch.zeros_like(live_lo))
    span = (live_hi - live_lo).cpu().numpy()
    span = np.where(span > 0, span, np.abs(live_hi.cpu().numpy()))
    noisy = rng.random(B) < context["reward_noise_prob"]
    noise = np.maximum(world.reward_noise.cpu().numpy(),
                       np.where(noisy, rng.uniform(*context["reward_noise"], size=B) * span, 0.0))
    observe = Observations(use_entry=torch.as_tensor(use_entry, device=device),
                           noise=torch.as_tensor(noise, device=device, dtype=dtype))

    # one action table (N, Hmax) and epsilon per MDP; the learners rewrite theirs every round
    Hmax = int(world.horizon.max())
    table = torch.zeros(world.n_total_states, Hmax, dtype=torch.int64, device=device)
    epsilon = np.zeros(B)
    kind = np.array([names[w] for w in which])
    epsilon[kind == "uniform"] = 1.0
    greedy = np.flatnonzero(np.isin(kind, ("epsilon_greedy", "mixed")))
    if greedy.size:
        if optimal_actions is None:
            optimal_actions = world.solve(greedy_actions=True).actions
        states = world.states_of(torch.as_tensor(greedy, device=device))
        table[states] = optimal_actions[states]
    for name in ("epsilon_greedy", "mixed"):
        chosen = np.flatnonzero(kind == name)
        if chosen.size:
            epsilon[chosen] = rng.uniform(*context[name]["epsilon"], size=chosen.size)
    fixed = world.states_of(torch.as_tensor(np.flatnonzero(kind == "fixed_policy"),
                                            device=device))
    if fixed.numel():
        draw = torch.rand(fixed.numel(), 1, generator=gen, device=device)
        table[fixed] = (draw * world.n_actions[world.state_mdp[fixed], None]).long() \
            .expand(-1, Hmax)
    opt = context["optimistic"]
    optimistic = np.flatnonzero(kind == "optimistic")
    explores = rng.random(optimistic.size) < opt["epsilon_prob"]
    epsilon[optimistic] = np.where(explores, rng.uniform(*opt["epsilon"], size=optimistic.size),
                                   0.0)
    bonus_scale = torch.as_tensor(np.exp(rng.uniform(*np.log(opt["bonus_scale"]), size=B)),
                                  device=device, dtype=dtype)
    every = np.where(kind == "optimistic", opt["replan_every_episode"],
                     context["psrl"]["replan_every_episode"])
    growth = np.where(kind == "optimistic", opt["replan_growth"], context["psrl"]["replan_growth"])
    # a mixed dataset: a share of its episodes from a second epsilon, simulated afterwards
    mixed = np.flatnonzero(kind == "mixed")
    second, second_epsilon = np.zeros(B, np.int64), np.zeros(B)
    if mixed.size:
        second[mixed] = rng.binomial(episodes[mixed], 1.0 - rng.uniform(size=mixed.size))
        second_epsilon[mixed] = rng.uniform(*context["mixed"]["epsilon"], size=mixed.size)
    return _Drawn(kind, episodes, second, second_epsilon, observe, table, epsilon, bonus_scale,
                  torch.minimum(live_lo, torch.zeros_like(live_lo)),
                  torch.maximum(live_hi, torch.zeros_like(live_hi)), every, growth)


def sample_contexts(rng: np.random.Generator, gen: torch.Generator, worlds: list[MDPBatch],
                    context: dict, optimal_actions: list | None = None) -> list[tuple]:
    """Draw a behaviour and an amount of data for every MDP of the buckets `worlds`, simulate
    them all at once, and return, per bucket, (StatsBatch, behaviour names, episodes (B,)).
    `optimal_actions`: per bucket, the greedy Q*_h actions (N, Hmax) (for epsilon_greedy and
    mixed; computed where needed and missing)."""
    device = worlds[0].R.device
    drawn = [_draw(rng, gen, w, context, None if optimal_actions is None else optimal_actions[b])
             for b, w in enumerate(worlds)]
    stats = [StatsBatch.empty(w) for w in worlds]
    Hmax = max(d.table.shape[1] for d in drawn)
    table = torch.cat([torch.nn.functional.pad(d.table, (0, Hmax - d.table.shape[1]))
                       for d in drawn])

    def plan(b, mdps, states):  # a bucket's optimistic and posterior-sampling MDPs, one problem
        world, d = worlds[b], drawn[b]
        sub = stats[b].select(mdps)
        problem = optimistic_problem(sub, world.horizon[mdps], d.bonus_scale[mdps],
                                     d.known_lo[mdps], d.known_hi[mdps], gen)
        psrl = torch.as_tensor(d.kind == "psrl", device=device)[mdps].nonzero().squeeze(1)
        if psrl.numel():
            own = sub.states_of(psrl)
            problem = problem.overwrite(psrl, own, posterior_problem(
                sub.select(psrl), world.horizon[mdps][psrl], gen))
        return problem

    joined = lambda name, dt=None: torch.as_tensor(  # noqa: E731  (all buckets end to end)
        np.concatenate([getattr(d, name) for d in drawn]), device=device, dtype=dt)
    kind = np.concatenate([d.kind for d in drawn])
    episodes, second = joined("episodes"), joined("second")
    dtype = worlds[0].R.dtype
    observe = [d.observe for d in drawn]
    run_learners(worlds, stats, episodes - second, Actor(table, joined("epsilon", dtype)), plan,
                 gen,
                 adaptive=torch.as_tensor(np.isin(kind, ("optimistic", "psrl")), device=device),
                 replan_every=joined("replan_every", dtype),
                 replan_growth=joined("replan_growth", dtype), observe=observe)
    if bool((second > 0).any()):
        simulate(worlds, stats, second, Actor(table, joined("second_epsilon", dtype)), gen,
                 observe)
    return [(st, list(d.kind), torch.as_tensor(d.episodes, device=device))
            for st, d in zip(stats, drawn, strict=True)]


def true_mdp(world: MDPBatch, optimal_return: torch.Tensor) -> TrueMDP:
    """The MDPs of `world` on the nodes of their graphs (one (s, a) node per real action, in
    the world's order), for exact scoring in the training loss."""
    mask = world.action_mask
    node = torch.full(mask.shape, -1, dtype=torch.int64, device=mask.device)
    node[mask] = torch.arange(int(mask.sum()), device=mask.device)
    real = (world.probs > 0) & mask[..., None]
    sa = node[:, :, None].expand_as(real)[real]
    return TrueMDP(edge_sa=sa, edge_next=world.successors[real], edge_p=world.probs[real],
                   reward=world.R[mask], initial=world.initial, horizon=world.horizon.clone(),
                   gamma=world.gamma, optimal_return=optimal_return,
                   uniform_return=world.evaluate(world.uniform_policy()))


def sample_batch(seed: int, index: int, batch_size: int, config: PriorConfig | str | None = None,
                 device=None, dtype: torch.dtype = torch.float32,
                 step_overhead: int | None = None) -> PriorBatch:
    """Batch `index` of the stream of `seed`: `batch_size` MDPs from the prior, a context in
    each, and the packed model input with its targets. `step_overhead`: the bucketing's fixed
    cost of a time step (`buckets`; default: `STEP_OVERHEAD` of the device's type), which
    changes how MDPs are grouped, so the examples drawn, not their law. Made on one torch
    thread, so that a batch does not depend on the process's number of threads."""
    with one_thread():
        return _sample_batch(seed, index, batch_size, config, device, dtype, step_overhead)


def _sample_batch(seed, index, batch_size, config, device, dtype, step_overhead) -> PriorBatch:
    config = load_config(config)
    rng, gen = example_generators(seed, index, device)
    mdps = [sample_mdp(rng, config) for _ in range(batch_size)]
    tau_rel = float(config.targets["tau_rel"])
    chunks, graphs = [], []
    if step_overhead is None:
        step_overhead = STEP_OVERHEAD.get(torch.device(device or "cpu").type,
                                          STEP_OVERHEAD["cuda"])
    groups = buckets(mdps, step_overhead)
    worlds = [MDPBatch.from_mdps([mdps[i] for i in group], device, dtype) for group in groups]
    wants_optimal = bool({"epsilon_greedy", "mixed"} & set(config.context["behaviours"]))
    plans = [world.solve(greedy_actions=wants_optimal) for world in worlds]
    contexts = sample_contexts(rng, gen, worlds, config.context,
                               [plan.actions for plan in plans] if wants_optimal else None)
    for group, world, plan, (stats, behaviours, episodes) in zip(groups, worlds, plans, contexts,
                                                                 strict=True):
        target = targets(world, tau_rel, plan)
        graph = encode(stats, world.horizon)
        graph.policy_target = target["policy"][world.action_mask].float()
        graph.value_target = target["value"].float()
        graph.q_target = plan.q[world.action_mask].float()
        graph.state_terminal = world.terminal
        graph.families = tuple(world.families)
        graph.true_mdp = true_mdp(world, target["optimal_return"])
        graphs.append(graph)
        chunks.append(Chunk(world, stats, target, behaviours, episodes,
                            torch.as_tensor(group, device=device)[world.source]))
    return PriorBatch(chunks=chunks, graph=GraphBatch.concatenate(graphs))
