"""The rlfm network: a permutation-equivariant graph network over an MDP's statistic.

Nodes are state-action pairs and states (see `features.py`). One weight-tied block, applied K
times like unrolled value iteration, does:

  aggregate  each state pools its actions' embeddings (mean and max)       -> state update
  message    each (s, a) attends over its observed successors s', with the additive bias
             beta * log P̂(s'|s,a): with zero learned logits the weights are exactly P̂, so one
             step can express a Bellman expectation; an unvisited pair gets a learned message
  update     residual MLPs on both node types

A policy head scores every (s, a); a softmax over each state's actions gives π(a|s), the acting
policy. An optional exploitation head scores every (s, a) again: trained for the exact return
its own policy earns in the true MDP (`train.return_loss`), it gives the policy to deploy once
the data are in (what `policy()` reports online and what `fit` returns offline; asked again for
the steps left, it makes that policy time-dependent: `exploitation_policy`); acting and exploiting
want different heads. A value head reads the state nodes. There is no maximum S or
A: every operation is per node or edge, with shared weights and order-free sums, hence
equivariant to permutations of states and of actions. Node values are gathered by
`index_select`, whose gradient is a scatter-add: an advanced index's (an accumulating
index_put) made the backward pass several times slower on CPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar, NamedTuple

import numpy as np
import torch
from torch import nn

from rlfm.features import EDGE_FEATURES, SA_FEATURES, STATE_FEATURES, GraphBatch, encode, encode_statistics
from rlfm.planning import Edges, backward_induction
from rlfm.stats import Statistics
from rlfm.world import StatsBatch, segment_max, segment_sum


@dataclass
class ModelConfig:
    width: int = 64
    steps: int = 8             # K: applications of the weight-tied block
    transition_bias: bool = True
    weight_tying: bool = True
    exploit_head: bool = False
    noise_dim: int = 0         # > 0: a posterior sampler (`PosteriorSampler`) with this noise
    LIMITS: ClassVar[dict] = {"width": (1, 1024), "steps": (1, 64), "noise_dim": (0, 1024)}

    def to_dict(self) -> dict:
        return asdict(self)


def segment_softmax(logits: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """Softmax of `logits` within each group of `index` (groups of size 0 are allowed)."""
    shifted = logits - segment_max(logits, index, n).detach().index_select(0, index)
    weights = shifted.exp()
    return weights / segment_sum(weights, index, n).index_select(0, index).clamp_min(1e-30)


def segment_log_softmax(logits: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    shift = segment_max(logits, index, n).detach().index_select(0, index)
    log_z = segment_sum((logits - shift).exp(), index, n).log().index_select(0, index)
    return logits - shift - log_z


def mlp(n_in: int, width: int, n_out: int | None = None) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, width), nn.GELU(), nn.Linear(width, n_out or width))


class Block(nn.Module):
    """One step of message passing: aggregate actions into states, attend over successors,
    update both node types."""

    def __init__(self, width: int, transition_bias: bool):
        super().__init__()
        self.transition_bias = transition_bias
        self.state_norm = nn.LayerNorm(3 * width)
        self.state_update = mlp(3 * width, 2 * width, width)
        self.query, self.key = nn.Linear(width, width), nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.edge_logit = nn.Linear(EDGE_FEATURES, 1)
        self.beta = nn.Parameter(torch.ones(()))
        self.unvisited = nn.Parameter(torch.zeros(width))
        self.sa_norm = nn.LayerNorm(3 * width)
        self.sa_update = mlp(3 * width, 2 * width, width)
        nn.init.zeros_(self.query.weight)   # start as an exact Bellman expectation under P̂
        nn.init.zeros_(self.query.bias)
        nn.init.zeros_(self.edge_logit.weight)
        nn.init.zeros_(self.edge_logit.bias)

    def forward(self, h_sa, h_s, g: GraphBatch, has_edges: torch.Tensor):
        n_sa, n_s = h_sa.shape[0], h_s.shape[0]
        # aggregate: a state sees its actions
        pooled = torch.cat([segment_sum(h_sa, g.sa_state, n_s) / _actions_per_state(g, h_s),
                            segment_max(h_sa, g.sa_state, n_s)], dim=-1)
        h_s = h_s + self.state_update(self.state_norm(torch.cat([h_s, pooled], dim=-1)))
        # message: (s, a) attends over its observed successors
        alpha = self.attention(h_sa, h_s, g)
        message = segment_sum(alpha.unsqueeze(-1) * self.value(h_s).index_select(0, g.edge_next),
                              g.edge_sa, n_sa)
        message = torch.where(has_edges.unsqueeze(-1), message, self.unvisited)
        # update the state-action nodes
        update = torch.cat([h_sa, message, h_s.index_select(0, g.sa_state)], dim=-1)
        h_sa = h_sa + self.sa_update(self.sa_norm(update))
        return h_sa, h_s


    def attention(self, h_sa, h_s, g: GraphBatch) -> torch.Tensor:
        """Weights of each edge (s, a) -> s' among the successors of (s, a)."""
        q = self.query(h_sa).index_select(0, g.edge_sa)
        k = self.key(h_s).index_select(0, g.edge_next)
        logits = (q * k).sum(-1) / np.sqrt(q.shape[-1]) + self.edge_logit(g.edge_x).squeeze(-1)
        if self.transition_bias:
            logits = logits + self.beta * g.edge_log_p
        return segment_softmax(logits, g.edge_sa, h_sa.shape[0])


def _actions_per_state(g: GraphBatch, h_s: torch.Tensor) -> torch.Tensor:
    return g.graph_actions[g.state_graph].to(h_s.dtype).unsqueeze(-1)


def blocks_of(config: ModelConfig) -> nn.ModuleList:
    """The message-passing blocks of a trunk: one, applied `steps` times, when weight-tied."""
    n_blocks = 1 if config.weight_tying else config.steps
    return nn.ModuleList(Block(config.width, config.transition_bias) for _ in range(n_blocks))


def propagate(blocks: nn.ModuleList, h_sa, h_s, g: GraphBatch, steps: int):
    """`steps` rounds of message passing (the last block repeats when there are fewer)."""
    has_edges = torch.zeros(h_sa.shape[0], dtype=torch.bool, device=h_sa.device)
    has_edges[g.edge_sa] = True
    for k in range(steps):
        h_sa, h_s = blocks[min(k, len(blocks) - 1)](h_sa, h_s, g, has_edges)
    return h_sa, h_s


class PosteriorSampler(nn.Module):
    """A learned posterior over the MDP, one hypothesis per noise draw: a graph network of the
    trunk's shape that also reads Gaussian noise (`noise_dim` numbers per (s, a) node, per
    state node and per MDP, drawn once per episode) and outputs a reward offset delta(s, a), in
    the unit of the reward features. The hypothesis is the empirical model (observed
    transitions; an untried pair loops on its state) with rewards R̂ + delta; planning on it
    (`sample_plan`) turns a local guess into values coherent across states, over any
    distance. Trained with the energy score of its plans' Q against the true Q*
    (`train.posterior_loss`), a strictly proper score of the joint distribution, so that
    acting greedily on one sample per episode is posterior sampling with a learned prior."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        d, z = config.width, config.noise_dim
        self.noise_dim = z
        self.sa_in, self.state_in = mlp(SA_FEATURES, d), mlp(STATE_FEATURES, d)
        self.sa_noise, self.state_noise = nn.Linear(2 * z, d), nn.Linear(2 * z, d)
        self.blocks = blocks_of(config)
        self.steps = config.steps
        self.reward_head = mlp(d, d, 1)
        for layer in (self.sa_noise, self.state_noise, self.reward_head[-1]):
            nn.init.zeros_(layer.weight)   # start as the certainty-equivalent model
            nn.init.zeros_(layer.bias)

    def start_from(self, model: RLFM) -> None:
        """Copy the trunk of a trained network (a fine-tuning start)."""
        for name in ("sa_in", "state_in", "blocks"):
            getattr(self, name).load_state_dict(getattr(model, name).state_dict())

    def draw_noise(self, g: GraphBatch, generator: torch.Generator | None = None):
        """Standard normal noise: (N_sa, z), (N_s, z), (G, z)."""
        z, like = self.noise_dim, g.sa_x
        on = like.device if generator is None else generator.device

        def draw(n):
            return torch.randn(n, z, generator=generator, device=on).to(like.device, like.dtype)
        return draw(g.sa_x.shape[0]), draw(g.n_states), draw(g.n_graphs)

    def forward(self, g: GraphBatch, noise) -> torch.Tensor:
        """delta (N_sa,) for `noise` (as `draw_noise` gives)."""
        sa, state, graph = noise
        per_state = graph.index_select(0, g.state_graph)
        h_s = self.state_in(g.state_x) + self.state_noise(torch.cat([state, per_state], -1))
        h_sa = self.sa_in(g.sa_x) + self.sa_noise(
            torch.cat([sa, per_state.index_select(0, g.sa_state)], -1))
        h_sa, _ = propagate(self.blocks, h_sa, h_s, g, self.steps)
        return self.reward_head(h_sa).squeeze(-1)


def sample_plan(g: GraphBatch, delta: torch.Tensor, greedy_actions: bool = False,
                tie_noise: torch.Tensor | None = None):
    """Backward induction on each graph's hypothesis: the empirical model of its statistic
    (P̂ from the observed transitions, a self-loop for an untried pair, states observed as
    terminal worth 0) with rewards R̂ / scale + delta (N_sa,), over the task's horizon. Gives a
    `planning.Plan` on the padded (N_s, A) table of `GraphBatch.action_slots` (Q in the unit
    of the reward features); differentiable in delta."""
    slot, A = g.action_slots()
    N = g.n_states
    untried = torch.ones(slot.shape[0], dtype=torch.bool, device=slot.device)
    untried[g.edge_sa] = False
    loops = untried.nonzero().squeeze(1)
    row = torch.cat([slot[g.edge_sa], slot[loops]])
    order = torch.argsort(row, stable=True)
    edges = Edges(row[order], torch.cat([g.edge_next, g.sa_state[loops]])[order],
                  torch.cat([g.edge_log_p.exp(), torch.ones_like(loops, dtype=delta.dtype)])[order])
    mask = torch.zeros(N * A, dtype=torch.bool, device=slot.device).index_fill(0, slot, True)
    R = delta.new_zeros(N * A).index_copy(0, slot, g.sa_x[:, 2].to(delta.dtype) + delta)
    return backward_induction(edges, None, R.view(N, A), g.state_graph, g.graph_horizon,
                              action_mask=mask.view(N, A), terminal=g.state_x[:, 0] > 0,
                              greedy_actions=greedy_actions, tie_noise=tie_noise)


class Outputs(NamedTuple):
    """What the network says about a batch: acting-policy logits and exploitation logits per
    (s, a) node (the same tensor when there is no exploitation head), values per state."""

    logits: torch.Tensor
    values: torch.Tensor
    exploit: torch.Tensor


class RLFM(nn.Module):
    """The network. `forward(batch)` gives its `Outputs`."""

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = config = config or ModelConfig()
        d = config.width
        self.sa_in = mlp(SA_FEATURES, d)
        self.state_in = mlp(STATE_FEATURES, d)
        self.blocks = blocks_of(config)
        self.policy_head = mlp(d, d, 1)
        self.value_head = mlp(d, d, 1)
        self.exploit_head = mlp(d, d, 1) if config.exploit_head else None
        self.sampler = PosteriorSampler(config) if config.noise_dim else None

    def forward(self, g: GraphBatch, steps: int | None = None) -> Outputs:
        h_sa, h_s = self.trunk(g, steps)
        logits = self.policy_head(h_sa).squeeze(-1)
        exploit = logits if self.exploit_head is None else self.exploit_head(h_sa).squeeze(-1)
        return Outputs(logits, self.value_head(h_s).squeeze(-1), exploit)

    def trunk(self, g: GraphBatch, steps: int | None = None):
        """The embeddings (h_sa, h_s) that every head reads."""
        return propagate(self.blocks, self.sa_in(g.sa_x), self.state_in(g.state_x), g,
                         steps or self.config.steps)

    def log_policy(self, g: GraphBatch, steps: int | None = None) -> torch.Tensor:
        """log π(a|s) for every (s, a) node: a log-softmax over each state's actions (the
        policy head alone)."""
        logits = self.policy_head(self.trunk(g, steps)[0]).squeeze(-1)
        return segment_log_softmax(logits, g.sa_state, g.n_states)

    def _graph(self, stats: Statistics, horizon: int | list[int]) -> GraphBatch:
        if self.training:
            self.eval()
        weight = self.sa_in[0].weight
        return encode_statistics(stats, horizon).to(weight.device, weight.dtype)

    @torch.inference_mode()
    def policy(self, stats: Statistics, horizon: int, steps: int | None = None) -> np.ndarray:
        """π(a|s) as an (S, A) array of action probabilities, from the statistic alone."""
        log_pi = self.log_policy(self._graph(stats, horizon), steps)
        return log_pi.exp().view(stats.n_states, stats.n_actions).double().cpu().numpy()

    @torch.inference_mode()
    def logits(self, stats: Statistics, horizon: int,
               steps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Acting-policy logits and exploitation logits, each an (S, A) array."""
        out = self(self._graph(stats, horizon), steps)
        shape = (stats.n_states, stats.n_actions)
        return (out.logits.view(shape).double().cpu().numpy(),
                out.exploit.view(shape).double().cpu().numpy())

    @torch.inference_mode()
    def exploitation_policy(self, stats: Statistics, horizon: int,
                            whole: np.ndarray | None = None) -> np.ndarray:
        """The time-dependent exploitation policy (H, S, A) for a task of `horizon` steps: at
        step h, softmax of the exploitation logits the network gives for a task of the steps
        left (rounded up to `horizon_grid`), all in one batched pass. The head is trained as a
        stationary policy for a whole task; asking it again for the steps left is what lets the
        policy change as the end of the episode nears. `whole`: the exploitation logits (S, A)
        for the whole task where they are at hand (`logits` gives them): the network is then
        asked only for the shorter tasks, whose in-context plans are also shorter."""
        if self.exploit_head is None:
            raise ValueError("this checkpoint has no exploitation head")
        grid, serves = horizon_grid(horizon)
        asked = grid if whole is None else grid[:-1]
        logits = []
        if asked:
            graph = self._graph(stats, asked)
            logits.append(self(graph).exploit.double().view(len(asked), -1))
        if whole is not None:
            logits.append(torch.as_tensor(whole, dtype=torch.float64).view(1, -1).to(
                self.sa_in[0].weight.device))
        exploit = torch.cat(logits).view(-1)
        state = torch.arange(exploit.shape[0], device=exploit.device) // stats.n_actions
        exploit = segment_softmax(exploit, state, len(grid) * stats.n_states)
        return exploit.view(len(grid), stats.n_states, stats.n_actions).cpu().numpy()[serves]

    @torch.no_grad()
    def batch_policies(self, stats: StatsBatch,
                       horizon: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the rlfm agent (per-step sampling) computes from a statistic, for a packed batch
        of them at once: the acting policy π (N, A) and the time-dependent exploitation policy
        (N, Hmax, A) it reports (`exploitation_policy`), in one network pass over the
        statistics under every grid horizon; 0 on padded actions and past a task's end."""
        if self.exploit_head is None:
            raise ValueError("this checkpoint has no exploitation head")
        if horizon.shape != (stats.batch_size,):
            raise ValueError(f"one horizon per statistic: {stats.batch_size}, got "
                             f"{tuple(horizon.shape)}")
        self.eval()
        weight = self.sa_in[0].weight
        horizon = horizon.to(stats.counts.device)
        levels = grid_levels(horizon)
        compact = stats.compact()
        graphs = [encode(compact, h) for h in levels]
        out = self(GraphBatch.concatenate(graphs).to(weight.device, weight.dtype))
        out = out._replace(logits=out.logits.to(stats.counts.device),
                           exploit=out.exploit.to(stats.counts.device))
        N, A, L = stats.n_total_states, stats.successors.shape[1], len(levels)
        slot, _ = graphs[0].action_slots()
        n_sa = slot.shape[0]

        def table(x):   # (L * N_sa,) node values -> (L, N, A) softmax over each state's actions
            padded = x.new_full((L, N * A), -torch.inf).index_copy(1, slot, x.view(L, n_sa))
            return torch.softmax(padded.view(L, N, A).double(), -1).to(stats.counts.dtype)
        acting = table(out.logits)[0]
        exploit = table(out.exploit)
        # at step h, the shortest grid horizon at least the steps left
        Hmax = int(horizon.max())
        left = horizon[:, None] - torch.arange(Hmax, device=horizon.device)      # (B, Hmax)
        covers = levels[:, :, None] >= left[None]                                  # (L, B, Hmax)
        fit = torch.where(covers, levels[:, :, None], torch.iinfo(torch.int64).max)
        serve = fit.argmin(0)[stats.state_mdp]                                     # (N, Hmax)
        policy = exploit[serve, torch.arange(N, device=serve.device)[:, None]]
        return acting, policy * (left[stats.state_mdp] > 0)[..., None]

    @torch.inference_mode()
    def posterior_actions(self, stats: Statistics, horizon: int,
                          generator: torch.Generator | None = None,
                          samples: int = 1, spread: float = 1.0) -> np.ndarray:
        """A hypothesis of the posterior sampler and its plan: the greedy action (H, S) of
        every step and state (exact ties broken at random). With several `samples`, the
        hypothesis takes each pair's largest reward among them (optimism where they differ),
        its distance from the draws' mean multiplied by `spread`."""
        if self.sampler is None:
            raise ValueError("this checkpoint has no posterior sampler")
        g = self._graph(stats, horizon)
        # the draws in one pass over `samples` copies of the graph (noise drawn copy by copy)
        noise = [self.sampler.draw_noise(g, generator) for _ in range(samples)]
        copies = GraphBatch.concatenate([g] * samples)
        delta = self.sampler(copies, tuple(torch.cat(parts) for parts in zip(*noise, strict=True)))
        draws = delta.view(samples, -1)
        delta = draws.amax(0)
        if spread != 1.0:   # (at 1, the maximum itself: no rounding through the mean)
            mean = draws.mean(0)
            delta = mean + spread * (delta - mean)
        tie = torch.rand(g.n_states, int(g.graph_actions.max()), generator=generator,
                         device=None if generator is None else generator.device).to(delta)
        return sample_plan(g, delta, greedy_actions=True, tie_noise=tie).actions.T.cpu().numpy()


# The task horizons, as fractions of the episode's, at which the exploitation head is asked
# for a time-dependent policy, and the last steps of an episode, where the best action changes
# fastest, each asked at its own horizon (both chosen on held-out prior MDPs,
# benchmarks/checkpoints.py).
REMAINING_FRACTIONS = (1.0, 0.5, 0.25, 0.125, 0.0625)
EXACT_LAST_STEPS = 8


def grid_levels(horizon: torch.Tensor) -> torch.Tensor:
    """(L, B): the task horizons at which the network is asked for tasks of `horizon` (B,),
    the whole task first: the REMAINING_FRACTIONS of it (rounded, at least 1), then each of the
    last EXACT_LAST_STEPS steps (at most the task's own; short tasks repeat horizons, and
    no level goes past the longest task: EXACT_LAST_STEPS may be huge, "every step")."""
    last = min(EXACT_LAST_STEPS, int(horizon.max()) if horizon.numel() else 0)
    return torch.stack([(f * horizon.double()).round().long().clamp_min(1)
                        for f in REMAINING_FRACTIONS]
                       + [horizon.clamp_max(k) for k in range(1, last + 1)])


def horizon_grid(horizon: int) -> tuple[list[int], np.ndarray]:
    """The task horizons (ascending, the last = `horizon`) at which a time-dependent policy
    asks the network, and for each step h of the episode the index of the one that serves it:
    the shortest that is at least the horizon - h steps left."""
    grid = sorted(set(grid_levels(torch.tensor([horizon]))[:, 0].tolist()))
    return grid, np.searchsorted(grid, horizon - np.arange(horizon))


def policy_loss(log_pi: torch.Tensor, g: GraphBatch) -> torch.Tensor:
    """Cross-entropy between each state's target distribution and π, averaged over the
    non-terminal states of each MDP (a terminal state's actions are all worth 0), then over MDPs
    (so a large MDP does not outweigh many small ones)."""
    per_sa = -(g.policy_target * log_pi)
    per_state = segment_sum(per_sa, g.sa_state, g.n_states)
    live = (~g.state_terminal).to(log_pi.dtype) if g.state_terminal is not None \
        else torch.ones_like(per_state)
    per_graph = segment_sum(per_state * live, g.state_graph, g.n_graphs)
    return (per_graph / segment_sum(live, g.state_graph, g.n_graphs).clamp_min(1.0)).mean()


def value_loss(values: torch.Tensor, g: GraphBatch) -> torch.Tensor:
    per_state = (values - g.value_target) ** 2
    per_graph = segment_sum(per_state, g.state_graph, g.n_graphs) / g.graph_states.to(values.dtype)
    return per_graph.mean()
