"""Precision candidates for a model without data, each judged against the float model on the synthesized inputs
(the only evidence there is: a proxy, reported as such).

Candidates (``KINDS``):

- ``int8``: full integer, per-channel weights (TFLite's default), on the equalized and bias-corrected model,
  activation ranges by quantization error (:mod:`edgecnn.datafree.calibrate`);
- ``int8-per-tensor``: the same with one weight scale per tensor: fewer quantization parameters (a smaller
  file), which cross-layer equalization makes affordable (Nagel et al. 2019);
- ``int8-float``: built only when no int8 candidate meets both floors: an int8 candidate with its most sensitive
  ops (TFLite's quantization debugger on the synthesized inputs) kept in float, fewest first, until both floors
  hold; from the per-channel int8 (``precision:int8-float``) and from the per-tensor one
  (``precision:int8-float-per-tensor``) while that stays smaller than the dynamic-range candidate;
- ``dynamic``: int8 weights, float activations; ``fp16``: float16 weights.

Two floors judge a candidate on the synthesized inputs: top-1 agreement ``>= floor`` and, for full-int8
candidates, output SNR ``>= min_snr_db``. Agreement on a few hundred synthesized inputs is coarse (steps of 1/N)
and saturates: int8 candidates that agreed 0.99 there at a proxy SNR of 17-23 dB lost agreement on real images,
while one at 48 dB lost none (docs/data_free.md); SNR is continuous, so it tells them apart. Only full int8 is
calibrated on the inputs it is scored on; weight-only conversions (dynamic, fp16) do not depend on them and face
the agreement floor alone (dynamic range measured 25-30 dB on a mini-Xception's synthesized inputs and 44 dB on
its real ones).

Every candidate's tensor names are shortened (:mod:`edgecnn.datafree.slim`). :func:`choose` picks the fastest
candidate that meets both floors; candidates within noise of the fastest (``min_gain``, or the measured spread)
count as tied, and among the tied ones whose proxy SNR is within ``SNR_TIE_DB`` of the best, the smallest file
wins (a smaller file is not worth a clearly less faithful one; so a candidate larger than the dynamic-range one
never wins while dynamic meets the floors and is as fast). A candidate larger than the plain conversion at the
target's quantization (``max_bytes``: the size class the target asks for) only wins when no candidate of at most
that size meets both floors: when full int8 cannot be trusted, an int8 target falls back to dynamic range (int8
weights), not to float16 weights that a host CPU happens to run faster.

Example:
    >>> a = Precision("int8", mode="int8", size_bytes=100, agreement=0.995, snr_db=35.0, latency_ms=1.0)
    >>> b = Precision("dynamic", mode="dynamic", size_bytes=120, agreement=1.0, snr_db=50.0, latency_ms=2.0)
    >>> choose([a, b], floor=0.99, min_snr_db=30.0, min_gain=0.03).id, a.reason
    ('int8', 'fastest that meets both floors on the synthesized inputs (agreement 0.995 >= 0.99, SNR 35.0 >= 30 dB)')
    >>> a.snr_db = 20.0  # agreement still passes: the SNR floor decides
    >>> choose([a, b], floor=0.99, min_snr_db=30.0, min_gain=0.03).id, a.reason
    ('dynamic', 'SNR 20.0 dB < floor 30 dB on the synthesized inputs (agreement 0.995 >= 0.99 passes)')
    >>> a.snr_db, a.agreement = 35.0, 0.95  # now the agreement floor decides
    >>> choose([a, b], floor=0.99, min_snr_db=30.0, min_gain=0.03).id, a.reason
    ('dynamic', 'agreement 0.950 < floor 0.99 on the synthesized inputs (SNR 35.0 dB >= 30 passes)')
"""
from __future__ import annotations

import gc
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np

from edgecnn.datafree.int8 import MIN_HOLD
from edgecnn.datafree.proxy import proxy
from edgecnn.errors import EdgecnnError

__all__ = ["KINDS", "MIN_HOLD", "Precision", "build_candidates", "choose", "misses", "proxy"]

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


def misses(c: Precision, *, floor: float, min_snr_db: float) -> list[str]:
    """The floors ``c`` misses on the synthesized inputs, each said with its numbers (empty: it meets them).

    The SNR floor applies to full-int8 candidates only: their activation ranges and bias corrections were fitted
    on the synthesized inputs they are scored on, which is where the proxy flatters. Dynamic range and float16 are
    weight-only conversions that do not depend on those inputs; the agreement floor judges them.

    >>> misses(Precision("x", mode="int8", agreement=0.992, snr_db=19.7), floor=0.99, min_snr_db=30.0)
    ['SNR 19.7 dB < floor 30 dB']
    >>> misses(Precision("y", mode="dynamic", agreement=1.0, snr_db=25.2), floor=0.99, min_snr_db=30.0)
    []
    """
    out = []
    if c.agreement is not None and c.agreement < floor:
        out.append(f"agreement {c.agreement:.3f} < floor {floor:g}")
    if c.mode == "int8" and (c.snr_db is None or c.snr_db < min_snr_db):
        out.append(f"SNR {c.snr_db:.1f} dB < floor {min_snr_db:g} dB" if c.snr_db is not None else "no SNR")
    return out


def _floors(c: Precision, *, floor: float, min_snr_db: float) -> str:
    agree = "" if c.agreement is None else f"agreement {c.agreement:.3f} >= {floor:g}, "
    if c.mode != "int8":
        return f"{agree}SNR {c.snr_db:.1f} dB; the SNR floor is for calibrated int8"
    return f"{agree}SNR {c.snr_db:.1f} >= {min_snr_db:g} dB"


def build_candidates(original: Any, *, equalized: Any, x: np.ndarray, input_range: Sequence[float],
                     kinds: Sequence[str] = KINDS, floor: float = 0.99, min_snr_db: float = 30.0,
                     max_float_ops: int = 4, bias_correction: bool = True, ranges: str = "mse",
                     calibration_samples: int = 200, compare_steps: bool = True, max_bytes: Optional[int] = None,
                     batchnorm_sigmas: float = 0.0, deadline: Optional[float] = None, deadline_what: str = "",
                     progress: Callable[[str, int, int], None] = lambda text, done, total: None,
                     reference: Optional[np.ndarray] = None) -> tuple[list[Precision], dict]:
    """Convert every candidate of ``kinds`` and score it on ``x`` against ``original``'s float outputs.

    ``floor`` and ``min_snr_db`` decide whether the int8-float candidates are built (only when no int8 candidate
    meets both) and when they stop keeping ops in float (see the module docstring). ``deadline``
    (``time.perf_counter()`` seconds): candidates that would not be done by then (a like conversion took as long
    as the last one) are skipped, said so with ``deadline_what`` (the budget's name), except the full-int8 kinds
    (one calibration serves both) and dynamic range, which are built first and always.

    The int8 kinds are built by :func:`edgecnn.datafree.int8.build_int8`, calibrated once on
    ``x[:calibration_samples]`` (fewer when that leaves ``MIN_HOLD`` to judge by:
    :func:`edgecnn.datafree.int8.calibration_split`, in ``details["calibration"]``): with ``compare_steps`` and
    at least ``MIN_HOLD`` synthesized inputs beyond those,
    the variant (equalization and bias correction, equalization alone, or the original when ``deadline`` leaves
    time for its calibration) with the highest output SNR on the held-out ones is kept: on a MobileNetV2 whose
    BatchNorm-folded weight ranges differ at most 7.7x between channels, equalization had nothing to even out and
    lowered the SNR on real images too (docs/data_free.md). Fewer held-out inputs: bias correction is applied,
    unless it makes the file larger than ``max_bytes`` (the plain conversion) and the uncorrected one is not.
    ``reference``: ``original``'s outputs on ``x``, when the caller has them. ``batchnorm_sigmas`` > 0: the
    outputs of convs with a BatchNorm folded in take their int8 range from its statistics
    (:mod:`edgecnn.datafree.bnranges`; 0: from the synthesized inputs like every other tensor).

    Returns:
        (the candidates, details: the bias corrections, activation ranges and step comparison of the int8
        candidates).
    """
    from edgecnn._tf import muted
    from edgecnn.datafree.int8 import Calibrations, build_int8, calibration_split
    from edgecnn.datafree.slim import slim_names
    from edgecnn.exporting.tflite import to_tflite
    from edgecnn.runtimes.keras import keras_outputs
    from edgecnn.exporting.quantize import QuantMode

    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise EdgecnnError(f"data-free precision candidates: Expected some of {', '.join(KINDS)}. "
                           f"Received: {', '.join(unknown)}")
    reference = keras_outputs(original, x)[0] if reference is None else reference
    name = getattr(original, "name", "")
    out: list[Precision] = []
    details: dict = {}
    calibration_samples = calibration_split(len(x), calibration_samples, compare_steps=compare_steps)
    details["calibration"] = {"inputs": calibration_samples, "held_out": int(len(x)) - calibration_samples}
    cal = Calibrations(original=original, equalized=equalized, x=x[:calibration_samples], input_range=input_range,
                       ranges=ranges, per_channel=[k == "int8" for k in kinds if k in ("int8", "int8-per-tensor")],
                       batchnorm_sigmas=batchnorm_sigmas)
    variants: dict[bool, Any] = {}  # per_channel: the kept int8 variant (int8-float starts from it)
    total = len(kinds)

    def finish(p: Precision, data: bytes) -> Precision:
        p.data = slim_names(data, model_name=name)
        p.size_bytes = len(p.data)
        p.agreement, p.snr_db = proxy(p.data, x, reference)
        return p

    # the full int8 kinds (one calibration) and dynamic range first (always built); int8-float last: whether it is
    # needed, and how large it may grow, depend on the others
    rest = [k for k in kinds if k != "int8-float"]
    first = [k for k in rest if k in ("int8", "int8-per-tensor")] + [k for k in rest if k == "dynamic"]
    order = first + [k for k in rest if k not in first] + [k for k in kinds if k == "int8-float"]
    keep_builders = "int8-float" in kinds
    took: dict[str, float] = {}  # seconds the last conversion of each family took: a like one will take as long
    for k_, kind in enumerate(order):
        progress(f"converting {kind}", k_, total)
        family = kind if kind == "int8-float" else "int8" if kind.startswith("int8") else "float"
        if kind not in first and deadline is not None and time.perf_counter() + took.get(family, 0.0) > deadline:
            out.append(Precision(f"precision:{kind}", mode=kind.split("-")[0],
                                 reason=f"skipped: {deadline_what or 'the time budget'} spent before it could be "
                                        f"built (a like conversion took {took.get(family, 0.0):.0f} s)"))
            continue
        started = time.perf_counter()
        try:
            if kind in ("int8", "int8-per-tensor"):
                v = build_int8(cal, kind=kind, x=x, reference=reference, calibration_samples=calibration_samples,
                               details=details, bias_correction=bias_correction, compare_steps=compare_steps,
                               max_bytes=max_bytes, slim=lambda data: slim_names(data, model_name=name),
                               deadline=deadline)
                variants[kind == "int8"] = v
                details.setdefault("ranges", {})[kind] = v.builder.ranges
                out.append(finish(Precision(f"precision:{kind}", mode="int8", description=v.description), v.data))
                v.data = b""
                if not misses(out[-1], floor=floor, min_snr_db=min_snr_db):
                    keep_builders = False  # int8-float is built only when no int8 meets both floors
                if not keep_builders and not any(k in ("int8", "int8-per-tensor") for k in order[k_ + 1:]):
                    variants.clear()  # free the calibrated models now (hundreds of MB at 224 px)
                    cal.clear()
                    gc.collect()
            elif kind == "int8-float":
                out += _int8_float(out, variants, original=original, finish=finish, floor=floor,
                                         min_snr_db=min_snr_db, max_float_ops=max_float_ops, deadline=deadline,
                                         deadline_what=deadline_what)
            else:
                mode = QuantMode.DYNAMIC if kind == "dynamic" else QuantMode.FP16
                with muted(1, 2):
                    data = to_tflite(equalized, mode=mode, calibration=None)
                desc = "int8 weights, float activations" if kind == "dynamic" else "float16 weights"
                out.append(finish(Precision(f"precision:{kind}", mode=mode.value, description=desc), data))
        except EdgecnnError as exc:
            out.append(Precision(f"precision:{kind}", mode=kind.split("-")[0], error=str(exc),
                                 reason=f"cannot build: {exc}"))
        took[family] = time.perf_counter() - started
    progress("converted", total, total)
    details["int8_calibrations"] = cal.calibrations
    out.sort(key=_rank)
    return out, details


def _rank(p: Precision) -> int:
    """The candidate's place in :data:`KINDS` (int8-float variants together)."""
    kind = p.id.split(":", 1)[-1]
    kind = "int8-float" if kind.startswith("int8-float") else kind
    return KINDS.index(kind) if kind in KINDS else len(KINDS)


def _int8_float(out: list[Precision], variants: dict, *, original: Any, finish: Callable, floor: float,
                min_snr_db: float, max_float_ops: int, deadline: Optional[float] = None,
                deadline_what: str = "") -> list[Precision]:
    """The int8-float candidates (see the module docstring), or one unbuilt row that says why none was built."""
    from edgecnn.datafree.calibrate import layer_of

    ints = [p for p in out if p.id in ("precision:int8", "precision:int8-per-tensor") and p.error is None]
    if not ints:
        return [Precision("precision:int8-float", mode="int8", reason="not built: no int8 candidate to start from")]
    good = [p for p in ints if not misses(p, floor=floor, min_snr_db=min_snr_db)]
    if good:
        return [Precision("precision:int8-float", mode="int8", reason=f"not built: {good[0].id} already meets both "
                          f"floors ({_floors(good[0], floor=floor, min_snr_db=min_snr_db)})")]
    dynamic = next((p for p in out if p.id == "precision:dynamic" and p.error is None and p.size_bytes), None)
    built = []
    for base in ints:
        per_channel = base.id == "precision:int8"
        cid = "precision:int8-float" if per_channel else "precision:int8-float-per-tensor"
        # the per-tensor variant exists to be smaller than dynamic range; it stops growing before it is not
        limit = None if per_channel or dynamic is None else dynamic.size_bytes
        if limit is not None and base.size_bytes >= limit:
            built.append(Precision(cid, mode="int8", reason=f"not built: {base.id} is already not smaller than "
                                   f"{dynamic.id} ({base.size_bytes:,} vs {limit:,} bytes)"))
            continue
        builder = variants[per_channel]
        denied: list[str] = []
        cand: Optional[Precision] = None
        why = f"not built: no op of {base.id} to keep in float"
        while len(denied) < max_float_ops:
            if deadline is not None and time.perf_counter() > deadline:
                why = f"not built: {deadline_what or 'the time budget'} spent"
                break
            ranking = builder.sensitive_ops(per_channel=per_channel, exclude=denied)
            if not ranking:
                break
            trial = finish(Precision(cid, mode="int8"),
                           builder.build(per_channel=per_channel, float_ops=denied + [ranking[0]["tensor"]]))
            if limit is not None and trial.size_bytes >= limit:
                why = (f"not built: keeping {len(denied) + 1} op(s) of {base.id} in float makes it "
                       f"{trial.size_bytes:,} bytes, not smaller than {dynamic.id} ({limit:,})")
                break
            denied.append(ranking[0]["tensor"])
            cand = trial
            if not misses(cand, floor=floor, min_snr_db=min_snr_db):
                break
        if cand is None:
            built.append(Precision(cid, mode="int8", reason=why))
            continue
        cand.float_ops = [layer_of(t, original) or t for t in denied]
        cand.description = f"{base.description}; kept in float: {', '.join(cand.float_ops)}"
        built.append(cand)
    return built


def choose(cands: Sequence[Precision], *, floor: float, min_snr_db: float, min_gain: float,
           max_bytes: Optional[int] = None, max_bytes_what: str = "the plain conversion",
           prefer_mode: Optional[str] = None) -> Optional[Precision]:
    """The fastest candidate that meets both floors on the synthesized inputs (agreement ``>= floor``, SNR
    ``>= min_snr_db``); ties (within ``min_gain`` of the fastest, or the measured noise) go to the smallest file
    among those within ``SNR_TIE_DB`` of the best SNR, then the highest agreement, when it is at least ``min_gain``
    smaller than the fastest of them (else the fastest: per-tensor int8 of the MNIST CNN, 1.9% smaller, timed 3%
    slower than plain int8 in docs/data_free.md). None meeting both: the most
    faithful one (the agreement floor met, then SNR), said so. Sets ``chosen`` and ``reason`` on every candidate;
    a reason names the floor that decided.

    ``max_bytes`` (the plain conversion at the target's quantization: the size class the target asks for): a
    larger candidate is only chosen when no candidate of at most that size meets both floors. ``prefer_mode``
    (the target's quantization): among candidates tied on speed, those of that mode come first (an int8 target
    may be an integer-only accelerator).

    >>> small = Precision("precision:dynamic", mode="dynamic", size_bytes=95, agreement=1.0, snr_db=40.0,
    ...                   latency_ms=0.24)
    >>> large = Precision("precision:fp16", mode="fp16", size_bytes=135, agreement=1.0, snr_db=59.0, latency_ms=0.21)
    >>> choose([small, large], floor=0.99, min_snr_db=35.0, min_gain=0.03, max_bytes=106).id, large.reason
    ('precision:dynamic', 'larger than the plain conversion (135 vs 106 bytes) while precision:dynamic, no larger, meets both floors')
    """
    usable = [c for c in cands if c.size_bytes > 0 and c.error is None]
    if not usable:
        return None
    missed = {id(c): misses(c, floor=floor, min_snr_db=min_snr_db) for c in usable}
    passing = [c for c in usable if not missed[id(c)]]
    for c in usable:
        c.chosen = False
        if missed[id(c)]:
            c.reason = " and ".join(missed[id(c)]) + " on the synthesized inputs"
            if len(missed[id(c)]) == 1 and missed[id(c)][0].startswith("SNR"):
                c.reason += ("" if c.agreement is None else f" (agreement {c.agreement:.3f} >= {floor:g} passes)")
            elif len(missed[id(c)]) == 1 and c.mode == "int8":
                c.reason += f" (SNR {c.snr_db:.1f} dB >= {min_snr_db:g} passes)"
    if not passing:
        best = max(usable, key=lambda c: (c.agreement is None or c.agreement >= floor, -np.inf if c.snr_db is None else c.snr_db,
                                          c.agreement or 0.0))
        best.chosen = True
        best.reason = (f"no candidate meets both floors on the synthesized inputs (agreement >= {floor:g}, SNR >= "
                       f"{min_snr_db:g} dB); the most faithful one: {best.reason}")
        return best
    fits = [c for c in passing if max_bytes is None or c.size_bytes <= max_bytes]
    if fits and len(fits) < len(passing):
        smallest = min(fits, key=lambda c: c.size_bytes)
        for c in passing:
            if c not in fits:
                c.reason = (f"larger than {max_bytes_what} ({c.size_bytes:,} vs {max_bytes:,} bytes) while "
                            f"{smallest.id}, no larger, meets both floors")
        passing = fits
    timed = [c for c in passing if c.latency_ms is not None]
    if timed:
        first = min(timed, key=lambda c: c.latency_ms)
        tied = [c for c in timed if c.latency_ms - first.latency_ms <= max(
            min_gain * first.latency_ms, first.noise_ms or 0.0, c.noise_ms or 0.0)]
    else:
        tied = passing
    pool = [c for c in tied if c.mode == prefer_mode] or tied
    top = max(c.snr_db for c in pool)
    faithful = [c for c in pool if c.snr_db >= top - SNR_TIE_DB]
    best = smallest = min(faithful, key=lambda c: (c.size_bytes, -(c.agreement or 0.0)))
    fastest = min((c for c in faithful if c.latency_ms is not None), key=lambda c: c.latency_ms, default=None)
    if fastest is not None and smallest.size_bytes > (1.0 - min_gain) * fastest.size_bytes:
        best = fastest  # a file smaller by less than min_gain is no reason to ship one measured slower
    within = f"within {min_gain:.0%} or the measured noise"
    for c in passing:
        if c is best:
            floors = f"meets both floors on the synthesized inputs ({_floors(c, floor=floor, min_snr_db=min_snr_db)})"
            c.reason = (f"fastest that {floors}" if len(tied) == 1 else
                        f"{floors}; as fast as {', '.join(t.id for t in tied if t is not best)} ({within}) and the "
                        + (f"smallest within {SNR_TIE_DB:g} dB of the best SNR" if best is smallest else
                           f"fastest of those within {SNR_TIE_DB:g} dB of the best SNR (none {min_gain:.0%} smaller)")
                        + (f" of the target's precision ({prefer_mode})" if len(pool) < len(tied) else ""))
        elif c in tied and c not in pool:
            c.reason = f"as fast as {best.id} ({within}) but not the target's precision ({prefer_mode})"
        elif c in tied and c not in faithful:
            c.reason = (f"as fast as {best.id} ({within}) but less faithful: SNR {c.snr_db:.1f} vs "
                        f"{top:.1f} dB on the synthesized inputs")
        elif c in tied:
            c.reason = f"as fast as {best.id} ({within}) but larger or less faithful"
        else:
            c.reason = f"slower than {best.id}: {c.latency_ms:.3f} vs {best.latency_ms:.3f} ms" \
                if c.latency_ms is not None and best.latency_ms is not None else f"not chosen: {best.id} is"
    best.chosen = True
    return best
