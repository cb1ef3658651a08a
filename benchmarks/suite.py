"""The public suite, online and offline, every agent (rlfm and the baselines, these at defaults
and tuned; `rlfm bench`'s default agent lists), 10 seeds: runs `rlfm bench` (resumable), which
writes benchmarks/suite/ and the section benchmarks/results/30_suite_public.md.

    python benchmarks/suite.py
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent

if __name__ == "__main__":
    subprocess.run([sys.executable, "-m", "rlfm", "bench", "--suite", "public", "--seeds", "10",
                    "--out", "benchmarks/suite"], cwd=ROOT, check=True)
