"""Pretraining: stream synthetic MDPs from the prior, fit the policy (and value) targets and,
with an exploitation head, the exact return of that head's policy in the true MDPs.

    rlfm train --config configs/rlfm-v3.toml --out runs/rlfm-v3 [--resume] [--device cuda]
    torchrun --nproc_per_node 2 -m rlfm.train --config ... --out ...     # DDP over gloo (CPU)

Training data come from the batched world (`rlfm.priors.batch`): every batch is made at once,
MDPs, contexts, statistics, features and targets, in DataLoader workers (or in the training
process with workers = 0). AdamW with linear warm-up then cosine decay, gradient clipping;
periodic validation on held-out prior MDPs only (a stream of seeds never used for training:
held-out policy loss, and the exact score of the greedy policy next to certainty-equivalent
planning on the same statistics); CSV log; checkpoints every `checkpoint_every` steps, each
one atomic unit with the optimizer state (see `_checkpoint`), so that `--resume` loses at most
one interval whatever kills the run; `model` at the end. Configuration is plain data: a TOML
file, see configs/.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from rlfm.checkpoint import load_model, load_tensors, save_model, save_tensors
from rlfm.errors import CheckpointError, RlfmError
from rlfm.features import GraphBatch
from rlfm.fields import INT_MAX, build
from rlfm.io import OutputDir, atomic_write, atomic_write_text
from rlfm.model import (
    RLFM,
    ModelConfig,
    policy_loss,
    sample_plan,
    segment_log_softmax,
    segment_softmax,
    value_loss,
)
from rlfm.priors.config import PriorConfig
from rlfm.world import segment_max, segment_min, segment_sum

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib


@dataclass
class TrainConfig:
    seed: int = 0
    steps: int = 3000
    batch_size: int = 32             # MDPs per optimiser step
    world_batch: int = 512           # MDPs the batched world makes at once (a multiple of it)
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 200
    grad_clip: float = 1.0
    value_weight: float = 0.2
    return_weight: float = 0.0       # weight of the exploitation head's return loss
    posterior_weight: float = 0.0    # weight of the posterior sampler's energy score
    posterior_samples: int = 4       # hypotheses per MDP in that score
    sampler_only: bool = False       # train the posterior sampler alone (the rest frozen)
    init: str = ""                   # a checkpoint to start from: a path, or the name of one
                                     # shipped in the package ("rlfm-v1"); parameters it lacks
                                     # (a new head) start fresh
    workers: int = 1                 # data-generating processes (0: in the training process,
                                     # on the training device)
    threads: int = 1                 # torch threads of the training process
    precision: str = "float32"       # of the networks' forward pass in training: "bfloat16"
                                     # runs it under autocast (matrix products in bfloat16,
                                     # several times faster where the CPU or GPU has bfloat16
                                     # units); parameters, optimiser, losses, planning and
                                     # validation stay in float32/float64
    log_every: int = 20
    checkpoint_every: int = 200
    eval_every: int = 500
    LIMITS: ClassVar[dict] = {
        "seed": (0, INT_MAX // 1024), "steps": (1, INT_MAX), "batch_size": (1, 1 << 20),
        "world_batch": (1, 1 << 24), "lr": (1e-12, 10.0), "weight_decay": (0.0, 10.0),
        "warmup_steps": (0, INT_MAX), "grad_clip": (1e-12, 1e12), "value_weight": (0.0, 1e6),
        "return_weight": (0.0, 1e6), "posterior_weight": (0.0, 1e6),
        "posterior_samples": (2, 64),
        "workers": (0, 1024), "threads": (1, 1024), "log_every": (1, INT_MAX),
        "checkpoint_every": (1, INT_MAX), "eval_every": (1, INT_MAX)}
    CHOICES: ClassVar[dict] = {"precision": ("float32", "bfloat16")}


@dataclass
class ValidationConfig:
    prior_examples: int = 256
    prior_seed: int = 1_000_003      # a stream never used for training (training seeds are small)
    LIMITS: ClassVar[dict] = {"prior_examples": (1, 1 << 20), "prior_seed": (0, INT_MAX)}


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    prior: dict = field(default_factory=dict)   # overrides of the default prior (priors.config)

    @classmethod
    def load(cls, path: str | os.PathLike | None) -> RunConfig:
        if path is None:
            return cls()
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise RlfmError(f"{path}: no such config file") from None
        except tomllib.TOMLDecodeError as e:
            raise RlfmError(f"{path}: invalid TOML ({e})") from None
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> RunConfig:
        unknown = set(data) - {"model", "train", "validation", "prior"}
        if unknown:
            raise RlfmError(f"{source}: unknown table(s) {sorted(unknown)}")
        prior = data.get("prior", {})
        if not isinstance(prior, dict):
            raise RlfmError(f"{source}: prior must be a table of settings, got {prior!r}")
        PriorConfig.from_dict(prior, source=f"{source} [prior]")  # checked before any work
        return cls(model=build(ModelConfig, data.get("model", {}), source, "model"),
                   train=build(TrainConfig, data.get("train", {}), source, "train"),
                   validation=build(ValidationConfig, data.get("validation", {}), source,
                                    "validation"),
                   prior=prior)

    def to_dict(self) -> dict:
        return {"model": asdict(self.model), "train": asdict(self.train),
                "validation": asdict(self.validation), "prior": copy.deepcopy(self.prior)}


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to cfg.lr, then cosine decay to 10% of it at cfg.steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def compute_loss(model, batch: GraphBatch, tc: TrainConfig):
    """The training loss and its parts: cross-entropy of the acting policy to the Boltzmann
    target, the value loss, and (with return_weight > 0) the return loss of the exploitation
    head, and (with posterior_weight > 0) the energy score of the posterior sampler; with
    `sampler_only`, that score alone."""
    if tc.posterior_weight > 0:
        sampler = (model.module if hasattr(model, "module") else model).sampler
        score = posterior_loss(sampler, batch, tc.posterior_samples, precision=tc.precision)
        if tc.sampler_only:
            return score, {"posterior_loss": score.detach()}
    out = in_precision(tc.precision, model, batch)
    log_pi = segment_log_softmax(out.logits, batch.sa_state, batch.n_states)
    parts = {"policy_loss": policy_loss(log_pi, batch), "value_loss": value_loss(out.values, batch)}
    loss = parts["policy_loss"] + tc.value_weight * parts["value_loss"]
    if tc.return_weight > 0:
        parts["return_loss"] = return_loss(out.exploit, batch)
        loss = loss + tc.return_weight * parts["return_loss"]
    if tc.posterior_weight > 0:
        parts["posterior_loss"] = score
        loss = loss + tc.posterior_weight * score
    return loss, {k: v.detach() for k, v in parts.items()}


def in_precision(precision: str, network, batch: GraphBatch, *args):
    """`network(batch, *args)` in the training precision (`TrainConfig.precision`): for
    "bfloat16" under autocast, its outputs (a tensor or a tuple of them) cast back to the
    batch's dtype for the losses."""
    with torch.autocast(batch.sa_x.device.type, dtype=torch.bfloat16,
                        enabled=precision == "bfloat16"):
        out = network(batch, *args)
    if isinstance(out, torch.Tensor):
        return out.to(batch.sa_x.dtype)
    return type(out)(*(x.to(batch.sa_x.dtype) for x in out))


def return_loss(exploit_logits: torch.Tensor, batch: GraphBatch) -> torch.Tensor:
    """Minus the mean normalised exact return, in each true MDP, of the stochastic policy
    softmax(exploit_logits): the return the exploitation policy earns, not a guess of the
    optimal action. Each score is clipped to [-1, 1], so that an MDP where the uniform policy
    is nearly optimal (normalised scores of -100) does not drown the others."""
    pi = segment_softmax(exploit_logits, batch.sa_state, batch.n_states)
    score, scored = batch.true_score(pi)
    return -(score.clamp(-1.0, 1.0) * scored).sum() / scored.sum().clamp_min(1)


def posterior_loss(sampler, batch: GraphBatch, samples: int,
                   generator: torch.Generator | None = None,
                   precision: str = "float32") -> torch.Tensor:
    """The energy score (`energy_score`) of the sampler's hypotheses against the truth,
    averaged over MDPs: X is the Q_0 of the plan on a hypothesis (`model.sample_plan`) and y
    the true Q*_0 over all of an MDP's (s, a), both divided by the span of Q*_0. Its best
    sampler draws from the posterior of Q*_0 given the statistic, coherently across states. An
    MDP's term is capped at 5 spans, so that a few MDPs whose reward scale the data cannot
    reveal do not drown the rest."""
    many = GraphBatch.concatenate([batch] * samples)
    delta = in_precision(precision, sampler, many, sampler.draw_noise(many, generator))
    slot, _ = many.action_slots()
    n_sa, G = batch.sa_x.shape[0], batch.n_graphs
    sa_graph = batch.state_graph[batch.sa_state]
    q = sample_plan(many, delta).q.reshape(-1)[slot].view(samples, n_sa)
    q = q * batch.reward_scale.to(q.dtype)[sa_graph]
    y = batch.q_target.to(q.dtype)
    span = segment_max(y, sa_graph, G) - segment_min(y, sa_graph, G)
    scored = span > 1e-9 * y.abs().max().clamp_min(1.0)
    unit = torch.where(scored, span, torch.ones_like(span))[sa_graph]
    score = energy_score(q / unit, y / unit, sa_graph, G)
    return (score.clamp_max(5.0) * scored).sum() / scored.sum().clamp_min(1)


def energy_score(x: torch.Tensor, y: torch.Tensor, group: torch.Tensor, n: int) -> torch.Tensor:
    """E||X - y|| - E||X - X'|| / 2 for each of n vectors y, from M samples x (M, len(y));
    `group` says which vector each coordinate belongs to, and the norm is the root mean square
    over a vector's coordinates. Estimated without bias (pairs of distinct samples)."""
    size = segment_sum(torch.ones_like(y), group, n)

    def norm(d: torch.Tensor) -> torch.Tensor:   # (..., len(y)) -> (..., n)
        squares = segment_sum(d.reshape(-1, d.shape[-1]).T ** 2, group, n).T
        return (squares / size + 1e-12).sqrt().view(*d.shape[:-1], n)

    i, j = torch.triu_indices(x.shape[0], x.shape[0], 1, device=x.device)
    return norm(x - y).mean(0) - 0.5 * norm(x[i] - x[j]).mean(0)


def initialise(model: RLFM, path: str) -> None:
    """Start from the weights of checkpoint `path` (a path or a shipped checkpoint's name), a
    fine-tuning start: every parameter it holds must exist here with its shape; the model's
    own additions (a new head) keep their fresh initialisation."""
    from rlfm.checkpoint import resolve

    source = load_model(resolve(path)).state_dict()
    own = model.state_dict()
    for name, value in source.items():
        if name not in own or own[name].shape != value.shape:
            raise RlfmError(f"train.init: {path} does not fit this model ({name}: "
                            f"{tuple(value.shape)} there, "
                            f"{tuple(own[name].shape) if name in own else 'absent'} here)")
    model.load_state_dict(source, strict=False)
    if model.sampler is not None and not any(k.startswith("sampler.") for k in source):
        model.sampler.start_from(model)   # a new sampler starts from the trained trunk


# ---- optimizer state as safetensors + JSON (never pickle) -------------------------------------
def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    state = opt.state_dict()
    tensors = {f"{i}.{k}": v for i, s in state["state"].items() for k, v in s.items()
               if isinstance(v, torch.Tensor)}
    groups = [{k: v for k, v in g.items()} for g in state["param_groups"]]
    return tensors, {"param_groups": groups}


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict = {}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


# ---- validation --------------------------------------------------------------------------------
def validation_set(cfg: RunConfig):
    """Held-out prior MDPs with the statistics of their contexts and their targets (float64, so
    that scores are exact), as one PriorBatch."""
    from rlfm.priors.batch import sample_batch

    return sample_batch(cfg.validation.prior_seed, 0, cfg.validation.prior_examples,
                        cfg.prior or None, dtype=torch.float64)


def mean_score(scores: torch.Tensor) -> float:
    """Mean normalised score over prior MDPs, each clipped to [-1, 1]: where the uniform policy is
    nearly optimal a normalised score can be -100, and a few such MDPs would drown the rest."""
    return float(scores.clamp(-1.0, 1.0).mean())


def cevi_reference(val) -> dict:
    """The validation score of certainty-equivalent planning on the same statistics, acting with
    its first-step plan as a stationary policy as the network does: the bar the network must
    clear (it sees that plan among its features)."""
    from rlfm.planning import backward_induction

    q = []
    for chunk in val.chunks:
        successors, probs, R = chunk.stats.empirical()
        q.append(backward_induction(successors, probs, R, chunk.world.state_mdp,
                                    chunk.world.horizon,
                                    action_mask=chunk.world.action_mask).q[chunk.world.action_mask])
    score, _ = val.graph.true_score(val.graph.greedy(torch.cat(q)))
    return {"val_prior_score": mean_score(score)}


@torch.no_grad()
def validate(model: RLFM, val) -> dict:
    """On held-out prior MDPs: the acting policy's cross-entropy, the exact score of its greedy
    policy, and (with an exploitation head) the exact score of the exploitation policy as the
    agent deploys it, softmax(exploit logits)."""
    model.eval()
    weight = model.sa_in[0].weight
    graph = val.graph.to(weight.device, weight.dtype)
    out = model(graph)
    log_pi = segment_log_softmax(out.logits, graph.sa_state, graph.n_states)
    exact = val.graph   # float64: the scores are exact
    score = lambda policy: mean_score(exact.true_score(policy)[0])  # noqa: E731
    metrics = {"val_policy_loss": policy_loss(log_pi, graph).item(),
               "val_prior_score": score(exact.greedy(out.logits.double().cpu()))}
    if model.exploit_head is not None:
        metrics["val_exploit_score"] = score(segment_softmax(
            out.exploit.double().cpu(), exact.sa_state, exact.n_states))
    if model.sampler is not None:
        noise = torch.Generator(device=weight.device).manual_seed(0)
        metrics["val_posterior_loss"] = posterior_loss(model.sampler, graph, 4, noise).item()
    model.train()
    return metrics


# ---- the loop -----------------------------------------------------------------------------------
def train(cfg: RunConfig, out: str | os.PathLike, resume: bool = False, log=print,
          device: str = "cpu") -> Path:
    """Train (or resume) the run of `cfg` into `out` on `device` ("cpu" or "cuda"); under
    torchrun, one process per device (DDP over gloo on CPU, NCCL on CUDA)."""
    out = Path(out)
    tc = cfg.train
    if not tc.sampler_only and cfg.model.exploit_head != (tc.return_weight > 0):
        raise RlfmError("model.exploit_head and train.return_weight > 0 go together (the return "
                        "loss trains the exploitation head, and nothing else does)")
    if tc.posterior_weight > 0 and not cfg.model.noise_dim:
        raise RlfmError("train.posterior_weight > 0 needs a posterior sampler (model.noise_dim "
                        "> 0)")
    if tc.sampler_only and tc.posterior_weight <= 0:
        raise RlfmError("train.sampler_only trains the posterior sampler alone: it needs "
                        "train.posterior_weight > 0")
    if tc.world_batch % tc.batch_size:
        raise RlfmError(f"train.world_batch ({tc.world_batch}) must be a multiple of "
                        f"train.batch_size ({tc.batch_size})")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RlfmError("--device cuda: no CUDA device is available")
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed and tc.posterior_weight > 0:
        # the sampler runs outside DDP's forward, whose hooks average the gradients
        raise RlfmError("train.posterior_weight > 0 runs in one process only (not under "
                        "torchrun)")
    rank = 0
    if distributed:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        rank = dist.get_rank()
    main = rank == 0
    torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed)
    model = RLFM(cfg.model)
    if tc.init:
        initialise(model, tc.init)
    if tc.sampler_only:
        for p in model.parameters():
            p.requires_grad_(False)
        model.sampler.requires_grad_(True)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=tc.lr,
                            weight_decay=tc.weight_decay)
    lock = OutputDir(out) if main else contextlib.nullcontext()
    with lock:
        return _train(cfg, out, model, opt, resume, log, device, distributed, rank)


def _train(cfg: RunConfig, out: Path, model: RLFM, opt, resume: bool, log, device, distributed,
           rank) -> Path:
    tc, main = cfg.train, rank == 0
    step, restored = 0, {}
    if main:
        _remove_incomplete(out)
    if resume:
        step, restored = _restore(model, opt, out, cfg, log)
        if not step:
            log(f"nothing to resume in {out}: starting from scratch")
    elif _checkpoints(out) or (out / "model.json").exists():
        raise RlfmError(f"{out} already holds a training run; pass --resume or another --out")
    model.to(device)
    _optimizer_to(opt, device)
    ddp_model = model
    if distributed:
        ddp_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    from rlfm.priors.dataset import make_loader

    # The world makes `world_batch` MDPs at once (cheaper per MDP than small batches), split into
    # optimiser steps of `batch_size`; on resume, the steps of a world batch already taken are
    # skipped, so that the stream of steps is the same as without the interruption.
    parts = tc.world_batch // tc.batch_size
    loader = make_loader(seed=tc.seed * 1000 + rank, batch_size=tc.world_batch,
                         num_workers=tc.workers, config=cfg.prior or None, start=step // parts,
                         device=device if tc.workers == 0 else None)
    skip = step % parts
    val = validation_set(cfg) if main else None
    reference = cevi_reference(val) if main else {}
    if main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.json", json.dumps(cfg.to_dict(), indent=1))
        log("CE-VI on the validation statistics: " +
            " ".join(f"{k}={v:.3f}" for k, v in reference.items()))
    history = list(restored.get("validation", []))
    if main:
        _truncate_log(out / "log.csv", step)  # rows logged after the checkpoint are redone
    before = float(restored.get("wall_time_s", 0.0))  # earlier segments of a resumed run
    started, seen = time.perf_counter(), 0
    model.train()
    for batch in _steps(loader, parts, skip):
        if step >= tc.steps:
            break
        batch = batch.to(device)
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, tc)
        loss, parts = compute_loss(ddp_model, batch, tc)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        step += 1
        seen += batch.n_graphs
        if main and (step % tc.log_every == 0 or step == tc.steps):
            rate = seen / (time.perf_counter() - started)
            row = {"step": step, "lr": opt.param_groups[0]["lr"], "loss": loss.item(),
                   **{k: v.item() for k, v in parts.items()},
                   "grad_norm": float(grad_norm), "mdps_per_s": rate}
            if step % tc.eval_every == 0 or step == tc.steps:
                row.update(validate(model, val))
                history.append(row)
            _append_csv(out / "log.csv", row)
            log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in row.items()))
        if main and (step % tc.checkpoint_every == 0 or step == tc.steps):
            _checkpoint(model, opt, step, cfg, out, history,
                        before + time.perf_counter() - started)
    if main:
        final = save_model(model, out / "model", training=cfg.to_dict(), steps=step,
                           validation=history, metrics=history[-1] if history else {},
                           validation_cevi=reference, hardware=_hardware(),
                           wall_time_s=before + time.perf_counter() - started)
        log(f"wrote {final}")
    if distributed:
        dist.destroy_process_group()
    return out / "model.safetensors"


def _steps(loader, parts: int, skip: int):
    """The optimiser steps' batches: each world batch split in `parts`, the first `skip` steps
    of the first one left out (taken before a resume)."""
    for world in loader:
        yield from world.split(parts)[skip:]
        skip = 0


def _optimizer_to(opt: torch.optim.Optimizer, device: torch.device) -> None:
    for state in opt.state.values():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and key != "step":
                state[key] = value.to(device)


# ---- checkpoints: one atomic unit each ---------------------------------------------------------
# A training checkpoint is `step-NNNNNNNNN.safetensors` (weights), `...optimizer.safetensors` and
# `....json`, written in that order, each atomically; the JSON, written last, names both files'
# SHA-256. A checkpoint exists only once its JSON does and both checksums match, so a kill at any
# moment leaves the previous checkpoint whole; resume takes the newest complete one.
CHECKPOINT = "step-{:09d}"
KEEP_CHECKPOINTS = 2


def _checkpoint(model, opt, step, cfg, out: Path, history, wall_time_s: float) -> None:
    stem = out / CHECKPOINT.format(step)
    tensors, meta = _optimizer_tensors(opt)
    optimizer_sha = save_tensors(tensors, _optimizer_path(stem))
    save_model(model, stem, training=cfg.to_dict(), steps=step, validation=history,
               wall_time_s=wall_time_s, optimizer={"step": step, "sha256": optimizer_sha, **meta})
    for old in _checkpoints(out)[KEEP_CHECKPOINTS:]:
        for path in (old.with_suffix(".json"), old.with_suffix(".safetensors"),
                     _optimizer_path(old)):  # the JSON first: never a JSON without its files
            path.unlink(missing_ok=True)


def _optimizer_path(stem: Path) -> Path:
    return stem.with_name(stem.name + ".optimizer.safetensors")


def _checkpoints(out: Path) -> list[Path]:
    """Stems of the checkpoints whose JSON was written, newest first."""
    stems = (p.with_suffix("") for p in out.glob("step-*.json"))
    return sorted(stems, key=lambda stem: int(stem.name.split("-")[1]), reverse=True)


def _remove_incomplete(out: Path) -> None:
    """Remove the checkpoint files whose JSON a killed run never wrote (its temporary files
    went when `OutputDir` took the directory)."""
    complete = {p.name for p in _checkpoints(out)}
    for path in out.glob("step-*.safetensors"):
        if path.name.split(".")[0] not in complete:
            path.unlink(missing_ok=True)


STREAM_KEYS = ("seed", "batch_size", "world_batch")  # what fixes the data stream of a run


def _restore(model, opt, out: Path, cfg: RunConfig, log) -> tuple[int, dict]:
    """Load the newest complete checkpoint of `out` into model and optimizer; returns its step
    and JSON ((0, {}) when there is none). A checkpoint that does not verify is skipped."""
    for stem in _checkpoints(out):
        try:
            saved = load_model(stem)  # verifies version and checksum
            config = saved.checkpoint_info
            meta = config.get("optimizer") or {}
            tensors = load_tensors(_optimizer_path(stem), meta.get("sha256"))
        except CheckpointError as e:
            log(f"skipping checkpoint {stem.name}: {e}")
            continue
        before = config.get("training") or {}
        changed = [k for k in STREAM_KEYS
                   if before.get("train", {}).get(k) != getattr(cfg.train, k)]
        if before.get("prior", {}) != cfg.prior:
            changed.append("prior")
        if before.get("model", {}) != asdict(cfg.model):
            changed.append("model")
        if changed:
            raise RlfmError(f"{out}: cannot resume with another data stream (changed: "
                            f"{', '.join(changed)}); use the run's own config or another --out")
        model.load_state_dict(saved.state_dict())
        try:
            _load_optimizer(opt, tensors, meta)
        except (KeyError, ValueError) as e:
            raise CheckpointError(f"{stem}: cannot restore the optimizer state ({e})") from None
        log(f"resumed from {stem} at step {config['steps']}")
        return int(config["steps"]), config
    return 0, {}


def _append_csv(path: Path, row: dict) -> None:
    """Append a row; the header is the union of keys seen (validation rows have more)."""
    rows = _read_csv(path)
    rows.append({k: v for k, v in row.items()})
    _write_csv(path, rows)


def _truncate_log(path: Path, step: int) -> None:
    """Keep the rows up to `step` (those after it are logged again after a resume)."""
    rows = _read_csv(path)
    kept = [r for r in rows if int(r["step"]) <= step]
    if len(kept) < len(rows):
        _write_csv(path, kept)


def _read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _write_csv(path: Path, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(path, write)


def _hardware() -> str:
    import platform

    return f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"


def main(argv: list[str] | None = None) -> None:
    """Entry point for `python -m rlfm.train` (and torchrun)."""
    import argparse

    parser = argparse.ArgumentParser(prog="rlfm.train")
    parser.add_argument("--config")
    parser.add_argument("--out", default="runs/train")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args(argv)
    try:
        train(RunConfig.load(args.config), args.out, args.resume, device=args.device)
    except RlfmError as e:
        print(f"rlfm: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
