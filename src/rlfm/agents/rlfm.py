"""The rlfm agent: the pretrained network as a learner, with no per-task tuning.

It keeps the sufficient statistic, asks the network for policy logits after every episode, and
acts on them. `exploration`:
  "sample"            a fresh action from π(.|s) at every step: π is trained towards the
                      optimal actions of MDPs consistent with the data, so it spreads its mass
                      where the data leave the best action uncertain;
  "persistent"        an action from π(.|s) at every step too, but drawn by a quantile u of
                      π(.|s) (its actions ranked from most to least likely) that is kept from
                      step to step, redrawn with probability 1 - `persistence`: each action,
                      taken on its own, has the law of "sample" (u is uniform at every step),
                      but the agent keeps one exploratory temperament (the favourite actions
                      when u is small, the runners-up when it is large) for runs of
                      1 / (1 - persistence) steps on average, so a run of k seemingly worse
                      actions of probability p each (DeepSea's costly moves, a chain's steps
                      against the current) has a chance near p * persistence^(k-1), not p^k;
  "posterior"         posterior sampling with a learned prior (a checkpoint with a posterior
                      sampler, `model.PosteriorSampler`, as the shipped rlfm-v5 and
                      rlfm-v3-posterior have): one hypothesis
                      about the MDP per episode, and its plan followed for the whole episode;
                      the hypothesis's rewards are the mean of `samples` draws plus `spread`
                      times their pairwise maximum's distance from it (spread 1: the upper
                      envelope of the draws; large: a plan that seeks what the sampler is
                      least sure of);
  "mixed" (default)   each episode, with probability `share` (1/2), as "posterior", otherwise as
                      "sample" (also needs a posterior sampler; with a checkpoint that has
                      none, the default is "sample");
  "gumbel"            one deterministic policy per episode: argmax of logits + Gumbel noise drawn
                      once per episode, i.e. each state's action is sampled from π(.|s) and kept
                      for the whole episode;
  "greedy"            argmax π(.|s): only whatever optimism the network encodes.
The default is chosen on held-out prior MDPs at the suite's budget (benchmarks/acting_rule.py;
benchmarks/exploration.py compares every mode over 50 episodes). Persistent sampling explores
deep where per-step sampling dithers (FourRooms, SixArms; DeepSea with persistence 0.8:
benchmarks/posterior_online.py); its default persistence, 0.5, ties with per-step sampling on
held-out prior MDPs at the suite's budget, and 0.8 scores below it (benchmarks/acting_rule.py).
The posterior modes reach far goals that per-step sampling does not (FrozenLake 8x8, DeepSea-like
squares of the deep prior). At spread 1 the hypotheses, calibrated for the sampler's training
score, are too timid to act on: alone they get stuck on bandits with long episodes and on
RiverSwim. Widened (`spread`, benchmarks/posterior_spread.py), posterior acting on held-out
prior MDPs rises from 0.589 to 0.73-0.74 for any spread from 5 to 1,000, still below per-step
sampling (0.776), and on held-out squares from 0.46 (sampling) to 0.70-0.71; the largest
spread sets the hypothesis's scale by the sampler's uncertainty alone, not by the size of the
rewards seen so far (tiny costs, on DeepSea). "mixed" at spread 1,000 ties with per-step
sampling on held-out prior MDPs over 50 episodes (0.780 vs 0.776), beats it over 200 (0.892
vs 0.856, benchmarks/acting_rule.py) and on the squares (0.634): it is the default, and
with the exploitation policy's grid exact over the last 8 steps reaches PSRL's bar on 8 of
the 11 suite MDPs, DeepSea and NChain included (benchmarks/suite.py).
Greedy acting behaves like certainty-equivalent control and gets stuck (NChain, Garnet20).
The exploitation policy (`policy()`, and `fit` offline) is, with a checkpoint that has an
exploitation head, that head's stochastic policy softmax(exploit logits), the policy whose
return it was trained to maximise (where the data say nothing, it stays spread, as uniform
behaviour does, rather than committing to one arbitrary action), made time-dependent: at step
h, the head's policy for a task of the steps left, on a grid of horizons that is exact over the
last 8 steps (`RLFM.exploitation_policy`; on held-out prior MDPs, 0.570 against 0.562 for
the stationary policy with rlfm-v3, benchmarks/checkpoints.py).
A checkpoint without one exploits greedily on π. Exactly tied actions
(a state with no data gives every action the same logit) are broken at random, as the baselines
do: always taking action 0 there is a fixed, arbitrary policy, often worse than uniform.
"""

from __future__ import annotations

from numbers import Real

import numpy as np

from rlfm.agents._planning import greedy
from rlfm.agents.base import ModelBasedAgent, register
from rlfm.errors import RlfmError

EXPLORATION = ("sample", "persistent", "posterior", "mixed", "gumbel", "greedy")
POSTERIOR_SHARE = 0.5   # of the episodes of "mixed" (the default of the knob `share`; chosen
                        # on held-out prior MDPs)
PERSISTENCE = 0.5       # of "persistent": the chance to keep the quantile at each step (the
                        # default of the knob `persistence`; chosen on held-out prior MDPs)
SAMPLES = 8             # of the posterior modes: draws per hypothesis
SPREAD = 1000.0         # of the posterior modes: how far the hypothesis lies from the mean
                        # of the draws, in units of their pairwise maximum's distance from it
                        # (the default of the knob `spread`; chosen on held-out prior MDPs,
                        # benchmarks/posterior_spread.py)
_MODELS: dict = {}  # one loaded network per checkpoint path and process


def default_exploration(noise_dim: int) -> str:
    """The exploration mode of a checkpoint whose posterior sampler reads `noise_dim` numbers
    (0: it has none): "mixed" where there is a sampler, "sample" otherwise."""
    return "mixed" if noise_dim else "sample"


def cuda_available() -> bool:
    """Whether a CUDA device is there, asked without initialising CUDA in this process (the
    harness forks its workers afterwards, and a forked process cannot use an initialised CUDA)."""
    import os

    import torch

    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    return torch.cuda.is_available()


def load_network(checkpoint: str | None = None, device: str = "cpu"):
    """The network of `checkpoint` (default: the one shipped in the package) on `device` ("cpu"
    or "cuda"), cached."""
    from rlfm.checkpoint import load_model, resolve

    if device not in ("cpu", "cuda"):
        raise RlfmError(f"rlfm: device must be cpu or cuda, got {device!r}")
    if device == "cuda" and not cuda_available():
        raise RlfmError("rlfm: device cuda: no CUDA device is available")
    path = resolve(checkpoint or "pretrained")
    key = (str(path.resolve()), device)
    if key not in _MODELS:
        _MODELS[key] = load_model(path).to(device)
    return _MODELS[key]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Action probabilities from logits, along the last axis."""
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


@register("rlfm")
class RLFMAgent(ModelBasedAgent):
    TUNING_GRID: dict = {}  # one checkpoint, one setting, everywhere

    def __init__(self, n_states, n_actions, horizon, seed=0, checkpoint: str | None = None,
                 exploration: str | None = None, device: str = "cpu", samples: int = SAMPLES,
                 persistence: float = PERSISTENCE, spread: float = SPREAD,
                 share: float = POSTERIOR_SHARE):
        if exploration is not None and exploration not in EXPLORATION:
            raise RlfmError(f"rlfm: exploration must be one of {', '.join(EXPLORATION)}, "
                            f"got {exploration!r}")
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise RlfmError(f"rlfm: samples must be a positive integer, got {samples!r}")
        for name, value in (("persistence", persistence), ("share", share)):
            if isinstance(value, bool | np.bool_) or not isinstance(value, Real) \
                    or not 0.0 <= value <= 1.0:
                raise RlfmError(f"rlfm: {name} must be a number in [0, 1], got {value!r}")
        if isinstance(spread, bool | np.bool_) or not isinstance(spread, Real) \
                or not 0.0 < spread < np.inf:
            raise RlfmError(f"rlfm: spread must be a positive number, got {spread!r}")
        self.network = load_network(checkpoint, device)
        exploration = exploration or default_exploration(self.network.config.noise_dim)
        if exploration in ("posterior", "mixed") and self.network.sampler is None:
            raise RlfmError(f"rlfm: exploration {exploration} needs a checkpoint with a "
                            "posterior sampler (such as rlfm-v5, the default)")
        self.exploration, self.samples = exploration, samples
        self.persistence, self.share = float(persistence), float(share)
        self.spread = float(spread)
        super().__init__(n_states, n_actions, horizon, seed)

    def plan(self) -> None:
        from rlfm.planning import one_thread  # (torch, imported when first needed)

        with one_thread():
            self.logits, self.exploit_logits = self.network.logits(self.stats, self.horizon)
        self.mode = self.exploration
        if self.mode == "mixed":
            self.mode = "posterior" if self.rng.random() < self.share else "sample"
        if self.mode == "persistent":
            probabilities = softmax(self.logits)
            # most to least likely; exact ties in random order, so that an unvisited state's
            # quantile means no particular action label
            self.ranked = np.lexsort((self.rng.random(self.logits.shape), -self.logits), axis=1)
            self.ranked_cdf = np.cumsum(np.take_along_axis(probabilities, self.ranked, 1), 1)
            self.quantile = self.rng.random()
        elif self.mode == "gumbel":
            self.acting = (self.logits + self.rng.gumbel(size=self.logits.shape)).argmax(axis=1)
        elif self.mode == "greedy":
            self.acting = greedy(self.logits, self.rng)
        elif self.mode == "posterior":
            self.acting = None   # drawn at the episode's first step: `fit` never pays for it
        self._exploit = None

    def _hypothesis(self) -> np.ndarray:
        """The plan of one hypothesis of the posterior sampler, (H, S) actions."""
        import torch

        from rlfm.planning import one_thread

        seed = torch.Generator().manual_seed(int(self.rng.integers(2**62)))
        with one_thread():
            return self.network.posterior_actions(self.stats, self.horizon, seed, self.samples,
                                                  self.spread)

    def act(self, state: int, step: int) -> int:
        if self.mode == "sample":
            return int(self.rng.choice(self.n_actions, p=softmax(self.logits[state])))
        if self.mode == "persistent":
            if step > 0 and self.rng.random() >= self.persistence:
                self.quantile = self.rng.random()
            cdf = self.ranked_cdf[state]
            rank = min(int((cdf <= self.quantile * cdf[-1]).sum()), self.n_actions - 1)
            return int(self.ranked[state, rank])
        if self.mode == "posterior":
            if self.acting is None:
                self.acting = self._hypothesis()
            return int(self.acting[min(step, len(self.acting) - 1), state])
        return int(self.acting[state])

    def observe(self, state, action, reward, next_state, terminated) -> None:
        super().observe(state, action, reward, next_state, terminated)
        self.exploit_logits = None   # no longer those of the statistic

    def exploit(self) -> np.ndarray:
        if self._exploit is None:
            if self.network.exploit_head is None:
                self._exploit = greedy(self.logits, self.tie_rng)
            else:   # computed when asked for (an agent that only acts never pays for it)
                from rlfm.planning import one_thread

                with one_thread():
                    self._exploit = self.network.exploitation_policy(
                        self.stats, self.horizon, whole=self.exploit_logits)
        return self._exploit
