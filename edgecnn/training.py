"""Training helpers shared by distillation and fine-tuning: tf.distribute strategies by name, and the repair
of an original whose BatchNormalization statistics are stale (re-estimation itself: :mod:`edgecnn.batchnorm`).
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from edgecnn.batchnorm import recalibrate_batchnorm
from edgecnn.errors import EdgecnnError, first_line

__all__ = ["STRATEGIES", "make_strategy", "recalibrate_batchnorm", "repair_stale_batchnorm"]

from edgecnn.distribute import STRATEGIES  # noqa: E402 - one list of names


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
    from edgecnn.data import top1_accuracy

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
