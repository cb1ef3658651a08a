"""Pretraining: a tiny run end to end, resume after an interruption, and DDP over 2 processes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlfm import RlfmError
from rlfm.checkpoint import load_model
from rlfm.train import RunConfig, energy_score, learning_rate, train

TINY = Path(__file__).parent.parent / "configs" / "tiny.toml"


def weights(path):
    return load_model(path).state_dict()


def test_tiny_run_writes_model_log_and_checkpoints(tmp_path):
    train(RunConfig.load(TINY), tmp_path, log=lambda _: None)
    assert (tmp_path / "log.csv").read_text().count("\n") == 4  # header + steps 2, 4, 6
    model = load_model(tmp_path / "model")
    assert model.checkpoint_info["steps"] == 6
    assert "val_prior_score" in model.checkpoint_info["metrics"]
    with pytest.raises(RlfmError, match="already holds a training run"):
        train(RunConfig.load(TINY), tmp_path, log=lambda _: None)


def test_return_loss_trains_an_exploitation_head_from_a_checkpoint(tmp_path):
    """With an exploitation head and a return weight, the log has the return loss and
    validation the head's exact score; `init` starts from another run's shared weights."""
    from rlfm.model import RLFM
    from rlfm.train import initialise

    train(RunConfig.load(TINY), tmp_path / "base", log=lambda _: None)
    cfg = RunConfig.from_dict({"model": {"width": 16, "steps": 2, "exploit_head": True},
                               "train": {"steps": 2, "batch_size": 4, "world_batch": 8,
                                         "workers": 0, "log_every": 2, "eval_every": 2,
                                         "return_weight": 2.0,
                                         "init": str(tmp_path / "base" / "model")},
                               "validation": {"prior_examples": 8}})
    model = RLFM(cfg.model)
    initialise(model, cfg.train.init)
    base = weights(tmp_path / "base" / "model")
    for name, value in model.state_dict().items():
        if name.startswith("exploit_head"):
            assert name not in base
        else:
            assert torch.equal(value, base[name]), name
    train(cfg, tmp_path / "tuned", log=lambda _: None)
    header = (tmp_path / "tuned" / "log.csv").read_text().splitlines()[0].split(",")
    assert "return_loss" in header and "val_exploit_score" in header
    lonely = RunConfig.from_dict({"model": {"width": 16, "steps": 2, "exploit_head": True}})
    with pytest.raises(RlfmError, match="go together"):
        train(lonely, tmp_path / "lonely", log=lambda _: None)
    other = RunConfig.from_dict({"model": {"width": 8, "steps": 1}})
    with pytest.raises(RlfmError, match="does not fit this model"):
        initialise(RLFM(other.model), str(tmp_path / "base" / "model"))


def test_sampler_only_trains_the_posterior_sampler_alone(tmp_path):
    """A posterior sampler fine-tuned from a checkpoint starts as a copy of its trunk; with
    sampler_only, every other weight stays the checkpoint's."""
    from rlfm.model import RLFM
    from rlfm.train import initialise

    train(RunConfig.load(TINY), tmp_path / "base", log=lambda _: None)
    base = weights(tmp_path / "base" / "model")
    sampler = {"model": {"width": 16, "steps": 2, "noise_dim": 2},
               "train": {"steps": 2, "batch_size": 4, "world_batch": 8, "workers": 0,
                         "log_every": 2, "eval_every": 2, "posterior_weight": 1.0,
                         "sampler_only": True, "init": str(tmp_path / "base" / "model")},
               "validation": {"prior_examples": 8}}
    cfg = RunConfig.from_dict(sampler)
    model = RLFM(cfg.model)
    initialise(model, cfg.train.init)
    start = model.state_dict()
    for name in ("sa_in.0.weight", "blocks.0.query.weight"):
        assert torch.equal(start["sampler." + name], base[name])
    train(cfg, tmp_path / "sampler", log=lambda _: None)
    tuned = weights(tmp_path / "sampler" / "model")
    assert all(torch.equal(tuned[name], value) for name, value in base.items())
    assert not torch.equal(tuned["sampler.reward_head.2.weight"],
                           start["sampler.reward_head.2.weight"])
    header = (tmp_path / "sampler" / "log.csv").read_text().splitlines()[0].split(",")
    assert "posterior_loss" in header and "val_posterior_loss" in header
    for model_cfg, train_cfg, message in (({}, {"posterior_weight": 1.0}, "noise_dim"),
                                          ({"noise_dim": 2}, {"sampler_only": True},
                                           "posterior_weight")):
        bad = RunConfig.from_dict({"model": {"width": 16, "steps": 2, **model_cfg},
                                   "train": train_cfg})
        with pytest.raises(RlfmError, match=message):
            train(bad, tmp_path / "bad", log=lambda _: None)


def test_energy_score_is_zero_at_the_truth_and_lowest_for_the_right_distribution():
    group = torch.tensor([0, 0, 1, 1, 1])
    y = torch.tensor([1.0, 2.0, -1.0, 0.0, 3.0], dtype=torch.float64)
    zero = energy_score(y.expand(4, -1), y, group, 2)
    torch.testing.assert_close(zero, torch.zeros(2, dtype=torch.float64), atol=1e-5, rtol=0)
    # y ~ N(0, 1) per coordinate: samples from N(0, 1) score lower than too narrow, too wide
    # or shifted ones
    gen = torch.Generator().manual_seed(0)
    truths = torch.randn(2000, 3, generator=gen, dtype=torch.float64)
    noise = torch.randn(8, 3, generator=gen, dtype=torch.float64)

    def mean_score(scale, shift):
        x = (noise[:, None] * scale + shift).expand(8, 2000, 3).reshape(8, -1)
        return energy_score(x, truths.reshape(-1), torch.arange(2000).repeat_interleave(3),
                            2000).mean()
    right = mean_score(1.0, 0.0)
    assert all(right < mean_score(scale, shift) for scale, shift in ((0.3, 0.0), (3.0, 0.0),
                                                                      (1.0, 1.0)))


class Stop(Exception):
    pass


def test_resume_after_interruption_matches_an_uninterrupted_run(tmp_path):
    cfg = RunConfig.load(TINY)
    train(cfg, tmp_path / "straight", log=lambda _: None)

    def interrupt(line):
        if line.startswith("step=4"):
            raise Stop  # after the checkpoint of step 3, before the one of step 6

    with pytest.raises(Stop):
        train(cfg, tmp_path / "cut", log=interrupt)
    assert not (tmp_path / "cut" / "model.json").exists()
    messages = []
    train(cfg, tmp_path / "cut", resume=True, log=messages.append)
    assert any("resumed" in m and "step 3" in m for m in messages)
    for (k, a), (_, b) in zip(weights(tmp_path / "straight" / "model").items(),
                              weights(tmp_path / "cut" / "model").items(), strict=True):
        torch.testing.assert_close(a, b, msg=k)


def test_resume_refuses_another_data_stream(tmp_path):
    cfg = RunConfig.load(TINY)
    train(cfg, tmp_path, log=lambda _: None)
    cfg.train.world_batch = 12
    with pytest.raises(RlfmError, match="world_batch"):
        train(cfg, tmp_path, resume=True, log=lambda _: None)


def test_learning_rate_schedule():
    tc = RunConfig().train
    assert learning_rate(0, tc) == pytest.approx(tc.lr / tc.warmup_steps)
    assert learning_rate(tc.warmup_steps, tc) == pytest.approx(tc.lr)
    assert learning_rate(tc.steps, tc) == pytest.approx(0.1 * tc.lr)


def test_bad_config_is_refused(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[model]\nwidht = 3\n")
    with pytest.raises(RlfmError, match="widht"):
        RunConfig.load(path)
    path.write_text("[model\n")
    with pytest.raises(RlfmError, match="invalid TOML"):
        RunConfig.load(path)
    path.write_text('[train]\nprecision = "float16"\n')
    with pytest.raises(RlfmError, match="train.precision must be one of 'float32', 'bfloat16'"):
        RunConfig.load(path)


def test_bfloat16_forward_pass_gives_the_float32_losses_and_gradients_to_its_precision():
    """precision = "bfloat16" runs the networks under autocast: every loss (posterior score
    included) and the gradient are those of float32 within bfloat16's relative precision
    (about 1e-2 after a few layers), and what the losses see is float32."""
    from rlfm.model import RLFM, ModelConfig
    from rlfm.priors.batch import sample_batch
    from rlfm.train import TrainConfig, compute_loss

    torch.manual_seed(0)
    model = RLFM(ModelConfig(width=32, steps=2, exploit_head=True, noise_dim=2))
    graph = sample_batch(7, 0, 16).graph
    results = {}
    for precision in ("float32", "bfloat16"):
        tc = TrainConfig(return_weight=2.0, posterior_weight=1.0, precision=precision)
        model.zero_grad()
        torch.manual_seed(1)   # the sampler's noise
        loss, parts = compute_loss(model, graph, tc)
        loss.backward()
        grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results[precision] = loss.detach(), parts, grad
        assert loss.dtype == torch.float32
    (loss32, parts32, grad32), (loss16, parts16, grad16) = results.values()
    assert set(parts16) == {"policy_loss", "value_loss", "return_loss", "posterior_loss"}
    for name, value in parts32.items():
        assert torch.allclose(parts16[name], value, rtol=0.05, atol=0.01), name
    assert not torch.equal(loss16, loss32)   # the products really ran in bfloat16
    cosine = torch.nn.functional.cosine_similarity(grad16, grad32, dim=0)
    assert cosine > 0.98


def test_ddp_two_processes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", "29533", "-m", "rlfm.train", "--config", str(TINY),
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=300,
                         env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert load_model(tmp_path / "model").checkpoint_info["steps"] == 6
