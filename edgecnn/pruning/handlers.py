"""CHANNEL_HANDLERS: layer type -> how a layer moves channels (trace) and how it is cut (cut).

Each handler has two halves:

- ``trace(node, g)`` tells the :class:`~edgecnn.pruning.groups.ChannelGraph` ``g`` how the channel axis of
  the call's output tensors relates to its inputs: a new prunable space (Conv2D/Dense/SeparableConv2D
  filters), the same space (BatchNormalization, activations, pooling, Add ...), a derived space
  (Concatenate offsets, Flatten's H*W*C rows, a depthwise channel multiplier), or a blocked space that
  must keep every channel (LayerNormalization, a Reshape that mixes channels).
- ``cut(call, keep_in, keep_out)`` builds the smaller layer in :func:`edgecnn.surgery.rebuild` given the
  channel indices kept on each input and output tensor, and copies the matching weight slices.

A layer type that is not in the table raises :class:`~edgecnn.errors.UnsupportedLayerError`: it is never
silently treated as pass-through.

Example:
    >>> sorted(k for k, h in CHANNEL_HANDLERS.items() if h.kind == "produce")
    ['Conv2D', 'Conv2DTranspose', 'Dense', 'SeparableConv2D']
    >>> handler_for(type("MyLayer", (), {"name": "mine"})())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    edgecnn.errors.UnsupportedLayerError: layer 'mine' of type MyLayer has no channel-pruning handler: ... Received: MyLayer
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from edgecnn.errors import UnsupportedLayerError
from edgecnn.surgery import clone_layer


@dataclass(frozen=True)
class ChannelHandler:
    """How one layer type is traced and cut.

    Attributes:
        kind: ``produce`` (makes new channels), ``pass`` (same channels in and out), ``merge`` (ties its
            inputs), ``derive`` (Concatenate, Flatten), ``block`` (every channel must stay).
        trace: ``trace(node, g)``.
        cut: ``cut(call, keep_in, keep_out) -> output tensor``; None for layers without channel weights or
            config (the surgery clones them unchanged).
    """

    kind: str
    trace: Callable[[Any, Any], None]
    cut: Optional[Callable[[Any, list, list], Any]] = None


def _idx(keep: np.ndarray) -> np.ndarray:
    return np.asarray(keep, dtype=np.int64)


# ----------------------------------------------------------------------------------------------- trace


def _trace_pass(node: Any, g: Any) -> None:
    for t in node.outputs:
        g.same(t, node.inputs[0])


def _trace_produce(node: Any, g: Any) -> None:
    layer = node.layer
    if (int(getattr(layer, "groups", 1) or 1) != 1 or g.shared(layer)
            or getattr(layer, "data_format", "channels_last") == "channels_first"):
        _trace_block(node, g)
        return
    for t in node.inputs:
        g.consume(t, layer.name)
    for t in node.outputs:
        g.produce(t, layer.name)


def _trace_block(node: Any, g: Any) -> None:
    for t in node.inputs:
        g.block(t, f"input of {type(node.layer).__name__} '{node.layer.name}'")
    for t in node.outputs:
        g.blocked_root(t, f"output of {type(node.layer).__name__} '{node.layer.name}'")


def _trace_bn(node: Any, g: Any) -> None:
    axis = node.layer.axis
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    rank = len(node.inputs[0].shape)
    if g.shared(node.layer) or len(axes) != 1 or axes[0] % rank != rank - 1:
        _trace_block(node, g)
        return
    _trace_pass(node, g)


def _trace_depthwise(node: Any, g: Any) -> None:
    if g.shared(node.layer) or getattr(node.layer, "data_format", "channels_last") == "channels_first":
        _trace_block(node, g)
        return
    m = int(node.layer.depth_multiplier)
    if m == 1:
        _trace_pass(node, g)
    else:
        g.derive(node.outputs[0], ("repeat", node.inputs[0], m))


def _trace_merge(node: Any, g: Any) -> None:
    out = node.outputs[0]
    width = out.shape[-1]
    for t in node.inputs:
        if t.shape[-1] == width:
            g.same(out, t)
        else:  # a broadcast input (width 1): its own channels stay
            g.block(t, f"broadcast input of '{node.layer.name}'")
    if not any(t.shape[-1] == width for t in node.inputs):
        g.blocked_root(out, f"output of '{node.layer.name}'")


def _trace_concat(node: Any, g: Any) -> None:
    rank = len(node.outputs[0].shape)
    if node.layer.axis % rank == rank - 1:
        g.derive(node.outputs[0], ("concat", list(node.inputs)))
    else:  # concatenation along a spatial axis ties the channels like an Add
        _trace_merge(node, g)


def _trace_flatten(node: Any, g: Any) -> None:
    shape = node.inputs[0].shape
    if len(shape) <= 2:
        _trace_pass(node, g)
        return
    if getattr(node.layer, "data_format", "channels_last") == "channels_first":
        _trace_block(node, g)
        return
    g.derive(node.outputs[0], ("flatten", node.inputs[0], int(np.prod([int(d) for d in shape[1:-1]]))))


def _trace_reshape(node: Any, g: Any) -> None:
    target = tuple(node.layer.target_shape)
    if node.inputs[0].shape[-1] == node.outputs[0].shape[-1] and target[-1] in (-1, node.outputs[0].shape[-1]):
        _trace_pass(node, g)
    else:
        _trace_block(node, g)


def _trace_activation(node: Any, g: Any) -> None:
    name = getattr(node.layer.activation, "__name__", str(node.layer.activation))
    (_trace_block if name in ("softmax", "log_softmax") else _trace_pass)(node, g)


# ------------------------------------------------------------------------------------------------- cut


def _cut_conv(call: Any, keep_in: list, keep_out: list) -> Any:
    layer = call.layer
    i, o = _idx(keep_in[0]), _idx(keep_out[0])
    weights = layer.get_weights()
    kernel = weights[0][:, :, i, :][..., o]
    new = clone_layer(layer, filters=len(o))
    out = new(*call.args, **call.kwargs)
    new.set_weights([kernel] + [b[o] for b in weights[1:]])
    return out


def _cut_conv_transpose(call: Any, keep_in: list, keep_out: list) -> Any:
    layer = call.layer
    i, o = _idx(keep_in[0]), _idx(keep_out[0])
    weights = layer.get_weights()
    kernel = weights[0][:, :, o, :][..., i]  # (kh, kw, out, in)
    new = clone_layer(layer, filters=len(o))
    out = new(*call.args, **call.kwargs)
    new.set_weights([kernel] + [b[o] for b in weights[1:]])
    return out


def _cut_separable(call: Any, keep_in: list, keep_out: list) -> Any:
    layer = call.layer
    i, o = _idx(keep_in[0]), _idx(keep_out[0])
    m = int(layer.depth_multiplier)
    weights = layer.get_weights()
    depthwise = weights[0][:, :, i, :]
    rows = (i[:, None] * m + np.arange(m)[None, :]).reshape(-1)
    pointwise = weights[1][:, :, rows, :][..., o]
    new = clone_layer(layer, filters=len(o))
    out = new(*call.args, **call.kwargs)
    new.set_weights([depthwise, pointwise] + [b[o] for b in weights[2:]])
    return out


def _cut_depthwise(call: Any, keep_in: list, keep_out: list) -> Any:
    layer = call.layer
    i, o = _idx(keep_in[0]), _idx(keep_out[0])
    weights = layer.get_weights()
    new = clone_layer(layer)
    out = new(*call.args, **call.kwargs)
    new.set_weights([weights[0][:, :, i, :]] + [b[o] for b in weights[1:]])
    return out


def _cut_dense(call: Any, keep_in: list, keep_out: list) -> Any:
    layer = call.layer
    i, o = _idx(keep_in[0]), _idx(keep_out[0])
    weights = layer.get_weights()
    new = clone_layer(layer, units=len(o))
    out = new(*call.args, **call.kwargs)
    new.set_weights([weights[0][i][:, o]] + [b[o] for b in weights[1:]])
    return out


def _cut_bn(call: Any, keep_in: list, keep_out: list) -> Any:
    layer = call.layer
    i = _idx(keep_in[0])
    new = clone_layer(layer)
    out = new(*call.args, **call.kwargs)
    new.set_weights([w[i] for w in layer.get_weights()])
    return out


def _cut_reshape(call: Any, keep_in: list, keep_out: list) -> Any:
    target = list(call.layer.target_shape)
    if target[-1] != -1:
        target[-1] = len(keep_out[0])
    return clone_layer(call.layer, target_shape=tuple(target))(*call.args, **call.kwargs)


_PASS = ChannelHandler("pass", _trace_pass)
_BLOCK = ChannelHandler("block", _trace_block)
_MERGE = ChannelHandler("merge", _trace_merge)

CHANNEL_HANDLERS: dict[str, ChannelHandler] = {
    "Conv2D": ChannelHandler("produce", _trace_produce, _cut_conv),
    "Conv2DTranspose": ChannelHandler("produce", _trace_produce, _cut_conv_transpose),
    "SeparableConv2D": ChannelHandler("produce", _trace_produce, _cut_separable),
    "Dense": ChannelHandler("produce", _trace_produce, _cut_dense),
    "DepthwiseConv2D": ChannelHandler("pass", _trace_depthwise, _cut_depthwise),
    "BatchNormalization": ChannelHandler("pass", _trace_bn, _cut_bn),
    "Activation": ChannelHandler("pass", _trace_activation),
    "Reshape": ChannelHandler("pass", _trace_reshape, _cut_reshape),
    "Concatenate": ChannelHandler("derive", _trace_concat),
    "Flatten": ChannelHandler("derive", _trace_flatten),
    **{name: _MERGE for name in ("Add", "Subtract", "Multiply", "Maximum", "Minimum", "Average")},
    **{name: _PASS for name in (
        "ReLU", "LeakyReLU", "ELU", "ThresholdedReLU", "Dropout", "SpatialDropout2D", "GaussianNoise",
        "GaussianDropout", "AlphaDropout", "ActivityRegularization", "MaxPooling2D", "AveragePooling2D",
        "GlobalAveragePooling2D", "GlobalMaxPooling2D", "ZeroPadding2D", "Cropping2D", "UpSampling2D",
        "Rescaling", "InputLayer")},
    **{name: _BLOCK for name in ("LayerNormalization", "Softmax", "Normalization", "Permute", "PReLU",
                                 "UnitNormalization", "GroupNormalization")},
}


def handler_for(layer: Any) -> ChannelHandler:
    """The handler of ``layer``'s type.

    Raises:
        UnsupportedLayerError: the type is not in :data:`CHANNEL_HANDLERS`.
    """
    kind = type(layer).__name__
    try:
        return CHANNEL_HANDLERS[kind]
    except KeyError:
        raise UnsupportedLayerError(
            f"layer '{layer.name}' of type {kind} has no channel-pruning handler: Expected a type of "
            f"edgecnn.pruning.handlers.CHANNEL_HANDLERS ({len(CHANNEL_HANDLERS)} types: Conv2D, Dense, "
            f"BatchNormalization, Add, Concatenate, ...). Received: {kind}"
        ) from None
