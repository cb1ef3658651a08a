"""Checkpoints: safetensors weights plus a JSON config, never pickle.

A checkpoint `NAME` is two files, `NAME.safetensors` (tensors only) and `NAME.json` (the model
architecture, the training config, the prior, the format version, metrics, and the SHA-256 of
the weights file). Loading refuses a missing, truncated or altered file and an incompatible
format version with a CheckpointError that says which.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from rlfm.errors import CheckpointError
from rlfm.fields import build
from rlfm.io import atomic_write, atomic_write_text
from rlfm.model import RLFM, ModelConfig

FORMAT_VERSION = 2  # 2: 14 state-action features (the plans' gaps in MDP-span units)
PRETRAINED = "rlfm-v5"  # rlfm-v3-posterior fine-tuned on offline-like contexts
SAMPLER = "sampler."  # the prefix of the posterior sampler's tensors


def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """Accept `NAME`, `NAME.safetensors` or `NAME.json`; return both file paths."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> str:
    """Write tensors atomically; returns the file's SHA-256."""
    checksum = ""

    def write(tmp: Path) -> None:
        nonlocal checksum
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
        checksum = sha256(tmp)

    atomic_write(path, write)
    return checksum


def load_tensors(path: Path, checksum: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if sha256(path) != checksum:
        raise CheckpointError(f"{path}: checksum mismatch (the file is truncated or altered)")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None


def policy_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of the tensors the network's policies read: every one but the posterior
    sampler's (names, shapes, dtypes and values). Offline results depend on these alone, so a
    checkpoint that adds a sampler to another keeps the other's offline results."""
    weights, _ = _paths(path)
    tensors = load_tensors(weights, read_config(path)["weights_sha256"])
    digest = hashlib.sha256()
    for name in sorted(n for n in tensors if not n.startswith(SAMPLER)):
        tensor = tensors[name].contiguous()
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_model(model: RLFM, path: str | os.PathLike, **info) -> Path:
    """Save `model` as a checkpoint; `info` (training config, prior, metrics...) goes in the
    JSON next to the architecture. The weights are written before the JSON that names their
    checksum, so an interrupted save never leaves a config pointing at other weights."""
    weights, config_path = _paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    checksum = save_tensors(model.state_dict(), weights)
    from rlfm import __version__

    config = {"format_version": FORMAT_VERSION, "rlfm_version": __version__,
              "model": model.config.to_dict(), "weights_sha256": checksum, **info}
    atomic_write_text(config_path, json.dumps(config, indent=1))
    return weights


def read_config(path: str | os.PathLike) -> dict:
    _, config_path = _paths(path)
    if not config_path.is_file():
        raise CheckpointError(f"{config_path}: no such file (a checkpoint is NAME.safetensors "
                              f"plus NAME.json)")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{config_path}: not valid JSON ({e})") from None
    if not isinstance(config, dict) or "format_version" not in config:
        raise CheckpointError(f"{config_path}: not an rlfm checkpoint config")
    missing = [k for k in ("model", "weights_sha256") if k not in config]
    if missing:
        raise CheckpointError(f"{config_path}: missing {', '.join(missing)} (not a complete "
                              f"rlfm checkpoint config)")
    if config["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"{config_path}: checkpoint format version "
                              f"{config['format_version']}, this rlfm reads version "
                              f"{FORMAT_VERSION}")
    if not _is_sha256(config["weights_sha256"]):
        raise CheckpointError(f"{config_path}: weights_sha256 must be the SHA-256 of the weights "
                              f"file (64 hexadecimal digits), got {config['weights_sha256']!r}")
    build(ModelConfig, config["model"], str(config_path), "model", CheckpointError)
    return config


def _is_sha256(value) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef"
                                                               for c in value)


def load_model(path: str | os.PathLike) -> RLFM:
    """Load a checkpoint written by `save_model` (verifying version and checksum)."""
    weights, config_path = _paths(path)
    config = read_config(path)  # every field checked before anything is allocated
    state = load_tensors(weights, config["weights_sha256"])
    model = RLFM(build(ModelConfig, config["model"], str(config_path), "model", CheckpointError))
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{weights}: weights do not fit the model config "
                              f"({str(e).splitlines()[0]})") from None
    model.eval()
    model.checkpoint_info = config
    return model


def pretrained_path(name: str | None = None) -> Path:
    """The checkpoint `name` shipped in the package (default: the one the agents use)."""
    return Path(str(resources.files("rlfm") / "checkpoints" / (name or PRETRAINED)))


def resolve(path: str | os.PathLike) -> Path:
    """A checkpoint given as a path, or as the name of one shipped in the package
    ("rlfm-v1"; "pretrained": the default)."""
    if str(path) == "pretrained":
        return pretrained_path()
    shipped = pretrained_path(str(path))
    return shipped if Path(path).name == str(path) and _paths(shipped)[1].is_file() \
        else Path(path)


def load_pretrained() -> RLFM:
    """The checkpoint shipped inside the package (no network access)."""
    return load_model(pretrained_path())
