"""The ``edgecnn`` command: one thin module per command group, each parsing arguments and calling the stages.

Bad input -> one line and exit code 2 (:mod:`edgecnn.exits`). The value sets of options with fixed choices are
in :mod:`edgecnn.cli.choices`.

Example:
    >>> from typer.testing import CliRunner
    >>> CliRunner().invoke(app, ["--version"]).output.strip()
    'edgecnn 0.1.0'
"""
from edgecnn.cli import inspect, export, compress, bench, prune, rewrite  # noqa: F401,I001  (registers commands, in --help order)
from edgecnn.cli.app import app, main

__all__ = ["app", "main"]
