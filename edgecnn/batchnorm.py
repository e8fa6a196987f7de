"""BatchNormalization statistics re-estimated on training inputs after a structural change.

A module of its own, below :mod:`edgecnn.surgery` (which re-estimates the BatchNorms downstream of every
replacement) and :mod:`edgecnn.training` (which repairs an original handed over with stale statistics).
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["recalibrate_batchnorm"]


def recalibrate_batchnorm(model: Any, x: np.ndarray, *, batch_size: int = 32, max_batches: int = 32,
                          layers: Any = None) -> int:
    """Re-estimate the BatchNormalization layers' moving mean and variance on ``x``; return how many.

    After a rewrite or pruning, the layers before a BatchNormalization produce differently distributed
    activations than the ones its statistics were collected on, so the model in inference mode is far off
    even when its weights are close (a separable MiniModel fell to chance level). Forward passes in training
    mode with the momentum set to ``i / (i + 1)`` on batch ``i`` make the moving statistics the plain average
    of the batch statistics over up to ``max_batches`` full batches; the momenta are restored afterwards.
    Trainable weights are not changed. ``layers`` limits the re-estimation to those BatchNorm layers (the
    others keep their statistics: their momentum is 1 during the passes). Dropout and noise layers are
    switched off during the passes, so the statistics are those inference will see.

    Example:
        >>> import tf_keras
        >>> inp = tf_keras.Input((4,))
        >>> m = tf_keras.Model(inp, tf_keras.layers.BatchNormalization(name="bn")(inp))
        >>> x = np.random.default_rng(0).normal(3.0, 2.0, size=(256, 4)).astype("float32")
        >>> recalibrate_batchnorm(m, x)
        1
        >>> mean, var = m.get_layer("bn").moving_mean.numpy(), m.get_layer("bn").moving_variance.numpy()
        >>> bool(np.allclose(mean, x.mean(0), atol=0.05)), bool(np.allclose(var, x.var(0), rtol=0.05))
        (True, True)
    """
    every = [layer for layer in model.layers if "BatchNormalization" in type(layer).__name__]
    chosen = every if layers is None else [layer for layer in every if layer in list(layers)]
    if not chosen or len(x) == 0:
        return 0
    momenta = [layer.momentum for layer in every]
    noise = [(layer, attr, getattr(layer, attr)) for layer in model.layers
             for attr in ("rate", "stddev") if _is_noise(layer) and hasattr(layer, attr)]
    batch_size = min(batch_size, len(x))
    try:
        for layer, attr, _ in noise:
            setattr(layer, attr, 0.0)
        for layer in every:
            layer.momentum = 1.0
        for i, start in enumerate(range(0, len(x) - batch_size + 1, batch_size)):
            if i >= max_batches:
                break
            for layer in chosen:
                layer.momentum = i / (i + 1)
            model(x[start:start + batch_size], training=True)
    finally:
        for layer, momentum in zip(every, momenta):
            layer.momentum = momentum
        for layer, attr, value in noise:
            setattr(layer, attr, value)
    return len(chosen)


def _is_noise(layer: Any) -> bool:
    name = type(layer).__name__
    return "Dropout" in name or name.startswith("Gaussian")
