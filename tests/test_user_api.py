"""What a user of the field expects (issue 16, first part): their own environments by
`module:EnvId` and --env-kwargs, registered environments that pass Gymnasium's checker, results
that record how they were made, a tidy CSV, `--version`, and docs that stay inside the repo."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rlfm
from rlfm.checkpoint import PRETRAINED, pretrained_path
from rlfm.envs import EVAL_GARNETS, SUITE_BUILDERS

ROOT = Path(__file__).parent.parent
RLFM_CLI = [sys.executable, "-m", "rlfm"]

USER_MODULE = '''
import gymnasium as gym
import numpy as np

import rlfm
from rlfm.envs import TabularEnv


def corridor(length=8, horizon=20):
    P = np.zeros((length, 2, length))
    for s in range(length):
        P[s, 0, max(s - 1, 0)] = 1.0
        P[s, 1, min(s + 1, length - 1)] = 1.0
    R = np.zeros((length, 2))
    R[length - 1, 1] = 1.0
    return rlfm.TabularMDP(P, R, np.eye(length)[0], horizon)


gym.register(id="UserCorridor-v0", entry_point=lambda **kw: TabularEnv(corridor(**kw)),
             max_episode_steps=20)
'''


def cli(*args, cwd=None):
    return subprocess.run([*RLFM_CLI, *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_a_users_module_and_env_kwargs(tmp_path):
    (tmp_path / "usercorridor.py").write_text(USER_MODULE)
    solved = cli("solve", "usercorridor:UserCorridor-v0", "--json", "--env-kwargs",
                 '{"length": 5}', cwd=tmp_path)
    assert solved.returncode == 0, solved.stderr
    result = json.loads(solved.stdout)
    assert (result["n_states"], result["horizon"]) == (5, 20)
    assert result["optimal_return"] == pytest.approx(20 - 4)  # 4 steps right, then paid each step
    ran = cli("online", "usercorridor:UserCorridor-v0", "--env-kwargs", '{"length": 4}',
              "--agents", "psrl", "--episodes", "3", "--seeds", "2", "--workers", "2",
              "--out", tmp_path / "out", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["env_kwargs"] == {"length": 4} and results["n_states"] == 4


@pytest.mark.parametrize("args, message", [
    (["solve", "no_such_module:X-v0"], "cannot import module 'no_such_module'"),
    (["solve", "FrozenLake-v1", "--env-kwargs", "{map"], "--env-kwargs must be a JSON object"),
    (["solve", "FrozenLake-v1", "--env-kwargs", "[1, 2]"], "--env-kwargs must be a JSON object"),
    (["solve", "FrozenLake-v1", "--env-kwargs", '{"mapname": "8x8"}'], "bad arguments"),
])
def test_bad_environment_arguments_give_one_line(tmp_path, args, message):
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr


@pytest.mark.parametrize("env_id", [*SUITE_BUILDERS, *EVAL_GARNETS])
def test_registered_environments_have_a_time_limit_and_pass_the_checker(env_id):
    env = gym.make(env_id)
    assert env.spec.max_episode_steps == env.unwrapped.mdp.horizon
    check_env(env.unwrapped, skip_render_check=True)


def test_env_kwargs_that_change_the_horizon_move_the_time_limit():
    env = rlfm.envs.make("rlfm/DeepSea-v0", size=6)
    assert env.spec.max_episode_steps == env.unwrapped.mdp.horizon == 6
    assert rlfm.envs.load_mdp("rlfm/DeepSea-v0", size=6).horizon == 6


def test_results_record_how_they_were_made_and_match_the_csv(tmp_path):
    ran = cli("online", "rlfm/NChain-v0", "--agents", "rlfm,uniform", "--episodes", "3",
              "--seeds", "2", "--workers", "1", "--out", tmp_path)
    assert ran.returncode == 0, ran.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["rlfm_version"] == rlfm.__version__ and results["scoring"] == "exact"
    assert results["command"].startswith("rlfm online rlfm/NChain-v0 --agents rlfm,uniform")
    shipped = json.loads(pretrained_path().with_suffix(".json").read_text())
    assert results["checkpoint"] == {"name": PRETRAINED, "sha256": shipped["weights_sha256"]}
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert len(rows) == 2 * 2 * 3
    for name, entry in results["agents"].items():
        for seed, curve in zip(entry["seed_ids"], entry["curves"], strict=True):
            mine = [float(r["score"]) for r in rows if r["agent"] == name
                    and int(r["seed"]) == seed]
            np.testing.assert_array_equal(mine, curve)
    offline = cli("offline", "FrozenLake-v1", "--agents", "cevi", "--dataset-episodes", "1,3",
                  "--seeds", "2", "--workers", "1", "--out", tmp_path / "off")
    assert offline.returncode == 0, offline.stderr
    results = json.loads((tmp_path / "off" / "results.json").read_text())
    assert "checkpoint" not in results  # the model did not run
    rows = list(csv.DictReader((tmp_path / "off" / "results.csv").open()))
    assert [(r["seed"], r["dataset_episodes"]) for r in rows] == [
        ("0", "1"), ("0", "3"), ("1", "1"), ("1", "3")]
    np.testing.assert_allclose(np.array([float(r["score"]) for r in rows]).reshape(2, 2).mean(0),
                               results["agents"]["cevi"]["score"])


def test_version():
    result = cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"rlfm {rlfm.__version__}"


def test_docs_and_help_never_point_outside_the_repo():
    pages = [ROOT / "README.md", ROOT / "MODEL_CARD.md", *(ROOT / "docs").glob("*.md")]
    texts = [p.read_text() for p in pages]
    texts += [cli(*command, "--help").stdout for command in
              ([], ["online"], ["offline"], ["bench"], ["train"], ["demo"], ["solve"])]
    for text in texts:
        assert "shared/" not in text and "SPEC" not in text
    for page in pages:  # every relative link resolves to a file of the repository
        for link in page.read_text().split("](")[1:]:
            target = link.split(")")[0].split("#")[0]
            if target and not target.startswith("http"):
                path = (page.parent / target).resolve()
                assert path.exists() and ROOT.resolve() in path.parents, (page.name, target)


def test_every_python_block_of_the_readme_runs_in_order(tmp_path):
    text = (ROOT / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    assert len(blocks) >= 2
    script = tmp_path / "readme.py"
    script.write_text("\n".join(blocks))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]


def test_plots_clip_bands_and_draw_without_warnings(tmp_path):
    import warnings

    from rlfm.plots import plot_offline, plot_online

    curves = {f"agent{i}": {"curve": [-0.4, 0.5, 1.0], "curve_std": [0.1, 0.9, 0.4], "seeds": 3}
              for i in range(12)}
    results = {"env": "X", "n_states": 2, "n_actions": 2, "horizon": 3, "agents": curves,
               "checkpoint": {"name": "rlfm-v1", "sha256": "0" * 64}, "complete": False}
    offline = {"env": "X", "agents": {"a": {"dataset_episodes": [1, 3], "score": [-0.2, 0.9],
                                            "score_std": [0.5, 0.5], "seeds": 2},
                                      "a (tuned)": {"dataset_episodes": [1, 3],
                                                    "score": [0.1, 1.0], "score_std": [0, 0],
                                                    "seeds": 2}}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot_online(results, tmp_path / "online.png")
        plot_offline(offline, tmp_path / "offline.png")
    assert (tmp_path / "online.png").stat().st_size > 0
    assert (tmp_path / "offline.png").stat().st_size > 0


def test_agents_with_knobs_on_the_command_line(tmp_path):
    from rlfm.agents import parse_spec

    assert parse_spec("rlfm(exploration=greedy)") == ("rlfm", {"exploration": "greedy"})
    assert parse_spec(" ucbvi( bonus_scale = 0.01, reward_range=[-1, 2] ) ") == (
        "ucbvi", {"bonus_scale": 0.01, "reward_range": (-1, 2)})
    ran = cli("online", "rlfm/NChain-v0", "--agents",
              "rlfm(exploration=greedy),psrl(prior_strength=0.3),psrl", "--episodes", "2",
              "--seeds", "1", "--workers", "1", "--out", tmp_path)
    assert ran.returncode == 0, ran.stderr
    entries = json.loads((tmp_path / "results.json").read_text())["agents"]
    assert entries["rlfm(exploration=greedy)"]["knobs"] == {"exploration": "greedy"}
    assert entries["psrl(prior_strength=0.3)"]["knobs"] == {"prior_strength": 0.3}
    assert entries["psrl"]["knobs"] == {}


@pytest.mark.parametrize("agents, message", [
    ("rlfm(exploration=wild)", "exploration must be one of"),
    ("psrl(prior=1)", "bad knob for agent 'psrl'"),
    ("psrl(0.3)", "knobs are written knob=value"),
    ("psrl(", "expected NAME or NAME(knob=value"),
    ("nobody", "unknown agent 'nobody'"),
])
def test_bad_agent_specs_give_one_line(agents, message):
    result = cli("online", "rlfm/NChain-v0", "--agents", agents, "--episodes", "1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is present")
def test_device_cuda_without_a_gpu_is_refused_before_work():
    result = cli("online", "rlfm/NChain-v0", "--device", "cuda", "--episodes", "100000")
    assert result.returncode == 2 and "no CUDA device" in result.stderr


@pytest.mark.parametrize("name", rlfm.agents.available())
def test_every_agent_gives_its_policy_in_one_shape(name):
    mdp = rlfm.envs.load_mdp("FrozenLake-v1")
    env = rlfm.envs.make("FrozenLake-v1")
    agent = rlfm.agents.make(name, mdp.n_states, mdp.n_actions, horizon=mdp.horizon, seed=0)
    returns = agent.learn(env, episodes=2, seed=0)
    assert returns.shape == (2,)
    pi = agent.policy()
    assert pi.shape == (mdp.horizon, mdp.n_states, mdp.n_actions)
    np.testing.assert_allclose(pi.sum(-1), 1.0)
    assert agent.predict(0, step=3) in range(mdp.n_actions)
    one_hot = np.isclose(pi.max(-1), 1.0)
    if name == "uniform":
        np.testing.assert_allclose(pi, 1 / mdp.n_actions)
    elif name == "rlfm":          # the exploitation head's softmax: stochastic, not one-hot
        assert (pi > 0).all()
    else:                         # greedy with respect to what was learned
        assert one_hot.all()


def test_fit_from_a_dataset_file_then_save_and_load(tmp_path):
    rng = np.random.default_rng(0)
    n = 200
    np.savez(tmp_path / "data.npz", observations=rng.integers(16, size=n),
             actions=rng.integers(4, size=n), rewards=rng.random(n),
             next_observations=rng.integers(16, size=n), terminations=np.zeros(n, bool),
             n_states=16, n_actions=4)
    agent = rlfm.agents.make("vilcb", 16, 4, horizon=20, seed=3, penalty_scale=0.01)
    assert agent.fit(tmp_path / "data.npz") is agent
    agent.save(tmp_path / "fitted.npz")
    again = rlfm.agents.load(tmp_path / "fitted.npz")
    assert (again.name, again.knobs, again.seed) == ("vilcb", {"penalty_scale": 0.01}, 3)
    assert again.stats == agent.stats
    np.testing.assert_array_equal(again.policy(), agent.policy())
    direct = rlfm.agents.agent_class("psrl")(16, 4, 20)
    with pytest.raises(rlfm.RlfmError, match="rlfm.agents.make"):
        direct.save(tmp_path / "direct.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(rlfm.RlfmError, match="bad.npz"):
        rlfm.agents.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "odd.npz", agent=np.array('{"name": "psrl"}'))
    with pytest.raises(rlfm.RlfmError, match="not a saved rlfm agent"):
        rlfm.agents.load(tmp_path / "odd.npz")


def test_load_pretrained_reads_any_checkpoint(tmp_path):
    from rlfm.checkpoint import save_model
    from rlfm.model import RLFM, ModelConfig

    save_model(RLFM(ModelConfig(width=8, steps=1)), tmp_path / "mine")
    assert rlfm.load_pretrained(tmp_path / "mine").config.width == 8
    assert rlfm.load_pretrained().config.width == 64


def test_collect_a_dataset_as_npz_and_as_minari_and_read_it_back(tmp_path, monkeypatch):
    from rlfm.datasets import load_dataset
    from rlfm.evaluate import collect_dataset

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    for args in (["--out", tmp_path / "lake.npz"], ["--minari-id", "rlfmtest/lake-medium-v0"]):
        result = subprocess.run([*RLFM_CLI, "collect", "FrozenLake-v1", "--behavior", "medium",
                                 "--episodes", "7", "--seed", "3", *map(str, args)],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0 and result.stderr == "", result.stderr
    env = rlfm.envs.make("FrozenLake-v1")
    expected = collect_dataset(env, rlfm.TabularMDP.from_gymnasium(env), "medium", 7, seed=3)
    from_npz, episodes = load_dataset(str(tmp_path / "lake.npz"), 16, 4)
    from_minari, minari_episodes = load_dataset("rlfmtest/lake-medium-v0", 16, 4)
    assert from_npz == expected == from_minari
    assert episodes == minari_episodes == 7
    again = cli("collect", "FrozenLake-v1", "--out", tmp_path / "lake.npz")
    assert again.returncode == 2 and "already exists" in again.stderr


STEP_ONLY = '''
import gymnasium as gym


class StepCorridor(gym.Env):
    """A corridor that can only be stepped: no transition table, no model."""

    def __init__(self, length=5):
        self.length = length
        self.observation_space = gym.spaces.Discrete(length)
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.s = 0
        return 0, {}

    def step(self, action):
        self.s = min(max(self.s + (1 if action == 1 else -1), 0), self.length - 1)
        done = self.s == self.length - 1
        return self.s, float(done), done, False, {}


gym.register(id="StepCorridor-v0", entry_point=StepCorridor, max_episode_steps=12)
'''


def test_an_environment_that_can_only_be_stepped_is_scored_by_rollouts(tmp_path):
    (tmp_path / "stepcorridor.py").write_text(STEP_ONLY)
    ran = cli("online", "stepcorridor:StepCorridor-v0", "--agents", "psrl,uniform",
              "--episodes", "15", "--seeds", "2", "--workers", "2", "--out", tmp_path / "on",
              cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "sampled" in ran.stdout
    results = json.loads((tmp_path / "on" / "results.json").read_text())
    assert results["scoring"] == "sampled" and results["rollouts"] == 20
    assert results["optimal_return"] is None
    assert results["uniform_return"] == pytest.approx(0.5, abs=0.25)
    psrl = results["agents"]["psrl"]
    assert psrl["regret"] is None and psrl["episodes_to_90"] is None
    assert psrl["final"] == 1.0  # deterministic: the exploitation policy walks right, return 1
    # offline: generated datasets need a model; the user's own data are scored by rollouts
    refused = cli("offline", "stepcorridor:StepCorridor-v0", cwd=tmp_path)
    assert refused.returncode == 2 and "--dataset" in refused.stderr
    # every action tried in every non-terminal state: the empirical model is the true one, so
    # the certainty-equivalent policy reaches the goal (return 1) whatever its tie-breaking
    s = np.repeat(np.arange(4), 2)
    a = np.tile([0, 1], 4)
    s2 = np.where(a == 1, s + 1, np.maximum(s - 1, 0))
    np.savez(tmp_path / "walk.npz", observations=s, actions=a, rewards=(s2 == 4).astype(float),
             next_observations=s2, terminations=s2 == 4, n_states=5, n_actions=2)
    offline = cli("offline", "stepcorridor:StepCorridor-v0", "--dataset", tmp_path / "walk.npz",
                  "--agents", "cevi", "--out", tmp_path / "off", cwd=tmp_path)
    assert offline.returncode == 0, offline.stderr
    results = json.loads((tmp_path / "off" / "results.json").read_text())
    assert results["scoring"] == "sampled"
    assert results["agents"]["cevi"]["score"] == [1.0]


def test_agents_that_keep_no_statistic_refuse_to_be_saved(tmp_path):
    agent = rlfm.agents.make("qlearning", 4, 2, horizon=5)
    with pytest.raises(rlfm.RlfmError, match="keeps no statistic"):
        agent.save(tmp_path / "q.npz")
    rlfm.agents.make("uniform", 4, 2, horizon=5).save(tmp_path / "u.npz")
    assert rlfm.agents.load(tmp_path / "u.npz").name == "uniform"


def test_tuning_and_provenance_with_agents_given_knobs(tmp_path, monkeypatch):
    from rlfm.cli import _n_tasks
    from rlfm.evaluate import checkpoints_used, default_specs

    assert _n_tasks(["ucbvi(bonus_scale=0.5)", "ucbvi"], 2, True) == 2 * 3 + 3 * len(
        rlfm.agents.agent_class("ucbvi").TUNING_GRID["bonus_scale"])
    from rlfm.checkpoint import save_model
    from rlfm.model import RLFM, ModelConfig

    save_model(RLFM(ModelConfig(width=8, steps=1)), tmp_path / "mine")
    one = checkpoints_used(default_specs(["rlfm(exploration=greedy)", "psrl"]))
    assert one["checkpoint"]["name"] == PRETRAINED
    two = checkpoints_used(default_specs(["rlfm", f"rlfm(checkpoint={tmp_path / 'mine'})"]))
    assert {v["name"] for v in two["checkpoints"].values()} == {PRETRAINED, "mine"}
    by_name = checkpoints_used(default_specs(["rlfm(checkpoint=rlfm-v1)"]))
    v1 = json.loads(pretrained_path("rlfm-v1").with_suffix(".json").read_text())
    assert by_name["checkpoint"] == {"name": "rlfm-v1", "sha256": v1["weights_sha256"]}
    assert checkpoints_used(default_specs(["psrl"])) == {}
    mine = checkpoints_used(default_specs(["rlfm"], {"rlfm": {"checkpoint": str(tmp_path /
                                                                                "mine")}}))
    assert mine["checkpoint"]["name"] == "mine"
    results = rlfm.run_online("rlfm/NChain-v0", ["rlfm"], episodes=1, seeds=1)
    assert results["checkpoint"]["name"] == PRETRAINED  # from Python too


def test_a_shipped_checkpoint_is_named_on_the_command_line(tmp_path):
    ran = cli("offline", "rlfm/NChain-v0", "--agents", "rlfm", "--checkpoint", "rlfm-v1",
              "--dataset-episodes", "1", "--seeds", "1", "--workers", "1", "--out", tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert json.loads((tmp_path / "results.json").read_text())["checkpoint"]["name"] == "rlfm-v1"
    ran = cli("offline", "rlfm/NChain-v0", "--agents", "rlfm", "--checkpoint", "rlfm-v9",
              "--seeds", "1", "--out", tmp_path / "other")
    assert ran.returncode != 0 and "rlfm-v9" in ran.stderr and "Traceback" not in ran.stderr
