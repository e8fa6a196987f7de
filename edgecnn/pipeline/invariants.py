"""What must hold after every compress stage; the runner checks it before checkpointing the stage.

Like tf2onnx's rewriters, every stage has one signature, ``stage(ctx, record) -> None``, and the runner checks
the context after each: the original exists, the working model keeps the original's input and output shapes, the
plan's candidates parse, and every staged artifact is a file under the run's checkpoint folder with the size and
hash recorded for it. A failure is a bug in a stage (never the user's input): :class:`StageInvariantError`,
which the command line reports with exit code 3.

Example:
    >>> from types import SimpleNamespace
    >>> ctx = SimpleNamespace(model=None, original=None, state={}, outdir=None)
    >>> check_stage(ctx, "analyze")
    Traceback (most recent call last):
    ...
    edgecnn.pipeline.invariants.StageInvariantError: after stage 'analyze': no original model
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any


class StageInvariantError(RuntimeError):
    """A stage left the context inconsistent (a bug: exit 3)."""


def _shapes(tensors: Any) -> list[tuple]:
    return [tuple(t.shape)[1:] for t in tensors]


def _model_problems(ctx: Any) -> list[str]:
    if ctx.original is None:
        return ["no original model"]
    if ctx.model is None or not hasattr(ctx.model, "inputs"):  # before rewrite, the stages read the original
        return []
    problems = []
    if _shapes(ctx.model.inputs) != _shapes(ctx.original.inputs):
        problems.append(f"the model's inputs changed: {_shapes(ctx.original.inputs)} -> {_shapes(ctx.model.inputs)}")
    if _shapes(ctx.model.outputs) != _shapes(ctx.original.outputs):
        problems.append(f"the model's outputs changed: {_shapes(ctx.original.outputs)} -> "
                        f"{_shapes(ctx.model.outputs)}")
    return problems


def _plan_problems(ctx: Any) -> list[str]:
    if "plan" not in ctx.state:
        return []
    try:
        ctx.candidates  # noqa: B018  (parses every candidate)
    except (TypeError, KeyError) as exc:
        return [f"the plan's candidates do not parse: {exc}"]
    return []


def _artifact_problems(ctx: Any) -> list[str]:
    problems = []
    root = (Path(ctx.outdir) / ".edgecnn").resolve() if ctx.outdir is not None else None
    for a in (ctx.state.get("export") or {}).get("artifacts", []):
        path = Path(a["path"])
        if root is None or not path.resolve().is_relative_to(root):
            problems.append(f"artifact {path.name} is not staged under .edgecnn/")
        elif not path.is_file() or path.is_symlink():
            problems.append(f"artifact {path.name} is missing")
        elif path.stat().st_size != a["size_bytes"] or hashlib.sha256(path.read_bytes()).hexdigest() != a["sha256"]:
            problems.append(f"artifact {path.name} does not have the size and hash recorded for it")
    return problems


def check_stage(ctx: Any, stage: str) -> None:
    """Raise :class:`StageInvariantError` naming every problem the context has after ``stage``."""
    problems = _model_problems(ctx) + _plan_problems(ctx) + _artifact_problems(ctx)
    if problems:
        raise StageInvariantError(f"after stage '{stage}': " + "; ".join(problems))
