"""The command line: ``app`` is the Typer app (built in :mod:`pairscope.cli.app`), and each
command lives in one module of this package. The table below registers them, in the
order ``--help`` lists them."""

from __future__ import annotations

from pairscope.cli.app import app, given_fields, probes_app
from pairscope.cli.data import probes_list, probes_show, score
from pairscope.cli.generate import generate
from pairscope.cli.run import check, compare, evaluate, probe, report
from pairscope.cli.vocabulary import Command

__all__ = ["app", "given_fields", "main"]

for _command in (generate, check, probe, evaluate, report, compare, score):
    app.command(cls=Command)(_command)
probes_app.command("list", cls=Command)(probes_list)
probes_app.command("show", cls=Command)(probes_show)


def main() -> None:
    """Console-script entry point."""
    app()
