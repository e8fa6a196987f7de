"""Whole-model latency of working models on a target runtime, measured side by side.

``model_latency({"a": m1, "b": m2}, runtime="litert", quantize="int8")`` converts each model
(:func:`edgecnn.exporting.convert.convert`) and times them in one loop of :func:`edgecnn.benchmarking.core.measure`;
name -> :class:`~edgecnn.runtimes.timing.Timing`. For scripts that want the timings of working models.

Example:
    >>> import tf_keras
    >>> inp = tf_keras.Input((16, 16, 3))
    >>> small = tf_keras.Model(inp, tf_keras.layers.Conv2D(4, 3)(inp))
    >>> big = tf_keras.Model(inp, tf_keras.layers.Conv2D(64, 3)(inp))
    >>> t = model_latency({"small": small, "big": big}, runs=5, warmup=1)
    >>> sorted(t), t["small"].runs
    (['big', 'small'], 5)
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np

from edgecnn.runtimes.timing import Timing


def model_latency(
    models: Mapping[str, Any],
    *,
    runtime: str = "litert",
    threads: int = 1,
    quantize: str = "none",
    calibration: Optional[np.ndarray] = None,
    runs: int = 50,
    warmup: int = 5,
    budget_s: Optional[float] = None,
    min_runs: int = 5,
    seed: int = 0,
) -> dict[str, Timing]:
    """Convert each working model for ``runtime`` and time them interleaved; name -> Timing.

    Args:
        models: name -> tf_keras working model (or ready artifact bytes for ``runtime``).
        runtime: a runtime with an export format (``litert``, ``onnxruntime``).
        threads: intra-op threads.
        quantize: ``none``, ``fp16``, ``dynamic`` or ``int8``.
        calibration: int8 representative inputs (default synthetic).
        runs, warmup, budget_s, min_runs: see :func:`edgecnn.benchmarking.core.measure`.

    Raises:
        EdgecnnError: unknown runtime or quantization, a model the converter refuses, or an artifact the
            runtime cannot load or run.
    """
    from edgecnn.benchmarking.core import time_artifacts, timing_of
    from edgecnn.exporting.convert import check, convert

    check(runtime, quantize)
    data = {name: bytes(m) if isinstance(m, (bytes, bytearray)) else convert(
        m, runtime=runtime, quantize=quantize, calibration=calibration, seed=seed) for name, m in models.items()}
    results = time_artifacts(data, runtime=runtime, threads=threads, runs=runs, warmup=warmup, budget_s=budget_s,
                             min_runs=min_runs, seed=seed)
    return {name: timing_of(results[name]) for name in data}
