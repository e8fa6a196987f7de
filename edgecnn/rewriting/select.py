"""Which layers to rewrite: name globs, the default skip rules, and measured latency per single rewrite.

:func:`measure_rewrites` is the per-layer latency primitive: for each candidate model (the original with
ONE change applied) it times the original and the candidate side by side on the target runtime
(:func:`edgecnn.benchmarking.core.measure`, the one measuring loop, interleaved, medians) and says whether the
change is faster by more than the measured noise. ``edgecnn rewrite --select measured`` and the compress planner use it.

Example:
    >>> match_names(["conv1", "conv2", "dense"], ["conv*"], None)
    ['conv1', 'conv2']
    >>> match_names(["conv1"], ["head*"], None)
    Traceback (most recent call last):
    ...
    edgecnn.errors.EdgecnnError: layer pattern 'head*' matches no layer: Expected a name glob of a layer of the model (conv1). Received: 'head*'
"""
from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from edgecnn.errors import EdgecnnError


def match_names(names: Sequence[str], layers: Optional[Sequence[str]], exclude: Optional[Sequence[str]]) -> list[str]:
    """The names matching any ``layers`` glob (all when None) and no ``exclude`` glob, in model order.

    Raises:
        EdgecnnError: a ``layers`` or ``exclude`` pattern matches no layer name.
    """
    for patterns in (layers or []), (exclude or []):
        for pattern in patterns:
            if not fnmatch.filter(names, pattern):
                shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
                raise EdgecnnError(f"layer pattern {pattern!r} matches no layer: Expected a name glob of a layer of "
                                   f"the model ({shown}). Received: {pattern!r}")
    chosen = [n for n in names if layers is None or any(fnmatch.fnmatchcase(n, p) for p in layers)]
    return [n for n in chosen if not any(fnmatch.fnmatchcase(n, p) for p in exclude or [])]


@dataclass(frozen=True)
class LatencyDelta:
    """Whole-model latency with and without one change, measured interleaved on one runtime.

    Attributes:
        name: the candidate's name.
        base_ms, rewritten_ms: medians of the original and of the candidate model.
        delta_ms: ``rewritten_ms - base_ms`` (negative: the change makes the model faster).
        spread_ms: the noise: how far apart the two medians must be to differ
            (:func:`edgecnn.runtimes.timing.median_noise`, the box-plot notches of both).
        faster: ``-delta_ms > spread_ms``.
        runs: timed runs of each.
        warning: repeated measurements of either side disagreed beyond the noise
            (:func:`edgecnn.benchmarking.core.disagreement`), or "".
    """

    name: str
    base_ms: float
    rewritten_ms: float
    delta_ms: float
    spread_ms: float
    faster: bool
    runs: int
    warning: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def measure_rewrites(
    model: Any,
    candidates: Mapping[str, Any],
    *,
    runtime: str = "litert",
    quantize: str = "none",
    threads: int = 1,
    runs: int = 30,
    warmup: int = 3,
    calibration: Optional[np.ndarray] = None,
    budget_s: Optional[float] = None,
) -> list[LatencyDelta]:
    """Time ``model`` against each candidate (the model with one change), pair by pair, interleaved.

    The original is converted once (or given as bytes: the compress planner passes the base artifact it
    converted once per run). Each pair is timed in its own interleaved loop, so the base median of each row
    comes from the same minutes as its candidate's.

    Args:
        model: the working model (tf_keras), or its artifact bytes for ``runtime``.
        candidates: name -> the model with that single change (tf_keras model or artifact bytes).
        runtime: ``litert`` or ``onnxruntime``.
        quantize: ``none``, ``fp16``, ``dynamic`` or ``int8`` (both sides alike).
        threads: runtime threads.
        runs, warmup: timed and warm-up runs of each side.
        budget_s: with a time budget per pair, ``runs`` is the fewest rounds and timing goes on (up to 100x
            ``runs``) until the budget is spent: small models then get thousands of rounds.
        calibration: int8 representative inputs (default synthetic, fine for timing).

    Returns:
        One :class:`LatencyDelta` per candidate, in the given order.

    Raises:
        EdgecnnError: unknown runtime/quantization, a model the converter refuses, or an artifact the runtime
            cannot load or run.

    Example:
        >>> import tf_keras
        >>> inp = tf_keras.Input((16, 16, 8))
        >>> base = tf_keras.Model(inp, tf_keras.layers.Conv2D(64, 3)(inp))
        >>> small = tf_keras.Model(inp, tf_keras.layers.Conv2D(4, 3)(inp))
        >>> [d.name for d in measure_rewrites(base, {"small": small}, runs=5)]
        ['small']
    """
    from edgecnn.benchmarking.core import time_artifacts, timing_of
    from edgecnn.exporting.convert import check, convert
    from edgecnn.runtimes.timing import median_noise

    check(runtime, quantize)

    def artifact(m: Any) -> bytes:
        return bytes(m) if isinstance(m, (bytes, bytearray)) else convert(
            m, runtime=runtime, quantize=quantize, calibration=calibration)

    base = artifact(model)
    out = []
    for name, candidate in candidates.items():
        t = time_artifacts({"base": base, "candidate": artifact(candidate)}, runtime=runtime, threads=threads,
                           warmup=warmup, budget_s=budget_s, runs=runs if budget_s is None else 100 * runs,
                           min_runs=runs)
        b, c = timing_of(t["base"]), timing_of(t["candidate"])
        delta = c.median_ms - b.median_ms
        spread = median_noise(b, c)
        warning = "; ".join(f"{k}: {r.warning}" for k, r in t.items() if r.warning)
        out.append(LatencyDelta(name, b.median_ms, c.median_ms, delta, spread, -delta > spread, c.runs, warning))
    return out
