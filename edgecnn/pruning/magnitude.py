"""Unstructured magnitude pruning and 2:4 sparsity with tensorflow-model-optimization.

:func:`wrap` wraps the prunable layers (Conv2D, Dense, DepthwiseConv2D, SeparableConv2D ... that tfmot
knows) with ``prune_low_magnitude`` under a PolynomialDecay (0 -> sparsity over the fine-tuning steps) or
ConstantSparsity schedule, or tfmot's ``sparsity_m_by_n=(2, 4)``. The first and last prunable layers are
skipped by default (they are small and sensitive). :func:`one_shot` applies the masks without training;
:func:`strip` removes the wrappers (``strip_pruning``), leaving a plain tf_keras model whose kernels hold
the zeros.

Zeros make the saved and compressed (gzip) model smaller; dense runtimes (LiteRT/XNNPACK, ONNX Runtime
on CPU) still multiply them, so latency does not change. Structured channel pruning is what makes a model
faster.

Example:
    >>> import numpy as np, tf_keras
    >>> inp = tf_keras.Input((8, 8, 3))
    >>> x = tf_keras.layers.Conv2D(8, 3, name="c1")(inp)
    >>> x = tf_keras.layers.Conv2D(16, 3, name="c2")(x)
    >>> x = tf_keras.layers.Flatten()(x)
    >>> model = tf_keras.Model(inp, tf_keras.layers.Dense(4, name="head")(x))
    >>> wrapped, targets = wrap(model, sparsity=0.75, schedule="constant", steps=1)
    >>> targets
    {'c2': 0.75}
    >>> pruned = strip(one_shot(wrapped))
    >>> round(float(np.mean(pruned.get_layer("c2").get_weights()[0] == 0)), 2)
    0.75
"""
from __future__ import annotations

import fnmatch
from typing import Any, Mapping, Optional

import numpy as np

from edgecnn.errors import EdgecnnError, UnsupportedModelError

SCHEDULES = ("polynomial", "constant")


def _tfmot() -> Any:
    from edgecnn._tf import import_tensorflow

    import_tensorflow()
    import tensorflow_model_optimization as tfmot

    return tfmot


def prunable_layers(model: Any) -> list[str]:
    """Names of the layers tfmot can prune (with a kernel), in model order."""
    _tfmot()
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import PruneRegistry as registry
    out = []
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer" or not registry.supports(layer):
            continue
        if registry._weight_names(layer):
            out.append(layer.name)
    return out


def layer_targets(model: Any, *, sparsity: float, layer_sparsity: Optional[Mapping[str, float]] = None,
                  skip_first_last: bool = True, m_by_n: bool = False) -> dict[str, float]:
    """Layer name -> target sparsity (layers left dense are absent); glob overrides win over the skip."""
    names = prunable_layers(model)
    if not names:
        raise UnsupportedModelError(f"model '{model.name}' has nothing to prune: Expected a Conv2D, Dense or other "
                                    "layer tensorflow-model-optimization can prune. Received: none")
    targets = {}
    for i, name in enumerate(names):
        ratio: Optional[float] = sparsity
        if skip_first_last and (i == 0 or i == len(names) - 1):
            ratio = None
        for pattern, value in (layer_sparsity or {}).items():
            if fnmatch.fnmatchcase(name, pattern):
                ratio = float(value)
        if ratio is not None and (ratio > 0 or m_by_n):
            targets[name] = ratio
    if not targets:
        raise UnsupportedModelError(
            f"model '{model.name}' has nothing to prune: Expected a prunable layer besides the first and last "
            f"({', '.join(names)}). Received: every prunable layer skipped (pass skip_first_last=False)")
    return targets


def wrap(model: Any, *, sparsity: float, schedule: str = "polynomial", m_by_n: bool = False, steps: int = 1,
         layer_sparsity: Optional[Mapping[str, float]] = None, skip_first_last: bool = True) -> tuple[Any, dict]:
    """``model`` with its target layers wrapped by ``prune_low_magnitude``; returns (wrapped, targets).

    Args:
        model: the working model (not modified: the wrapped model gets copies of its weights).
        sparsity: target fraction of zero weights per layer (ignored for ``m_by_n``: always 2 of 4).
        schedule: ``polynomial`` (0 -> sparsity over ``steps``) or ``constant``.
        m_by_n: tfmot's 2:4 structured sparsity instead of a schedule.
        steps: fine-tuning steps the polynomial schedule spreads over.
        layer_sparsity: ``{layer name or glob: sparsity}`` overrides.
        skip_first_last: leave the first and last prunable layers dense.

    Raises:
        EdgecnnError: an unknown schedule. UnsupportedModelError: nothing prunable.
    """
    if schedule not in SCHEDULES:
        raise EdgecnnError(f"unknown pruning schedule {schedule!r}: Expected one of {', '.join(SCHEDULES)}. "
                           f"Received: {schedule!r}")
    tfmot = _tfmot()
    import tf_keras

    sk = tfmot.sparsity.keras
    targets = layer_targets(model, sparsity=sparsity, layer_sparsity=layer_sparsity,
                            skip_first_last=skip_first_last, m_by_n=m_by_n)
    end = max(1, int(steps))

    def params(ratio: float) -> dict:
        if m_by_n:
            return {"sparsity_m_by_n": (2, 4)}
        if schedule == "constant" or end <= 1:
            return {"pruning_schedule": sk.ConstantSparsity(ratio, begin_step=0, frequency=1)}
        return {"pruning_schedule": sk.PolynomialDecay(0.0, ratio, begin_step=0, end_step=end,
                                                       frequency=max(1, end // 10))}

    def clone(layer: Any) -> Any:
        fresh = layer.__class__.from_config(layer.get_config())
        if layer.name in targets:
            return sk.prune_low_magnitude(fresh, **params(targets[layer.name]))
        return fresh

    wrapped = tf_keras.models.clone_model(model, clone_function=clone)
    inner = {getattr(layer, "layer", layer).name: getattr(layer, "layer", layer) for layer in wrapped.layers}
    for layer in model.layers:
        if layer.get_weights():
            inner[layer.name].set_weights(layer.get_weights())
    return wrapped, targets


def callbacks() -> list:
    """The callbacks ``fit`` needs for a wrapped model (tfmot's ``UpdatePruningStep``)."""
    return [_tfmot().sparsity.keras.UpdatePruningStep()]


def one_shot(wrapped: Any) -> Any:
    """Apply every wrapper's final mask now, without training (the schedule's target at its last step)."""
    for layer in wrapped.layers:
        if type(layer).__name__ != "PruneLowMagnitude":
            continue
        obj = layer.pruning_obj
        schedule = getattr(layer, "pruning_schedule", None)
        last = int(getattr(schedule, "end_step", 1) or 1) if schedule is not None else 1
        layer.pruning_step.assign(max(1, last))
        obj.conditional_mask_update()
        obj.weight_mask_op()  # eager: both ops ran already
    return wrapped


def strip(wrapped: Any) -> Any:
    """The plain tf_keras model without pruning wrappers (``strip_pruning``), zeros kept in the kernels."""
    return _tfmot().sparsity.keras.strip_pruning(wrapped)


def achieved(model: Any, names: list[str]) -> dict[str, float]:
    """Fraction of exact zeros in each named layer's kernel(s)."""
    out = {}
    for name in names:
        layer = model.get_layer(name)
        kernels = [w for w, v in zip(layer.get_weights(), layer.weights) if "kernel" in v.name]
        total = sum(k.size for k in kernels)
        out[name] = float(sum(int(np.sum(k == 0)) for k in kernels) / total) if total else 0.0
    return out
