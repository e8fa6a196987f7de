"""Keras working model -> .tflite bytes with the TFLite converter."""
from __future__ import annotations

from typing import Any

import numpy as np

from edgecnn.errors import EdgecnnError
from edgecnn.quantize import QuantMode, configure_tflite


def to_tflite(model: Any, *, mode: QuantMode, calibration: np.ndarray | None, io: str = "float") -> bytes:
    """Convert ``model`` (tf_keras working model, or a graph-only SavedModel) to TFLite flatbuffer bytes.

    Raises:
        EdgecnnError: the converter refuses the model (message of one line).
    """
    import tensorflow as tf

    from edgecnn.savedmodel import GraphModel

    if isinstance(model, GraphModel):
        converter = tf.lite.TFLiteConverter.from_saved_model(str(model.path))
    else:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
    configure_tflite(converter, mode=mode, calibration=calibration, io=io)
    try:
        return bytes(converter.convert())
    except Exception as exc:  # the converter raises several types, often with multi-line MLIR dumps
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise EdgecnnError(f"TFLite conversion ({mode.value}) failed: {line}") from exc
