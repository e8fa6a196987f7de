"""The typer app of the ``edgecnn`` command, its root options, the help texts the commands share, and ``main``.

Example:
    >>> from typer.testing import CliRunner
    >>> CliRunner().invoke(app, ["--version"]).output.strip()
    'edgecnn 0.1.0'
"""
from __future__ import annotations

import sys
from typing import Annotated, Optional

from pathlib import Path

import typer

from edgecnn._version import __version__

app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    help="Make trained Keras CNNs fit on the edge: inspect, rewrite, prune, quantize, export, benchmark.",
)

MODEL_HELP = "A .h5 or .keras file (Keras 2 or 3), or a SavedModel folder."
CUSTOM_HELP = "Python module that defines the model's custom classes (runs that module's code)."
TRUST_HELP = "Allow Lambda layers: runs the Python bytecode stored in the model file."
BUDGET_HELP = "With labelled --data: points of held-out accuracy the result may lose; missed -> exit 1."
EVAL_ON_TRAIN_HELP = ("Data too small to hold out a test split (< 5 images of a class): measure on the training "
                       "data instead of refusing (every report says so).")
AGREE_HELP = "Validation floor: top-1 agreement of each quantized artifact with Keras (default per mode)."
STRATEGY_HELP = ("Fine-tuning: default (one device), mirrored (this machine's GPUs) or multiworker (the machines in "
                  "each worker's TF_CONFIG; the chief writes the outputs; docs/distributed.md).")
SNR_HELP = "Validation floor: output SNR in dB of each quantized artifact against Keras (default per mode)."


# Options that several commands take, declared once (typer reads the option from the Annotated type).
InputShapeOption = Annotated[Optional[str], typer.Option("--input-shape", help="H,W,C for inputs with unknown size.")]
CustomObjectsOption = Annotated[Optional[Path], typer.Option("--custom-objects", help=CUSTOM_HELP)]
TrustModelOption = Annotated[bool, typer.Option("--trust-model", help=TRUST_HELP)]
EvalOnTrainOption = Annotated[bool, typer.Option("--eval-on-train", help=EVAL_ON_TRAIN_HELP)]
LabelsOption = Annotated[Optional[Path], typer.Option("--labels", help="Text file, one class name per line.")]
MinAgreementOption = Annotated[Optional[float], typer.Option("--min-agreement", help=AGREE_HELP)]
MinSnrOption = Annotated[Optional[float], typer.Option("--min-snr-db", help=SNR_HELP)]
BudgetOption = Annotated[float, typer.Option("--max-accuracy-drop", help=BUDGET_HELP)]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgecnn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """edgecnn: make trained Keras CNNs fit on the edge."""


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point: runs the app; every failure becomes one line on stderr and an exit code
    (:data:`edgecnn.exits.EXIT_CODES`: 2 bad input, 3 a bug, 130 interrupted; never 1 for a crash)."""
    import os

    from edgecnn.exits import run

    command = typer.main.get_command(app)
    args = list(sys.argv[1:] if argv is None else argv)
    if os.environ.get("_EDGECNN_COMPLETE"):  # a shell asking for completions (see `edgecnn --install-completion`)
        command.main(args=args, prog_name="edgecnn")  # prints them and exits
    sys.exit(run(command, args))


