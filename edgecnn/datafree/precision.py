"""Precision candidates for a model without data, each judged by agreement with the float model on the
synthesized inputs (the only evidence there is: a proxy, reported as such).

Candidates (``KINDS``):

- ``int8``: full integer, per-channel weights (TFLite's default), on the equalized and bias-corrected model,
  activation ranges by quantization error (:mod:`edgecnn.datafree.calibrate`);
- ``int8-per-tensor``: the same with one weight scale per tensor: fewer quantization parameters (a smaller
  file), which cross-layer equalization makes affordable (Nagel et al. 2019);
- ``int8-float``: the better int8 candidate with its most sensitive ops (TFLite's quantization debugger on the
  synthesized inputs) kept in float, fewest first, until the agreement floor holds (only when int8 misses it);
- ``dynamic``: int8 weights, float activations; ``fp16``: float16 weights.

Every candidate's tensor names are shortened (:mod:`edgecnn.datafree.slim`). :func:`choose` picks the fastest
candidate that reaches the floor; candidates within ``min_gain`` of the fastest count as tied, and among the tied
ones whose proxy SNR is within ``SNR_TIE_DB`` of the best, the smallest file wins (a smaller file is not worth a
clearly less faithful one).

Example:
    >>> a = Precision("int8", mode="int8", size_bytes=100, agreement=0.995, snr_db=20.0, latency_ms=1.0)
    >>> b = Precision("fp16", mode="fp16", size_bytes=200, agreement=1.0, snr_db=40.0, latency_ms=2.0)
    >>> choose([a, b], floor=0.99, min_gain=0.03).id, a.reason
    ('int8', 'fastest that agrees >= 0.99 on the synthesized inputs')
    >>> a.agreement = 0.95
    >>> choose([a, b], floor=0.99, min_gain=0.03).id, a.reason
    ('fp16', 'agreement 0.950 < floor 0.99 on the synthesized inputs')
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np

from edgecnn.errors import EdgecnnError

__all__ = ["KINDS", "Precision", "build_candidates", "choose", "proxy"]

KINDS = ("int8", "int8-per-tensor", "int8-float", "dynamic", "fp16")
SNR_TIE_DB = 3.0


@dataclass
class Precision:
    """One precision candidate and what it measured."""

    id: str
    mode: str
    data: bytes = field(default=b"", repr=False)
    size_bytes: int = 0
    agreement: Optional[float] = None
    snr_db: Optional[float] = None
    latency_ms: Optional[float] = None
    base_ms: Optional[float] = None
    noise_ms: Optional[float] = None
    float_ops: list = field(default_factory=list)
    description: str = ""
    chosen: bool = False
    reason: str = ""
    error: Optional[str] = None

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("data")
        return d


def proxy(data: bytes, x: np.ndarray, reference: np.ndarray) -> tuple[Optional[float], float]:
    """(top-1 agreement, SNR dB) of a .tflite against the float outputs ``reference`` on ``x`` (LiteRT)."""
    from edgecnn.exporting.validate import snr_db
    from edgecnn.runtimes.litert import LiteRTSession

    got = LiteRTSession(data).run(x)[0]
    from edgecnn.data.checks import top1_accuracy

    agreement = top1_accuracy(got, np.argmax(reference, -1)) if reference.ndim == 2 and reference.shape[1] > 1 else None
    return agreement, float(snr_db(reference, got))


def build_candidates(original: Any, *, equalized: Any, x: np.ndarray, input_range: Sequence[float],
                     kinds: Sequence[str] = KINDS, floor: float = 0.99, max_float_ops: int = 4,
                     bias_correction: bool = True, ranges: str = "mse", calibration_samples: int = 200,
                     progress: Callable[[str, int, int], None] = lambda text, done, total: None,
                     ) -> tuple[list[Precision], dict]:
    """Convert every candidate of ``kinds`` and score it on ``x`` against ``original``'s float outputs.

    Returns:
        (the candidates, details: the bias corrections and activation ranges of the int8 candidates).
    """
    from edgecnn._tf import muted
    from edgecnn.datafree.bias import correct_bias
    from edgecnn.datafree.calibrate import Int8Builder, layer_of
    from edgecnn.datafree.slim import slim_names
    from edgecnn.exporting.tflite import to_tflite
    from edgecnn.runtimes.keras import keras_outputs
    from edgecnn.exporting.quantize import QuantMode

    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise EdgecnnError(f"data-free precision candidates: Expected some of {', '.join(KINDS)}. "
                           f"Received: {', '.join(unknown)}")
    reference = keras_outputs(original, x)[0]
    name = getattr(original, "name", "")
    out: list[Precision] = []
    details: dict = {}
    builders: dict[bool, Any] = {}
    total = len(kinds)

    def finish(p: Precision, data: bytes) -> Precision:
        p.data = slim_names(data, model_name=name)
        p.size_bytes = len(p.data)
        p.agreement, p.snr_db = proxy(p.data, x, reference)
        return p

    for k, kind in enumerate(kinds):
        progress(f"converting {kind}", k, total)
        try:
            if kind in ("int8", "int8-per-tensor"):
                per_channel = kind == "int8"
                model = equalized
                if bias_correction:
                    model, rows = correct_bias(equalized, x=x, per_channel=per_channel, expected="batchnorm")
                    details.setdefault("bias_correction", {})[kind] = rows
                builders[per_channel] = Int8Builder(model, x=x[:calibration_samples], input_range=input_range,
                                                    ranges=ranges)
                details.setdefault("ranges", {})[kind] = builders[per_channel].ranges
                desc = ("full int8, per-channel weights" if per_channel else "full int8, per-tensor weights") + \
                    (", bias-corrected" if bias_correction else "") + f", {ranges} activation ranges"
                out.append(finish(Precision(f"precision:{kind}", mode="int8", description=desc),
                                  builders[per_channel].build(per_channel=per_channel)))
            elif kind == "int8-float":
                ints = [p for p in out if p.mode == "int8" and not p.float_ops and p.error is None]
                if not ints:
                    continue
                best = max(ints, key=lambda p: ((p.agreement or 0.0), p.snr_db))
                if best.agreement is None or best.agreement >= floor:
                    out.append(Precision("precision:int8-float", mode="int8", reason=f"not built: {best.id} "
                                         f"already agrees {best.agreement} >= {floor:g}"))
                    continue
                per_channel = best.id == "precision:int8"
                builder = builders[per_channel]
                denied: list[str] = []
                cand = None
                while len(denied) < max_float_ops:
                    ranking = builder.sensitive_ops(per_channel=per_channel, exclude=denied)
                    if not ranking:
                        break
                    denied.append(ranking[0]["tensor"])
                    cand = finish(Precision("precision:int8-float", mode="int8"),
                                  builder.build(per_channel=per_channel, float_ops=denied))
                    if cand.agreement is not None and cand.agreement >= floor:
                        break
                if cand is not None:
                    cand.float_ops = [layer_of(t, original) or t for t in denied]
                    cand.description = f"{best.description}; kept in float: {', '.join(cand.float_ops)}"
                    out.append(cand)
            else:
                mode = QuantMode.DYNAMIC if kind == "dynamic" else QuantMode.FP16
                with muted(1, 2):
                    data = to_tflite(equalized, mode=mode, calibration=None)
                desc = "int8 weights, float activations" if kind == "dynamic" else "float16 weights"
                out.append(finish(Precision(f"precision:{kind}", mode=mode.value, description=desc), data))
        except EdgecnnError as exc:
            out.append(Precision(f"precision:{kind}", mode=kind.split("-")[0], error=str(exc),
                                 reason=f"cannot build: {exc}"))
    progress("converted", total, total)
    return out, details


def choose(cands: Sequence[Precision], *, floor: float, min_gain: float) -> Optional[Precision]:
    """The fastest candidate with agreement >= ``floor``; ties (within ``min_gain`` of the fastest) go to
    the smallest file, then the highest agreement. None reaching the floor: the most faithful one (agreement,
    then SNR), said so. Sets ``chosen`` and ``reason`` on every candidate."""
    usable = [c for c in cands if c.size_bytes > 0 and c.error is None]
    if not usable:
        return None

    def good(c: Precision) -> bool:
        return c.agreement is None or c.agreement >= floor

    passing = [c for c in usable if good(c)]
    for c in usable:
        c.chosen = False
        if not good(c):
            c.reason = f"agreement {c.agreement:.3f} < floor {floor:g} on the synthesized inputs"
    if not passing:
        best = max(usable, key=lambda c: (c.agreement or 0.0, c.snr_db))
        best.chosen = True
        best.reason = (f"no candidate agrees >= {floor:g} on the synthesized inputs; the most faithful one "
                       f"({best.agreement:.3f})")
        return best
    timed = [c for c in passing if c.latency_ms is not None]
    if timed:
        fastest = min(c.latency_ms for c in timed)
        tied = [c for c in timed if c.latency_ms <= fastest * (1.0 + min_gain)]
    else:
        tied = passing
    top = max(c.snr_db for c in tied)
    faithful = [c for c in tied if c.snr_db >= top - SNR_TIE_DB]
    best = min(faithful, key=lambda c: (c.size_bytes, -(c.agreement or 0.0)))
    for c in passing:
        if c is best:
            c.reason = (f"fastest that agrees >= {floor:g} on the synthesized inputs" if len(tied) == 1 else
                        f"agrees >= {floor:g} on the synthesized inputs; as fast as "
                        f"{', '.join(t.id for t in tied if t is not best)} (within {min_gain:.0%}) and the smallest "
                        f"within {SNR_TIE_DB:g} dB of the best SNR")
        elif c in tied and c not in faithful:
            c.reason = (f"as fast as {best.id} (within {min_gain:.0%}) but less faithful: SNR {c.snr_db:.1f} vs "
                        f"{top:.1f} dB on the synthesized inputs")
        elif c in tied:
            c.reason = f"as fast as {best.id} (within {min_gain:.0%}) but larger or less faithful"
        else:
            c.reason = f"slower than {best.id}: {c.latency_ms:.3f} vs {best.latency_ms:.3f} ms" \
                if c.latency_ms is not None and best.latency_ms is not None else f"not chosen: {best.id} is"
    best.chosen = True
    return best
