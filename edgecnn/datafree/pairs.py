"""Which layer pairs cross-layer equalization can rescale (:mod:`edgecnn.datafree.equalize`).

Two layers A -> B form a pair when every op between them is per-channel and positively homogeneous (ReLU,
LeakyReLU, pooling, padding, Dropout, Flatten, global pooling; a BatchNormalization right after A), A has a
single consumer and neither is shared; a bounded ReLU (ReLU6) is allowed once, with its bound recorded. Inside
a SeparableConv2D the depthwise and pointwise parts form a pair too.

Example:
    >>> import tf_keras
    >>> inp = tf_keras.Input((8, 8, 2))
    >>> y = tf_keras.layers.Conv2D(4, 3, activation="relu6", name="a")(inp)
    >>> y = tf_keras.layers.MaxPooling2D()(y)
    >>> m = tf_keras.Model(inp, tf_keras.layers.Conv2D(3, 1, name="b")(y))
    >>> [(p.label, p.bound) for p in find_pairs(m)]
    [('a -> b', 6.0)]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from edgecnn.graph import output_layer_names

__all__ = ["Pair", "find_pairs"]

WEIGHTED = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense")
PASS = ("MaxPooling2D", "AveragePooling2D", "ZeroPadding2D", "Dropout", "SpatialDropout2D")
TO_DENSE = ("Flatten", "GlobalAveragePooling2D", "GlobalMaxPooling2D")


@dataclass
class Pair:
    """Two layers whose shared channels can be rescaled without changing the function.

    Attributes:
        producer: the layer whose output channels are divided (a SeparableConv2D's depthwise part when
            ``internal``).
        consumer: the layer whose input channels are multiplied.
        site: where the division happens: the producer, or the BatchNormalization right after it.
        tensor: the layer whose output the consumer reads (the last op of the chain).
        bound: the clip of a bounded ReLU in the chain (6.0 for ReLU6), or None.
        bounded_input: the layer whose output enters that bounded ReLU.
        flatten: the consumer reads a Flatten of ``(H, W, C)``: its input rows repeat every C.
        internal: the depthwise -> pointwise pair inside one SeparableConv2D.
    """

    producer: str
    consumer: str
    site: str
    tensor: str
    bound: Optional[float] = None
    bounded_input: Optional[str] = None
    flatten: bool = False
    internal: bool = False

    @property
    def label(self) -> str:
        return f"{self.producer} (depthwise -> pointwise)" if self.internal else f"{self.producer} -> {self.consumer}"


def _type(layer: Any) -> str:
    return type(layer).__name__


def _activation(layer: Any) -> tuple[Optional[str], Optional[float]]:
    """("homogeneous" | "bounded" | None, bound) for an activation layer or a layer's fused activation."""
    cls = _type(layer)
    if cls == "ReLU":
        if float(getattr(layer, "threshold", 0.0) or 0.0) != 0.0:
            return None, None
        if float(getattr(layer, "negative_slope", 0.0) or 0.0) < 0.0:
            return None, None
        bound = getattr(layer, "max_value", None)
        return ("bounded", float(bound)) if bound is not None else ("homogeneous", None)
    if cls == "LeakyReLU":
        return "homogeneous", None
    act = getattr(layer, "activation", None)
    name = getattr(act, "__name__", str(act))
    if name in ("linear", "relu", "leaky_relu"):
        return "homogeneous", None
    if name == "relu6":
        return "bounded", 6.0
    return None, None


def find_pairs(model: Any) -> list[Pair]:
    """Every producer -> consumer pair of ``model`` that :func:`equalize` can rescale (see the module doc)."""
    from edgecnn.graph import ModelGraph

    graph = ModelGraph(model)
    calls: dict[str, int] = {}
    for node in graph.nodes:
        calls[node.layer.name] = calls.get(node.layer.name, 0) + 1
    layers = {layer.name: layer for layer in model.layers}
    outputs = output_layer_names(model)
    pairs: list[Pair] = []
    for name, layer in layers.items():
        cls = _type(layer)
        if cls not in WEIGHTED or calls.get(name) != 1:
            continue
        if cls == "SeparableConv2D":
            pairs.append(Pair(producer=name, consumer=name, site=name, tensor=name, internal=True))
        pair = _chain(name, layer, graph, layers, calls, outputs)
        if pair is not None:
            pairs.append(pair)
    return pairs


def _chain(name: str, layer: Any, graph: Any, layers: dict, calls: dict, outputs: set) -> Optional[Pair]:
    """Follow ``name``'s single consumer through per-channel homogeneous ops to the next weighted layer."""
    kind, bound = _activation(layer)
    if kind is None:
        return None
    linear = getattr(getattr(layer, "activation", None), "__name__", "linear") == "linear"
    site, current, tensor, flatten = name, name, name, False
    bounded_input = name if kind == "bounded" else None
    while True:
        nxt = graph.consumers(current)
        if len(nxt) != 1 or current in outputs or calls.get(nxt[0]) != 1:
            return None
        following = layers[nxt[0]]
        cls = _type(following)
        if cls in WEIGHTED:
            if flatten and cls != "Dense":
                return None
            if cls == "Dense" and not flatten and len(following.input.shape) != 2:
                return None
            return Pair(producer=name, consumer=nxt[0], site=site, tensor=tensor, bound=bound,
                        bounded_input=bounded_input, flatten=flatten and _type(layers[current]) == "Flatten")
        if "BatchNormalization" in cls:
            # the scaling lands in its gamma and beta: only right after a producer without activation
            if current != name or not linear or not getattr(following, "scale", True):
                return None
            site = nxt[0]
        elif cls in ("ReLU", "LeakyReLU", "Activation"):
            k, b = _activation(following)
            if k is None or (k == "bounded" and bound is not None):
                return None
            if k == "bounded":
                bound, bounded_input = b, nxt[0]
        elif cls in TO_DENSE:
            if flatten:
                return None
            flatten = True
            if cls != "Flatten":  # global pooling: the Dense reads the pooled channels
                tensor = nxt[0]
            current = nxt[0]
            continue
        elif cls not in PASS:
            return None
        current = nxt[0]
        tensor = current
