"""Check an artifact on its real runtime against the Keras model it came from, with a threshold per mode.

Compare names/shapes first, then values; collect every failure. Every mode has a :class:`Tolerance` in
:data:`TOLERANCES` that a broken artifact misses: float exports must match within a relative difference,
quantized ones must reach a top-1 agreement floor on classifier outputs and a signal-to-noise floor (dB,
``10 log10(sum ref^2 / sum (ref - got)^2)``) on every output. A NaN or Inf anywhere is a failure.
Defaults can be overridden (``Tolerance.with_overrides``, recipe ``[validate]``, CLI ``--min-agreement`` /
``--min-snr-db``).

Example:
    >>> import numpy as np
    >>> ref = [np.array([[0.1, 0.9], [0.8, 0.2]])]
    >>> v = compare(ref, [np.array([[0.1, 0.9], [0.7, 0.3]])], labels=np.array([1, 1]), tolerance=TOLERANCES["int8"])
    >>> round(v.max_abs_diff, 3), round(v.snr_db, 1), v.top1_agreement, v.accuracy, v.reference_accuracy, v.passed
    (0.1, 18.8, 1.0, 0.5, 0.5, True)
    >>> compare(ref, [np.array([[0.1, 0.9], [0.7, 0.3]])], tolerance=TOLERANCES["fp16"]).problems
    ('output 0: SNR 18.8 dB < 30 dB (fp16 floor)',)
    >>> bad = compare(ref, [np.array([[0.9, 0.1], [0.7, 0.3]])], tolerance=TOLERANCES["int8"])
    >>> bad.passed, bad.problems[0]
    (False, 'output 0: top-1 agreement 0.500 < 0.9 (int8 floor)')
    >>> compare(ref, [np.array([[np.nan, 0.9], [0.7, 0.3]])], tolerance=TOLERANCES["fp16"]).problems
    ('output 0: 1 NaN/Inf value(s)',)
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Optional

import numpy as np

from edgecnn.data.checks import top1_agreement
from edgecnn.errors import EdgecnnError

FLOAT_RTOL = 1e-4


@dataclass(frozen=True)
class Tolerance:
    """What an artifact of one mode must reach against the Keras model on the validation inputs.

    Attributes:
        mode: the quantization mode it belongs to.
        max_rel_diff: float exports: max abs difference over the output scale (None: not checked).
        min_agreement: classifier outputs (N, classes >= 2): share of inputs with the same top-1 class.
        min_snr_db: every output: signal-to-noise ratio of the artifact's output against Keras'.
    """

    mode: str
    max_rel_diff: Optional[float] = None
    min_agreement: Optional[float] = None
    min_snr_db: Optional[float] = None

    def with_overrides(self, *, min_agreement: Optional[float] = None, min_snr_db: Optional[float] = None,
                       max_rel_diff: Optional[float] = None) -> "Tolerance":
        """This tolerance with user overrides (None keeps the default); checked to be finite and in range.

        >>> TOLERANCES["int8"].with_overrides(min_agreement=0.97).min_agreement
        0.97
        >>> TOLERANCES["int8"].with_overrides(min_agreement=1.5)
        Traceback (most recent call last):
        ...
        edgecnn.errors.EdgecnnError: validation min_agreement: Expected a number in [0, 1]. Received: 1.5
        """
        checks = {"min_agreement": (min_agreement, 0.0, 1.0), "min_snr_db": (min_snr_db, -1e6, 1e6),
                  "max_rel_diff": (max_rel_diff, 0.0, 1e6)}
        for name, (value, lo, hi) in checks.items():
            if value is None:
                continue
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or not lo <= value <= hi:
                want = "a number in [0, 1]" if name == "min_agreement" else "a finite number >= 0" \
                    if name == "max_rel_diff" else "a finite number"
                raise EdgecnnError(f"validation {name}: Expected {want}. Received: {value!r}")
        return replace(self, **{k: float(v) for k, (v, _, _) in checks.items() if v is not None})


TOLERANCES: dict[str, Tolerance] = {
    "none": Tolerance("none", max_rel_diff=FLOAT_RTOL),
    "fp16": Tolerance("fp16", min_agreement=0.98, min_snr_db=30.0),
    "dynamic": Tolerance("dynamic", min_agreement=0.95, min_snr_db=20.0),
    "int16x8": Tolerance("int16x8", min_agreement=0.95, min_snr_db=20.0),
    "int8": Tolerance("int8", min_agreement=0.90, min_snr_db=5.0),
}


@dataclass
class Validation:
    """What running an artifact on its runtime showed, and the thresholds it was held to."""

    runtime: str = ""
    samples: int = 0
    max_abs_diff: Optional[float] = 0.0
    mean_abs_diff: Optional[float] = 0.0
    max_rel_diff: Optional[float] = 0.0
    snr_db: Optional[float] = None
    top1_agreement: Optional[float] = None
    agreement_inputs: Optional[int] = None  # inputs whose reference margin the artifact's output step can resolve
    accuracy: Optional[float] = None
    reference_accuracy: Optional[float] = None
    thresholds: Optional[dict] = None
    inputs: str = ""
    passed: bool = True
    problems: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        """JSON-ready (strict JSON: non-finite numbers become None)."""
        d = asdict(self)
        d["problems"] = list(self.problems)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _top1(y: np.ndarray) -> Optional[np.ndarray]:
    if y.ndim == 2 and y.shape[1] > 1:
        return np.argmax(y, axis=1)
    return None


def snr_db(reference: np.ndarray, got: np.ndarray) -> float:
    """Signal-to-noise ratio in dB of ``got`` against ``reference`` (inf when equal).

    >>> round(snr_db(np.array([1.0, -1.0]), np.array([1.1, -0.9])), 1)
    20.0
    """
    signal = float(np.sum(np.square(reference.astype(np.float64))))
    noise = float(np.sum(np.square(reference.astype(np.float64) - got.astype(np.float64))))
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(max(signal, 1e-30) / noise)


def compare(reference: list[np.ndarray], got: list[np.ndarray], *, labels: Optional[np.ndarray] = None,
            exact: bool = False, rtol: float = FLOAT_RTOL, tolerance: Optional[Tolerance] = None) -> Validation:
    """Numbers for ``got`` against ``reference`` and every way they miss ``tolerance``.

    ``exact=True`` without a tolerance is the float rule (max rel diff <= ``rtol``); without either only
    shapes and finiteness are checked.
    """
    if tolerance is None:
        tolerance = Tolerance("none", max_rel_diff=rtol) if exact else Tolerance("unchecked")
    problems: list[str] = []
    if len(reference) != len(got):
        problems.append(f"{len(got)} outputs, expected {len(reference)}")
    for i, (r, g) in enumerate(zip(reference, got)):
        if r.shape != g.shape:
            problems.append(f"output {i} has shape {g.shape}, expected {r.shape}")
    v = Validation(samples=int(reference[0].shape[0]) if reference else 0,
                   thresholds={k: val for k, val in asdict(tolerance).items() if val is not None})
    if problems:
        v.passed, v.problems = False, tuple(problems)
        return v
    for i, g in enumerate(got):
        bad = int(np.size(g) - np.count_nonzero(np.isfinite(g)))
        if bad:
            problems.append(f"output {i}: {bad} NaN/Inf value(s)")
    if problems:
        v.max_abs_diff = v.mean_abs_diff = v.max_rel_diff = None
        v.passed, v.problems = False, tuple(problems)
        return v
    diffs = [np.abs(r.astype(np.float64) - g.astype(np.float64)) for r, g in zip(reference, got)]
    v.max_abs_diff = float(max(d.max() for d in diffs))
    v.mean_abs_diff = float(np.mean(np.concatenate([d.ravel() for d in diffs])))
    scale = max(float(max(np.abs(r).max() for r in reference)), 1e-6)
    v.max_rel_diff = v.max_abs_diff / scale
    snrs = [snr_db(r, g) for r, g in zip(reference, got)]
    v.snr_db = min(snrs)
    floor = f"({tolerance.mode} floor)"
    for i, (r, g, snr) in enumerate(zip(reference, got, snrs)):
        ref_top, got_top = _top1(r), _top1(g)
        if ref_top is not None:
            # inputs whose top-1 margin is below the artifact's output step (an int8 output's 1/256) are ties it
            # cannot break; when almost every input is one (an untrained model), agreement is not measurable
            agreement, counted = top1_agreement(r, g, min_count=1)
            if i == 0:
                v.top1_agreement, v.agreement_inputs = agreement, counted
                if labels is not None:
                    v.accuracy = float(np.mean(got_top == labels))
                    v.reference_accuracy = float(np.mean(ref_top == labels))
            if agreement is not None and tolerance.min_agreement is not None and agreement < tolerance.min_agreement:
                problems.append(f"output {i}: top-1 agreement {agreement:.3f} < {tolerance.min_agreement:g} {floor}")
        if tolerance.min_snr_db is not None and snr < tolerance.min_snr_db:
            problems.append(f"output {i}: SNR {snr:.1f} dB < {tolerance.min_snr_db:g} dB {floor}")
    if tolerance.max_rel_diff is not None and not v.max_rel_diff <= tolerance.max_rel_diff:
        problems.append(f"max relative difference {v.max_rel_diff:.3g} > {tolerance.max_rel_diff:g}")
    v.passed, v.problems = not problems, tuple(problems)
    return v


def check_finite_weights(model: Any) -> None:
    """Refuse a model with NaN or Inf in any weight (its outputs, and any artifact of it, are meaningless).

    >>> import tf_keras
    >>> m = tf_keras.Sequential([tf_keras.Input((2,)), tf_keras.layers.Dense(2, name="d")])
    >>> m.get_layer("d").set_weights([np.full((2, 2), np.nan, "float32"), np.zeros(2, "float32")])
    >>> check_finite_weights(m)
    Traceback (most recent call last):
    ...
    edgecnn.errors.ValidationError: model weights are not finite: Expected finite numbers in every weight. Received: 4 NaN/Inf value(s) in layer 'd'
    """
    from edgecnn.errors import ValidationError

    for layer in model.layers:
        for w in layer.get_weights():
            w = np.asarray(w)
            if not np.issubdtype(w.dtype, np.floating):
                continue
            bad = int(w.size - np.count_nonzero(np.isfinite(w)))
            if bad:
                raise ValidationError(f"model weights are not finite: Expected finite numbers in every weight. "
                                      f"Received: {bad} NaN/Inf value(s) in layer '{layer.name}'")


def validate_artifact(fmt: Any, data: bytes, final: Any, x: np.ndarray, y: Any, reference: list, *,
                      tolerance: Tolerance, inputs: str = "") -> Validation:
    """Run an artifact of format row ``fmt`` on its runtime and compare it with ``reference`` (the Keras
    outputs on ``x``): the bytes go to a temporary file beside ``final``, which is removed afterwards."""
    import os
    import tempfile
    from pathlib import Path

    from edgecnn.errors import OutputError
    from edgecnn.files import os_error_message
    from edgecnn.runtimes import RUNTIMES

    final = Path(final)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=fmt.suffix,
                                   dir=final.parent if final.parent.is_dir() else None)
    except OSError as exc:
        raise OutputError(os_error_message(exc, final)) from exc
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        except OSError as exc:  # a full disk: name the artifact, in one line
            raise OutputError(os_error_message(exc, final)) from exc
        try:
            got = RUNTIMES[fmt.runtime].load(tmp, threads=1).run(x)
        except EdgecnnError as exc:
            return Validation(runtime=fmt.runtime, passed=False, problems=(f"does not run on {fmt.runtime}: {exc}",))
        validation = compare(reference, got, labels=y, tolerance=tolerance)
    finally:
        os.unlink(tmp)
    validation.runtime, validation.inputs = fmt.runtime, inputs
    return validation
