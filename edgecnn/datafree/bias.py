"""Bias correction for int8 weights (Nagel et al., ICCV 2019, empirical variant), without labelled data.

Rounding a kernel to int8 shifts the mean of each output channel: ``E[(W_q - W) x] = (W_q - W) E[x]`` is not
zero, and in a deep network those shifts add up. For every Conv2D, DepthwiseConv2D, SeparableConv2D and
Dense layer, the kernel is quantized the way the TFLite converter will quantize it (symmetric int8 in
[-127, 127], per output channel or per tensor, after folding a BatchNormalization that follows the layer),
the layer's op is run with the kernel's rounding error ``W_q - W`` on its float inputs (from ``x``: synthesized
or real; the op is linear in its kernel, so that is the quantized output minus the float one; a separable
layer, with two kernels, runs both), and the mean per output channel is subtracted from its bias (or from
the following BatchNorm's beta, which the converter folds into the bias). Zero padding, strides and
dilation are included because the layer's own op computes it.

The corrected model is a float model that anticipates the rounding: it is meant for conversion to int8 only,
never compared with the original as if it were the same function.

Example:
    >>> import numpy as np, tf_keras
    >>> inp = tf_keras.Input((6, 6, 3))
    >>> m = tf_keras.Model(inp, tf_keras.layers.Conv2D(4, 3, name="c")(inp))
    >>> x = np.random.default_rng(0).random((8, 6, 6, 3), dtype=np.float32) + 5.0   # inputs far from zero
    >>> fixed, rows = correct_bias(m, x=x, per_channel=True)
    >>> [r["layer"] for r in rows], rows[0]["max_shift"] > 0
    (['c'], True)
    >>> wq = quantize_kernel(m.get_layer("c").get_weights()[0], per_channel=True, axis=-1)
    >>> def int8_of(model):   # the model's kernel rounded as int8 will round it, its own bias
    ...     q = tf_keras.Model(inp, tf_keras.layers.Conv2D(4, 3)(inp))
    ...     q.set_weights([wq, model.get_layer("c").get_weights()[1]])
    ...     return q
    >>> shift = lambda model: float(np.abs(np.mean(int8_of(model)(x) - m(x), axis=(0, 1, 2))).mean())
    >>> shift(fixed) < 0.1 * shift(m)     # per channel, the int8 kernel's mean shift is compensated
    True
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

__all__ = ["correct_bias", "correct_biases", "corrections", "folded_bias", "quantize_kernel"]

WEIGHTED = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense")


def quantize_kernel(kernel: np.ndarray, *, per_channel: bool, axis: int = -1) -> np.ndarray:
    """``kernel`` rounded to symmetric int8 ([-127, 127]) and back, per ``axis`` channel or per tensor.

    >>> quantize_kernel(np.array([[0.5, -1.0], [0.26, 2.0]]), per_channel=False).round(4).tolist()
    [[0.5039, -1.0079], [0.2677, 2.0]]
    """
    k = np.asarray(kernel, dtype=np.float64)
    if per_channel:
        moved = np.moveaxis(k, axis, -1)
        scale = np.abs(moved).reshape(-1, moved.shape[-1]).max(axis=0) / 127.0
        scale = np.where(scale > 0, scale, 1.0)
        return np.moveaxis(np.clip(np.round(moved / scale), -127, 127) * scale, -1, axis)
    scale = float(np.abs(k).max()) / 127.0 or 1.0
    return np.clip(np.round(k / scale), -127, 127) * scale


def _following_bn(model: Any, name: str) -> Optional[Any]:
    """The BatchNormalization the converter folds into ``name`` (its only consumer), or None."""
    from edgecnn.graph import ModelGraph

    graph = ModelGraph(model)
    nxt = graph.consumers(name)
    layer = model.get_layer(name)
    linear = getattr(getattr(layer, "activation", None), "__name__", "linear") == "linear"
    if len(nxt) == 1 and linear and "BatchNormalization" in type(model.get_layer(nxt[0])).__name__:
        bn = model.get_layer(nxt[0])
        if bn.center and len(bn.input.shape) == len(layer.output.shape):
            return bn
    return None


def _bn_gain(bn: Any) -> np.ndarray:
    w = bn.get_weights()
    gamma = w[0] if bn.scale else np.ones_like(w[-1])
    return np.asarray(gamma, np.float64) / np.sqrt(np.asarray(w[-1], np.float64) + bn.epsilon)


def _quantized_weights(layer: Any, gain: Optional[np.ndarray], *, per_channel: bool) -> list[np.ndarray]:
    """The layer's weights with its kernel(s) replaced by what int8 will compute (BatchNorm gain folded in
    for the rounding, then divided out again)."""
    cls = type(layer).__name__
    w = [np.asarray(a, np.float64) for a in layer.get_weights()]
    g = 1.0 if gain is None else gain
    if cls == "SeparableConv2D":
        dw, pw = w[0], w[1]
        flat = dw.reshape(*dw.shape[:2], -1)
        w[0] = quantize_kernel(flat, per_channel=per_channel).reshape(dw.shape)
        w[1] = quantize_kernel(pw * g, per_channel=per_channel) / g
    elif cls == "DepthwiseConv2D":
        k = w[0]
        w[0] = (quantize_kernel(k.reshape(*k.shape[:2], -1) * g, per_channel=per_channel) / g).reshape(k.shape)
    else:
        w[0] = quantize_kernel(w[0] * g, per_channel=per_channel) / g
    return w


def _expected_inputs(model: Any, layer: Any) -> Optional[np.ndarray]:
    """E[input channel] of ``layer`` from the BatchNorm statistics before it, when its input is
    BatchNorm -> (ReLU | ReLU6 | nothing) -> (ZeroPadding2D)?: the BatchNorm output is taken as normal with
    mean beta and std |gamma| (what the training data gave), clipped by the activation. None otherwise."""
    from math import erf, exp, pi, sqrt

    from edgecnn.graph import ModelGraph

    graph = ModelGraph(model)
    name = layer.name
    lo, hi = -np.inf, np.inf
    for _ in range(3):
        prev = graph.producers(name)
        if len(prev) != 1 or len(graph.consumers(prev[0])) != 1:
            return None
        p = model.get_layer(prev[0])
        cls = type(p).__name__
        if cls == "ZeroPadding2D":
            name = p.name
            continue
        if cls == "ReLU" and float(p.threshold) == 0.0 and float(p.negative_slope) == 0.0 and np.isinf(lo):
            lo, hi = 0.0, (np.inf if p.max_value is None else float(p.max_value))
            name = p.name
            continue
        if cls == "Activation" and getattr(p.activation, "__name__", "") in ("relu", "relu6") and np.isinf(lo):
            lo, hi = 0.0, (6.0 if p.activation.__name__ == "relu6" else np.inf)
            name = p.name
            continue
        if "BatchNormalization" not in cls or not p.center:
            return None
        w = p.get_weights()
        gamma = np.abs(np.asarray(w[0], np.float64)) if p.scale else np.ones_like(np.asarray(w[-1], np.float64))
        beta = np.asarray(w[1 if p.scale else 0], np.float64)
        cdf = np.vectorize(lambda t: 0.5 * (1.0 + erf(t / sqrt(2.0))) if np.isfinite(t) else float(t > 0))
        pdf = np.vectorize(lambda t: exp(-0.5 * t * t) / sqrt(2 * pi) if np.isfinite(t) else 0.0)
        sd = np.maximum(gamma, 1e-12)
        a, b = (lo - beta) / sd, (hi - beta) / sd
        mean = beta * (cdf(b) - cdf(a)) + sd * (pdf(a) - pdf(b))
        if np.isfinite(lo):
            mean += lo * cdf(a)
        if np.isfinite(hi):
            mean += hi * (1.0 - cdf(b))
        return mean
    return None


def correct_bias(model: Any, *, x: np.ndarray, per_channel: bool = True, batch: Optional[int] = None,
                 expected: str = "data") -> tuple[Any, list[dict]]:
    """A copy of ``model`` whose biases compensate the mean shift of int8 kernels (see the module docstring).

    Args:
        model: a flat tf_keras functional model.
        x: inputs the layers' float inputs are computed from.
        per_channel: simulate per-output-channel weight scales (TFLite's default) or one scale per tensor.
        expected: ``"data"`` (every layer's mean input from ``x``) or ``"batchnorm"`` (from the BatchNorm
            statistics before a layer where there is one, :func:`_expected_inputs`).

    Returns:
        (the corrected copy, one row per corrected layer: ``layer``, ``target`` (the bias or BatchNorm that
        took the correction), ``max_shift`` (largest |correction|) and ``relative`` (that over the bias
        scale)). Layers without a bias or a BatchNorm to take the correction are left as they are.
    """
    return correct_biases(model, x=x, per_channel=(per_channel,), batch=batch, expected=expected)[per_channel]


def correct_biases(model: Any, *, x: np.ndarray, per_channel: Sequence[bool] = (True, False),
                   batch: Optional[int] = None, expected: str = "data") -> dict[bool, tuple[Any, list[dict]]]:
    """:func:`correct_bias` for several weight granularities at once: ``{per_channel: (copy, rows)}``. The
    layers' float inputs are computed once for all of them (one pass of ``x`` through the model, the costly
    part at 224 px), and each layer's shift is one convolution with the kernel's rounding error
    (``(W_q - W) * x``: the layer is linear in its kernel), two for a separable one."""
    import tensorflow as tf
    import tf_keras

    from edgecnn.surgery import rebuild

    kinds = list(dict.fromkeys(bool(k) for k in per_channel))
    todo = []
    for layer in model.layers:
        if type(layer).__name__ not in WEIGHTED or getattr(layer, "groups", 1) != 1:
            continue
        bn = _following_bn(model, layer.name)
        if bn is None and not layer.use_bias:
            continue
        todo.append((layer, bn))
    if not todo:
        return {k: (rebuild(model), []) for k in kinds}
    quantized = {k: [_quantized_weights(layer, _bn_gain(bn) if bn is not None else None, per_channel=k)
                     for layer, bn in todo] for k in kinds}
    analytic = [(_expected_inputs(model, layer) if expected == "batchnorm" else None) for layer, _ in todo]
    sums: dict[bool, list] = {k: [None] * len(todo) for k in kinds}
    counts = [0] * len(todo)
    for i, (layer, _) in enumerate(todo):
        if analytic[i] is not None:
            for k in kinds:
                sums[k][i] = _constant_shift(layer, quantized[k][i], analytic[i])
            counts[i] = 1
    measured = [i for i, a in enumerate(analytic) if a is None]
    if measured:
        # the measured layers' inputs of a batch are held at once: bounded memory at 224 px
        probe = tf_keras.Model(model.inputs, [todo[i][0].input for i in measured])
        if batch is None:
            from edgecnn.datafree.cost import probe_batch

            batch = probe_batch(model)
        for start in range(0, len(x), batch):
            ins = probe(x[start:start + batch], training=False)
            ins = ins if isinstance(ins, (list, tuple)) else [ins]
            for i, inp in zip(measured, ins):
                layer = todo[i][0]
                for k in kinds:
                    d = tf.reshape(_shift(layer, inp, quantized[k][i]), (-1, layer.output.shape[-1]))
                    s = tf.reduce_sum(tf.cast(d, tf.float64), axis=0).numpy()
                    sums[k][i] = s if sums[k][i] is None else sums[k][i] + s
                counts[i] += int(d.shape[0])  # output positions of this batch
    return {k: _apply(model, todo, [sums[k][i] / max(1, counts[i]) for i in range(len(todo))], analytic)
            for k in kinds}


def _shift(layer: Any, inp: Any, quantized: list[np.ndarray]) -> Any:
    """The layer's output with its int8-rounded kernel minus with its own, before bias and activation."""
    if type(layer).__name__ == "SeparableConv2D":  # two kernels: not linear in the pair
        return _pre_activation(layer, inp, quantized) - _pre_activation(layer, inp, None)
    own = layer.get_weights()
    error = [np.asarray(q, np.float64) - np.asarray(w, np.float64) for q, w in zip(quantized, own)]
    return _pre_activation(layer, inp, error)


def _apply(model: Any, todo: list, shifts: list[np.ndarray], analytic: list) -> tuple[Any, list[dict]]:
    """A copy of ``model`` with each layer's ``shift`` subtracted from its bias (or its BatchNorm's beta)."""
    from edgecnn.surgery import rebuild

    new = rebuild(model)
    rows = []
    for (layer, bn), shift, expected in zip(todo, shifts, analytic):
        if bn is not None:
            bn = new.get_layer(bn.name)
            shift = shift * _bn_gain(bn)
            w = bn.get_weights()
            k = 1 if bn.scale else 0
            target_w, target = w[k], bn.name
            w[k] = (np.asarray(target_w, np.float64) - shift).astype(target_w.dtype)
            bn.set_weights(w)
        else:
            mine = new.get_layer(layer.name)
            w = mine.get_weights()
            target_w, target = w[-1], layer.name
            w[-1] = (np.asarray(target_w, np.float64) - shift).astype(target_w.dtype)
            mine.set_weights(w)
        scale = float(np.abs(target_w).max()) or 1.0
        rows.append({"layer": layer.name, "target": target, "max_shift": float(np.abs(shift).max()),
                     "relative": float(np.abs(shift).max()) / scale,
                     "inputs": "BatchNorm statistics" if expected is not None else "data"})
    return new, rows


def _constant_shift(layer: Any, quantized: list[np.ndarray], mean: np.ndarray) -> np.ndarray:
    """Per output channel: the int8 kernel's output minus the float kernel's on an input whose every pixel is
    ``mean`` (one window, no padding): the mean shift for inputs with that per-channel mean."""
    if type(layer).__name__ == "Dense":
        e = mean.reshape(1, -1)
        return (e @ (np.asarray(quantized[0], np.float64) - np.asarray(layer.get_weights()[0], np.float64))).ravel()
    k = layer.get_weights()[0]
    dil = layer.dilation_rate
    h, w = (k.shape[0] - 1) * dil[0] + 1, (k.shape[1] - 1) * dil[1] + 1
    e = np.broadcast_to(mean.astype(np.float32), (1, h, w, mean.size)).copy()
    diff = _pre_activation(layer, e, quantized, padding="VALID") - _pre_activation(layer, e, None, padding="VALID")
    return np.asarray(diff, np.float64).reshape(-1, diff.shape[-1]).mean(axis=0)


def _pre_activation(layer: Any, inp: Any, weights: Optional[list[np.ndarray]], *, padding: Optional[str] = None) -> Any:
    """The layer's output before its fused activation, with ``weights`` swapped in (None: its own), bias
    left out (it cancels in the difference)."""
    import tensorflow as tf

    cls = type(layer).__name__
    w = [np.asarray(a, np.float32) for a in (weights if weights is not None else layer.get_weights())]
    inp = tf.cast(inp, tf.float32)
    if cls == "Dense":
        return tf.tensordot(inp, w[0], axes=[[-1], [0]])
    padding = padding or layer.padding.upper()
    strides = (1, *layer.strides, 1)
    if cls == "Conv2D":
        return tf.nn.conv2d(inp, w[0], strides=strides, padding=padding, dilations=layer.dilation_rate)
    if cls == "DepthwiseConv2D":
        return tf.nn.depthwise_conv2d(inp, w[0], strides=strides, padding=padding, dilations=layer.dilation_rate)
    return tf.nn.separable_conv2d(inp, w[0], w[1], strides=strides, padding=padding, dilations=layer.dilation_rate)


def folded_bias(model: Any, layer: Any) -> Optional[np.ndarray]:
    """The bias the converter gives ``layer``'s op: its own bias with a following BatchNorm folded in
    (``beta + gain * (bias - mean)``), or None for a layer with neither.

    >>> import tf_keras
    >>> inp = tf_keras.Input((4, 4, 2))
    >>> y = tf_keras.layers.Conv2D(3, 1, name="c")(inp)
    >>> m = tf_keras.Model(inp, tf_keras.layers.BatchNormalization(name="bn")(y))
    >>> m.get_layer("bn").set_weights([np.full(3, 2.0), np.ones(3), np.full(3, 0.5), np.full(3, 4.0 - 1e-3)])
    >>> folded_bias(m, m.get_layer("c")).round(3).tolist()    # 1 + 2 / 2 * (0 - 0.5)
    [0.5, 0.5, 0.5]
    """
    bn = _following_bn(model, layer.name)
    own = np.asarray(layer.get_weights()[-1], np.float64) if getattr(layer, "use_bias", False) else None
    if bn is None:
        return own
    w = bn.get_weights()
    beta, mean = np.asarray(w[1 if bn.scale else 0], np.float64), np.asarray(w[-2], np.float64)
    return beta + _bn_gain(bn) * ((0.0 if own is None else own) - mean)


def corrections(before: Any, after: Any) -> dict[str, np.ndarray]:
    """What :func:`correct_bias` changed (``after`` is its copy of ``before``), as the change of each weighted
    layer's folded bias (:func:`folded_bias`): ``{layer name: delta}``, for the layers it changed.

    >>> import tf_keras
    >>> inp = tf_keras.Input((6, 6, 3))
    >>> m = tf_keras.Model(inp, tf_keras.layers.Conv2D(4, 3, name="c")(inp))
    >>> x = np.random.default_rng(0).random((8, 6, 6, 3), dtype=np.float32) + 5.0
    >>> fixed, rows = correct_bias(m, x=x, per_channel=True)
    >>> d = corrections(m, fixed)
    >>> list(d), bool(np.allclose(d["c"], fixed.get_layer("c").get_weights()[1] - m.get_layer("c").get_weights()[1]))
    (['c'], True)
    """
    out: dict[str, np.ndarray] = {}
    for layer in before.layers:
        if type(layer).__name__ not in WEIGHTED:
            continue
        b0 = folded_bias(before, layer)
        if b0 is None:
            continue
        delta = folded_bias(after, after.get_layer(layer.name)) - b0
        if np.any(delta != 0):
            out[layer.name] = delta
    return out
