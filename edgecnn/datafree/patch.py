"""Bias corrections written into a calibrated TFLite model, so that one calibration serves every int8 variant.

Calibrating a model for int8 means converting it and running the calibration inputs (a ResNet50 at 224 px: 7-10 s,
then 0.2 s per input); the quantization that follows takes a fraction of a second. Bias correction
(:mod:`edgecnn.datafree.bias`) only changes biases, and a bias does not change what calibration measured beyond
a shift of one channel's values (well inside its range). So the corrections are written into the calibrated
model's float biases, and the quantizer then makes the corrected int8 model, per-channel or per-tensor, from the
same calibration: the corrected and the uncorrected variant of both weight granularities cost one conversion.

Each correction goes to the op whose output tensor name contains the layer's name (the model's output op, named
after the graph, is its output layer's), after checking that the op's float bias (zero where the converter left
an all-zero bias out) is the layer's folded bias (:func:`edgecnn.datafree.bias.folded_bias`): a BatchNorm the converter
did not fold, or an op that belongs to another layer, fails that check and the layer is reported as not placed
(the caller then corrects the Keras model and calibrates it instead). A corrected bias gets its own tensor and
buffer: the converter shares one tensor between identical biases (every zero bias of an untrained model).

Example:
    >>> import numpy as np, tf_keras
    >>> from edgecnn.datafree.calibrate import Int8Builder
    >>> inp = tf_keras.Input((8, 8, 1))
    >>> y = tf_keras.layers.Conv2D(4, 3, activation="relu", name="c")(inp)
    >>> m = tf_keras.Model(inp, tf_keras.layers.Dense(2, name="d")(tf_keras.layers.Flatten()(y)))
    >>> x = np.random.default_rng(0).uniform(-1, 1, size=(16, 8, 8, 1)).astype("float32")
    >>> b = Int8Builder(m, x=x, input_range=(-1.0, 1.0))
    >>> patched, missing = patch_biases(b.calibrated, {"c": np.full(4, 0.25)}, model=m)
    >>> missing, float_biases(patched, model=m)["c"].tolist()
    ([], [0.25, 0.25, 0.25, 0.25])
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np

__all__ = ["float_biases", "patch_biases"]

OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def _ops(obj: Any, model: Any):
    """(op, layer name, layer) of each weighted op of subgraph 0 whose output name names exactly one layer."""
    from tensorflow.lite.python import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    weighted = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense")
    layers = {layer.name: layer for layer in model.layers}
    last = [layer for layer in model.layers if layer.output is model.outputs[0]] if len(model.outputs) == 1 else []
    sg = obj.subgraphs[0]
    graph_outputs = set(int(i) for i in sg.outputs)
    for op in sg.operators or []:
        code = obj.operatorCodes[op.opcodeIndex]
        kind = names.get(max(code.builtinCode, code.deprecatedBuiltinCode))
        if kind not in OPS or op.inputs is None or len(op.inputs) < 3 or not len(op.outputs):
            continue
        out = sg.tensors[op.outputs[0]].name
        out = out.decode() if isinstance(out, bytes) else str(out)
        parts = {p for name in out.split(";") for p in name.split("/")}
        hits = [n for n in parts if n in layers and type(layers[n]).__name__ in weighted]
        if not hits and int(op.outputs[0]) in graph_outputs and last and type(last[0]).__name__ in weighted:
            hits = [last[0].name]  # the model's output op is named after the graph ("StatefulPartitionedCall:0")
        if len(hits) != 1:
            continue
        layer = layers[hits[0]]
        if kind == "DEPTHWISE_CONV_2D" and type(layer).__name__ == "SeparableConv2D":
            continue  # the separable layer's bias is its pointwise op's
        yield op, hits[0], layer


def _bias(obj: Any, op: Any) -> np.ndarray | None:
    if op.inputs[2] < 0:  # the converter leaves out an all-zero FULLY_CONNECTED bias
        w = obj.subgraphs[0].tensors[op.inputs[1]]
        return np.zeros(int(w.shape[0]), np.float32) if w.type == 0 and len(w.shape) == 2 else None
    t = obj.subgraphs[0].tensors[op.inputs[2]]
    data = obj.buffers[t.buffer].data
    if data is None or t.type != 0:  # 0: FLOAT32
        return None
    return np.frombuffer(bytes(np.asarray(data, np.uint8)), dtype=np.float32)


def float_biases(calibrated: bytes, *, model: Any) -> dict[str, np.ndarray]:
    """``{layer name: float bias of its op}`` in a float (calibrated) TFLite model."""
    from tensorflow.lite.tools import flatbuffer_utils

    obj = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    out = {}
    for op, name, _ in _ops(obj, model):
        b = _bias(obj, op)
        if b is not None:
            out[name] = b
    return out


def patch_biases(calibrated: bytes, deltas: dict[str, np.ndarray], *, model: Any) -> tuple[bytes, list[str]]:
    """``calibrated`` with ``deltas[layer]`` added to each layer's op bias; returns the new flatbuffer and the
    layers whose op could not be found or whose float bias is not the layer's folded bias (left unchanged).

    ``model`` is the Keras model that was calibrated (its folded biases identify the ops)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    from edgecnn.datafree.bias import folded_bias

    obj = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    sg = obj.subgraphs[0]
    placed: set[str] = set()
    for op, name, layer in _ops(obj, model):
        if name not in deltas or name in placed:
            continue
        bias, want = _bias(obj, op), folded_bias(model, layer)
        delta = np.asarray(deltas[name], np.float64)
        if bias is None or want is None or bias.shape != delta.shape or want.shape != delta.shape:
            continue
        if not np.allclose(bias, want, rtol=1e-3, atol=1e-5 * max(1.0, float(np.abs(want).max()))):
            continue
        buf = schema.BufferT()
        buf.data = np.frombuffer((bias.astype(np.float64) + delta).astype(np.float32).tobytes(), dtype=np.uint8)
        obj.buffers.append(buf)
        if op.inputs[2] >= 0:
            tensor = copy.deepcopy(sg.tensors[op.inputs[2]])
        else:
            tensor = schema.TensorT()
            tensor.shape, tensor.type = np.array([delta.size], np.int32), 0
        tensor.buffer = len(obj.buffers) - 1
        tensor.name = f"{name}/corrected_bias".encode()
        sg.tensors.append(tensor)
        op.inputs[2] = len(sg.tensors) - 1
        placed.add(name)
    missing = sorted(set(deltas) - placed)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(obj)), missing
