"""Input and label checks that every stage uses, and the one accuracy function.

Example:
    >>> import numpy as np
    >>> top1_accuracy(np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]]), np.array([1, 1, 1]))
    0.6666666666666666
    >>> check_labels(np.array([[0, 1], [1, 0]]), 2, where="y")
    array([1, 0])
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from edgecnn.errors import DataError, ShapeMismatchError


def top1_accuracy(outputs: Any, labels: Any) -> float:
    """The one accuracy function: share of rows whose arg-max output equals the label."""
    outputs, labels = np.asarray(outputs), np.asarray(labels)
    if outputs.ndim != 2 or len(outputs) != len(labels) or len(labels) == 0:
        raise ShapeMismatchError(f"accuracy: Expected outputs (N, classes) and N labels with N >= 1. "
                                 f"Received: outputs {outputs.shape}, labels {labels.shape}")
    return float(np.mean(np.argmax(outputs, axis=-1) == labels))


def output_step(outputs: Any) -> float:
    """The smallest difference an artifact's outputs can express: its quantization step when they lie on a
    grid (an int8 softmax: 1/256), about 0 for float outputs, inf for one constant value.

    >>> output_step(np.array([[0.25, 0.5], [0.75, 0.25]])), output_step(np.array([[0.1, 0.1]])) == float("inf")
    (0.25, True)
    """
    v = np.unique(np.asarray(outputs, dtype=np.float64).ravel())
    if v.size < 2:
        return float("inf")
    gaps = np.diff(v)
    return float(gaps.min())


def top1_agreement(reference: Any, got: Any, *, min_share: float = 0.1,
                   min_count: int = 8) -> tuple[Optional[float], int]:
    """(top-1 agreement of ``got`` with ``reference`` on the inputs where the reference's top-1 margin exceeds
    ``got``'s output step, how many inputs that is). An int8 output cannot order two classes closer than its
    quantization step, so those inputs are ties it was never able to break, not disagreements; with float
    outputs (step about 0) every input counts. Fewer than ``min_count`` or ``min_share`` of the inputs counted
    (an untrained model whose classes all score alike): agreement None, not measurable.

    >>> ref = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    >>> top1_agreement(ref, ref[:, ::-1], min_count=1)  # every margin is decisive: all four disagree
    (0.0, 4)
    >>> flat = np.full((20, 3), 1 / 3) + np.linspace(0, 1e-3, 3)   # margins 5e-4, below an int8 step of 1/256
    >>> top1_agreement(flat, np.round(flat * 256) / 256)
    (None, 0)
    """
    r, g = np.asarray(reference, dtype=np.float64), np.asarray(got, dtype=np.float64)
    top2 = np.sort(r, axis=1)[:, -2:]
    decisive = (top2[:, 1] - top2[:, 0]) > output_step(g)
    n = int(decisive.sum())
    if n < max(min_count, min_share * len(r)):
        return None, n
    return float(np.mean(np.argmax(r[decisive], 1) == np.argmax(g[decisive], 1))), n


def check_labels(y: np.ndarray, n: int, *, where: str) -> np.ndarray:
    """``n`` integer class indices (or one-hot rows) as int64, else a DataError naming ``where``."""
    if y.ndim == 2 and y.shape[0] == n and y.shape[1] > 1:  # one-hot
        y = np.argmax(y, axis=1)
    y = np.asarray(y)
    integral = np.issubdtype(y.dtype, np.integer) or (
        np.issubdtype(y.dtype, np.floating) and np.isfinite(y).all() and np.all(y == np.round(y))
    )
    if y.shape != (n,) or not integral or (n and y.min() < 0):
        raise DataError(
            f"Expected y as {n} non-negative integer class indices (shape ({n},)) or one-hot ({n}, K). "
            f"Received: shape {tuple(y.shape)}, dtype {y.dtype} in {where}"
        )
    if n:
        from edgecnn.limits import check

        check("label", int(np.max(y)), where=f"{where} y", what="largest label")  # before bincount sizes by it
    return y.astype(np.int64)


def check_inputs(model: Any, x: Any, *, what: str) -> np.ndarray:
    """Validate inputs ``(N>=1, *input_shape)`` of finite numbers for ``model``; return them as float32.

    Raises:
        ShapeMismatchError: ``x`` does not match the model input.
        DataError: ``x`` holds non-numbers or NaN/inf.
    """
    x = np.asarray(x)
    shape = tuple(model.inputs[0].shape)[1:]
    if x.ndim != len(shape) + 1 or len(x) == 0 or any(
        d is not None and int(d) != s for d, s in zip(shape, x.shape[1:])
    ):
        raise ShapeMismatchError(
            f"{what} does not fit the model: Expected shape (N>=1, {', '.join(str(d) for d in shape)}). "
            f"Received: {x.shape}"
        )
    if not (np.issubdtype(x.dtype, np.number) and np.isfinite(x).all()):
        raise DataError(f"{what}: Expected finite numbers. Received: dtype {x.dtype} with NaN, inf or non-numbers")
    return x.astype(np.float32)


def check_labelled(model: Any, x: Any, y: Any, *, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate a labelled set for a classifier ``model``; return float32 ``x`` and int64 ``y``.

    Raises:
        ShapeMismatchError: ``x`` does not match the model input, or the model is not a classifier.
        DataError: ``y`` is not integer class indices of the model's output classes.
    """
    x = check_inputs(model, x, what=what)
    y = np.asarray(y)
    classes = tuple(model.outputs[0].shape)[-1]
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"{what} labels: Expected {len(x)} integer class indices, shape ({len(x)},). "
            f"Received: shape {y.shape}, dtype {y.dtype}"
        )
    if len(model.outputs) != 1 or len(model.outputs[0].shape) != 2 or not classes or classes < 2:
        raise ShapeMismatchError(
            f"accuracy needs a classifier: Expected one output of shape (N, classes>=2). "
            f"Received: {[tuple(o.shape) for o in model.outputs]}"
        )
    if y.min() < 0 or y.max() >= classes:
        raise DataError(
            f"{what} labels: Expected class indices in [0, {classes - 1}]. "
            f"Received: values in [{int(y.min())}, {int(y.max())}]"
        )
    return x.astype(np.float32), y.astype(np.int64)
