"""Check an artifact on its real runtime against the Keras model it came from.

Compare names/shapes first, then values; collect every failure, then raise one ValidationError.

Example:
    >>> import numpy as np
    >>> ref = [np.array([[0.1, 0.9], [0.8, 0.2]])]
    >>> v = compare(ref, [np.array([[0.1, 0.9], [0.7, 0.3]])], labels=np.array([1, 1]))
    >>> round(v.max_abs_diff, 3), v.top1_agreement, v.accuracy, v.reference_accuracy
    (0.1, 1.0, 0.5, 0.5)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

FLOAT_RTOL = 1e-4


@dataclass
class Validation:
    """What running an artifact on its runtime showed."""

    runtime: str = ""
    samples: int = 0
    max_abs_diff: float = 0.0
    mean_abs_diff: float = 0.0
    max_rel_diff: float = 0.0
    top1_agreement: float | None = None
    accuracy: float | None = None
    reference_accuracy: float | None = None
    passed: bool = True
    problems: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        d = asdict(self)
        d["problems"] = list(self.problems)
        return d


def _top1(y: np.ndarray) -> np.ndarray | None:
    if y.ndim == 2 and y.shape[1] > 1:
        return np.argmax(y, axis=1)
    return None


def compare(reference: list[np.ndarray], got: list[np.ndarray], *, labels: np.ndarray | None = None,
            exact: bool = False, rtol: float = FLOAT_RTOL) -> Validation:
    """Numbers for ``got`` against ``reference``; ``exact`` (float exports) also requires max rel diff <= rtol."""
    problems = []
    if len(reference) != len(got):
        problems.append(f"{len(got)} outputs, expected {len(reference)}")
    shapes_ok = [r.shape == g.shape for r, g in zip(reference, got)]
    for i, ok in enumerate(shapes_ok):
        if not ok:
            problems.append(f"output {i} has shape {got[i].shape}, expected {reference[i].shape}")
    v = Validation(samples=int(reference[0].shape[0]) if reference else 0)
    if problems:
        v.passed, v.problems = False, tuple(problems)
        return v
    diffs = [np.abs(r.astype(np.float64) - g.astype(np.float64)) for r, g in zip(reference, got)]
    v.max_abs_diff = float(max(d.max() for d in diffs))
    v.mean_abs_diff = float(np.mean(np.concatenate([d.ravel() for d in diffs])))
    scale = max(float(max(np.abs(r).max() for r in reference)), 1e-6)
    v.max_rel_diff = v.max_abs_diff / scale
    ref_top, got_top = _top1(reference[0]), _top1(got[0])
    if ref_top is not None:
        v.top1_agreement = float(np.mean(ref_top == got_top))
        if labels is not None:
            v.accuracy = float(np.mean(got_top == labels))
            v.reference_accuracy = float(np.mean(ref_top == labels))
    if exact and not v.max_rel_diff <= rtol:
        problems.append(f"max relative difference {v.max_rel_diff:.3g} > {rtol:g}")
    v.passed, v.problems = not problems, tuple(problems)
    return v


def keras_outputs(model: Any, x: np.ndarray, *, batch: int = 64) -> list[np.ndarray]:
    """The Keras model's outputs on ``x`` as a list of float arrays."""
    parts: list[list[np.ndarray]] = []
    for start in range(0, len(x), batch):
        out = model(x[start:start + batch], training=False)
        out = out if isinstance(out, (list, tuple)) else [out]
        parts.append([np.asarray(o, dtype=np.float32) for o in out])
    return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]
