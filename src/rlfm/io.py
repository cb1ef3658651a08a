"""File plumbing. Atomic writes: a temporary file in the same directory, then a rename, so that
an interrupted run never leaves a truncated checkpoint or results file behind. Safe `.npz`
reads: never unpickled, every failure a one-line error of the caller's type."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from rlfm.limits import ensure_memory


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def read_npz(path: str | os.PathLike, error: type[Exception]) -> dict[str, np.ndarray]:
    """All arrays of an `.npz` file (object arrays refused); problems raise `error(message)`."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise error(f"{path}: not an .npz file (not a zip archive)")
    with zipfile.ZipFile(path) as archive:  # refuse before decompressing what cannot fit
        ensure_memory(sum(info.file_size for info in archive.infolist()), f"reading {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise error(f"{path}: not a readable .npz file ({e})") from None
