"""Shared plumbing for the benchmark scripts: each writes one markdown section to
benchmarks/results/<name>.md; `run_all.py` runs them and assembles benchmarks/RESULTS.md."""

from __future__ import annotations

import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
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


def saved_rows(path: Path, key: dict, runs: dict, job, workers: int) -> dict:
    """{run: {i: row}} for every run (a tuple of `job`'s first arguments) given as
    run -> (its name in the saved file, n): the rows of MDPs 0..n-1, each `job(*run, i)` (a
    tuple, in a pool of `workers` processes) unless saved in `path` under the same `key`.
    Rows are saved as they are done (every 20), so that a run can be stopped and resumed;
    the rows of other runs saved under the same key are kept."""
    saved = json.loads(path.read_text()) if path.exists() else {}
    stored = saved.get("rows", {}) if saved.get("key") == key else {}
    rows = {run: {int(i): tuple(r) for i, r in stored.get(name, {}).items()}
            for run, (name, _) in runs.items()}

    def save():
        stored.update({name: rows[run] for run, (name, _) in runs.items()})
        atomic_write_text(path, json.dumps({"key": key, "rows": stored}, indent=0,
                                           sort_keys=True))

    todo = [(run, i) for run, (_, n) in runs.items() for i in range(n) if i not in rows[run]]
    with ProcessPoolExecutor(workers) as pool:
        futures = {pool.submit(job, *run, i): (run, i) for run, i in todo}
        for done, future in enumerate(as_completed(futures), 1):
            run, i = futures[future]
            rows[run][i] = tuple(future.result())
            if done % 20 == 0 or done == len(todo):
                save()
    return rows
