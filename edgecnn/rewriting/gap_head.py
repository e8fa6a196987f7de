"""``gap-head``: a Flatten -> [Dropout] -> Dense head becomes GlobalAveragePooling2D -> [Dropout] -> Dense.

The rewrite is selected by the Dense layer's name (it holds the parameters). A Dense fed by Flatten of an
``(H, W, C)`` map has an ``(H*W*C, U)`` kernel; after global pooling it needs ``(C, U)``. The
initialization sums the kernel over the positions: on a spatially constant feature map the new head gives
exactly the old outputs, and the implied full kernel (the new one spread evenly over ``H*W``) is the
Frobenius-nearest one of that form, so ``weight_error`` is the distance to it. ``pooling="max"``
(GlobalMaxPooling2D) starts from the same kernel; it has no linear equivalent, so no weight error.

Example:
    >>> import tf_keras
    >>> inp = tf_keras.Input((4, 4, 8))
    >>> flat = tf_keras.layers.Flatten(name="flat")(inp)
    >>> dense = tf_keras.layers.Dense(10, name="head")
    >>> from edgecnn.graph import ModelGraph
    >>> g = ModelGraph(tf_keras.Model(inp, dense(tf_keras.layers.Dropout(0.5)(flat))))
    >>> head_chain(dense, g)
    ['flat', 'dropout']
    >>> GAP_HEAD.matches(g.model.get_layer("flat"), g)
    'not a Dense (Flatten)'
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from edgecnn.rewriting.base import Options, Plan, Rewrite, activation_of, first_call, node_of
from edgecnn.rewriting.factorize import relative_error

PASS_THROUGH = ("Dropout", "AlphaDropout", "GaussianDropout", "GaussianNoise")


def head_chain(layer: Any, graph: Any) -> Optional[list[str]]:
    """``[flatten, *dropouts]`` leading to the Dense ``layer`` (each consumed only along it), or None."""
    chain, name = [], layer.name
    while True:
        producers = graph.producers(name)
        if len(producers) != 1 or len(graph.consumers(producers[0])) != 1:
            return None
        name = producers[0]
        kind = type(graph.model.get_layer(name)).__name__
        if kind == "Flatten":
            shape = node_of(graph, name).input_shapes[0]
            return [name, *reversed(chain)] if len(shape) == 4 else None
        if kind not in PASS_THROUGH:
            return None
        chain.append(name)


def _matches(layer: Any, graph: Any) -> Optional[str]:
    kind = type(layer).__name__
    if kind != "Dense":
        return f"not a Dense ({kind})"
    return None if head_chain(layer, graph) else "not fed by Flatten of a 4-D feature map"


def _gain(layer: Any, graph: Any, options: Options) -> Optional[str]:
    h, w = node_of(graph, head_chain(layer, graph)[0]).input_shapes[0][1:3]
    return None if (h or 0) * (w or 0) > 1 else "1x1 feature map"


def _plan(layer: Any, graph: Any, options: Options) -> Plan:
    import tf_keras

    flatten = head_chain(layer, graph)[0]
    _, h, w, c = node_of(graph, flatten).input_shapes[0]
    weights = layer.get_weights()
    full = weights[0].reshape(h, w, c, -1)
    kernel = full.sum(axis=(0, 1))
    error = relative_error(full, np.broadcast_to(kernel / (h * w), full.shape)) if options.pooling == "avg" else None
    pool_type = tf_keras.layers.GlobalAveragePooling2D if options.pooling == "avg" else tf_keras.layers.GlobalMaxPooling2D
    config = layer.get_config()
    svd = options.init == "svd"

    def build_pool(call: Any, state: dict) -> Any:
        pool, _ = first_call(state, "pool", lambda: pool_type(name=call.unique(f"{flatten}_{options.pooling}pool")))
        return pool(call.inputs[0])

    def build_dense(call: Any, state: dict) -> Any:
        dense, new = first_call(state, "dense", lambda: tf_keras.layers.Dense(
            config["units"], activation=activation_of(layer), use_bias=config["use_bias"], name=layer.name))
        out = dense(call.inputs[0])
        if new and svd:
            dense.set_weights([kernel, *weights[1:]])
        return out

    def apply(state: dict, x: np.ndarray) -> np.ndarray:
        return state["dense"](state["pool"](x)).numpy()

    probe = (node_of(graph, flatten).inputs[0], node_of(graph, layer.name).outputs[0])
    return Plan(layer.name, "gap-head", {flatten: build_pool, layer.name: build_dense}, error, probe, apply)


GAP_HEAD = Rewrite(
    name="gap-head",
    summary="Flatten -> Dense head -> GlobalAveragePooling2D (or max) -> Dense (position-summed kernel)",
    layer_type="Dense",
    matches=_matches,
    gain=_gain,
    plan=_plan,
)
