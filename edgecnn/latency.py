"""Whole-model latency of working models on a target runtime, measured side by side.

``model_latency({"a": m1, "b": m2}, runtime="litert", quantize="int8")`` converts each model (TFLite or
ONNX, fp32 or quantized), loads it on the runtime with a fixed batch-1 input, and times one inference per
call, interleaved (see :mod:`edgecnn.timing`). Rewrite, prune and compress use it to decide from
measured latency, not from MACs.

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

from typing import Any, Callable, Mapping, Optional

import numpy as np

from edgecnn.errors import EdgecnnError
from edgecnn.timing import Timing, interleaved

LATENCY_RUNTIMES = ("litert", "onnxruntime")
LATENCY_QUANT = ("none", "fp16", "dynamic", "int8")


def convert(model: Any, *, runtime: str = "litert", quantize: str = "none",
            calibration: Optional[np.ndarray] = None, seed: int = 0) -> bytes:
    """The artifact bytes (.tflite or .onnx) of ``model`` for ``runtime``; int8 calibrates on ``calibration``
    (default: 64 synthetic uniform [0, 1) inputs, good enough for timing, not for accuracy)."""
    from edgecnn._tf import muted
    from edgecnn.export.quantize import QuantMode, synthetic_calibration

    _check(runtime, quantize)
    mode = QuantMode.parse(quantize)
    if mode is QuantMode.INT8 and calibration is None:
        calibration = synthetic_calibration(tuple(int(d) for d in model.inputs[0].shape[1:]), samples=64, seed=seed)
    with muted(1, 2):
        if runtime == "litert":
            from edgecnn.export.tflite import to_tflite

            return to_tflite(model, mode=mode, calibration=calibration)
        from edgecnn.export.onnx import quantize_onnx, to_onnx

        data = to_onnx(model)
        return data if mode is QuantMode.NONE else quantize_onnx(data, mode=mode, calibration=calibration)


def invoker(artifact: bytes, *, runtime: str, threads: int = 1, seed: int = 0,
            batch_size: int = 1) -> Callable[[], None]:
    """A zero-argument callable that runs one inference of ``artifact`` on a fixed random input of
    ``batch_size`` samples (LiteRT inputs are resized to it; ONNX inputs with a fixed batch must match)."""
    from edgecnn.runtimes import RUNTIMES

    session = RUNTIMES[runtime].load(artifact, threads=threads)
    if runtime == "litert":
        from edgecnn.runtimes.litert import _quantize

        interp = session.interpreter
        if batch_size != 1:
            for d in session.inputs:
                interp.resize_tensor_input(d["index"], [batch_size, *d["shape"][1:]])
            interp.allocate_tensors()
        for d in session.inputs:
            x = np.random.default_rng(seed).random((batch_size, *d["shape"][1:]), dtype=np.float32)
            interp.set_tensor(d["index"], _quantize(x, d))
        return interp.invoke
    feed = {}
    for i in session.session.get_inputs():
        shape = [(batch_size if k == 0 else 1) if not isinstance(s, int) else s for k, s in enumerate(i.shape)]
        feed[i.name] = np.random.default_rng(seed).random(shape, dtype=np.float32)
    run = session.session.run
    return lambda: run(None, feed)


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
        runtime: ``litert`` (XNNPACK) or ``onnxruntime`` (CPU).
        threads: intra-op threads.
        quantize: ``none``, ``fp16``, ``dynamic`` or ``int8``.
        calibration: int8 representative inputs (default synthetic).
        runs, warmup, budget_s, min_runs: see :func:`edgecnn.timing.interleaved`.

    Raises:
        EdgecnnError: unknown runtime or quantization, or a model the converter refuses.
    """
    from edgecnn._tf import muted

    _check(runtime, quantize)
    fns = {}
    for name, model in models.items():
        data = model if isinstance(model, (bytes, bytearray)) else convert(
            model, runtime=runtime, quantize=quantize, calibration=calibration, seed=seed)
        with muted(2):  # LiteRT announces its XNNPACK delegate on stderr
            fns[name] = invoker(bytes(data), runtime=runtime, threads=threads, seed=seed)
    return interleaved(fns, runs=runs, warmup=warmup, budget_s=budget_s, min_runs=min_runs)


def _check(runtime: str, quantize: str) -> None:
    if runtime not in LATENCY_RUNTIMES:
        raise EdgecnnError(f"unknown runtime {runtime!r}: Expected one of {', '.join(LATENCY_RUNTIMES)}. "
                           f"Received: {runtime!r}")
    if quantize not in LATENCY_QUANT:
        raise EdgecnnError(f"unknown quantization {quantize!r} for latency: Expected one of "
                           f"{', '.join(LATENCY_QUANT)}. Received: {quantize!r}")
