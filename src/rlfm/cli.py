"""The `rlfm` command line (SPEC §5). Every RlfmError ends as one line on stderr, exit status 2."""

from __future__ import annotations

import json
import sys

import typer

from rlfm.errors import RlfmError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  pretty_exceptions_enable=False,
                  help="rlfm: a foundation model for tabular reinforcement learning.")


@app.callback()
def _root() -> None:
    """rlfm: a foundation model for tabular reinforcement learning."""


@app.command()
def solve(env: str = typer.Argument(..., help="Gymnasium id (Discrete spaces) or MDP .npz file"),
          as_json: bool = typer.Option(False, "--json", help="print one JSON object")) -> None:
    """The exact optimum of ENV by backward induction, and the uniform policy's return."""
    from rlfm.envs import load_mdp
    from rlfm.mdp import ScoreReference

    mdp = load_mdp(env)
    ref = ScoreReference.of(mdp)
    result = {"n_states": mdp.n_states, "n_actions": mdp.n_actions, "horizon": mdp.horizon,
              "optimal_return": ref.optimal_return, "uniform_return": ref.uniform_return}
    if as_json:
        print(json.dumps(result))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{env}: exact solution")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, f"{value:.6g}" if isinstance(value, float) else str(value))
    Console().print(table)


def main() -> None:
    try:
        app()
    except RlfmError as e:
        print(f"rlfm: error: {e}", file=sys.stderr)
        sys.exit(2)
