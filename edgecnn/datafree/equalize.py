"""Cross-layer equalization (Nagel et al., "Data-Free Quantization Through Weight Equalization and Bias
Correction", ICCV 2019), checked numerically.

Two layers A -> B in a chain where every op in between is per-channel and positively homogeneous
(``f(x / s) = f(x) / s`` for ``s > 0``: ReLU, LeakyReLU, max/average pooling, zero padding, Dropout, Flatten,
global pooling) compute the same function when output channel ``i`` of A is divided by ``s_i`` and input
channel ``i`` of B is multiplied by it. A BatchNormalization right after A takes the scaling in its gamma and
beta (the converter folds it into A). Inside a SeparableConv2D the depthwise output channel and the pointwise
input channel form such a pair too, with nothing in between. ``s`` is chosen so that

- ``objective="weights"`` (Nagel): A's output-channel weight range and B's input-channel weight range meet
  at their geometric mean, which is what per-tensor weight quantization needs;
- ``objective="activations"``: the activation range of the channel between A and B (measured on ``x``) and
  B's input-channel weight range meet; with per-channel weights (TFLite's default) only the per-tensor
  activation between them and B's weights share a scale.

A bounded ReLU (ReLU6) is homogeneous only where it does not clip: a channel is scaled only when its largest
pre-activation on ``x`` (times ``margin``) stays below the bound, and then never by more than keeps it there.
Anything else (an Add or Concatenate in between, a layer with two consumers, sigmoid or swish, a shared layer)
ends the chain: the pair is not formed.

The result is checked: the equalized model's outputs on ``x`` must match the original's within
``rtol`` of the output scale (:data:`edgecnn.exporting.validate.FLOAT_RTOL`, 1e-4), else the pairs through
bounded activations are dropped and the check repeated; a model that still misses raises.

Example:
    >>> import numpy as np, tf_keras
    >>> inp = tf_keras.Input((8, 8, 2))
    >>> y = tf_keras.layers.Conv2D(4, 3, activation="relu", name="a")(inp)
    >>> y = tf_keras.layers.Conv2D(3, 1, name="b")(y)
    >>> m = tf_keras.Model(inp, y)
    >>> m.get_layer("a").set_weights([m.get_layer("a").get_weights()[0] * [1, 10, 0.1, 3], np.zeros(4)])
    >>> x = np.random.default_rng(0).random((4, 8, 8, 2), dtype=np.float32)
    >>> e = equalize(m, x=x)
    >>> [p["pair"] for p in e.pairs], e.max_rel_diff < 1e-4
    (['a -> b'], True)
    >>> r1 = np.abs(e.model.get_layer("a").get_weights()[0]).max(axis=(0, 1, 2))
    >>> r2 = np.abs(e.model.get_layer("b").get_weights()[0]).max(axis=(0, 1, 3))
    >>> bool(np.allclose(r1, r2, rtol=1e-4))   # a's output ranges (100x apart before) met b's input ranges
    True
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from edgecnn.datafree.pairs import Pair, _type, find_pairs
from edgecnn.errors import EdgecnnError, ValidationError

__all__ = ["Equalized", "Pair", "equalize", "find_pairs", "max_rel_diff"]

OBJECTIVES = ("weights", "activations")
S_LIMIT = 1e3  # no channel is scaled by more than this (or less than its inverse)


@dataclass
class Equalized:
    """What :func:`equalize` did: the new model, the pairs with their scale spread, the float check."""

    model: Any
    pairs: list[dict] = field(default_factory=list)
    max_rel_diff: float = 0.0
    dropped: list[str] = field(default_factory=list)
    objective: str = "weights"

    def describe(self) -> dict:
        return {"objective": self.objective, "pairs": self.pairs, "max_rel_diff": self.max_rel_diff,
                "dropped": self.dropped}


def _weight_index(layer: Any) -> dict[str, int]:
    """Positions of kernel / pointwise / bias (or gamma / beta) in ``layer.get_weights()``."""
    cls = _type(layer)
    if "BatchNormalization" in cls:
        idx, i = {}, 0
        if layer.scale:
            idx["gamma"], i = i, i + 1
        if layer.center:
            idx["beta"], i = i, i + 1
        idx["mean"], idx["var"] = i, i + 1
        return idx
    if cls == "SeparableConv2D":
        return {"depthwise": 0, "pointwise": 1, **({"bias": 2} if layer.use_bias else {})}
    return {"kernel": 0, **({"bias": 1} if layer.use_bias else {})}


class _Weights:
    """The weights of the layers being rescaled, edited in place, written back once."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.w: dict[str, list[np.ndarray]] = {}

    def get(self, name: str) -> list[np.ndarray]:
        if name not in self.w:
            self.w[name] = [np.array(a, dtype=np.float64) for a in self.model.get_layer(name).get_weights()]
        return self.w[name]

    def commit(self) -> None:
        for name, arrays in self.w.items():
            layer = self.model.get_layer(name)
            layer.set_weights([a.astype(np.asarray(o).dtype) for a, o in zip(arrays, layer.get_weights())])

    # --- ranges -------------------------------------------------------------------------------------
    def out_range(self, pair: Pair) -> np.ndarray:
        """Per output channel of the producer: max |weight| of the effective (BatchNorm-folded) kernel."""
        layer = self.model.get_layer(pair.producer)
        w, idx = self.get(pair.producer), _weight_index(layer)
        cls = _type(layer)
        if pair.internal:
            k = w[idx["depthwise"]]
            return np.abs(k).reshape(-1, k.shape[2] * k.shape[3]).max(axis=0)
        if cls == "DepthwiseConv2D":
            k = w[idx["kernel"]]
            r = np.abs(k).reshape(-1, k.shape[2] * k.shape[3]).max(axis=0)
        elif cls == "SeparableConv2D":
            r = np.abs(w[idx["pointwise"]]).reshape(-1, w[idx["pointwise"]].shape[-1]).max(axis=0)
        else:
            k = w[idx["kernel"]]
            r = np.abs(k).reshape(-1, k.shape[-1]).max(axis=0)
        if pair.site != pair.producer:
            bn = self.model.get_layer(pair.site)
            b, bidx = self.get(pair.site), _weight_index(bn)
            r = r * np.abs(b[bidx["gamma"]]) / np.sqrt(b[bidx["var"]] + bn.epsilon)
        return r

    def in_range(self, pair: Pair, channels: int) -> np.ndarray:
        """Per input channel of the consumer: max |weight| that multiplies it."""
        layer = self.model.get_layer(pair.consumer)
        w, idx = self.get(pair.consumer), _weight_index(layer)
        if pair.internal:
            p = w[idx["pointwise"]]
            return np.abs(p).reshape(p.shape[2], -1).max(axis=1)
        cls = _type(layer)
        if cls == "Dense":
            k = np.abs(w[idx["kernel"]])
            if pair.flatten:
                return k.reshape(-1, channels, k.shape[1]).max(axis=(0, 2))
            return k.max(axis=1)
        k = w[idx["depthwise" if cls == "SeparableConv2D" else "kernel"]]
        return np.abs(k).transpose(2, 0, 1, 3).reshape(k.shape[2], -1).max(axis=1)

    # --- scaling ------------------------------------------------------------------------------------
    def divide_out(self, pair: Pair, s: np.ndarray) -> None:
        if pair.site != pair.producer:
            bn = self.model.get_layer(pair.site)
            b, idx = self.get(pair.site), _weight_index(bn)
            b[idx["gamma"]] /= s
            if "beta" in idx:
                b[idx["beta"]] /= s
            return
        layer = self.model.get_layer(pair.producer)
        w, idx = self.get(pair.producer), _weight_index(layer)
        cls = _type(layer)
        if pair.internal:
            k = w[idx["depthwise"]]
            w[idx["depthwise"]] = (k.reshape(*k.shape[:2], -1) / s).reshape(k.shape)
            return
        if cls == "DepthwiseConv2D":
            k = w[idx["kernel"]]
            w[idx["kernel"]] = (k.reshape(*k.shape[:2], -1) / s).reshape(k.shape)
        elif cls == "SeparableConv2D":
            w[idx["pointwise"]] /= s
        else:
            w[idx["kernel"]] /= s
        if "bias" in idx:
            w[idx["bias"]] /= s

    def multiply_in(self, pair: Pair, s: np.ndarray) -> None:
        layer = self.model.get_layer(pair.consumer)
        w, idx = self.get(pair.consumer), _weight_index(layer)
        if pair.internal:
            w[idx["pointwise"]] *= s[:, None]
            return
        cls = _type(layer)
        if cls == "Dense":
            k = w[idx["kernel"]]
            if pair.flatten:
                w[idx["kernel"]] = (k.reshape(-1, s.size, k.shape[1]) * s[:, None]).reshape(k.shape)
            else:
                w[idx["kernel"]] = k * s[:, None]
            return
        key = "depthwise" if cls == "SeparableConv2D" else "kernel"
        w[idx[key]] = w[idx[key]] * s[None, None, :, None]


def _stat_keys(pairs: list[Pair]) -> list[tuple[str, str]]:
    """(layer, what) whose per-channel ranges the pairs need: ``"out"`` (the layer's output) or
    ``"depthwise"`` (a SeparableConv2D's depthwise result, computed from its input)."""
    keys = {(p.tensor, "out") for p in pairs if not p.internal}
    keys |= {(p.bounded_input, "out") for p in pairs if p.bound is not None}
    keys |= {(p.producer, "depthwise") for p in pairs if p.internal}
    return sorted(keys)


def _channel_stats(model: Any, pairs: list[Pair], x: np.ndarray) -> dict[tuple[str, str], tuple[np.ndarray, ...]]:
    """(max |value|, max value) per channel of every tensor in :func:`_stat_keys`, on ``x``."""
    import tensorflow as tf
    import tf_keras

    keys = _stat_keys(pairs)
    if not keys:
        return {}
    probe = tf_keras.Model(model.inputs, [model.get_layer(n).output if what == "out" else model.get_layer(n).input
                                          for n, what in keys])
    from edgecnn.datafree.cost import probe_batch

    stats: dict[tuple[str, str], tuple[np.ndarray, ...]] = {}
    batch = probe_batch(model)  # every probed tensor of a batch is held at once: bounded memory at 224 px
    for start in range(0, len(x), batch):
        outs = probe(x[start:start + batch], training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for (n, what), o in zip(keys, outs):
            if what == "depthwise":
                layer = model.get_layer(n)
                o = tf.nn.depthwise_conv2d(o, layer.depthwise_kernel, strides=(1, *layer.strides, 1),
                                           padding=layer.padding.upper(), dilations=layer.dilation_rate)
            o = np.asarray(o, dtype=np.float32).reshape(-1, o.shape[-1])  # maxima: exact in float32
            a, m = np.abs(o).max(axis=0), o.max(axis=0)
            old = stats.get((n, what))
            stats[(n, what)] = (a, m) if old is None else (np.maximum(old[0], a), np.maximum(old[1], m))
    return stats


def max_rel_diff(a: Any, b: Any, x: np.ndarray, *, reference: Optional[list] = None) -> float:
    """max |a(x) - b(x)| / max |a(x)| over every output (the float check of an equalized model); ``reference``:
    a's outputs on ``x``, when known."""
    from edgecnn.runtimes.keras import keras_outputs

    ra, rb = (keras_outputs(a, x) if reference is None else reference), keras_outputs(b, x)
    scale = max(max(float(np.abs(r).max()) for r in ra), 1e-12)
    return max(float(np.abs(p.astype(np.float64) - q).max()) for p, q in zip(ra, rb)) / scale


def equalize(model: Any, *, x: np.ndarray, objective: str = "weights", iterations: int = 20, margin: float = 1.25,
             rtol: Optional[float] = None, reference: Optional[list] = None) -> Equalized:
    """A copy of ``model`` with every rescalable pair equalized (see the module docstring).

    Args:
        model: a flat tf_keras functional model (the working model).
        x: inputs (synthesized or real) for the activation ranges, the bounded-ReLU guard and the check.
        objective: ``"weights"`` or ``"activations"``.
        iterations: rounds over all pairs (a layer can be the consumer of one pair and the producer of the
            next; the ranges settle within a few rounds).
        margin: a bounded ReLU's channel is rescaled only when ``margin`` x its largest pre-activation on
            ``x`` stays below the bound.
        rtol: the float check's tolerance (default :data:`edgecnn.exporting.validate.FLOAT_RTOL`).
        reference: ``model``'s outputs on ``x`` (a list, one array per output), when the caller has them.

    Returns:
        :class:`Equalized`; ``model`` itself is not changed.

    Raises:
        EdgecnnError: an unknown objective. ValidationError: the equalized model misses the float check even
            without the pairs through bounded activations (a bug, never silently shipped).
    """
    from edgecnn.exporting.validate import FLOAT_RTOL
    from edgecnn.surgery import rebuild

    if objective not in OBJECTIVES:
        raise EdgecnnError(f"equalization objective: Expected one of {', '.join(OBJECTIVES)}. Received: {objective!r}")
    rtol = FLOAT_RTOL if rtol is None else rtol
    pairs = find_pairs(model)
    dropped: list[str] = []
    for attempt in range(2):
        new = rebuild(model)
        rows = _equalize(new, pairs, x=x, objective=objective, iterations=iterations, margin=margin)
        diff = max_rel_diff(model, new, x[:256], reference=None if reference is None else [r[:256] for r in reference])
        if diff <= rtol:
            return Equalized(model=new, pairs=rows, max_rel_diff=diff, dropped=dropped, objective=objective)
        bounded = [p for p in pairs if p.bound is not None]
        if attempt == 1 or not bounded:
            break
        dropped = [f"{p.label}: through a bounded ReLU, the float check failed ({diff:.2e} > {rtol:g})"
                   for p in bounded]
        pairs = [p for p in pairs if p.bound is None]
    raise ValidationError(f"cross-layer equalization changed the float model: Expected outputs within {rtol:g} of "
                          f"the output scale. Received: {diff:.3g}")


def _equalize(model: Any, pairs: list[Pair], *, x: np.ndarray, objective: str, iterations: int,
              margin: float) -> list[dict]:
    w = _Weights(model)
    stats = _channel_stats(model, pairs, x) if (pairs and (objective == "activations" or
                                                           any(p.bound for p in pairs))) else {}
    total = {p.label: None for p in pairs}
    spread_before = {p.label: _spread(w.out_range(p)) for p in pairs}
    act = {p.label: (stats[(p.producer, "depthwise") if p.internal else (p.tensor, "out")][0] if stats else None)
           for p in pairs}
    pre = {p.label: (stats[(p.bounded_input, "out")][1] if p.bound is not None else None) for p in pairs}
    for _ in range(max(1, iterations) if objective == "weights" else 1):
        for p in pairs:
            r1 = act[p.label] if objective == "activations" else w.out_range(p)
            if r1 is None:
                continue
            r2 = w.in_range(p, r1.size)
            ok = (r1 > 1e-12) & (r2 > 1e-12)
            s = np.ones_like(r1)
            s[ok] = np.sqrt(r1[ok] / r2[ok])
            s = np.clip(s, 1.0 / S_LIMIT, S_LIMIT)
            if p.bound is not None:
                m = pre[p.label] * margin
                clips = m > p.bound
                s = np.where(clips, 1.0, np.maximum(s, np.maximum(m, 0.0) / p.bound))
            w.divide_out(p, s)
            w.multiply_in(p, s)
            if act[p.label] is not None:
                act[p.label] = act[p.label] / s
            if pre[p.label] is not None:
                pre[p.label] = pre[p.label] / s
            total[p.label] = s if total[p.label] is None else total[p.label] * s
    w.commit()
    rows = []
    for p in pairs:
        s = total[p.label]
        if s is None:
            continue
        rows.append({"pair": p.label, "channels": int(s.size), "scale_min": float(s.min()),
                     "scale_max": float(s.max()), "spread_before": spread_before[p.label],
                     "spread_after": _spread(w.out_range(p)),
                     **({"bound": p.bound, "kept": int(np.sum(s == 1.0))}
                                                      if p.bound is not None else {})})
    return rows


def _spread(ranges: np.ndarray) -> float:
    """Largest over smallest nonzero per-channel weight range (1.0: nothing for equalization to even out).

    >>> _spread(np.array([0.5, 2.0, 0.0, 1.0]))
    4.0
    """
    r = np.asarray(ranges, np.float64)
    r = r[r > 1e-12]
    return float(r.max() / r.min()) if r.size else 1.0
