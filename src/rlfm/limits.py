"""Memory limits: a request that cannot fit is refused before anything is allocated, with the
estimate in the message, rather than ending in an out-of-memory crash."""

from __future__ import annotations

import os

from rlfm.errors import ResourceLimitError

# Leave this share of the available memory to everything else.
HEADROOM = 0.8


def available_memory() -> int:
    """Bytes of memory available now (Linux: MemAvailable; elsewhere: physical memory)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def ensure_memory(nbytes: float, what: str) -> None:
    """Raise ResourceLimitError if `nbytes` would not fit in the available memory."""
    budget = HEADROOM * available_memory()
    if nbytes > budget:
        raise ResourceLimitError(
            f"{what} needs about {_human(nbytes)} of memory, more than the {_human(budget)} "
            f"available; use a smaller MDP (or horizon), or a sparse transition model")


def _human(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024 or unit == "TiB":
            return f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} TiB"
