"""The command line contract: JSON output, one-line errors and non-zero exit statuses."""

import json
import subprocess
import sys

import numpy as np
import pytest


def rlfm(*args):
    return subprocess.run([sys.executable, "-m", "rlfm", *args], capture_output=True, text=True,
                          timeout=120)


def test_solve_json_frozen_lake():
    out = rlfm("solve", "FrozenLake-v1", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result) == {"n_states", "n_actions", "horizon", "optimal_return", "uniform_return"}
    assert (result["n_states"], result["n_actions"], result["horizon"]) == (16, 4, 100)
    assert 0.7 < result["optimal_return"] < 0.8
    assert 0 < result["uniform_return"] < 0.05


@pytest.mark.parametrize("content, message", [
    (b"not a zip file", "not an .npz"),
    (None, "rows of P must sum to 1"),
])
def test_solve_bad_npz_gives_one_line_error(tmp_path, content, message):
    path = tmp_path / "bad.npz"
    if content is None:
        np.savez(path, P=np.full((2, 2, 2), 0.3), R=np.zeros((2, 2)), initial=[1.0, 0.0],
                 horizon=5)
    else:
        path.write_bytes(content)
    out = rlfm("solve", str(path))
    assert out.returncode != 0
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in out.stderr


def test_unknown_env_gives_one_line_error():
    out = rlfm("solve", "NoSuchEnv-v0")
    assert out.returncode != 0 and len(out.stderr.strip().splitlines()) == 1
