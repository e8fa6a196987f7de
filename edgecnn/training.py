"""Training helpers shared by distillation and fine-tuning: tf.distribute strategies by name, and
BatchNormalization statistics re-estimated after a structural change.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from edgecnn.errors import EdgecnnError, first_line

__all__ = ["STRATEGIES", "make_strategy", "recalibrate_batchnorm", "repair_stale_batchnorm"]

from edgecnn.distribute import STRATEGIES  # noqa: E402 - one list of names


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


def make_strategy(strategy: Any = None) -> Any:
    """A ``tf.distribute.Strategy`` for a name (or the object itself).

    Args:
        strategy: None or ``"default"`` (one device), ``"mirrored"`` (MirroredStrategy over every visible
            GPU, else over every logical CPU device), ``"multiworker"`` (the MultiWorkerMirroredStrategy that
            :func:`edgecnn.distribute.start` created at program start; the cluster comes from each worker's
            ``TF_CONFIG``), or a ``tf.distribute.Strategy``.

    Raises:
        EdgecnnError: an unknown name, or TensorFlow refuses to create the strategy (``multiworker`` in a
            process where TensorFlow was initialized before :func:`edgecnn.distribute.start`).

    Example:
        >>> make_strategy("ring")
        Traceback (most recent call last):
        ...
        edgecnn.errors.EdgecnnError: unknown strategy 'ring': Expected one of default, mirrored, multiworker. Received: 'ring'
    """
    if strategy is not None and not isinstance(strategy, str):
        return strategy
    name = strategy or "default"
    if name not in STRATEGIES:
        raise EdgecnnError(f"unknown strategy {name!r}: Expected one of {', '.join(STRATEGIES)}. Received: {name!r}")
    from edgecnn import distribute

    made = distribute.started(name)  # the strategy the program started with
    if made is not None:
        return made
    if name == "multiworker":  # created now, which works only before TensorFlow initializes
        return distribute.start("multiworker")
    from edgecnn._tf import import_tensorflow

    import_tensorflow()
    import tensorflow as tf

    try:
        if name == "default":
            return tf.distribute.get_strategy()
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    except (RuntimeError, ValueError) as exc:
        raise EdgecnnError(f"cannot create the {name} strategy: {first_line(exc)}") from exc


STALE_BN_POINTS = 2.0  # train-split accuracy gained by re-estimation above which the statistics count as stale


def repair_stale_batchnorm(model: Any, train: Any, *, points: float = STALE_BN_POINTS, samples: int = 512,
                           batch_size: int = 32) -> tuple[Any, Optional[dict]]:
    """``model``, or a copy with every BatchNorm's statistics re-estimated when the ones it came with are stale.

    Models trained the ordinary way often hand over moving statistics that lag the weights (momentum 0.99, a
    learning rate still high at the last epoch): such a model is far worse in inference mode than in training.
    This measures it on the TRAIN split only (at most ``samples`` images, never the test split): the
    accuracy as given and after re-estimating every BatchNorm on the train split. If re-estimation gains more
    than ``points``, the statistics are stale and the re-estimated copy is returned, so that it serves as
    the teacher and as the reference of the accuracy budget; the user's model is never modified.

    Returns:
        ``(model or repaired copy, info)``; ``info`` is None without BatchNorm layers or labels, else a dict
        with ``stale``, ``train_accuracy_as_given`` and ``train_accuracy_reestimated``.
    """
    from edgecnn.heldout import top1_accuracy

    if train is None or train.y is None or not any(_is_bn(layer) for layer in model.layers):
        return model, None
    if len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
        return model, None
    from edgecnn.surgery import rebuild

    x, y = train.x[:samples], train.y[:samples]

    def acc(m: Any) -> float:
        out = np.concatenate([np.asarray(m(x[i:i + 128], training=False)) for i in range(0, len(x), 128)])
        return top1_accuracy(out, y)

    copy = rebuild(model)
    recalibrate_batchnorm(copy, train.x, batch_size=batch_size)
    before, after = acc(model), acc(copy)
    info = {"stale": bool(100 * (after - before) > points), "train_accuracy_as_given": before,
            "train_accuracy_reestimated": after, "measured_on": f"train split, first {len(x)} samples",
            "reestimation": (f"every BatchNormalization, on the train split's first {32 * batch_size} samples in "
                             f"train_ids order, batches of {batch_size}: moving mean/variance = the mean of the batch "
                             "statistics, dropout and noise layers off")}
    return (copy if info["stale"] else model), info


def _is_bn(layer: Any) -> bool:
    return "BatchNormalization" in type(layer).__name__


def stale_note(info: dict) -> str:
    """The sentence every report carries when :func:`repair_stale_batchnorm` repaired the original.

    >>> stale_note({"train_accuracy_as_given": 0.1, "train_accuracy_reestimated": 0.9})[:62]
    "the original's BatchNorm statistics are stale (train split: 10"
    """
    return (f"the original's BatchNorm statistics are stale (train split: {100 * info['train_accuracy_as_given']:.2f}% "
            f"as given, {100 * info['train_accuracy_reestimated']:.2f}% with them re-estimated): the re-estimated "
            "original is the teacher and the reference of the accuracy budget; the input file is unchanged")
