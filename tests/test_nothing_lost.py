"""Nothing lost, nothing silent (issue 15): output directories checked before work, Ctrl-C
keeps what finished, checkpoints survive a kill at any point of their write, concurrent runs do
not mix files, configs are validated, and silently ignored input is refused. Signals and kills
go to real subprocesses through the real entry points."""

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rlfm import CheckpointError, InvalidDataError, InvalidMDPError, ResourceLimitError, RlfmError
from rlfm.checkpoint import load_model, save_model
from rlfm.io import atomic_write_text, remove_stale_temps
from rlfm.mdp import TabularMDP
from rlfm.model import RLFM, ModelConfig
from rlfm.train import RunConfig, train

TINY = Path(__file__).parent.parent / "configs" / "tiny.toml"
RLFM_CLI = [sys.executable, "-m", "rlfm"]
# A run that would take minutes: any check made after the work would time the test out.
LONG = ["online", "rlfm/RiverSwim-v0", "--agents", "psrl,ucbvi", "--episodes", "300",
        "--seeds", "40"]


def cli(*args, timeout=120):
    return subprocess.run([*RLFM_CLI, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def one_line_error(result, text):
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], result.stderr


# ---- 1. --out is checked before any work --------------------------------------------------------
def test_bad_out_is_refused_before_the_run(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    one_line_error(cli(*LONG, "--out", afile, timeout=30), "is a file, not a directory")
    one_line_error(cli(*LONG, "--out", afile / "sub", timeout=30), "is a file, not a directory")
    one_line_error(cli(*LONG, "--out", "/proc/rlfm-cannot-write", timeout=30),
                   "cannot create the directory")
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "results.json").write_text("{}")
    one_line_error(cli(*LONG, "--out", tmp_path / "done", timeout=30), "--overwrite")
    assert (tmp_path / "done" / "results.json").read_text() == "{}"
    ran = cli("online", "rlfm/NChain-v0", "--agents", "uniform", "--episodes", "2", "--seeds",
              "1", "--out", tmp_path / "done", "--overwrite")
    assert ran.returncode == 0, ran.stderr
    assert json.loads((tmp_path / "done" / "results.json").read_text())["complete"] is True


# ---- 2. Ctrl-C keeps the seeds that finished ----------------------------------------------------
def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains `text` (what `pgrep -f` does, without needing it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def _default_sigint() -> None:
    """Ctrl-C's default meaning in the child, even where this test runs with SIGINT ignored (a
    background job of a non-interactive shell inherits it ignored, and so would the CLI)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt(args, wait=4.0, second=False):
    """Start the CLI in its own process group, send SIGINT to the group (as Ctrl-C does) `wait`
    seconds after the run has started (it has locked its --out; the machine may be busy, so
    never a fixed delay from launch), and a second one 0.3 s later if asked; returns (result,
    seconds to exit)."""
    out = Path(args[args.index("--out") + 1])
    proc = subprocess.Popen([*RLFM_CLI, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_default_sigint)
    deadline = time.monotonic() + 120
    while not (out / ".rlfm.lock").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(wait)
    sent = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    if second:
        time.sleep(0.3)
        try:
            os.killpg(proc.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
    stdout, stderr = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr), \
        time.monotonic() - sent


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_writes_the_finished_seeds(tmp_path, workers):
    result, took = interrupt([*LONG, "--workers", workers, "--out", tmp_path])
    assert result.returncode == 130, result.stderr[-2000:]
    assert took < 8.0  # a second or so on an idle machine
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "rlfm: interrupted"
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["complete"] is False
    assert results["agents"], "some seeds finish within the first seconds"
    for entry in results["agents"].values():
        assert 1 <= entry["seeds"] < 40
        assert len(entry["curves"]) == len(entry["seed_ids"]) == entry["seeds"]
        assert np.allclose(np.mean(entry["curves"], axis=0), entry["curve"])
    assert (tmp_path / "table.txt").exists() and (tmp_path / "online.png").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_second_ctrl_c_exits_at_once(tmp_path):
    result, took = interrupt([*LONG, "--workers", 2, "--out", tmp_path], second=True)
    # 130, or killed by the second SIGINT while exiting: a shell reports both as status 130
    assert result.returncode in (130, -signal.SIGINT)
    assert took < 5.0
    assert "Traceback" not in result.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert not processes_mentioning(str(tmp_path))  # no worker left behind


def test_ctrl_c_offline_keeps_whole_seeds(tmp_path):
    result, _ = interrupt(["offline", "rlfm/RiverSwim-v0", "--agents", "cevi,vilcb",
                           "--dataset-episodes", "30,100,300", "--seeds", "200", "--workers", 2,
                           "--out", tmp_path])
    assert result.returncode == 130, result.stderr[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["complete"] is False
    for entry in results["agents"].values():
        assert len(entry["scores"]) == entry["seeds"] >= 1   # every D of each kept seed
        assert all(len(row) == 3 for row in entry["scores"])


def test_complete_runs_say_so_and_leave_stderr_empty(tmp_path):
    result = cli("online", "rlfm/NChain-v0", "--agents", "uniform", "--episodes", "2", "--seeds",
                 "2", "--workers", "1", "--out", tmp_path)
    assert result.returncode == 0 and result.stderr == ""
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["complete"] is True
    assert results["agents"]["uniform"]["seed_ids"] == [0, 1]


# ---- 3. a checkpoint is one atomic unit -----------------------------------------------------------
KILLER = """
import os, signal, sys
n, count = int(sys.argv[1]), [0]
real_replace, real_fsync = os.replace, os.fsync
def event():
    count[0] += 1
    if count[0] == n:
        os.kill(os.getpid(), signal.SIGKILL)
def replace(a, b):
    event()
    real_replace(a, b)
def fsync(fd):
    event()
    real_fsync(fd)
os.replace, os.fsync = replace, fsync
from rlfm.train import RunConfig, train
train(RunConfig.load(sys.argv[2]), sys.argv[3], log=lambda m: None)
"""


def test_kill_inside_a_checkpoint_write_resumes_to_the_same_weights(tmp_path):
    """SIGKILL at file-system events (each fsync and rename) inside the writes of the tiny
    run's checkpoints (steps 3 and 6) and of the final model; the resumed run must end with
    exactly the weights of an uninterrupted one, a log without repeated rows, no stray files."""
    cfg = RunConfig.load(TINY)
    train(cfg, tmp_path / "straight", log=lambda _: None)
    straight = load_model(tmp_path / "straight" / "model").state_dict()
    # 8, 11, 14: renames of step 3's optimizer, weights, JSON; 23, 26, 29: the same at step 6;
    # 30: after step 6's JSON is renamed; 35: the final model's JSON.
    for event in (11, 14, 23, 26, 29, 30, 35):
        out = tmp_path / f"kill-{event}"
        killed = subprocess.run([sys.executable, "-c", KILLER, str(event), str(TINY), str(out)],
                                capture_output=True, text=True, timeout=300)
        assert killed.returncode == -signal.SIGKILL, (event, killed.stderr[-2000:])
        train(cfg, out, resume=True, log=lambda _: None)
        resumed = load_model(out / "model").state_dict()
        for key in straight:
            torch.testing.assert_close(resumed[key], straight[key], msg=f"{event}: {key}")
        steps = [int(r["step"]) for r in csv.DictReader((out / "log.csv").open())]
        assert steps == [2, 4, 6], event
        assert not [p for p in out.iterdir() if p.name.endswith(".tmp")], event


def test_resume_skips_a_damaged_checkpoint_and_counts_all_wall_time(tmp_path):
    cfg = RunConfig.load(TINY)
    cfg.train.checkpoint_every = 1
    cfg.train.steps = 4
    train(cfg, tmp_path, log=lambda _: None)
    newest = sorted(tmp_path.glob("step-*.json"))
    assert [p.name for p in newest] == ["step-000000003.json", "step-000000004.json"]
    first = json.loads((tmp_path / "model.json").read_text())["wall_time_s"]
    (tmp_path / "model.json").unlink()
    # the newest checkpoint's optimizer file is damaged: resume falls back to step 3
    optimizer = tmp_path / "step-000000004.optimizer.safetensors"
    optimizer.write_bytes(optimizer.read_bytes()[:-8])
    messages = []
    train(cfg, tmp_path, resume=True, log=messages.append)
    assert any("skipping checkpoint step-000000004" in m for m in messages)
    assert any("resumed from" in m and "step 3" in m for m in messages)
    info = json.loads((tmp_path / "model.json").read_text())
    assert info["wall_time_s"] >= json.loads((tmp_path / "step-000000003.json").read_text()
                                             )["wall_time_s"]
    assert first > 0


# ---- 4. concurrent runs never mix their files ------------------------------------------------------
def test_a_second_run_on_the_same_out_is_refused(tmp_path):
    proc = subprocess.Popen([*RLFM_CLI, *LONG, "--workers", "1", "--out", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / ".rlfm.lock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the file exists just before the lock is taken
        one_line_error(cli(*LONG, "--out", tmp_path, "--overwrite", timeout=30),
                       "another rlfm run is writing to this directory")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_atomic_writes_from_many_threads_never_collide(tmp_path):
    path = tmp_path / "results.json"
    errors = []

    def write(i):
        try:
            for _ in range(20):
                atomic_write_text(path, json.dumps({"writer": i, "pad": "x" * 10_000}))
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert json.loads(path.read_text())["pad"] == "x" * 10_000
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_stale_temporary_files_of_dead_processes_are_removed(tmp_path):
    dead = tmp_path / ".results.json.999999999.abcd1234.tmp"
    mine = tmp_path / f".results.json.{os.getpid()}.abcd1234.tmp"
    dead.write_text("half")
    mine.write_text("in progress")
    assert remove_stale_temps(tmp_path) == [dead]
    assert mine.exists()


# ---- 5. configs are validated before anything is allocated ----------------------------------------
@pytest.mark.parametrize("field, value, message", [
    ("width", -5, "model.width must lie in"),
    ("width", 200_000, "model.width must lie in"),
    ("steps", 1e9, "model.steps must be an integer"),
    ("weight_tying", "yes", "model.weight_tying must be true or false"),
])
def test_checkpoint_config_fields_are_checked(tmp_path, field, value, message):
    save_model(RLFM(ModelConfig(width=8, steps=1)), tmp_path / "ckpt")
    config = json.loads((tmp_path / "ckpt.json").read_text())
    config["model"][field] = value
    (tmp_path / "ckpt.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=message):
        load_model(tmp_path / "ckpt")
    one_line_error(cli("online", "rlfm/NChain-v0", "--agents", "rlfm", "--episodes", "1",
                       "--seeds", "1", "--checkpoint", tmp_path / "ckpt"), message)


@pytest.mark.parametrize("checksum", [None, "", "abc", 5])
def test_a_missing_checksum_is_an_error(tmp_path, checksum):
    save_model(RLFM(ModelConfig(width=8, steps=1)), tmp_path / "ckpt")
    config = json.loads((tmp_path / "ckpt.json").read_text())
    config["weights_sha256"] = checksum
    (tmp_path / "ckpt.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="weights_sha256"):
        load_model(tmp_path / "ckpt")


@pytest.mark.parametrize("table, line, message", [
    ("train", "checkpoint_every = 0", "train.checkpoint_every must lie in [1,"),
    ("train", 'steps = "ten"', "train.steps must be an integer"),
    ("train", "steps = -5", "train.steps must lie in [1,"),
    ("train", "lr = nan", "train.lr must be a finite number"),
    ("train", "workers = true", "train.workers must be an integer"),
    ("model", "width = 0", "model.width must lie in [1,"),
    ("validation", "prior_examples = 0", "validation.prior_examples must lie in [1,"),
    ("prior.families.garnet", "n_states = [0, 5]", "families.garnet.n_states must lie in [1,"),
    ("prior.context", "transitions_per_state = -5", "context.transitions_per_state must lie in"),
    ("prior.rewards", 'negate_prob = "often"', "rewards.negate_prob must be a finite number"),
    ("prior", "families = 5", "families must be a table"),
])
def test_training_config_fields_are_checked(tmp_path, table, line, message):
    path = tmp_path / "bad.toml"
    path.write_text(f"[{table}]\n{line}\n")
    with pytest.raises(RlfmError, match=message.replace("[", r"\[")):
        RunConfig.load(path)
    result = cli("train", "--config", path, "--out", tmp_path / "run", timeout=60)
    one_line_error(result, message)
    assert str(path) in result.stderr
    assert not (tmp_path / "run").exists()


# ---- 6. a dense P is held sparse, and every process's copy is counted ------------------------------
def chain(S: int, A: int = 2) -> TabularMDP:
    P = np.zeros((S, A, S))
    P[np.arange(S), 0, np.minimum(np.arange(S) + 1, S - 1)] = 1.0
    P[:, 1:, 0] = 1.0
    R = np.zeros((S, A))
    R[-1, 0] = 1.0
    return TabularMDP(P, R, np.eye(S)[0], horizon=S)


def test_a_dense_npz_is_held_sparse(tmp_path):
    mdp = chain(1500)
    dense_bytes = 8 * 1500 * 2 * 1500
    path = tmp_path / "big.npz"
    with open(path, "wb") as f:
        np.savez_compressed(f, P=mdp.P, R=mdp.R, initial=mdp.initial, horizon=mdp.horizon)
    loaded = TabularMDP.load(path)
    assert loaded.is_sparse and loaded.nbytes < dense_bytes / 100
    assert np.array_equal(loaded.P, mdp.P)


def test_the_memory_check_counts_one_copy_per_process(tmp_path, monkeypatch):
    import rlfm.limits
    from rlfm.evaluate import run_online

    mdp = chain(40)
    mdp.save(tmp_path / "chain.npz")
    budget = 2.5 * mdp.nbytes / rlfm.limits.HEADROOM  # room for two copies, not for three
    monkeypatch.setattr(rlfm.limits, "available_memory", lambda: budget)
    run_online(str(tmp_path / "chain.npz"), ["uniform"], 1, 1, workers=1)
    with pytest.raises(ResourceLimitError, match="3 copies of the MDP"):
        run_online(str(tmp_path / "chain.npz"), ["uniform"], 1, 2, workers=2)


# ---- 7. returns that would overflow are refused ------------------------------------------------------
def test_overflowing_rewards_are_refused_naming_the_file(tmp_path):
    mdp = chain(4)
    path = tmp_path / "huge.npz"
    with open(path, "wb") as f:
        np.savez(f, P=mdp.P, R=np.full((4, 2), 1e308), initial=mdp.initial, horizon=4)
    for args in (["solve", path, "--json"], ["online", path, "--agents", "uniform", "--seeds", 1,
                                             "--episodes", 1]):
        result = cli(*args)
        one_line_error(result, str(path))
        assert "overflow" in result.stderr and result.stdout == ""
    with pytest.raises(InvalidMDPError, match="overflow"):
        TabularMDP(mdp.P, np.full((4, 2), 1e300), mdp.initial, horizon=10_000)


# ---- 8. silently ignored input becomes an error or a warning --------------------------------------
def write_dataset(path, n=3, **extra):
    rng = np.random.default_rng(0)
    np.savez(path, observations=rng.integers(16, size=n), actions=rng.integers(4, size=n),
             rewards=np.zeros(n), next_observations=rng.integers(16, size=n),
             terminations=np.zeros(n, bool), n_states=16, n_actions=4, **extra)


def test_dataset_unknown_keys_and_empty_datasets_are_refused(tmp_path):
    write_dataset(tmp_path / "extra.npz", obsevations=np.zeros(3))
    with pytest.raises(InvalidDataError, match="unknown key.*obsevations"):
        load_dataset_file(tmp_path / "extra.npz")
    write_dataset(tmp_path / "empty.npz", n=0)
    with pytest.raises(InvalidDataError, match="no transitions"):
        load_dataset_file(tmp_path / "empty.npz")


def load_dataset_file(path):
    from rlfm.datasets import load_dataset

    return load_dataset(str(path), 16, 4)


@pytest.mark.parametrize("flag, value", [("--behavior", "expert"), ("--dataset-episodes", "5")])
def test_generated_dataset_options_with_a_dataset_are_refused(tmp_path, flag, value):
    write_dataset(tmp_path / "d.npz")
    one_line_error(cli("offline", "FrozenLake-v1", "--agents", "cevi", "--dataset",
                       tmp_path / "d.npz", flag, value), flag)


def test_a_large_run_says_so_before_it_starts(tmp_path):
    proc = subprocess.Popen([*RLFM_CLI, "online", "FrozenLake-v1", "--agents", "uniform",
                             "--episodes", "100000", "--seeds", "3", "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        line = proc.stderr.readline()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert "this run makes up to 30,000,000 environment steps" in line


# ---- 9. regret is discounted as J is ----------------------------------------------------------------
def test_regret_is_zero_for_an_optimal_agent_with_discount(tmp_path):
    from rlfm.evaluate import run_online

    S = 5  # one action: every agent is optimal; the return is deterministic
    P = np.zeros((S, 1, S))
    P[np.arange(S), 0, np.minimum(np.arange(S) + 1, S - 1)] = 1.0
    mdp = TabularMDP(P, np.ones((S, 1)), np.eye(S)[0], horizon=20, gamma=0.9)
    mdp.save(tmp_path / "chain.npz")
    results = run_online(str(tmp_path / "chain.npz"), ["psrl"], 5, 2)
    assert results["agents"]["psrl"]["regret"] == pytest.approx(0.0, abs=1e-9)


def _die_on_three(task):
    if task == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return task


def test_a_worker_that_dies_ends_the_run_with_an_error_not_a_hang():
    from rlfm.evaluate import _map

    started = time.monotonic()
    with pytest.raises(RlfmError, match="worker process died"):
        _map(_die_on_three, list(range(8)), workers=2)
    assert time.monotonic() - started < 30
    assert _map(_die_on_three, [0, 1, 2], workers=2) == [0, 1, 2]


def test_resume_refuses_another_model(tmp_path):
    cfg = RunConfig.load(TINY)
    train(cfg, tmp_path, log=lambda _: None)
    (tmp_path / "model.json").unlink()
    cfg.model.width = 24
    with pytest.raises(RlfmError, match="changed: model"):
        train(cfg, tmp_path, resume=True, log=lambda _: None)


def test_checkpoints_are_ordered_by_step_not_by_name(tmp_path):
    from rlfm.train import _checkpoints

    for step in (999_999_999, 1_000_000_000, 5):
        (tmp_path / f"step-{step:09d}.json").write_text("{}")
    assert [p.name for p in _checkpoints(tmp_path)] == [
        "step-1000000000", "step-999999999", "step-000000005"]


def test_a_huge_integer_in_a_config_is_a_one_line_error(tmp_path):
    for table, key in (("train", "lr"), ("prior.context", "reward_noise_prob")):
        path = tmp_path / "huge.toml"
        path.write_text(f"[{table}]\n{key} = 1" + "0" * 400 + "\n")
        one_line_error(cli("train", "--config", path, "--out", tmp_path / "run"),
                       f"{table.removeprefix('prior.')}.{key} must be a finite number")


def test_ctrl_c_before_any_seed_keeps_the_previous_results(tmp_path):
    (tmp_path / "results.json").write_text('{"kept": true}')
    slow = ["online", "Taxi-v3", "--agents", "psrl", "--episodes", "100", "--seeds", "2"]
    result, _ = interrupt([*slow, "--workers", 1, "--out", tmp_path, "--overwrite"], wait=1.0)
    assert result.returncode == 130
    assert json.loads((tmp_path / "results.json").read_text()) == {"kept": True}
