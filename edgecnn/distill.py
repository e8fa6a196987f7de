"""Knowledge distillation: fine-tune a student (rewritten, pruned) model against its teacher, under tf.distribute.

The teacher's outputs on the training and validation inputs are computed once; the student then trains
with ``model.fit`` on (inputs -> teacher targets [+ labels]) with a distillation loss, so anything that
works with ``fit`` works here: a tfmot ``prune_low_magnitude`` student with its ``UpdatePruningStep``
callback, user callbacks, a ``tf.distribute`` strategy.

The loss, per classifier output (rank 2, at least two classes), is Hinton's::

    alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(y, softmax(s))

with ``t``/``s`` the teacher/student logits and ``T`` the temperature; the ``T^2`` factor keeps the soft
term's gradients on the scale of the hard one. Without labels (``y=None``) only the soft term is used
(unlabelled data works). Outputs that are not class scores (regression, feature maps, one sigmoid unit)
are matched with mean squared error to the teacher's outputs.

Logits, not probabilities: a model ending in softmax gives probabilities. The logits are taken the way
Keras's own losses take them: from the softmax op's input (``_keras_logits`` or a ``Softmax`` op in the
traced graph), for the teacher (traced once in a ``tf.function``) and for the student (inside the loss).
Where the graph does not show them (e.g. a wrapper after the softmax), ``log(p)`` is used, which differs
from the logits by a per-sample constant and so gives the same softened distribution.

Example:
    >>> import numpy as np, tf_keras
    >>> from edgecnn.surgery import rebuild
    >>> inp = tf_keras.Input((6,))
    >>> h = tf_keras.layers.Dense(16, activation="relu", name="h")(inp)
    >>> teacher = tf_keras.Model(inp, tf_keras.layers.Dense(3, activation="softmax", name="out")(h))
    >>> student = rebuild(teacher)  # same architecture, own variables
    >>> student.get_layer("h").set_weights([w * 0 for w in student.get_layer("h").get_weights()])
    >>> x = np.random.default_rng(0).normal(size=(96, 6)).astype("float32")
    >>> r = distill(student, teacher, x=x, epochs=2, batch_size=16, progress=False)
    >>> r.model is student, r.epochs_run, sorted(r.history), r.val_accuracy
    (True, 2, ['loss', 'val_loss'], None)
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np

from edgecnn.errors import DataError, EdgecnnError, ShapeMismatchError, UnsupportedModelError, first_line
from edgecnn.callbacks import best_weights, refresh_batchnorm
from edgecnn.graph import producer
from edgecnn.training import STRATEGIES, make_strategy, recalibrate_batchnorm

__all__ = ["DistillResult", "distill", "STRATEGIES", "make_strategy", "recalibrate_batchnorm"]

_TINY = 1e-30  # floor of probabilities before log() (float32 still represents it)


@dataclass
class DistillResult:
    """What :func:`distill` produced.

    Attributes:
        model: the fine-tuned student, the same object that was passed in (best weights restored).
        epochs_run: epochs actually trained (fewer than asked when early stopping fired).
        best_epoch: 0-based epoch whose weights the model holds.
        history: per-epoch lists: ``loss``, ``val_loss`` (with validation data) and ``val_accuracy``
            (with labels); all floats.
        val_accuracy: the student's top-1 accuracy on the validation split (None without labels or
            without validation data).
        teacher_val_accuracy: the teacher's accuracy on the same split.
        seconds: wall time of the whole call.
        batchnorm_refreshed: whether the BatchNorm statistics were re-estimated on the training inputs
            (before each validation pass, or once at the end when that lowered the validation loss).
    """

    model: Any = field(repr=False)
    epochs_run: int
    best_epoch: int
    history: dict
    val_accuracy: float | None
    teacher_val_accuracy: float | None
    seconds: float
    batchnorm_refreshed: bool = False

    def as_dict(self) -> dict:
        """JSON-ready summary (without the model)."""
        return {"epochs_run": self.epochs_run, "best_epoch": self.best_epoch, "history": self.history,
                "val_accuracy": self.val_accuracy, "teacher_val_accuracy": self.teacher_val_accuracy,
                "seconds": round(self.seconds, 3), "batchnorm_refreshed": self.batchnorm_refreshed}


def _ends_in_softmax(model: Any, index: int) -> bool:
    tensor = model.outputs[index]
    layer = producer(tensor) or model.layers[-1]
    layer = getattr(layer, "layer", layer)  # a tfmot wrapper
    if type(layer).__name__ == "Softmax":
        return True
    return getattr(getattr(layer, "activation", None), "__name__", "") == "softmax"


def _logits(tensor: Any, softmax: bool) -> Any:
    """The logits behind ``tensor``: Keras's own record of them, the softmax op's input, or log(p)."""
    import tensorflow as tf

    logits = getattr(tensor, "_keras_logits", None)
    if logits is not None:
        return logits
    op = getattr(tensor, "op", None)
    if op is not None and not tf.executing_eagerly() and op.type == "Softmax":
        return op.inputs[0]
    return tf.math.log(tf.maximum(tensor, _TINY)) if softmax else tensor


def _is_classifier(shape: Sequence) -> bool:
    return len(shape) == 2 and shape[-1] is not None and int(shape[-1]) >= 2


def _teacher_targets(teacher: Any, xs: list[np.ndarray], softmax: list[bool], batch_size: int) -> list[np.ndarray]:
    """Teacher logits (classifier outputs) or raw outputs, computed in one traced function."""
    import tensorflow as tf

    classifier = [_is_classifier(tuple(o.shape)) for o in teacher.outputs]

    @tf.function(reduce_retracing=True)
    def run(*batch: Any) -> list:
        out = teacher(list(batch) if len(batch) > 1 else batch[0], training=False)
        out = out if isinstance(out, (list, tuple)) else [out]
        return [_logits(o, s) if c else o for o, s, c in zip(out, softmax, classifier)]

    parts = [[np.asarray(o, np.float32) for o in run(*[x[i:i + batch_size] for x in xs])]
             for i in range(0, len(xs[0]), batch_size)]
    return [np.concatenate([p[k] for p in parts]) for k in range(len(teacher.outputs))]


def _predict(model: Any, xs: list[np.ndarray], batch_size: int) -> list[np.ndarray]:
    """The model's outputs on ``xs`` (inference mode), as float32 arrays."""
    parts = []
    for i in range(0, len(xs[0]), batch_size):
        batch = [x[i:i + batch_size] for x in xs]
        out = model(batch if len(batch) > 1 else batch[0], training=False)
        parts.append([np.asarray(o, np.float32) for o in (out if isinstance(out, (list, tuple)) else [out])])
    return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]


def _loss_fn(*, classifier: bool, labelled: bool, softmax: bool, temperature: float, alpha: float) -> Any:
    import tensorflow as tf

    t2 = float(temperature) ** 2

    def distillation_loss(y_true: Any, y_pred: Any) -> Any:
        if not classifier:
            return tf.reduce_mean(tf.square(tf.cast(y_true, y_pred.dtype) - y_pred))
        student = _logits(y_pred, softmax)
        teacher = y_true[:, :-1] if labelled else y_true
        log_p_t = tf.nn.log_softmax(teacher / temperature)
        log_p_s = tf.nn.log_softmax(student / temperature)
        soft = t2 * tf.reduce_sum(tf.exp(log_p_t) * (log_p_t - log_p_s), axis=-1)
        if not labelled:
            return soft
        labels = tf.cast(y_true[:, -1], tf.int32)
        hard = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=student)
        return alpha * soft + (1.0 - alpha) * hard

    return distillation_loss


def accuracy(y_true: Any, y_pred: Any) -> Any:
    """Top-1 accuracy against the label packed as the last column of ``y_true`` (a Keras metric)."""
    import tensorflow as tf

    labels = tf.cast(y_true[:, -1], tf.int64)
    return tf.reduce_mean(tf.cast(tf.equal(tf.argmax(y_pred, axis=-1), labels), tf.float32))


def _is_pruned(model: Any) -> bool:
    return any(type(layer).__name__ == "PruneLowMagnitude" for layer in model.layers)


def _has_batchnorm(model: Any) -> bool:
    return any("BatchNormalization" in type(layer).__name__ for layer in model.layers)


def _as_inputs(model: Any, x: Any, what: str) -> list[np.ndarray]:
    from edgecnn.data.checks import check_inputs

    xs = list(x) if isinstance(x, (list, tuple)) else [x]
    if len(xs) != len(model.inputs):
        raise ShapeMismatchError(f"{what}: Expected {len(model.inputs)} input array(s). Received: {len(xs)}")
    out = []
    for arr, tensor in zip(xs, model.inputs):
        out.append(check_inputs(SimpleNamespace(inputs=[tensor]), arr, what=what))
    if len({len(a) for a in out}) != 1:
        raise DataError(f"{what}: Expected the same number of samples in every input. Received: {[len(a) for a in out]}")
    return out


def _check_options(epochs: Any, batch_size: Any, learning_rate: Any, temperature: Any, alpha: Any,
                   validation_split: Any, patience: Any) -> None:
    def bad(name: str, expected: str, value: Any) -> EdgecnnError:
        return EdgecnnError(f"distillation {name}: Expected {expected}. Received: {value!r}")

    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("patience", patience)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise bad(name, "an integer >= 1", value)
    number = (int, float)
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, number) or not 0 < learning_rate < 1:
        raise bad("learning_rate", "a number in (0, 1)", learning_rate)
    if isinstance(temperature, bool) or not isinstance(temperature, number) or not temperature > 0:
        raise bad("temperature", "a number > 0", temperature)
    if isinstance(alpha, bool) or not isinstance(alpha, number) or not 0 <= alpha <= 1:
        raise bad("alpha", "a number in [0, 1]", alpha)
    if isinstance(validation_split, bool) or not isinstance(validation_split, number) or not 0 <= validation_split < 1:
        raise bad("validation_split", "a number in [0, 1)", validation_split)


def distill(student: Any, teacher: Any, *, x: Any, y: Any = None, x_val: Any = None, y_val: Any = None,
            epochs: int = 5, batch_size: int = 32, learning_rate: float = 1e-3, temperature: float = 4.0,
            alpha: float = 0.5, validation_split: float = 0.1, patience: int = 3, seed: int = 0,
            strategy: Any = None, callbacks: Sequence = (), progress: bool = True,
            keep_initial: bool = False) -> DistillResult:
    """Fine-tune ``student`` to reproduce ``teacher`` (and the labels, when given); return it trained.

    The student is trained in place and returned as ``result.model`` (under a ``mirrored``/``multiworker``
    strategy a copy is built inside ``strategy.scope()``, trained, and its weights copied back). It must
    not share variables with the teacher (build it with :func:`edgecnn.surgery.rebuild`). Training uses
    full batches only (the remainder of each shuffled epoch is left out: TF 2.21's oneDNN gradient bug),
    Adam, early stopping on ``val_loss`` after ``patience`` epochs without improvement, and restores the
    best epoch's weights. A tfmot-pruned student (``prune_low_magnitude`` layers) trains every epoch and
    keeps its last weights instead: its masks follow the pruning schedule, so an earlier epoch's weights
    would be a less sparse model.

    Args:
        student: a tf_keras model (working model, or wrapped by tfmot) with the teacher's input and output
            shapes.
        teacher: the reference model (tf_keras or Keras 3); not modified.
        x: training inputs ``(N, *input_shape)`` (a list of arrays for several inputs).
        y: integer labels ``(N,)`` for a single-output classifier, or None (teacher targets only).
        x_val, y_val: validation data; default: a seeded ``validation_split`` of ``x``/``y``.
        epochs: maximum epochs.
        batch_size: global batch size (split over replicas by a distribution strategy).
        learning_rate: Adam learning rate.
        temperature: softmax temperature of the soft targets (> 0).
        alpha: weight of the soft (teacher) term; ``1 - alpha`` weighs the cross-entropy with ``y``.
            Ignored without labels.
        validation_split: fraction of ``x`` held out when ``x_val`` is None; 0 disables validation
            (then no early stopping, and the last epoch is kept).
        patience: epochs without ``val_loss`` improvement before stopping.
        keep_initial: the student before fine-tuning competes with every epoch on ``val_loss``; when none beats
            it, its weights are kept and ``best_epoch`` is -1 (compress: fine-tuning never makes a change worse).
        seed: seeds Python, NumPy and TensorFlow, the split and the shuffling (same seed, same run on
            one device).
        strategy: see :func:`make_strategy`.
        callbacks: extra tf_keras callbacks passed to ``fit`` (e.g. tfmot ``UpdatePruningStep()``).
        progress: show Keras's per-epoch progress bar.

    Returns:
        A :class:`DistillResult`.

    Raises:
        EdgecnnError: an invalid option or strategy.
        ShapeMismatchError: data or the student does not fit the teacher's inputs/outputs.
        DataError: bad labels, or fewer training samples than ``batch_size``.
        UnsupportedModelError: the student is not a tf_keras model, or shares variables with the teacher.

    Example:
        >>> distill(None, None, x=np.zeros((4, 2)), alpha=2)
        Traceback (most recent call last):
        ...
        edgecnn.errors.EdgecnnError: distillation alpha: Expected a number in [0, 1]. Received: 2
    """
    start = time.perf_counter()
    _check_options(epochs, batch_size, learning_rate, temperature, alpha, validation_split, patience)
    from edgecnn._tf import import_tensorflow

    import_tensorflow()
    import tensorflow as tf
    import tf_keras

    if not isinstance(student, tf_keras.Model) or not student.inputs:
        kind = f"{type(student).__module__}.{type(student).__name__}"
        raise UnsupportedModelError("distillation student: Expected a built tf_keras model (edgecnn.load or "
                                    f"edgecnn.surgery.rebuild gives one). Received: {kind}")
    teacher_vars = {id(v) for v in teacher.weights}
    if any(id(v) in teacher_vars for v in student.weights):
        raise UnsupportedModelError("distillation student shares variables with the teacher: Expected a separate "
                                    "copy (edgecnn.surgery.rebuild). Received: shared weights")
    t_shapes = [tuple(o.shape)[1:] for o in teacher.outputs]
    s_shapes = [tuple(o.shape)[1:] for o in student.outputs]
    if t_shapes != s_shapes or len(student.inputs) != len(teacher.inputs):
        raise ShapeMismatchError(f"distillation student outputs: Expected the teacher's {t_shapes}. Received: {s_shapes}")
    labelled = y is not None
    xs = _as_inputs(teacher, x, "distillation data")
    _as_inputs(student, xs, "distillation data")
    if labelled:
        from edgecnn.data.checks import check_labelled

        y = check_labelled(SimpleNamespace(inputs=teacher.inputs[:1], outputs=teacher.outputs),
                           xs[0], y, what="distillation data")[1]
    tf_keras.utils.set_random_seed(int(seed))
    if x_val is not None:
        xs_val = _as_inputs(teacher, x_val, "distillation validation data")
        if labelled != (y_val is not None):
            raise DataError("distillation validation labels: Expected y_val exactly when y is given. "
                            f"Received: y={'set' if labelled else None}, y_val={'set' if y_val is not None else None}")
        if labelled:
            y_val = check_labelled(SimpleNamespace(inputs=teacher.inputs[:1], outputs=teacher.outputs),
                                   xs_val[0], y_val, what="distillation validation data")[1]
    elif validation_split > 0:
        order = np.random.default_rng(seed).permutation(len(xs[0]))
        n_val = max(1, int(round(len(order) * validation_split)))
        val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
        xs_val, xs = [a[val_idx] for a in xs], [a[train_idx] for a in xs]
        y_val, y = (y[val_idx], y[train_idx]) if labelled else (None, None)
    else:
        xs_val = None
    if len(xs[0]) < batch_size:
        raise DataError(f"distillation data: Expected at least batch_size={batch_size} training samples (after the "
                        f"validation split). Received: {len(xs[0])}")

    t_softmax = [_ends_in_softmax(teacher, i) for i in range(len(teacher.outputs))]
    s_softmax = [_ends_in_softmax(student, i) for i in range(len(student.outputs))]
    classifier = [_is_classifier((None, *s)) for s in s_shapes]
    if labelled and not classifier[0]:
        raise ShapeMismatchError(f"distillation labels need a classifier: Expected one output (N, classes>=2). "
                                 f"Received: {s_shapes}")

    def targets(inputs: list[np.ndarray], labels: Any) -> tuple:
        outs = _teacher_targets(teacher, inputs, t_softmax, max(batch_size, 64))
        if labels is not None:
            outs[0] = np.concatenate([outs[0], labels.astype(np.float32)[:, None]], axis=1)
        return tuple(outs) if len(outs) > 1 else outs[0]

    train_t = targets(xs, y)
    val_t = targets(xs_val, y_val) if xs_val is not None else None
    teacher_acc = None
    if xs_val is not None and labelled:
        from edgecnn.data.checks import top1_accuracy

        teacher_acc = top1_accuracy(val_t[:, :-1], y_val)

    losses = [_loss_fn(classifier=c, labelled=labelled and i == 0, softmax=s, temperature=float(temperature),
                       alpha=float(alpha)) for i, (c, s) in enumerate(zip(classifier, s_softmax))]
    dist = make_strategy(strategy)
    in_place = dist is tf.distribute.get_strategy()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA

    def dataset(inputs: list[np.ndarray], tgt: Any, *, train: bool) -> Any:
        feats = tuple(inputs) if len(inputs) > 1 else inputs[0]
        ds = tf.data.Dataset.from_tensor_slices((feats, tgt))
        if train:
            ds = ds.shuffle(len(inputs[0]), seed=int(seed), reshuffle_each_iteration=True)
        return ds.batch(batch_size, drop_remainder=train).with_options(options)

    with dist.scope():
        model = student
        if not in_place:
            model = tf_keras.models.clone_model(student)
            model.set_weights(student.get_weights())
        model.compile(optimizer=tf_keras.optimizers.Adam(learning_rate=float(learning_rate)),
                      loss=losses if len(losses) > 1 else losses[0],
                      metrics=[accuracy] if labelled else None)
    initial = None
    if keep_initial and xs_val is not None and not _is_pruned(student):  # the model before fine-tuning competes
        try:
            value = model.evaluate(dataset(xs_val, val_t, train=False), verbose=0, return_dict=True).get("loss")
        except (tf.errors.OpError, ValueError, TypeError) as exc:
            raise EdgecnnError(f"distillation failed: {first_line(exc)}") from exc
        initial = (float(value), model.get_weights()) if value is not None else None
    best = best_weights(patience=patience, restore=not _is_pruned(student), initial=initial)
    # BatchNorm statistics re-estimated before each validation (one device, plain Keras layers only: a
    # training-mode pass through tfmot's wrappers would advance their masks).
    refresh = len(xs) == 1 and in_place and _has_batchnorm(student) and not _is_pruned(student)
    extra = [refresh_batchnorm(xs[0], batch_size=batch_size)] if refresh else []
    try:
        fit = model.fit(dataset(xs, train_t, train=True), epochs=epochs,
                        validation_data=dataset(xs_val, val_t, train=False) if xs_val is not None else None,
                        callbacks=[*extra, best, *callbacks], verbose=_verbosity(progress, dist))
    except (tf.errors.OpError, ValueError, TypeError) as exc:
        raise EdgecnnError(f"distillation failed: {first_line(exc)}") from exc
    if not in_place:
        student.set_weights(model.get_weights())
    bn_refreshed = False
    if len(xs) == 1 and _has_batchnorm(student) and not _is_pruned(student) and (xs_val is None or not refresh):
        bn_refreshed = _final_refresh(student, xs[0], xs_val, val_t, losses, batch_size)
    history = {}
    for key, values in fit.history.items():
        if key in ("loss", "val_loss", "val_accuracy") or len(losses) > 1:
            history[key] = [float(v) for v in values]
    val_acc = None
    if xs_val is not None and labelled:
        from edgecnn.data.checks import top1_accuracy

        val_acc = top1_accuracy(_predict(student, xs_val, batch_size)[0], y_val)
    best_epoch = best.best_epoch if initial is not None else max(best.best_epoch, 0)
    return DistillResult(model=student, epochs_run=len(fit.history.get("loss", [])), best_epoch=best_epoch,
                         history=history, val_accuracy=val_acc, teacher_val_accuracy=teacher_acc,
                         seconds=time.perf_counter() - start, batchnorm_refreshed=refresh or bn_refreshed)


def _verbosity(progress: bool, strategy: Any) -> int:
    """Keras's progress bar, or one line per epoch over several replicas (tf_keras's per-step values are summed
    over the replicas there: loss and accuracy twice their value with two workers; the epoch's are right)."""
    if not progress:
        return 0
    return 2 if int(getattr(strategy, "num_replicas_in_sync", 1)) > 1 else 1


def _final_refresh(student: Any, x: np.ndarray, xs_val: Any, val_t: Any, losses: list, batch_size: int) -> bool:
    """Re-estimate the BatchNorm statistics after training where no per-epoch refresh ran; with validation
    data keep them only if the validation loss (inference mode) gets lower. Returns whether they were kept."""
    from edgecnn.training import recalibrate_batchnorm

    if xs_val is None:
        recalibrate_batchnorm(student, x, batch_size=batch_size)
        return True

    def val_loss() -> float:
        out = _predict(student, xs_val, batch_size)
        targets = val_t if isinstance(val_t, tuple) else (val_t,)
        return float(sum(np.mean(np.asarray(fn(t, o))) for fn, t, o in zip(losses, targets, out)))

    saved, before = student.get_weights(), val_loss()
    recalibrate_batchnorm(student, x, batch_size=batch_size)
    if val_loss() <= before:
        return True
    student.set_weights(saved)
    return False
