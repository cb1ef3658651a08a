"""Regenerate benchmarks/RESULTS.md: run the benchmark scripts named on the command line (all of
them by default), then assemble every section in benchmarks/results/ in name order.

    python benchmarks/run_all.py                 # everything (long: includes the suite runs)
    python benchmarks/run_all.py solver_speed    # one script, then reassemble
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rlfm.bench import assemble_results

HERE = Path(__file__).parent
SCRIPTS = ["solver_speed", "world_throughput", "precision", "checkpoints", "offline_prior",
           "deep_prior", "suite", "exploration", "acting_rule", "posterior_spread",
           "posterior_online", "online_diagnosis", "planning", "model_speed", "ablations"]

def main(names: list[str]) -> None:
    for name in names or SCRIPTS:
        script = HERE / f"{name}.py"
        if not script.exists():
            sys.exit(f"run_all: no benchmark script {script.name}")
        print(f"== {name}", flush=True)
        subprocess.run([sys.executable, str(script)], cwd=HERE, check=True)
    print(f"wrote {assemble_results(HERE)}")


if __name__ == "__main__":
    main(sys.argv[1:])
