"""Keras working model -> ONNX with tf2onnx; ONNX fp16 / dynamic / int8 / int16x8 with onnxruntime's tools."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import EdgecnnError, first_line
from edgecnn.exporting.quantize import QuantMode

DEFAULT_OPSET = 17


def to_onnx(model: Any, *, opset: int = DEFAULT_OPSET) -> bytes:
    """Convert a working model (tf_keras) or a graph-only SavedModel to a float32 ONNX model.

    The working model is tf_keras, so tf2onnx's Keras path applies; a graph-only SavedModel goes through
    ``from_function`` on its serving signature (the path that also works for Keras 3 models).
    """
    import tensorflow as tf
    import tf2onnx

    from edgecnn.io.savedmodel import GraphModel

    try:
        if isinstance(model, GraphModel):
            specs = [tf.TensorSpec(s.shape, s.dtype, name=n) for n, s in zip(model.input_names, model.inputs)]
            fn = tf.function(lambda *xs: model.function(**dict(zip(model.input_names, xs))))
            proto, _ = tf2onnx.convert.from_function(fn, input_signature=specs, opset=opset)
        else:
            specs = [tf.TensorSpec(t.shape, t.dtype, name=t.name.split(":")[0]) for t in model.inputs]
            proto, _ = tf2onnx.convert.from_keras(model, input_signature=specs, opset=opset)
    except Exception as exc:  # tf2onnx raises many types
        raise EdgecnnError(f"ONNX conversion (opset {opset}) failed: {first_line(exc)}") from exc
    return proto.SerializeToString()


class _Reader:
    """A calibration data reader (onnxruntime's CalibrationDataReader protocol) over a float array."""

    def __init__(self, name: str, x: np.ndarray) -> None:
        self.name, self.x, self.i = name, x, 0

    def get_next(self) -> dict | None:
        if self.i >= len(self.x):
            return None
        self.i += 1
        return {self.name: self.x[self.i - 1:self.i].astype(np.float32)}

    def rewind(self) -> None:
        self.i = 0


def quantize_onnx(model_bytes: bytes, *, mode: QuantMode, calibration: np.ndarray | None) -> bytes:
    """Quantize a float ONNX model: fp16 (float16 weights, float I/O), dynamic, or static QDQ int8/int16x8
    with per-channel weights calibrated on ``calibration``."""
    import onnx

    if mode is QuantMode.NONE:
        return model_bytes
    if mode is QuantMode.FP16:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = convert_float_to_float16(onnx.load_from_string(model_bytes), keep_io_types=True)
        return model.SerializeToString()
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="edgecnn-onnxq-") as tmp:
        src, pre, dst = Path(tmp) / "float.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "quant.onnx"
        src.write_bytes(model_bytes)
        try:
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        except Exception:  # pre-processing is an optimization; quantize the float model as is
            pre = src
        try:
            if mode is QuantMode.DYNAMIC:
                quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QInt8, per_channel=True)
            else:
                if calibration is None:
                    raise EdgecnnError(f"ONNX {mode.value} needs calibration inputs")
                name = onnx.load(str(pre)).graph.input[0].name
                reader = _Reader(name, calibration)
                quantize_static(
                    str(pre), str(dst), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt16 if mode is QuantMode.INT16X8 else QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
                )
        except EdgecnnError:
            raise
        except Exception as exc:
            raise EdgecnnError(f"ONNX quantization ({mode.value}) failed: {first_line(exc)}") from exc
        return dst.read_bytes()


def to_ort_format(onnx_path: Path, out_dir: Path) -> Path:
    """Convert a .onnx file to ONNX Runtime Mobile's .ort format next to it; returns the .ort path."""
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    try:
        convert_onnx_models_to_ort(onnx_path, output_dir=out_dir, optimization_styles=[OptimizationStyle.Fixed])
    except Exception as exc:
        raise EdgecnnError(f"ORT format conversion failed: {first_line(exc)}") from exc
    found = sorted(out_dir.glob(onnx_path.stem + "*.ort"))
    if not found:
        raise EdgecnnError(f"ORT format conversion wrote no .ort file for {onnx_path.name}")
    return found[0]
