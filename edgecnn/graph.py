"""ModelGraph: a read-only view of a Keras functional graph, for Keras 3 and tf_keras alike.

This is the one module that reads Keras internals (``_nodes_by_depth``, node arguments). Everything
structural (translation, flattening, analysis, later surgery) asks it instead.

Example:
    >>> import tf_keras
    >>> inp = tf_keras.Input((8, 8, 3), name="img")
    >>> y = tf_keras.layers.Conv2D(4, 3, name="conv")(inp)
    >>> g = ModelGraph(tf_keras.Model(inp, y))
    >>> [(n.layer.name, n.input_shapes, n.output_shapes) for n in g.nodes]
    [('conv', [(None, 8, 8, 3)], [(None, 6, 6, 4)])]
    >>> g.producers("conv")
    ['img']
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from typing import Any, Callable, Iterator

from edgecnn.errors import UnsupportedModelError


@dataclass(frozen=True)
class NodeView:
    """One call of a layer inside a model.

    ``args``/``kwargs`` are the call arguments with every Keras tensor replaced by ``TensorRef``;
    ``inputs`` and ``outputs`` list the tensors it consumes and produces (flat, in order).
    """

    layer: Any
    args: tuple
    kwargs: dict
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)

    @property
    def input_shapes(self) -> list[tuple]:
        return [_shape(t) for t in self.inputs]

    @property
    def output_shapes(self) -> list[tuple]:
        return [_shape(t) for t in self.outputs]


@dataclass(frozen=True)
class TensorRef:
    """Placeholder for a graph tensor inside a node's call arguments."""

    tensor: Any


def _shape(t: Any) -> tuple:
    return tuple(None if d is None else int(d) for d in t.shape)


def _is_keras3(model: Any) -> bool:
    return type(model).__module__.startswith("keras.")


def _keras3_functional(model: Any) -> Any:
    """The functional graph behind a Keras 3 Model or Sequential."""
    import keras

    if isinstance(model, keras.Sequential):
        fn = getattr(model, "_functional", None)
        if fn is None:
            raise UnsupportedModelError(
                f"Sequential model '{model.name}' has no defined input shape: Expected a model built "
                "with an Input. Received: an unbuilt Sequential"
            )
        return fn
    if not hasattr(model, "_nodes_by_depth"):
        raise UnsupportedModelError(
            f"model '{model.name}' is a subclassed Keras model without a functional graph: Expected a "
            "Functional or Sequential model. Received: " + type(model).__name__
        )
    return model


def _map_structure(fn: Callable[[Any], Any], obj: Any) -> Any:
    if isinstance(obj, (list, tuple)):
        mapped = [_map_structure(fn, o) for o in obj]
        return type(obj)(mapped) if isinstance(obj, tuple) else mapped
    if isinstance(obj, dict):
        return {k: _map_structure(fn, v) for k, v in obj.items()}
    return fn(obj)


def is_model(layer: Any) -> bool:
    """True for a nested model (a Model used as one layer), in either Keras."""
    import keras
    import tf_keras

    return isinstance(layer, (keras.Model, tf_keras.Model))


def model_inputs(model: Any) -> list:
    """The model's input tensors, flat."""
    if _is_keras3(model):
        return list(_keras3_functional(model).inputs)
    return list(model.inputs)


def model_outputs(model: Any) -> list:
    """The model's output tensors, flat."""
    if _is_keras3(model):
        return list(_keras3_functional(model).outputs)
    return list(model.outputs)


def iter_nodes(model: Any) -> Iterator[NodeView]:
    """Yield the model's layer calls in topological order (input layers excluded)."""
    keras3 = _is_keras3(model)
    if keras3:
        graph = _keras3_functional(model)
    else:
        if not getattr(model, "_is_graph_network", False):
            raise UnsupportedModelError(
                f"model '{model.name}' has no functional graph (subclassed, or Sequential without an "
                "input shape): Expected a Functional or built Sequential model. Received: "
                + type(model).__name__
            )
        graph = model
    network_nodes = getattr(graph, "_network_nodes", None)
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        for node in graph._nodes_by_depth[depth]:
            if node.is_input:
                continue
            if keras3:
                layer = node.operation
                args, kwargs = node.arguments.args, node.arguments.kwargs
                inputs = list(node.input_tensors)
                outputs = list(node.outputs)
                is_tensor = _keras3_tensor_check()
            else:
                layer = node.layer
                if network_nodes is not None and not _tf_keras_node_in(graph, layer, node):
                    continue
                args, kwargs = node.call_args, node.call_kwargs
                inputs = list(node.keras_inputs)
                outputs = list(node.outputs) if isinstance(node.outputs, (list, tuple)) else [node.outputs]
                is_tensor = _tf_keras_tensor_check()
            wrap = lambda v, _t=is_tensor: TensorRef(v) if _t(v) else v  # noqa: E731
            yield NodeView(
                layer=layer,
                args=tuple(_map_structure(wrap, list(args))),
                kwargs=_map_structure(wrap, dict(kwargs)),
                inputs=inputs,
                outputs=outputs,
            )


def _tf_keras_node_in(graph: Any, layer: Any, node: Any) -> bool:
    key = f"{layer.name}_ib-{layer._inbound_nodes.index(node)}"
    return key in graph._network_nodes


def _keras3_tensor_check() -> Callable[[Any], bool]:
    import keras

    return lambda v: isinstance(v, keras.KerasTensor)


def _tf_keras_tensor_check() -> Callable[[Any], bool]:
    from tf_keras.src.engine.keras_tensor import KerasTensor

    return lambda v: isinstance(v, KerasTensor)


def fill_in(obj: Any, tensors: dict[int, Any]) -> Any:
    """Replace every TensorRef in ``obj`` by ``tensors[id(ref.tensor)]``."""
    return _map_structure(lambda v: tensors[id(v.tensor)] if isinstance(v, TensorRef) else v, obj)


class ModelGraph:
    """Producers and consumers of every layer of a functional model (either Keras).

    Args:
        model: a Functional or built Sequential model.

    Raises:
        UnsupportedModelError: a subclassed model or an unbuilt Sequential.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.nodes: list[NodeView] = list(iter_nodes(model))
        producer_of: dict[int, str] = {}
        for t in model_inputs(model):
            producer_of[id(t)] = _input_name(t)
        for n in self.nodes:
            for t in n.outputs:
                producer_of[id(t)] = n.layer.name
        self._producers: dict[str, list[str]] = {}
        self._consumers: dict[str, list[str]] = {}
        for n in self.nodes:
            names = [producer_of[id(t)] for t in n.inputs if id(t) in producer_of]
            self._producers.setdefault(n.layer.name, []).extend(names)
            for p in names:
                self._consumers.setdefault(p, []).append(n.layer.name)

    def producers(self, name: str) -> list[str]:
        """Names of the layers whose outputs ``name`` consumes."""
        return list(self._producers.get(name, []))

    def consumers(self, name: str) -> list[str]:
        """Names of the layers that consume ``name``'s outputs."""
        return list(self._consumers.get(name, []))


def producer(t: Any) -> Any:
    """The layer that produced Keras tensor ``t`` (either Keras version), or None for a plain tensor.

    >>> import tf_keras
    >>> inp = tf_keras.Input((2,), name="x")
    >>> out = tf_keras.layers.Dense(1, name="d")(inp)
    >>> producer(out).name, producer(inp).name, producer(object())
    ('d', 'x', None)
    """
    hist = getattr(t, "_keras_history", None)
    return hist[0] if hist is not None else None


def output_layer_names(model: Any) -> set[str]:
    """Names of the layers that produce ``model``'s outputs."""
    return {producer(t).name for t in model.outputs}


def _input_name(t: Any) -> str:
    layer = producer(t)
    return layer.name if layer is not None else getattr(t, "name", "input")


def _elements(shape: Any, fill: int) -> int:
    return prod(fill if d is None else int(d) for d in tuple(shape)[1:])


def activation_elements(model: Any, *, fill: int = 32) -> int:
    """Elements of every input and layer output of one sample (what a probe of every tensor holds at once), from
    static shapes only, like :func:`largest_tensor`.

    Example:
        >>> import tf_keras
        >>> inp = tf_keras.Input((32, 32, 3), name="image")
        >>> activation_elements(tf_keras.Model(inp, tf_keras.layers.Conv2D(8, 3, padding="same")(inp)))
        11264
    """
    total = sum(_elements(t.shape, fill) for t in model.inputs)
    for node in iter_nodes(model):
        total += sum(_elements(shape, fill) for shape in node.output_shapes)
    return total


def largest_tensor(model: Any, *, fill: int = 32) -> tuple[str, int]:
    """(name, elements) of the largest input or layer output of one sample, from static shapes only (unknown
    dimensions count as ``fill``, the size a probe input gives them). Nothing is allocated.

    Example:
        >>> import tf_keras
        >>> inp = tf_keras.Input((32, 32, 3), name="image")
        >>> m = tf_keras.Model(inp, tf_keras.layers.Conv2D(8, 3, padding="same", name="c")(inp))
        >>> largest_tensor(m)
        ('c', 8192)
    """
    best = max(((t.name, _elements(t.shape, fill)) for t in model.inputs), key=lambda kv: kv[1], default=("", 0))
    if not hasattr(model, "layers"):  # a graph-only SavedModel: its inputs are all that is known
        return best
    for node in iter_nodes(model):
        for shape in node.output_shapes:
            count = _elements(shape, fill)
            if count > best[1]:
                best = (node.layer.name, count)
    return best
