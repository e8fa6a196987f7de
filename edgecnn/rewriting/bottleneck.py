"""``bottleneck``: a kxk Conv2D becomes a 1x1 reduction to ``ratio`` of its input channels, then the kxk conv.

As in the book's bottleneck Unit. The 1x1 reduction is linear and has no bias (so the factorization is
exact at full width); the kxk conv keeps the original stride, dilation, padding, bias, fused activation
and name. Initialization (:func:`edgecnn.rewriting.factorize.bottleneck_factors`): truncated SVD of the
kernel unfolded along its input-channel mode. The width is ``rank`` when given, else the smallest one
keeping ``energy`` of the unfolded kernel's spectrum when given, else ``round(ratio * C_in)``.

Example:
    >>> import tf_keras
    >>> inp = tf_keras.Input((8, 8, 8))
    >>> conv = tf_keras.layers.Conv2D(16, 3, name="c")
    >>> from edgecnn.graph import ModelGraph
    >>> g = ModelGraph(tf_keras.Model(inp, conv(inp)))
    >>> width(conv, Options(ratio=0.25)), width(conv, Options(rank=3))
    (2, 3)
    >>> width(conv, Options(rank=9))
    Traceback (most recent call last):
    ...
    edgecnn.errors.EdgecnnError: bottleneck rank of 'c': Expected 1 to 8 (its input channels). Received: 9
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from edgecnn.analysis import conv_macs
from edgecnn.errors import EdgecnnError
from edgecnn.rewriting.base import Options, Plan, Rewrite, activation_of, first_call, node_of
from edgecnn.rewriting.factorize import bottleneck_factors, rank_for_energy, singular_values
from edgecnn.rewriting.separable import conv_gain, conv_matches


def width(layer: Any, options: Options) -> int:
    """The reduced channel count for ``layer`` under ``options``."""
    c_in = int(layer.kernel.shape[2])
    if options.rank is not None:
        if not 1 <= options.rank <= c_in:
            raise EdgecnnError(f"bottleneck rank of '{layer.name}': Expected 1 to {c_in} (its input channels). "
                               f"Received: {options.rank}")
        return int(options.rank)
    if options.energy is not None:
        kernel = layer.get_weights()[0]
        unfolded = kernel.transpose(2, 0, 1, 3).reshape(c_in, -1)
        return rank_for_energy(singular_values(unfolded), options.energy)
    return max(1, int(round(options.ratio * c_in)))


def _gain(layer: Any, graph: Any, options: Options) -> Optional[str]:
    reason = conv_gain(layer, graph, options)
    if reason:
        return reason
    node = node_of(graph, layer.name)
    in_hw, out_hw = tuple(node.input_shapes[0][1:3]), tuple(node.output_shapes[0][1:3])
    c_in, c_out, k = int(layer.kernel.shape[2]), int(layer.filters), tuple(layer.kernel_size)
    r = width(layer, options)
    after = conv_macs(out_hw=in_hw, kernel=(1, 1), c_in=c_in, c_out=r) + conv_macs(out_hw=out_hw, kernel=k,
                                                                                    c_in=r, c_out=c_out)
    before = conv_macs(out_hw=out_hw, kernel=k, c_in=c_in, c_out=c_out)
    return None if after < before else "no MAC gain"


def _plan(layer: Any, graph: Any, options: Options) -> Plan:
    import tf_keras

    r = width(layer, options)
    weights = layer.get_weights()
    reduce, kernel, error = bottleneck_factors(weights[0], width=r)
    config = layer.get_config()
    svd = options.init == "svd"

    def build(call: Any, state: dict) -> Any:
        red, new = first_call(state, "reduce", lambda: tf_keras.layers.Conv2D(
            r, 1, use_bias=False, name=call.unique(f"{layer.name}_reduce")))
        conv, _ = first_call(state, "conv", lambda: tf_keras.layers.Conv2D(
            config["filters"], config["kernel_size"], strides=config["strides"], padding=config["padding"],
            dilation_rate=config["dilation_rate"], use_bias=config["use_bias"], activation=activation_of(layer),
            name=layer.name))
        out = conv(red(call.inputs[0]))
        if new and svd:
            red.set_weights([reduce])
            conv.set_weights([kernel, *weights[1:]])
        return out

    def apply(state: dict, x: np.ndarray) -> np.ndarray:
        return state["conv"](state["reduce"](x)).numpy()

    node = node_of(graph, layer.name)
    return Plan(layer.name, "bottleneck", {layer.name: build}, error, (node.inputs[0], node.outputs[0]), apply)


BOTTLENECK = Rewrite(
    name="bottleneck",
    summary="kxk Conv2D -> 1x1 reduction to ratio*C_in + kxk Conv2D (input-mode SVD init)",
    layer_type="Conv2D",
    matches=conv_matches,
    gain=_gain,
    plan=_plan,
)
