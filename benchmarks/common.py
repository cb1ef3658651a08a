"""Shared plumbing for the benchmark scripts: each writes one markdown section to
benchmarks/results/<name>.md; `run_all.py` runs them and assembles benchmarks/RESULTS.md."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

from rlfm.io import atomic_write_text

RESULTS_DIR = Path(__file__).parent / "results"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write_section(name: str, markdown: str) -> Path:
    """Atomically write one section (so an interrupted run never leaves half a file)."""
    RESULTS_DIR.mkdir(exist_ok=True)
    return atomic_write_text(RESULTS_DIR / f"{name}.md", markdown.rstrip() + "\n")


def best_time(fn, repeats: int = 5) -> float:
    """Minimum wall time of `repeats` calls, in seconds (the least noisy estimate)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
