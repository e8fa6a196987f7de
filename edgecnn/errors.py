"""Typed errors. Every user-facing failure is an :class:`EdgecnnError`; the CLI maps it to exit code 2.

Example:
    >>> from edgecnn.errors import EdgecnnError, InputFileError
    >>> issubclass(InputFileError, EdgecnnError)
    True
    >>> str(InputFileError("model file not found: Expected an existing path. Received: x.h5"))
    'model file not found: Expected an existing path. Received: x.h5'
"""
from __future__ import annotations


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, cut to ``limit`` characters (converters dump whole graphs).

    >>> first_line(ValueError("bad shape\\n  at layer x"))
    'bad shape'
    """
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


class EdgecnnError(Exception):
    """Base class of every error edgecnn raises on bad input. Its message is one line."""


class InputFileError(EdgecnnError):
    """The path is missing, empty, corrupt, truncated, or not a model file."""


class UnsafeModelError(EdgecnnError):
    """The model holds code (a Lambda layer) or classes edgecnn does not know, and no flag allows it."""


class UnsupportedLayerError(EdgecnnError):
    """A layer that a stage cannot handle (never silently treated as pass-through)."""


class UnsupportedModelError(EdgecnnError):
    """The model, as a whole, cannot go through the requested stage (e.g. surgery on a graph-only SavedModel)."""


class TranslationError(EdgecnnError):
    """The Keras 3 -> working-model translation changed the outputs beyond tolerance."""


class ShapeMismatchError(EdgecnnError):
    """Two shapes that must agree do not (data vs model input, --input-shape vs model)."""


class DataError(EdgecnnError):
    """A --data source that cannot be read or matched to the model."""


class ValidationError(EdgecnnError):
    """An exported artifact does not reproduce the Keras model on its runtime (all mismatches in one message)."""


class LimitError(EdgecnnError):
    """An input exceeds one of edgecnn's reading caps (:mod:`edgecnn.limits`); the message names the variable
    that raises the cap."""


class CheckpointError(EdgecnnError):
    """A compress checkpoint (``OUTDIR/.edgecnn``) that edgecnn cannot trust: a file outside it, a link, a file
    changed since it was recorded, or a malformed state."""


class OutputError(EdgecnnError):
    """An output location that cannot be written (read-only, full, missing folder, permission, a file in the
    way); the message names the path."""


class LockedError(EdgecnnError):
    """Another edgecnn process holds the output folder's lock."""
