"""Per-layer parameters, multiply-accumulates (MACs) and activation sizes: what ``edgecnn inspect`` shows.

MACs count the multiply-accumulates of convolutions and dense layers for one sample (batch 1); element-wise
layers (BatchNormalization, activations, pooling, Add) count 0. For every Conv2D with a kernel larger than
1x1 the report adds what it would cost as depthwise-separable (kxk depthwise + 1x1 pointwise) and as a
bottleneck (1x1 reduction to half the input channels at the input resolution, then the kxk conv).

Example:
    >>> conv_macs(out_hw=(112, 112), kernel=(3, 3), c_in=32, c_out=32)
    115605504
    >>> separable_macs(out_hw=(112, 112), kernel=(3, 3), c_in=32, c_out=32)
    16457728
    >>> bottleneck_macs(in_hw=(112, 112), out_hw=(112, 112), kernel=(3, 3), c_in=32, c_out=32)
    64225280
    >>> separable_params(kernel=(5, 5), c_in=3, c_out=256, use_bias=False)
    843
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from math import prod
from typing import Any

from edgecnn.errors import ShapeMismatchError


def conv_macs(*, out_hw: tuple[int, ...], kernel: tuple[int, ...], c_in: int, c_out: int, groups: int = 1) -> int:
    """MACs of a standard (grouped) convolution: every output element sums k*k*C_in/groups products."""
    return prod(out_hw) * c_out * prod(kernel) * (c_in // groups)


def depthwise_macs(*, out_hw: tuple[int, ...], kernel: tuple[int, ...], c_in: int, multiplier: int = 1) -> int:
    """MACs of a depthwise convolution (one kxk filter per input channel and multiplier)."""
    return prod(out_hw) * c_in * multiplier * prod(kernel)


def separable_macs(*, out_hw: tuple[int, ...], kernel: tuple[int, ...], c_in: int, c_out: int, multiplier: int = 1) -> int:
    """MACs of depthwise kxk followed by pointwise 1x1 to ``c_out``."""
    dw = depthwise_macs(out_hw=out_hw, kernel=kernel, c_in=c_in, multiplier=multiplier)
    return dw + prod(out_hw) * c_in * multiplier * c_out


def separable_params(*, kernel: tuple[int, ...], c_in: int, c_out: int, use_bias: bool, multiplier: int = 1) -> int:
    """Weights of a depthwise-separable replacement (one bias on the pointwise conv when ``use_bias``)."""
    return prod(kernel) * c_in * multiplier + c_in * multiplier * c_out + (c_out if use_bias else 0)


def bottleneck_width(c_in: int, ratio: float = 0.5) -> int:
    """Channels of the 1x1 reduction: ``ratio`` of the input channels, rounded down, at least 1."""
    return max(1, int(c_in * ratio))


def bottleneck_macs(
    *, in_hw: tuple[int, ...], out_hw: tuple[int, ...], kernel: tuple[int, ...], c_in: int, c_out: int, ratio: float = 0.5
) -> int:
    """MACs of 1x1 ``c_in -> r`` at the input resolution, then the kxk conv ``r -> c_out``."""
    r = bottleneck_width(c_in, ratio)
    return prod(in_hw) * c_in * r + conv_macs(out_hw=out_hw, kernel=kernel, c_in=r, c_out=c_out)


def bottleneck_params(*, kernel: tuple[int, ...], c_in: int, c_out: int, use_bias: bool, ratio: float = 0.5) -> int:
    """Weights of the bottleneck replacement (biases on both convs when ``use_bias``)."""
    r = bottleneck_width(c_in, ratio)
    return c_in * r + prod(kernel) * r * c_out + ((r + c_out) if use_bias else 0)


_GRAPH_OPS = {"Conv2D", "DepthwiseConv2dNative", "MatMul", "Conv2DBackpropInput", "Conv3D"}


@dataclass
class LayerStats:
    """One row of the inspect table."""

    name: str
    type: str
    output_shape: list
    params: int
    macs: int
    activation_bytes: int
    separable_macs: int | None = None
    separable_params: int | None = None
    bottleneck_macs: int | None = None
    bottleneck_params: int | None = None

    def as_dict(self) -> dict:
        d = asdict(self)
        return {k: v for k, v in d.items() if v is not None or not k.startswith(("separable", "bottleneck"))}


@dataclass
class ModelStats:
    """The whole inspect report."""

    name: str
    input_shape: list
    layers: list[LayerStats]
    total_params: int
    trainable_params: int
    total_macs: int
    total_activation_bytes: int
    by_type: dict[str, dict] = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "layers"}
        d["layers"] = [row.as_dict() for row in self.layers]
        return d


def _dims(shape: Any) -> tuple:
    return tuple(shape)


def _layer_macs(layer: Any, in_shape: tuple, out_shape: tuple) -> int:
    kind = type(layer).__name__
    cfg = layer.get_config()
    if kind in ("Conv1D", "Conv2D", "Conv3D"):
        return conv_macs(
            out_hw=out_shape[1:-1], kernel=tuple(cfg["kernel_size"]), c_in=in_shape[-1], c_out=out_shape[-1],
            groups=cfg.get("groups", 1),
        )
    if kind in ("DepthwiseConv1D", "DepthwiseConv2D"):
        return depthwise_macs(
            out_hw=out_shape[1:-1], kernel=tuple(cfg["kernel_size"]), c_in=in_shape[-1],
            multiplier=cfg.get("depth_multiplier", 1),
        )
    if kind in ("SeparableConv1D", "SeparableConv2D"):
        return separable_macs(
            out_hw=out_shape[1:-1], kernel=tuple(cfg["kernel_size"]), c_in=in_shape[-1], c_out=out_shape[-1],
            multiplier=cfg.get("depth_multiplier", 1),
        )
    if kind in ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"):
        return prod(in_shape[1:-1]) * in_shape[-1] * prod(cfg["kernel_size"]) * out_shape[-1]
    if kind == "Dense":
        return prod(in_shape[1:-1]) * in_shape[-1] * out_shape[-1]
    return 0


def _candidate(layer: Any, in_shape: tuple, out_shape: tuple) -> dict:
    cfg = layer.get_config()
    kernel = tuple(cfg["kernel_size"])
    if type(layer).__name__ != "Conv2D" or prod(kernel) <= 1 or cfg.get("groups", 1) != 1:
        return {}
    c_in, c_out, bias = in_shape[-1], out_shape[-1], bool(cfg.get("use_bias", True))
    return {
        "separable_macs": separable_macs(out_hw=out_shape[1:-1], kernel=kernel, c_in=c_in, c_out=c_out),
        "separable_params": separable_params(kernel=kernel, c_in=c_in, c_out=c_out, use_bias=bias),
        "bottleneck_macs": bottleneck_macs(
            in_hw=in_shape[1:-1], out_hw=out_shape[1:-1], kernel=kernel, c_in=c_in, c_out=c_out
        ),
        "bottleneck_params": bottleneck_params(kernel=kernel, c_in=c_in, c_out=c_out, use_bias=bias),
    }


def _itemsize(dtype: Any) -> int:
    import numpy as np

    return np.dtype(getattr(dtype, "name", dtype) or "float32").itemsize


def analyze(model: Any) -> ModelStats:
    """Compute the per-layer table of a working model (flat tf_keras) or a graph-only SavedModel.

    Raises:
        ShapeMismatchError: the input has unknown dimensions (pass ``input_shape`` to :func:`edgecnn.load`).

    Example:
        >>> import tf_keras
        >>> inp = tf_keras.Input((32, 32, 3))
        >>> m = tf_keras.Model(inp, tf_keras.layers.Conv2D(8, 3, padding="same")(inp))
        >>> s = analyze(m)
        >>> s.total_params == m.count_params(), s.total_macs, s.layers[0].separable_macs
        (True, 221184, 52224)
    """
    from edgecnn.graph import iter_nodes
    from edgecnn.io.savedmodel import GraphModel

    if isinstance(model, GraphModel):
        return _analyze_graph(model)
    input_shapes = [list(t.shape)[1:] for t in model.inputs]
    if any(d is None for s in input_shapes for d in s):
        raise ShapeMismatchError(
            f"the model input has unknown dimensions {tuple(input_shapes[0])}: Expected a fixed H,W,C to count "
            "MACs. Received: None; pass --input-shape H,W,C"
        )
    rows: list[LayerStats] = []
    seen: set[int] = set()
    for node in iter_nodes(model):
        layer = node.layer
        in_shape = _dims(node.input_shapes[0]) if node.inputs else ()
        out_shapes = node.output_shapes
        out_shape = _dims(out_shapes[0])
        params = 0 if id(layer) in seen else layer.count_params()
        seen.add(id(layer))
        macs = _layer_macs(layer, in_shape, out_shape) if node.inputs else 0
        act = sum(prod(d for d in s[1:] if d is not None) * _itemsize(t.dtype) for s, t in zip(out_shapes, node.outputs))
        extra = _candidate(layer, in_shape, out_shape) if hasattr(layer, "kernel_size") else {}
        rows.append(LayerStats(layer.name, type(layer).__name__, list(out_shape), params, macs, act, **extra))
    return _summarize(model.name, input_shapes[0] if len(input_shapes) == 1 else input_shapes, rows,
                      trainable=sum(int(prod(w.shape)) for w in model.trainable_weights))


def fixed_input_shape(model: Any) -> tuple[int, ...]:
    """The first input's shape without the batch axis, every dimension known.

    Raises:
        ShapeMismatchError: a dimension is unknown (pass ``input_shape`` / ``--input-shape``).

    Example:
        >>> import tf_keras
        >>> fixed_input_shape(tf_keras.Sequential([tf_keras.Input((None, None, 3)), tf_keras.layers.Conv2D(2, 3)]))
        Traceback (most recent call last):
        ...
        edgecnn.errors.ShapeMismatchError: the model input has unknown dimensions (None, None, 3): Expected a fixed H,W,C. Received: None; pass --input-shape H,W,C
    """
    shape = tuple(model.inputs[0].shape)[1:]
    if any(d is None for d in shape):
        raise ShapeMismatchError(f"the model input has unknown dimensions {shape}: Expected a fixed H,W,C. "
                                 "Received: None; pass --input-shape H,W,C")
    return tuple(int(d) for d in shape)


def check_labels_fit(model: Any, y: Any, *, where: str) -> None:
    """Class indices must name outputs of a classifier model (labels 0..99 for a 10-class model would make
    every accuracy 0 and every accuracy budget meaningless). Models that are not (N, classes >= 2) pass.

    Example:
        >>> import numpy as np, tf_keras
        >>> m = tf_keras.Sequential([tf_keras.Input((4, 4, 1)), tf_keras.layers.Flatten(), tf_keras.layers.Dense(3)])
        >>> check_labels_fit(m, np.array([0, 2]), where="d.npz")
        >>> check_labels_fit(m, np.array([0, 7]), where="d.npz")
        Traceback (most recent call last):
        ...
        edgecnn.errors.DataError: labels of d.npz do not fit the model output: Expected class indices in [0, 2]. Received: values in [0, 7]
    """
    from edgecnn.errors import DataError

    shape = tuple(model.outputs[0].shape) if getattr(model, "outputs", None) else ()
    if y is None or not len(y) or len(shape) != 2 or not shape[1] or shape[1] < 2:
        return
    low, high = int(min(y)), int(max(y))
    if low < 0 or high >= shape[1]:
        raise DataError(f"labels of {where} do not fit the model output: Expected class indices in "
                        f"[0, {shape[1] - 1}]. Received: values in [{low}, {high}]")


def _summarize(name: str, input_shape: list, rows: list[LayerStats], *, trainable: int) -> ModelStats:
    total_params = sum(r.params for r in rows)
    total_macs = sum(r.macs for r in rows)
    by_type: dict[str, dict] = {}
    for r in rows:
        t = by_type.setdefault(r.type, {"layers": 0, "params": 0, "macs": 0})
        t["layers"] += 1
        t["params"] += r.params
        t["macs"] += r.macs
    for t in by_type.values():
        t["params_share"] = t["params"] / total_params if total_params else 0.0
        t["macs_share"] = t["macs"] / total_macs if total_macs else 0.0
    by_type = dict(sorted(by_type.items(), key=lambda kv: (-kv[1]["params"], -kv[1]["macs"])))
    return ModelStats(
        name=name,
        input_shape=list(input_shape),
        layers=rows,
        total_params=total_params,
        trainable_params=trainable,
        total_macs=total_macs,
        total_activation_bytes=sum(r.activation_bytes for r in rows),
        by_type=by_type,
    )


def _analyze_graph(model: Any) -> "ModelStats":
    """The inspect table of a graph-only SavedModel: one row per convolution or matmul op of its frozen
    serving graph."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    shape = [None if d is None else int(d) for d in model.inputs[0].shape][1:]
    if any(d is None for d in shape):
        raise ShapeMismatchError(
            f"the SavedModel input has unknown dimensions {tuple(shape)}: Expected a fixed H,W,C to count "
            "MACs; export the model with a fixed input shape"
        )
    frozen = convert_variables_to_constants_v2(model.function)
    rows = []
    for op in frozen.graph.get_operations():
        if op.type not in _GRAPH_OPS:
            continue
        out = [None if d is None else int(d) for d in op.outputs[0].shape]
        w = [int(d) for d in op.inputs[1].shape]
        if op.type in ("Conv2D", "Conv3D"):
            macs = conv_macs(out_hw=tuple(out[1:-1]), kernel=tuple(w[:-2]), c_in=w[-2], c_out=w[-1])
        elif op.type == "DepthwiseConv2dNative":
            macs = depthwise_macs(out_hw=tuple(out[1:-1]), kernel=tuple(w[:2]), c_in=w[2], multiplier=w[3])
        elif op.type == "Conv2DBackpropInput":
            inp = [int(d) for d in op.inputs[2].shape]
            macs = inp[1] * inp[2] * inp[3] * w[0] * w[1] * w[2]
        else:
            macs = w[0] * w[1]
        params = 1
        for d in w:
            params *= d
        act = 4
        for d in out[1:]:
            act *= d
        rows.append(LayerStats(op.name, op.type, out, params, macs, act))
    stats = _summarize(model.name, shape, rows, trainable=model.count_params())
    stats.total_params = model.count_params()
    return stats
