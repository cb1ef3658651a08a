"""`rlfm prior ...`: look at the prior. Mounted by rlfm.cli with
`app.add_typer(prior_app, name="prior")`."""

from __future__ import annotations

from pathlib import Path

import typer

prior_app = typer.Typer(add_completion=False, no_args_is_help=True,
                        help="The synthetic MDP prior used for pretraining.")


@prior_app.callback()
def _prior() -> None:
    """The synthetic MDP prior used for pretraining."""


@prior_app.command("sample")
def sample(n: int = typer.Option(4, "--n", min=1, max=64, help="how many MDPs to sample"),
           seed: int = typer.Option(0, "--seed", help="random seed"),
           config: Path | None = typer.Option(None, "--config", help="prior TOML file "
                                              "(default: the shipped default.toml)"),
           out: Path = typer.Option(Path("prior-samples"), "--out",
                                    help="directory for prior_samples.png")) -> None:
    """Sample MDPs from the prior: print a table and draw them (PNG)."""
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from rlfm.mdp import ScoreReference
    from rlfm.priors.config import load_config
    from rlfm.priors.plot import plot_mdps
    from rlfm.priors.sampler import sample_mdp

    prior = load_config(config)
    rng = np.random.default_rng(seed)
    mdps = [sample_mdp(rng, prior) for _ in range(n)]
    table = Table(title=f"{n} MDPs from the prior ({prior.source}), seed {seed}")
    for column in ("#", "family", "S", "A", "H", "terminal", "reward range", "optimal return",
                   "uniform return"):
        table.add_column(column, justify="left" if column == "family" else "right")
    for i, mdp in enumerate(mdps):
        ref = ScoreReference.of(mdp)
        live = mdp.R[~mdp.terminal]
        rng_text = f"[{live.min():.3g}, {live.max():.3g}]" if live.size else "-"
        table.add_row(str(i), mdp.name, str(mdp.n_states), str(mdp.n_actions), str(mdp.horizon),
                      str(int(mdp.terminal.sum())), rng_text, f"{ref.optimal_return:.4g}",
                      f"{ref.uniform_return:.4g}")
    console = Console()
    console.print(table)
    out.mkdir(parents=True, exist_ok=True)
    path = plot_mdps(mdps, out / "prior_samples.png",
                     titles=[f"#{i} {m.name}: S={m.n_states}, A={m.n_actions}, H={m.horizon}"
                             for i, m in enumerate(mdps)])
    console.print(f"drawing: {path}")
