"""Convert a working model to a runtime's artifact bytes (.tflite or .onnx), for timing and benchmarking.

The runtime's row (:data:`edgecnn.runtimes.RUNTIMES`) names its export format; :data:`CONVERTERS` maps a
format to its converter. Full-integer modes calibrate on ``calibration`` (default: 64 synthetic uniform
[0, 1) inputs, good enough for timing, not for accuracy). :func:`edgecnn.exporting.export` is the validated
path that writes files; this one only returns bytes.

Example:
    >>> import tf_keras
    >>> inp = tf_keras.Input((8, 8, 1))
    >>> m = tf_keras.Model(inp, tf_keras.layers.Conv2D(2, 3)(inp))
    >>> convert(m, runtime="litert")[4:8], sorted(CONVERTERS)
    (b'TFL3', ['onnx', 'tflite'])
    >>> convert(m, runtime="keras")
    Traceback (most recent call last):
    ...
    edgecnn.errors.EdgecnnError: runtime 'keras' runs no converted artifact: Expected one of litert, onnxruntime. Received: 'keras'
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from edgecnn.errors import EdgecnnError

QUANT_MODES = ("none", "fp16", "dynamic", "int8")


def _tflite(model: Any, *, mode: Any, calibration: Optional[np.ndarray]) -> bytes:
    from edgecnn.exporting.tflite import to_tflite

    return to_tflite(model, mode=mode, calibration=calibration)


def _onnx(model: Any, *, mode: Any, calibration: Optional[np.ndarray]) -> bytes:
    from edgecnn.exporting.onnx import quantize_onnx, to_onnx

    return quantize_onnx(to_onnx(model), mode=mode, calibration=calibration)


CONVERTERS: dict[str, Callable[..., bytes]] = {"tflite": _tflite, "onnx": _onnx}


def check(runtime: str, quantize: str) -> Any:
    """The runtime's row, after checking that it runs a converted artifact and that ``quantize`` is known.

    Raises:
        EdgecnnError: an unknown runtime, one that runs no artifact, or an unknown quantization.
    """
    from edgecnn.runtimes import CONVERT_RUNTIMES, RUNTIMES

    row = RUNTIMES.get(runtime)
    if row is None or row.format not in CONVERTERS:
        what = f"unknown runtime {runtime!r}" if row is None else f"runtime {runtime!r} runs no converted artifact"
        raise EdgecnnError(f"{what}: Expected one of {', '.join(CONVERT_RUNTIMES)}. Received: {runtime!r}")
    if quantize not in QUANT_MODES:
        raise EdgecnnError(f"unknown quantization {quantize!r} for latency: Expected one of "
                           f"{', '.join(QUANT_MODES)}. Received: {quantize!r}")
    return row


def convert(model: Any, *, runtime: str = "litert", quantize: str = "none",
            calibration: Optional[np.ndarray] = None, seed: int = 0) -> bytes:
    """The artifact bytes of ``model`` for ``runtime`` (its row's format) at ``quantize``.

    Raises:
        EdgecnnError: see :func:`check`, or a model the converter refuses.
    """
    from edgecnn._tf import muted
    from edgecnn.exporting.quantize import QuantMode, synthetic_calibration

    row = check(runtime, quantize)
    mode = QuantMode.parse(quantize)
    if mode is QuantMode.INT8 and calibration is None:
        calibration = synthetic_calibration(tuple(int(d) for d in model.inputs[0].shape[1:]), samples=64, seed=seed)
    with muted(1, 2):
        return CONVERTERS[row.format](model, mode=mode, calibration=calibration)
