"""Activation ranges from BatchNorm statistics: the training data's own spread, without the data.

A convolution whose BatchNormalization the converter folds in outputs, per channel, values the training data
spread as ``N(beta, gamma^2)`` (that is what the normalization made of them, if its moving statistics are the
data's). So ``[min_c(beta_c - k |gamma_c|), max_c(beta_c + k |gamma_c|)]``, cut by the op's fused ReLU / ReLU6,
covers what real inputs produce there, with ``k`` standard deviations (BatchNorm-based range setting, Nagel et al.,
"A White Paper on Neural Network Quantization", 2021; ``k = 6`` here, fixed in advance). Synthesized inputs do not
give that: they match each BatchNorm's mean and variance but not its tails, and on a MobileNetV2 trained on digits
their first projections reached -14..12 where real digits reach -4.4..4.6: min/max or error-minimizing ranges on
them spent 1.5 bits of those layers on values real inputs never take (docs/data_free_headroom.md).

Only the outputs of CONV_2D and DEPTHWISE_CONV_2D ops that carry a BatchNorm's name, with no fused activation,
ReLU or ReLU6, get a range here; every other tensor (residual adds, pooling, the classifier) keeps the range the
calibration inputs give it.

Example:
    >>> import numpy as np, tf_keras
    >>> inp = tf_keras.Input((8, 8, 1))
    >>> y = tf_keras.layers.BatchNormalization(name="bn")(tf_keras.layers.Conv2D(2, 3, name="c")(inp))
    >>> m = tf_keras.Model(inp, tf_keras.layers.GlobalAveragePooling2D()(tf_keras.layers.ReLU(6.0)(y)))
    >>> m.get_layer("bn").set_weights([np.array([1.0, 0.5]), np.array([0.5, -1.0]), np.zeros(2), np.ones(2)])
    >>> from edgecnn.exporting.tflite import to_tflite
    >>> from edgecnn.exporting.quantize import QuantMode
    >>> data = to_tflite(m, mode=QuantMode.NONE, calibration=None)
    >>> [(round(lo, 2), round(hi, 2)) for lo, hi in batchnorm_ranges(data, m).values()]   # 0.5 + 6 * 1, cut at 6
    [(0.0, 6.0)]
    >>> [(round(lo, 2), round(hi, 2)) for lo, hi in batchnorm_ranges(data, m, sigmas=3.0).values()]
    [(0.0, 3.5)]
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["SIGMAS", "batchnorm_ranges", "folded_ranges"]

SIGMAS = 6.0


def _batchnorms(model: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{BatchNorm layer name: (beta, |gamma|)}`` for the model's 4-D BatchNorm layers."""
    from edgecnn.datafree.synthesize import batchnorm_layers

    out = {}
    for layer in batchnorm_layers(model):
        w = [np.asarray(a, np.float64) for a in layer.get_weights()]
        gamma = np.abs(w[0]) if layer.scale else np.ones_like(w[-1])
        beta = w[1 if layer.scale else 0] if layer.center else np.zeros_like(w[-1])
        out[layer.name] = (beta, gamma)
    return out


def batchnorm_ranges(data: bytes, model: Any, *, sigmas: float = SIGMAS) -> dict[str, tuple[float, float]]:
    """``{TFLite tensor name: (lo, hi)}`` for the BatchNorm-folded conv outputs of the float or calibrated
    flatbuffer ``data`` converted from ``model`` (see the module docstring); ``sigmas <= 0``: none."""
    from tensorflow.lite.tools import flatbuffer_utils

    return folded_ranges(flatbuffer_utils.convert_bytearray_to_object(bytearray(data)), model, sigmas=sigmas)


def folded_ranges(obj: Any, model: Any, *, sigmas: float = SIGMAS) -> dict[str, tuple[float, float]]:
    """:func:`batchnorm_ranges` of a flatbuffer already read into its object form (``flatbuffer_utils``), for
    a caller that edits that object anyway."""
    if sigmas <= 0:
        return {}
    from tensorflow.lite.python import schema_py_generated as schema

    bns = _batchnorms(model)
    if not bns:
        return {}
    ops = {schema.BuiltinOperator.CONV_2D, schema.BuiltinOperator.DEPTHWISE_CONV_2D}
    act = schema.ActivationFunctionType
    clip = {act.NONE: (-np.inf, np.inf), act.RELU: (0.0, np.inf), act.RELU6: (0.0, 6.0)}
    out: dict[str, tuple[float, float]] = {}
    for sg in obj.subgraphs:
        for op in sg.operators:
            code = obj.operatorCodes[op.opcodeIndex]
            builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
            fused = getattr(op.builtinOptions, "fusedActivationFunction", act.NONE)
            if builtin not in ops or fused not in clip or len(op.outputs) != 1:
                continue
            t = sg.tensors[op.outputs[0]]
            name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
            found = {seg for part in name.split(";") for seg in part.split("/") if seg in bns}
            if len(found) != 1:
                continue  # no BatchNorm folded in, or a name that cannot say which
            beta, gamma = bns[found.pop()]
            lo, hi = clip[fused]
            out[name] = (float(max(lo, (beta - sigmas * gamma).min())), float(min(hi, (beta + sigmas * gamma).max())))
    return out
