"""``separable``: a kxk Conv2D becomes DepthwiseConv2D kxk (the conv's stride, dilation, padding) + 1x1 Conv2D.

The pair is two explicit layers, not one SeparableConv2D: both convert to the same two TFLite ops
(DEPTHWISE_CONV_2D + CONV_2D) and time alike (docs/rewrite.md), and explicit layers are what pruning
handlers and tfmot quantization already know one by one. The depthwise layer has no bias; the pointwise
layer keeps the conv's name, bias and fused activation, so the model's output names do not change.

Initialization (:func:`edgecnn.rewriting.factorize.separable_factors`): per input channel, the rank-``m``
SVD of ``W[:, :, c, :]``; ``m`` is the depth multiplier.

Example:
    >>> import tf_keras
    >>> inp = tf_keras.Input((8, 8, 4))
    >>> conv = tf_keras.layers.Conv2D(16, 3, padding="same", name="c")
    >>> from edgecnn.graph import ModelGraph
    >>> g = ModelGraph(tf_keras.Model(inp, conv(inp)))
    >>> SEPARABLE.matches(conv, g), SEPARABLE.gain(conv, g, Options())
    (None, None)
    >>> SEPARABLE.plan(conv, g, Options(depth_multiplier=12))
    Traceback (most recent call last):
    ...
    edgecnn.errors.EdgecnnError: separable depth multiplier of 'c': Expected 1 to 9 (the rank of its 3x3 by 16 kernel slices). Received: 12
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from edgecnn.analysis import conv_macs, separable_macs
from edgecnn.errors import EdgecnnError
from edgecnn.rewriting.base import Options, Plan, Rewrite, activation_of, first_call, node_of
from edgecnn.rewriting.factorize import separable_factors


def conv_matches(layer: Any, graph: Any) -> Optional[str]:
    """None for a plain channels-last Conv2D with one group, else why it is not one."""
    kind = type(layer).__name__
    if kind != "Conv2D":
        return "already depthwise" if "Depthwise" in kind or "Separable" in kind else f"not a Conv2D ({kind})"
    config = layer.get_config()
    if config.get("data_format", "channels_last") != "channels_last":
        return "channels_first"
    if int(config.get("groups", 1)) != 1:
        return "grouped conv"
    return None


def conv_gain(layer: Any, graph: Any, options: Options) -> Optional[str]:
    """Why the default selection skips a conv that cannot gain (1x1, fewer than 4 input channels)."""
    if tuple(layer.kernel_size) == (1, 1):
        return "1x1 kernel"
    if int(layer.kernel.shape[2]) < 4:
        return "fewer than 4 input channels"
    return None


def _multiplier(layer: Any, options: Options) -> int:
    m = int(options.depth_multiplier)
    kh, kw = layer.kernel_size
    limit = min(kh * kw, int(layer.filters))
    if m > limit:
        raise EdgecnnError(f"separable depth multiplier of '{layer.name}': Expected 1 to {limit} (the rank of its "
                           f"{kh}x{kw} by {layer.filters} kernel slices). Received: {m}")
    return m


def _gain(layer: Any, graph: Any, options: Options) -> Optional[str]:
    reason = conv_gain(layer, graph, options)
    if reason:
        return reason
    _multiplier(layer, options)
    out_hw = tuple(node_of(graph, layer.name).output_shapes[0][1:3])
    c_in, c_out = int(layer.kernel.shape[2]), int(layer.filters)
    before = conv_macs(out_hw=out_hw, kernel=tuple(layer.kernel_size), c_in=c_in, c_out=c_out)
    after = separable_macs(out_hw=out_hw, kernel=tuple(layer.kernel_size), c_in=c_in, c_out=c_out,
                           multiplier=options.depth_multiplier)
    return None if after < before else "no MAC gain"


def _plan(layer: Any, graph: Any, options: Options) -> Plan:
    import tf_keras

    m = _multiplier(layer, options)
    weights = layer.get_weights()
    depthwise, pointwise, error = separable_factors(weights[0], multiplier=m)
    config = layer.get_config()
    svd = options.init == "svd"

    def build(call: Any, state: dict) -> Any:
        dw, new = first_call(state, "dw", lambda: tf_keras.layers.DepthwiseConv2D(
            config["kernel_size"], strides=config["strides"], padding=config["padding"], depth_multiplier=m,
            dilation_rate=config["dilation_rate"], use_bias=False, name=call.unique(f"{layer.name}_dw")))
        pw, _ = first_call(state, "pw", lambda: tf_keras.layers.Conv2D(
            config["filters"], 1, use_bias=config["use_bias"], activation=activation_of(layer), name=layer.name))
        out = pw(dw(call.inputs[0]))
        if new and svd:
            dw.set_weights([depthwise])
            pw.set_weights([pointwise, *weights[1:]])
        return out

    def apply(state: dict, x: np.ndarray) -> np.ndarray:
        return state["pw"](state["dw"](x)).numpy()

    node = node_of(graph, layer.name)
    return Plan(layer.name, "separable", {layer.name: build}, error, (node.inputs[0], node.outputs[0]), apply)


SEPARABLE = Rewrite(
    name="separable",
    summary="kxk Conv2D -> DepthwiseConv2D kxk + 1x1 Conv2D (per-channel SVD init)",
    layer_type="Conv2D",
    matches=conv_matches,
    gain=_gain,
    plan=_plan,
)
