"""The fixed sets of values the command line accepts, as ``Literal`` types: typer lists them in ``--help``,
completes them in shells and refuses anything else (a usage error: one line, exit 2) before any work starts.

They are written out here, not imported from their tables, so that ``edgecnn --help`` imports nothing but
typer; ``tests/test_cli.py`` checks that each equals its table (``TARGETS``, ``PROFILES``, ``QuantMode``,
``FORMATS``, ``REWRITES``, ``METHODS``, ...).

Example:
    >>> names(Target)[:2], names(Profile)
    (('litert-int8', 'litert-fp16'), ('mobile-1t', 'mobile-4t'))
    >>> recipe_metavar(["mobile", "tiny", "gpu"])
    '[mobile|tiny|gpu|PATH.toml]'
"""
from __future__ import annotations

from typing import Literal, get_args

Target = Literal["litert-int8", "litert-fp16", "litert-dynamic", "litert-fp32", "onnx-int8", "onnx-fp16",
                 "onnx-fp32"]  # edgecnn.pipeline.recipe.TARGETS
Profile = Literal["mobile-1t", "mobile-4t"]  # edgecnn.runtimes.profiles.PROFILES
ExportFormat = Literal["tflite", "onnx", "all"]  # edgecnn.exporting.FORMATS, or all of them
Quantize = Literal["none", "fp16", "dynamic", "int8", "int16x8"]  # edgecnn.exporting.quantize.QuantMode
LatencyQuantize = Literal["none", "fp16", "dynamic", "int8"]  # edgecnn.exporting.convert.QUANT_MODES
LatencyRuntime = Literal["litert", "onnxruntime"]  # edgecnn.runtimes.CONVERT_RUNTIMES
IOType = Literal["float", "int8", "uint8"]  # edgecnn.exporting.quantize.IO_TYPES
PruneMethod = Literal["magnitude", "m-by-n", "channels"]  # edgecnn.pruning.METHODS
Importance = Literal["l1", "bn", "activation"]  # edgecnn.pruning.importance.IMPORTANCES
Schedule = Literal["polynomial", "constant"]  # edgecnn.pruning.magnitude.SCHEDULES
RewriteTo = Literal["separable", "bottleneck", "gap-head", "low-rank-dense"]  # edgecnn.rewriting.REWRITES
Select = Literal["auto", "all", "measured"]  # edgecnn.rewriting.SELECTS
Pooling = Literal["avg", "max"]  # edgecnn.rewriting.POOLINGS
Strategy = Literal["default", "mirrored", "multiworker"]  # edgecnn.training.STRATEGIES


def names(choice: object) -> tuple[str, ...]:
    """The values of a ``Literal`` choice type."""
    return tuple(get_args(choice))


def recipe_metavar(presets: list[str]) -> str:
    """How ``--recipe`` shows in ``--help``: the presets, or a TOML file."""
    return "[" + "|".join([*presets, "PATH.toml"]) + "]"


def complete_recipe(incomplete: str) -> list[str]:
    """Shell completion of ``--recipe``: the presets and the ``.toml`` files that start with ``incomplete``."""
    from pathlib import Path

    from edgecnn.recipes import preset_names

    folder = Path(incomplete).parent if incomplete else Path(".")
    files = sorted(str(p) for p in folder.glob("*.toml") if str(p).startswith(incomplete))
    return [n for n in preset_names() if n.startswith(incomplete)] + files
