"""Channel importance scores of a :class:`~edgecnn.pruning.groups.PruningGroup` (higher = keep).

- ``l1``: the L1 norm of each output filter, normalized per producer (divided by its mean) and summed
  over the group's producers, so a residual stage's shortcut conv and its convs vote equally.
- ``bn``: ``|gamma|`` of the BatchNormalization layers on the group's channels (network slimming), summed
  the same way; groups without BatchNormalization fall back to ``l1``.
- ``activation``: mean ``|a|`` over samples and positions of every tensor in the group, measured on data.

Example:
    >>> import numpy as np, tf_keras
    >>> from edgecnn.pruning.groups import ChannelGraph
    >>> inp = tf_keras.Input((4, 4, 2))
    >>> conv = tf_keras.layers.Conv2D(3, 1, use_bias=False, name="c")
    >>> model = tf_keras.Model(inp, tf_keras.layers.Dense(2)(conv(inp)))
    >>> conv.set_weights([np.array([[[[1., 5., 2.], [1., 5., 2.]]]])])
    >>> cg = ChannelGraph(model)
    >>> scores(cg, cg.groups()[0], importance="l1").round(2).tolist()
    [0.38, 1.88, 0.75]
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from edgecnn.errors import EdgecnnError

IMPORTANCES = ("l1", "bn", "activation")


def _normalized(v: np.ndarray) -> np.ndarray:
    v = np.abs(np.asarray(v, dtype=np.float64))
    mean = v.mean()
    return v / mean if mean > 0 else v


def _filter_l1(layer: Any) -> np.ndarray:
    kind = type(layer).__name__
    w = layer.get_weights()
    if kind == "SeparableConv2D":
        return np.abs(w[1]).sum(axis=(0, 1, 2))
    if kind == "Conv2DTranspose":
        return np.abs(w[0]).sum(axis=(0, 1, 3))
    return np.abs(w[0]).reshape(-1, w[0].shape[-1]).sum(axis=0)


def scores(cg: Any, group: Any, *, importance: str = "l1", activations: Optional[dict] = None) -> np.ndarray:
    """One score per channel of ``group``.

    Args:
        cg: the :class:`~edgecnn.pruning.groups.ChannelGraph` the group comes from.
        group: the :class:`~edgecnn.pruning.groups.PruningGroup`.
        importance: ``l1``, ``bn`` or ``activation``.
        activations: for ``activation``: ``{(layer name, output index): mean |a| per channel}``
            (:func:`activation_means`).

    Returns:
        float64 array of ``group.channels`` scores.

    Raises:
        EdgecnnError: unknown importance, or ``activation`` without measured activations.
    """
    model = cg.model
    if importance not in IMPORTANCES:
        raise EdgecnnError(f"unknown importance {importance!r}: Expected one of {', '.join(IMPORTANCES)}. "
                           f"Received: {importance!r}")
    total = np.zeros(group.channels)
    if importance == "bn":
        for name in group.passes:
            layer = model.get_layer(name)
            if type(layer).__name__ == "BatchNormalization" and layer.scale:
                total += _normalized(layer.get_weights()[0])
        if total.any():
            return total
    if importance == "activation":
        if activations is None:
            raise EdgecnnError("activation importance measures the model on data: Expected --data. Received: none")
        for key in cg.tensors(group.id):
            if key in activations:
                total += _normalized(activations[key])
        if total.any():
            return total
    for name in group.producers:
        total += _normalized(_filter_l1(model.get_layer(name)))
    return total


def activation_means(cg: Any, groups: list, x: np.ndarray, *, batch_size: int = 64) -> dict:
    """Mean ``|a|`` per channel of every tensor of ``groups`` on inputs ``x``: {(layer, index): array}."""
    import tf_keras

    model = cg.model
    keys = [k for g in groups for k in cg.tensors(g.id)]
    if not keys:
        return {}
    outs = []
    for name, i in keys:
        out = model.get_layer(name).get_output_at(0)  # a shared layer's first call stands for all
        outs.append(out[i] if isinstance(out, (list, tuple)) else out)
    probe = tf_keras.Model(model.inputs, outs)
    sums = [np.zeros(int(o.shape[-1])) for o in outs]
    for start in range(0, len(x), batch_size):
        res = probe(x[start:start + batch_size], training=False)
        res = res if isinstance(res, (list, tuple)) else [res]
        for j, r in enumerate(res):
            a = np.abs(np.asarray(r, dtype=np.float64))
            sums[j] += a.reshape(-1, a.shape[-1]).sum(axis=0) / max(1, a.size // a.shape[-1])
    return {k: s for k, s in zip(keys, sums)}
