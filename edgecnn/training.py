"""Training helpers shared by distillation and fine-tuning: tf.distribute strategies by name, and the repair
of an original whose BatchNormalization statistics are stale (re-estimation itself: :mod:`edgecnn.batchnorm`).
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from edgecnn.batchnorm import recalibrate_batchnorm
from edgecnn.distribute import STRATEGIES, make_strategy

__all__ = ["STRATEGIES", "make_strategy", "recalibrate_batchnorm", "repair_stale_batchnorm"]


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
