"""File plumbing. Atomic writes: a temporary file in the same directory, flushed to disk, then a
rename, so that an interrupted run never leaves a truncated checkpoint or results file behind.
Output directories: checked before any work, and locked while a run writes them. Safe `.npz`
reads: never unpickled, every failure a one-line error of the caller's type."""

from __future__ import annotations

import errno
import fcntl
import os
import re
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rlfm.errors import RlfmError
from rlfm.limits import ensure_memory

_TEMP = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp$")  # .NAME.PID.RANDOM.tmp
_UMASK = os.umask(0o022)  # read once (setting it is process-wide): new files honour it
os.umask(_UMASK)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` to fill a temporary file beside `path` (unique to this process and
    call), flush it to disk, then rename it over `path`. If anything interrupts it (an error,
    Ctrl-C), the temporary file is removed and `path` keeps its previous contents."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
                                suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private; give it normal permissions
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def _fsync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable (so a power cut cannot undo it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def remove_stale_temps(directory: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that a killed process left in `directory` (those of processes
    still running are kept); returns what was removed."""
    removed = []
    directory = Path(directory)
    if not directory.is_dir():
        return removed
    for entry in directory.iterdir():
        match = _TEMP.match(entry.name)
        if match and entry.is_file() and not _alive(int(match.group(1))):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutputDir:
    """A directory a run writes its results to, checked before any work starts and locked for
    the whole run, so that two runs never mix their files in one directory.

        with OutputDir(out, overwrite=False, results="results.json"):
            ...  # the run; then write into `out`

    Refused with a one-line RlfmError: a path that exists and is not a directory (or lies under
    a regular file), a directory that cannot be written, one that already holds `results`
    (unless `overwrite`), and one that another run holds.
    """

    LOCK = ".rlfm.lock"

    def __init__(self, path: str | os.PathLike, overwrite: bool = True,
                 results: str | None = None):
        self.path = Path(path)
        self.overwrite, self.results = overwrite, results
        self._fd: int | None = None

    def __enter__(self) -> Path:
        path = self.path
        for parent in [path, *path.parents]:
            if parent.exists() and not parent.is_dir():
                raise RlfmError(f"--out {path}: {parent} is a file, not a directory")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RlfmError(f"--out {path}: cannot create the directory "
                            f"({e.strerror or e})") from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise RlfmError(f"--out {path}: the directory is not writable")
        try:
            self._fd = os.open(path / self.LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise RlfmError(f"--out {path}: cannot write in the directory "
                            f"({e.strerror or e})") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(self._fd)
            self._fd = None
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise RlfmError(f"--out {path}: another rlfm run is writing to this "
                                f"directory; wait for it or choose another --out") from None
            raise
        if self.results and not self.overwrite and (path / self.results).exists():
            self.__exit__()
            raise RlfmError(f"--out {path} already holds {self.results}; pass --overwrite "
                            f"to replace it, or choose another --out")
        remove_stale_temps(path)
        return path

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None


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
