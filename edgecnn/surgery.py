"""rebuild(model, replace=...): the graph-surgery primitive every rewrite and pruner uses.

Walks the working model's layer calls in topological order and calls each layer again on the mapped
tensors of a new graph. A layer the ``replace`` callback leaves alone is cloned (same config, same name,
copied weights), so the new model never shares a variable with the original: fine-tuning the result
cannot change the teacher. The callback builds whatever layers it wants on ``call.inputs`` and returns
their output tensors; it may set their weights right after calling them (they are built by then).

Example:
    >>> import numpy as np, tf_keras
    >>> inp = tf_keras.Input((8, 8, 3), name="img")
    >>> y = tf_keras.layers.Conv2D(4, 3, name="conv")(inp)
    >>> y = tf_keras.layers.GlobalAveragePooling2D(name="gap")(y)
    >>> model = tf_keras.Model(inp, y)
    >>> def halve(call):
    ...     if call.layer.name != "conv":
    ...         return None
    ...     conv = tf_keras.layers.Conv2D(2, 3, name=call.unique("conv_half"))
    ...     out = conv(call.inputs[0])
    ...     kernel, bias = call.layer.get_weights()
    ...     conv.set_weights([kernel[..., :2], bias[:2]])
    ...     return out
    >>> new = rebuild(model, replace=halve)
    >>> [l.name for l in new.layers], new.output_shape
    (['img', 'conv_half', 'gap'], (None, 2))
    >>> x = np.random.default_rng(0).random((1, 8, 8, 3), dtype=np.float32)
    >>> bool(np.allclose(new(x).numpy(), model(x).numpy()[:, :2], atol=1e-6))
    True
    >>> new.get_layer("gap") is model.get_layer("gap")
    False
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from edgecnn.errors import UnsupportedModelError
from edgecnn.graph import NodeView, fill_in, is_model, iter_nodes, model_inputs, model_outputs, producer


@dataclass
class Call:
    """One layer call of the source model, as the ``replace`` callback sees it.

    Attributes:
        node: the source call (layer, args, input and output tensors of the OLD graph).
        args, kwargs: the call arguments with the NEW graph's tensors filled in.
        inputs: the NEW graph's input tensors of this call, flat and in order.
    """

    node: NodeView
    args: tuple
    kwargs: dict
    inputs: list
    _names: set = field(default_factory=set, repr=False)

    @property
    def layer(self) -> Any:
        """The source layer (read its config and weights; never call it in the new graph)."""
        return self.node.layer

    def unique(self, base: str) -> str:
        """A layer name not used yet in the new model, starting from ``base``."""
        name, i = base, 1
        while name in self._names:
            name, i = f"{base}_{i}", i + 1
        self._names.add(name)
        return name


def clone_layer(layer: Any, *, name: Optional[str] = None, **overrides: Any) -> Any:
    """A fresh, unbuilt copy of a tf_keras layer from its config, with config ``overrides`` applied."""
    config = layer.get_config()
    config.update(overrides)
    if name is not None:
        config["name"] = name
    return type(layer).from_config(config)


def _as_list(out: Any) -> list:
    return list(out) if isinstance(out, (list, tuple)) else [out]


def rebuild(
    model: Any,
    *,
    replace: Optional[Callable[[Call], Any]] = None,
    name: Optional[str] = None,
    bn_data: Any = None,
) -> Any:
    """A new flat tf_keras model with every layer cloned, or replaced where ``replace`` returns outputs.

    A replaced layer feeds the layers after it differently distributed activations, so every
    BatchNormalization downstream of a replacement holds stale moving statistics: in inference mode such
    a model can fall to chance level although its weights are fine. With ``bn_data`` (training inputs,
    never test data) those statistics are re-estimated here, where the change is made, so no caller can
    forget it (:func:`edgecnn.batchnorm.recalibrate_batchnorm`); the other BatchNorms keep theirs.

    Args:
        model: a flat tf_keras functional model (the working model from :func:`edgecnn.load`).
        replace: called once per layer call; returns the new output tensor(s) for that call, or None to
            keep a clone of the layer with its weights.
        name: the new model's name (default: the old one).
        bn_data: inputs to re-estimate the BatchNorm statistics downstream of a replacement on, or None
            (then they are left as they were: see :func:`stale_batchnorms`).

    Returns:
        A ``tf_keras.Model`` with the same inputs (names, shapes, dtypes) and as many outputs.

    Raises:
        UnsupportedModelError: a nested model (load it with :func:`edgecnn.load` first, which inlines it),
            or a replacement that returns a different number of outputs than the call had.
    """
    import tf_keras

    names: set[str] = set()
    tensors: dict[int, Any] = {}
    new_inputs = []
    for t in model_inputs(model):
        layer = producer(t)
        names.add(layer.name)
        new = tf_keras.Input(shape=tuple(t.shape[1:]), batch_size=t.shape[0], dtype=t.dtype, name=layer.name)
        tensors[id(t)] = new
        new_inputs.append(new)
    nodes = list(iter_nodes(model))
    names.update(n.layer.name for n in nodes)
    clones: dict[int, Any] = {}
    changed: set[int] = set()  # ids of new tensors downstream of a replacement
    stale: list[Any] = []  # new BatchNorm layers that see changed inputs
    for node in nodes:
        if is_model(node.layer):
            raise UnsupportedModelError(
                f"nested model '{node.layer.name}': Expected a flat working model (edgecnn.load inlines nested "
                "models). Received: a model inside the model"
            )
        call = Call(node=node, args=fill_in(node.args, tensors), kwargs=fill_in(node.kwargs, tensors),
                    inputs=[tensors[id(t)] for t in node.inputs], _names=names)
        out = replace(call) if replace is not None else None
        downstream = out is not None or any(id(t) in changed for t in call.inputs)
        if out is None:
            key = id(node.layer)
            first = key not in clones
            if first:
                clones[key] = clone_layer(node.layer)
            out = clones[key](*call.args, **call.kwargs)
            if first:
                clones[key].set_weights(node.layer.get_weights())
        outs = _as_list(out)
        if len(outs) != len(node.outputs):
            raise UnsupportedModelError(
                f"replacement of '{node.layer.name}' returned {len(outs)} outputs: Expected {len(node.outputs)}. "
                f"Received: {len(outs)}"
            )
        for old, new in zip(node.outputs, outs):
            tensors[id(old)] = new
            if downstream:
                changed.add(id(new))
                layer = producer(new)
                if _is_batchnorm(layer) and layer not in stale:
                    stale.append(layer)
    outputs = [tensors[id(t)] for t in model_outputs(model)]
    new_model = tf_keras.Model(
        new_inputs if len(new_inputs) > 1 else new_inputs[0],
        outputs if len(outputs) > 1 else outputs[0],
        name=name or model.name,
    )
    new_model._edgecnn_stale_bn = tuple(layer.name for layer in stale)
    if bn_data is not None and stale:
        from edgecnn.batchnorm import recalibrate_batchnorm

        recalibrate_batchnorm(new_model, bn_data, layers=stale)
        new_model._edgecnn_stale_bn = ()
    return new_model


def _is_batchnorm(layer: Any) -> bool:
    return layer is not None and "BatchNormalization" in type(layer).__name__


def stale_batchnorms(model: Any) -> tuple[str, ...]:
    """Names of the BatchNorm layers of a :func:`rebuild` result whose statistics were not re-estimated
    after a replacement upstream of them (no ``bn_data``); empty for any other model."""
    return tuple(getattr(model, "_edgecnn_stale_bn", ()))
