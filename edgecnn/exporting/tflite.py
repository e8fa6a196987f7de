"""Keras working model -> .tflite bytes with the TFLite converter.

int16x8 (16-bit activations, 8-bit weights) gets a load check: LiteRT refuses some converted models at
``allocate_tensors`` with ``kernel_util.cc ... no_integer_overflow_from_quantization was not true``. That check
is in ``CalculateActivationRangeQuantized``: for a fused RELU6 (or RELU_N1_TO_1) it quantizes the clamp bound,
``round(6.0 / output_scale)``, into int32. When calibration gives an activation a tiny range (untrained
networks whose activations shrink layer by layer, reaching 1e-16 in MobileNetV2 with ``weights=None``), the
output scale is below ``6 / 2**31`` and the bound overflows, although the activation is represented fine in
int16. For such a tensor the bound lies beyond the int16 range, so the kernel clamps to ``qmax`` either way:
rewriting the fused activation to the clamp LiteRT computes without overflow (RELU6 -> RELU, RELU_N1_TO_1 ->
NONE) gives the same integer results, op for op. :func:`to_tflite_int16x8` makes that rewrite only where it is
exact, and raises :class:`EdgecnnError` naming the op if LiteRT still refuses the model.
"""
from __future__ import annotations

import contextlib
import logging
import re
from typing import Any

import numpy as np

from edgecnn.errors import EdgecnnError, first_line
from edgecnn.exporting.quantize import QuantMode, configure_tflite

log = logging.getLogger(__name__)

_OVERFLOW_CHECK = "no_integer_overflow_from_quantization"
_INT16_MIN, _INT16_MAX = -32768, 32767


def to_tflite(model: Any, *, mode: QuantMode, calibration: np.ndarray | None, io: str = "float") -> bytes:
    """Convert ``model`` (tf_keras working model, or a graph-only SavedModel) to TFLite flatbuffer bytes.

    Raises:
        EdgecnnError: the converter refuses the model, or (int16x8) LiteRT cannot load it (message of one line).
    """
    if mode is QuantMode.INT16X8:
        return to_tflite_int16x8(model, calibration=calibration, io=io)[0]
    return _convert(model, mode=mode, calibration=calibration, io=io)


def to_tflite_int16x8(model: Any, *, calibration: np.ndarray | None, io: str = "float") -> tuple[bytes, list[str]]:
    """int16x8 conversion checked by loading in LiteRT.

    Returns:
        The flatbuffer bytes, and the ops left computing in float (``"OP_NAME:output tensor name"``, excluding
        the float input QUANTIZE and output DEQUANTIZE); empty when the whole graph runs in 16x8.

    Raises:
        EdgecnnError: conversion failed, or LiteRT refuses a 16x8 kernel that no exact rewrite fixes.
    """
    data = _convert(model, mode=QuantMode.INT16X8, calibration=calibration, io=io)
    error = _litert_prepare_error(data)
    if error is not None and _OVERFLOW_CHECK in error:
        data, rewritten = _relax_fused_clamps(data)
        if rewritten:
            log.info("int16x8: %d fused activation clamp(s) beyond the int16 range rewritten exactly: %s",
                     len(rewritten), ", ".join(rewritten))
        error = _litert_prepare_error(data)
        if error is not None and _OVERFLOW_CHECK in error:
            op = _failing_op(data, error)
            raise EdgecnnError(
                f"int16x8 (16-bit activations) is not supported for this model on LiteRT: {op} fails to prepare "
                f"(quantization overflow, {_OVERFLOW_CHECK}); Expected --quantize int8 or fp16"
            )
    return data, float_ops(data)


def _convert(model: Any, *, mode: QuantMode, calibration: np.ndarray | None, io: str) -> bytes:
    import tensorflow as tf

    from edgecnn.io.savedmodel import GraphModel

    from edgecnn.exporting.converter import keras_converter

    if isinstance(model, GraphModel):
        made = contextlib.nullcontext(tf.lite.TFLiteConverter.from_saved_model(str(model.path)))
    else:
        made = keras_converter(model)
    with made as converter:
        configure_tflite(converter, mode=mode, calibration=calibration, io=io)
        try:
            return bytes(converter.convert())
        except Exception as exc:  # the converter raises several types, often with multi-line MLIR dumps
            line = first_line(exc)
            raise EdgecnnError(f"TFLite conversion ({mode.value}) failed: {line}") from exc


def _interpreter(data: bytes) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - ai-edge-litert is a dependency
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter(model_content=data)


def _litert_prepare_error(data: bytes) -> str | None:
    """The one-line error of ``allocate_tensors``, or None when the model loads."""
    from edgecnn._tf import muted

    try:
        with muted(2):  # the one-line error below says what LiteRT printed
            _interpreter(data).allocate_tensors()
    except (RuntimeError, ValueError) as exc:
        return " ".join(str(exc).split())
    return None


def _failing_op(data: bytes, error: str) -> str:
    """``OP_NAME 'output tensor'`` of the node named in a LiteRT prepare error (node numbers index subgraph 0)."""
    match = re.search(r"Node number (\d+) \((\w+)\) failed to prepare", error)
    if not match:
        return "an op"
    index, op_name = int(match.group(1)), match.group(2)
    try:
        interp = _interpreter(data)
        details = interp._get_ops_details()  # noqa: SLF001 - public equivalent missing in LiteRT
        names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
        outputs = [names.get(i, "?") for i in details[index]["outputs"]]
        return f"node {index} {op_name} ({outputs[0].split(';')[0] if outputs else '?'})"
    except Exception:  # noqa: BLE001 - naming the op is best effort
        return f"node {index} {op_name}"


def _relax_fused_clamps(data: bytes) -> tuple[bytes, list[str]]:
    """Replace fused RELU6 / RELU_N1_TO_1 whose bounds lie outside an int16 output's range by RELU / NONE.

    Exact: the kernel clamps to ``max(qmin, q(lo))`` .. ``min(qmax, q(hi))``; with ``q(hi) >= qmax`` (and
    ``q(lo) <= qmin`` for RELU_N1_TO_1) those are the bounds of the replacement. Returns the new bytes and the
    rewritten ops (``"OP_NAME:output tensor"``).
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    act = schema.ActivationFunctionType
    bounds = {act.RELU6: (0.0, 6.0, act.RELU), act.RELU_N1_TO_1: (-1.0, 1.0, act.NONE)}
    opcode_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    rewritten: list[str] = []
    for subgraph in model.subgraphs or []:
        for op in subgraph.operators or []:
            options = op.builtinOptions
            fused = getattr(options, "fusedActivationFunction", None)
            if fused not in bounds or not op.outputs:
                continue
            out = subgraph.tensors[op.outputs[0]]
            quant = out.quantization
            if out.type != schema.TensorType.INT16 or quant is None or quant.scale is None or len(quant.scale) != 1:
                continue
            scale = float(quant.scale[0])
            zero = int(quant.zeroPoint[0]) if quant.zeroPoint is not None and len(quant.zeroPoint) else 0
            lo, hi, replacement = bounds[fused]
            if scale <= 0 or zero + hi / scale < _INT16_MAX or (lo < 0 and zero + lo / scale > _INT16_MIN):
                continue
            options.fusedActivationFunction = replacement
            code = model.operatorCodes[op.opcodeIndex]
            builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
            name = out.name.decode() if isinstance(out.name, bytes) else str(out.name)
            rewritten.append(f"{opcode_names.get(builtin, builtin)}:{name.split(';')[0]}")
    if not rewritten:
        return data, []
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), rewritten


def float_ops(data: bytes) -> list[str]:
    """Ops of a quantized model that compute in float (``"OP_NAME:output tensor"``), besides I/O (de)quantize."""
    interp = _interpreter(data)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    kept = []
    for op in interp._get_ops_details():  # noqa: SLF001
        if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
            continue
        outs = [tensors[i] for i in op["outputs"] if i in tensors]
        if any(np.dtype(t["dtype"]) == np.float32 for t in outs):
            kept.append(f"{op['op_name']}:{outs[0]['name'].split(';')[0]}")
    return kept
