"""Apply a channel selection: a smaller model with the chosen channels of every group removed.

:func:`prune_channels` scores each :class:`~edgecnn.pruning.groups.PruningGroup`, keeps the best channels
(rounded to a multiple of ``round_to``), and :func:`apply_selection` rebuilds the model through
:func:`edgecnn.surgery.rebuild`, cutting each layer with its handler. Nothing is fine-tuned here.

Example:
    >>> import numpy as np, tf_keras
    >>> inp = tf_keras.Input((8, 8, 3))
    >>> x = tf_keras.layers.Conv2D(16, 3, padding="same", name="c1")(inp)
    >>> x = tf_keras.layers.BatchNormalization(name="bn")(x)
    >>> x = tf_keras.layers.GlobalAveragePooling2D()(x)
    >>> model = tf_keras.Model(inp, tf_keras.layers.Dense(10, name="head")(x))
    >>> small = prune_channels(model, ratios=0.5, round_to=8)
    >>> small.get_layer("c1").filters, small.get_layer("head").units, small.count_params() < model.count_params()
    (8, 10, True)
"""
from __future__ import annotations

import fnmatch
from typing import Any, Mapping, Optional, Union

import numpy as np

from edgecnn.errors import EdgecnnError, UnsupportedModelError
from edgecnn.pruning.groups import ChannelGraph
from edgecnn.pruning.handlers import handler_for
from edgecnn.pruning.importance import activation_means, scores


def n_keep(channels: int, ratio: float, *, round_to: int = 8) -> int:
    """How many of ``channels`` stay when a fraction ``ratio`` is removed, as a multiple of ``round_to``.

    Never 0; a group of ``round_to`` channels or fewer is left whole.

    >>> n_keep(64, 0.5), n_keep(64, 0.3), n_keep(8, 0.9), n_keep(24, 0.99), n_keep(10, 0.5, round_to=1)
    (32, 48, 8, 8, 5)
    """
    if ratio <= 0 or channels <= round_to:
        return channels
    if round_to <= 1:
        return max(1, min(channels, int(round(channels * (1 - ratio)))))
    k = int(round(channels * (1 - ratio) / round_to)) * round_to
    return max(round_to, min(channels, k))


def group_ratio(group: Any, ratios: Union[float, Mapping[str, float]], default: float = 0.0) -> float:
    """The ratio for ``group``: a float applies everywhere; in a dict, the largest ratio whose key (a layer
    name or glob) matches one of the group's producers, else ``default``."""
    if not isinstance(ratios, Mapping):
        return float(ratios)
    found = [float(r) for pattern, r in ratios.items() for name in group.producers if fnmatch.fnmatchcase(name, pattern)]
    return max(found) if found else default


def check_ratio(value: float, what: str = "sparsity") -> float:
    """``value`` as a float in [0, 1), else EdgecnnError."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise EdgecnnError(f"{what} must be a number: Expected a fraction in [0, 1). Received: {value!r}") from None
    if not 0.0 <= v < 1.0:
        raise EdgecnnError(f"{what} out of range: Expected a fraction in [0, 1). Received: {value!r}")
    return v


def select(cg: ChannelGraph, *, ratios: Union[float, Mapping[str, float]], importance: str = "l1",
           round_to: int = 8, default: float = 0.0, x: Optional[np.ndarray] = None) -> dict[int, np.ndarray]:
    """Kept channel indices per group id (only groups that lose channels)."""
    groups = cg.groups()
    acts = activation_means(cg, groups, x) if importance == "activation" and x is not None else None
    selection = {}
    for g in groups:
        ratio = check_ratio(group_ratio(g, ratios, default), f"ratio of group '{g.name}'")
        k = n_keep(g.channels, ratio, round_to=round_to)
        if k < g.channels:
            s = scores(cg, g, importance=importance, activations=acts)
            selection[g.id] = np.sort(np.argsort(-s, kind="stable")[:k])
    return selection


def apply_selection(model: Any, selection: Mapping[int, np.ndarray], *, cg: Optional[ChannelGraph] = None,
                    bn_data: Optional[np.ndarray] = None) -> Any:
    """Rebuild ``model`` keeping only ``selection[group.id]`` channels of each group (others whole).

    Args:
        model: the working model.
        selection: group id -> sorted kept channel indices.
        cg: the model's ChannelGraph (built if not given).
        bn_data: training inputs on which the BatchNorm statistics after a cut are re-estimated
            (:func:`edgecnn.surgery.rebuild`); None leaves them stale.

    Returns:
        A new tf_keras model (the input model is untouched).
    """
    from edgecnn.surgery import rebuild

    cg = cg or ChannelGraph(model)
    keep = cg.keep_indices(dict(selection))

    def replace(call: Any) -> Any:
        node = call.node
        k_in = [cg.keep_of(t, keep) for t in node.inputs]
        k_out = [cg.keep_of(t, keep) for t in node.outputs]
        full = all(len(k) == int(t.shape[-1]) for k, t in zip(k_in + k_out, node.inputs + node.outputs))
        handler = handler_for(call.layer)
        if full or handler.cut is None:
            return None
        return handler.cut(call, k_in, k_out)

    return rebuild(model, replace=replace, bn_data=bn_data)


def prune_channels(model: Any, *, ratios: Union[float, Mapping[str, float]], importance: str = "l1",
                   round_to: int = 8, x: Optional[np.ndarray] = None, bn_data: Optional[np.ndarray] = None) -> Any:
    """Remove a fraction of the output channels of every prunable group (no fine-tuning).

    Args:
        model: the working model (a flat tf_keras functional model).
        ratios: fraction of channels removed per group: one float for all groups, or
            ``{layer name or glob: ratio}`` matched against each group's producers (unmatched groups stay).
        importance: ``l1`` (filter L1 norm), ``bn`` (BatchNormalization gamma) or ``activation`` (needs ``x``).
        round_to: kept channel counts are multiples of this (never 0; groups this small stay whole).
        x: input samples for ``activation`` importance.
        bn_data: training inputs to re-estimate the BatchNorm statistics after the cuts on (see
            :func:`apply_selection`).

    Returns:
        A new, smaller tf_keras model with the same inputs and output shapes.

    Raises:
        EdgecnnError: a ratio outside [0, 1), unknown importance, activation importance without ``x``.
        UnsupportedLayerError: a layer type without a channel handler.
        UnsupportedModelError: nothing prunable (every channel feeds an output or a blocking layer).
    """
    if isinstance(ratios, Mapping):
        for key, value in ratios.items():
            check_ratio(value, f"ratio of '{key}'")
    else:
        check_ratio(ratios)
    if round_to < 1:
        raise EdgecnnError(f"round_to must be positive: Expected an integer >= 1. Received: {round_to}")
    if importance == "activation" and x is None:
        raise EdgecnnError("activation importance measures the model on data: Expected data. Received: none")
    cg = ChannelGraph(model)
    if not cg.groups():
        raise UnsupportedModelError(
            f"model '{model.name}' has nothing to prune: Expected a Conv2D, SeparableConv2D or Dense layer whose "
            "output channels do not feed the model output directly. Received: no prunable channel group")
    selection = select(cg, ratios=ratios, importance=importance, round_to=round_to, x=x)
    return apply_selection(model, selection, cg=cg, bn_data=bn_data)
