"""Quantization-aware training (QAT) with tensorflow-model-optimization, then a full-int8 TFLite model.

QAT inserts fake-quantization into the model so fine-tuning learns weights that survive int8 rounding;
it is the next step when post-training int8 misses an accuracy budget
(:func:`edgecnn.exporting.budget.int8_within_budget`). tfmot only accepts tf_keras models, which is what
:func:`edgecnn.load` returns.

Every layer tfmot knows is annotated for quantization. When all are known, this is
``tfmot.quantization.keras.quantize_model``; otherwise the known layers are annotated one by one
(``quantize_annotate_layer`` in a ``clone_model`` ``clone_function``) and ``quantize_apply`` quantizes
only those, leaving the others float during fine-tuning. Before fine-tuning, the activation ranges are
calibrated on the training inputs (:func:`calibrate_ranges`; tfmot would start them all at ``[-6, 6]``).
The converter then quantizes every op it can from a representative dataset, and keeps float kernels
available for the rest.

Importing tfmot makes ``tf.keras`` resolve to tf_keras for the rest of the process (it sets
``TF_USE_LEGACY_KERAS``), so tfmot is only imported inside the functions here.

Example:
    >>> import tf_keras
    >>> inp = tf_keras.Input((8, 8, 1))
    >>> conv = tf_keras.layers.Conv2D(2, 3, name="conv")(inp)
    >>> out = tf_keras.layers.Multiply(name="square")([conv, conv])
    >>> plan = prepare_qat(tf_keras.Model(inp, out))
    >>> plan.annotated_layers, plan.skipped_layers
    (['conv'], ['square'])
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgecnn.errors import DataError, EdgecnnError, UnsupportedLayerError, UnsupportedModelError, first_line

__all__ = ["QatPlan", "QatResult", "calibrate_ranges", "prepare_qat", "quantize_aware"]

# Layers the registry does not list but quantize_apply handles by rewriting them first
# (Conv/Dense + BatchNormalization folding; SeparableConv -> DepthwiseConv + Conv).
_TRANSFORMED = {"BatchNormalization", "SyncBatchNormalization", "SeparableConv1D", "SeparableConv2D"}
_FOLDS_BN = {"Conv2D", "DepthwiseConv2D", "Dense"}
CALIBRATION_SAMPLES = 200


@dataclass
class QatPlan:
    """A model prepared for quantization-aware training.

    Attributes:
        model: the tf_keras model with fake-quantization (weights copied from the input model).
        annotated_layers: names of the input model's layers that tfmot quantizes.
        skipped_layers: names of layers tfmot cannot quantize; they train and run in float.
    """

    model: Any
    annotated_layers: list[str]
    skipped_layers: list[str]


@dataclass
class QatResult:
    """What :func:`quantize_aware` produced.

    Accuracies are top-1 fractions in ``[0, 1]`` on ``x_val``/``y_val``, or None when no validation set
    was given.

    Attributes:
        tflite: the full-int8 ``.tflite`` flatbuffer of the fine-tuned QAT model.
        keras_accuracy_before: the float model before QAT.
        qat_keras_accuracy: the fine-tuned QAT Keras model (fake-quantized).
        tflite_accuracy: :attr:`tflite` on LiteRT.
        annotated_layers: layers quantized by QAT.
        skipped_layers: layers tfmot cannot quantize (left unannotated, float during fine-tuning).
        model: the fine-tuned QAT tf_keras model.
        history: per-epoch training metrics from ``fit`` (``loss``, ``accuracy``).
    """

    tflite: bytes = field(repr=False)
    keras_accuracy_before: float | None
    qat_keras_accuracy: float | None
    tflite_accuracy: float | None
    annotated_layers: list[str]
    skipped_layers: list[str]
    model: Any = field(default=None, repr=False)
    history: dict = field(default_factory=dict, repr=False)


def _is_input(layer: Any) -> bool:
    return type(layer).__name__ == "InputLayer"


def _unsupported(model: Any, registry: Any) -> set[str]:
    """Layers tfmot will refuse: unknown to its registry, or a BatchNormalization it cannot fold."""
    from edgecnn.graph import ModelGraph

    graph = ModelGraph(model)

    def kind(name: str) -> str:
        return type(model.get_layer(name)).__name__

    def foldable(name: str) -> bool:  # tfmot folds BN only into the Conv/Dense (or Conv -> Reshape) before it
        producers = graph.producers(name)
        if len(producers) != 1 or _is_input(model.get_layer(producers[0])):
            return False
        if kind(producers[0]) == "Reshape":
            return foldable(producers[0])
        return kind(producers[0]) in _FOLDS_BN

    skip = set()
    for layer in model.layers:
        name = type(layer).__name__
        if _is_input(layer) or (name in _TRANSFORMED and "BatchNormalization" not in name):
            continue
        if not registry.supports(layer) and ("BatchNormalization" not in name or not foldable(layer.name)):
            skip.add(layer.name)
    return skip


def _annotate_apply(model: Any, skip: set[str], tfmot: Any, tf_keras: Any) -> Any:
    qk = tfmot.quantization.keras

    def clone(layer: Any) -> Any:
        fresh = layer.__class__.from_config(layer.get_config())
        return fresh if layer.name in skip else qk.quantize_annotate_layer(fresh)

    annotated = tf_keras.models.clone_model(model, clone_function=clone)
    annotated.set_weights(model.get_weights())
    with qk.quantize_scope():
        return qk.quantize_apply(annotated)


def _require_tf_keras(model: Any) -> None:
    from edgecnn._tf import import_tensorflow

    import_tensorflow()
    import tf_keras

    if not isinstance(model, tf_keras.Model) or not (
        isinstance(model, tf_keras.Sequential) or getattr(model, "_is_graph_network", False)
    ):
        kind = f"{type(model).__module__}.{type(model).__name__}"
        raise UnsupportedModelError(
            "quantization-aware training needs a tf_keras model: Expected a tf_keras functional or Sequential "
            f"model (edgecnn.load converts Keras 3). Received: {kind}"
        )


def prepare_qat(model: Any) -> QatPlan:
    """Wrap ``model`` for quantization-aware training, annotating every layer tfmot supports.

    Args:
        model: a built tf_keras functional or Sequential model (e.g. from :func:`edgecnn.load`). It is
            not modified.

    Returns:
        A :class:`QatPlan` (uncompiled QAT model, annotated and skipped layer names).

    Raises:
        UnsupportedModelError: ``model`` is not a tf_keras functional/Sequential model.
        UnsupportedLayerError: no layer of ``model`` can be quantized.

    Example:
        >>> import tf_keras
        >>> m = tf_keras.Sequential([tf_keras.Input((8, 8, 1)), tf_keras.layers.Conv2D(2, 3, name="c")])
        >>> prepare_qat(m).skipped_layers
        []
        >>> import keras
        >>> prepare_qat(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))
        Traceback (most recent call last):
        ...
        edgecnn.errors.UnsupportedModelError: quantization-aware training needs a tf_keras model: Expected a tf_keras functional or Sequential model (edgecnn.load converts Keras 3). Received: keras.src.models.sequential.Sequential
    """
    _require_tf_keras(model)
    import tensorflow_model_optimization as tfmot
    import tf_keras

    registry = tfmot.quantization.keras.default_8bit.Default8BitQuantizeRegistry()
    names = [layer.name for layer in model.layers if not _is_input(layer)]
    skip = _unsupported(model, registry)
    if not skip:
        try:
            qat = tfmot.quantization.keras.quantize_model(model)
            return QatPlan(qat, names, [])
        except RuntimeError:  # a layer the registry knows but its context does not (e.g. a lone BN)
            pass
    for _ in range(len(names) + 1):
        if len(skip) == len(names):
            raise UnsupportedLayerError(
                "quantization-aware training found nothing to quantize: Expected at least one layer tfmot "
                f"supports (Conv2D, DepthwiseConv2D, Dense, ...). Received: {', '.join(names)}"
            )
        try:
            qat = _annotate_apply(model, skip, tfmot, tf_keras)
            return QatPlan(qat, [n for n in names if n not in skip], [n for n in names if n in skip])
        except RuntimeError as exc:  # "Layer NAME:<class ...> is not supported. ..."
            match = re.search(r"Layer (.+?):<class", str(exc))
            if not match or match.group(1) not in names or match.group(1) in skip:
                raise UnsupportedLayerError(f"quantization-aware training failed: {str(exc).splitlines()[0]}") from exc
            skip.add(match.group(1))
    raise AssertionError("unreachable: every pass skips one more layer")  # pragma: no cover


def calibrate_ranges(qat_model: Any, x: np.ndarray, *, batch_size: int = 32) -> int:
    """Set the activation ranges of a QAT model from ``x`` before fine-tuning; return how many were set.

    tfmot starts every activation range at ``[-6, 6]`` and moves it by an exponential moving average with
    decay 0.999 per training step, so a short fine-tune (tens to hundreds of steps) trains and exports
    with ranges that are still mostly ``[-6, 6]``: too coarse for small activations, clipping for large
    ones (the shipped ``mnist_separable`` lost 8 points of accuracy that way). Here a forward pass in
    training mode with the moving-average decay set to 0 gives every range its batch minimum/maximum,
    each computed after the ranges before it were set, as post-training calibration does; the union over
    the batches of ``x`` is kept. Other non-trainable state (BatchNormalization statistics, step
    counters) is restored afterwards, so only the ranges change.

    Args:
        qat_model: a model from :func:`prepare_qat` (``QatPlan.model``); its ranges are set in place.
        x: representative inputs, e.g. a few hundred training images.
        batch_size: samples per forward pass.

    Returns:
        The number of range variables (minimum and maximum counted apart) that were set.

    Example:
        >>> import tf_keras
        >>> conv = tf_keras.layers.Conv2D(1, 3, kernel_initializer="ones", use_bias=False, name="c")
        >>> qat = prepare_qat(tf_keras.Sequential([tf_keras.Input((4, 4, 1)), conv])).model
        >>> def output_range():
        ...     return [round(float(w.numpy()), 2) for w in qat.get_layer("quant_c").weights
        ...             if "post_activation" in w.name]
        >>> output_range()  # tfmot's start
        [-6.0, 6.0]
        >>> calibrate_ranges(qat, np.linspace(0, 0.5, 32, dtype="float32").reshape(2, 4, 4, 1))
        6
        >>> output_range()  # 0 and the largest 3x3 sum of the (8-bit rounded) inputs, 234 / 62 = 3.77
        [0.0, 3.78]
    """
    from tensorflow_model_optimization.python.core.quantization.keras import quant_ops

    original = quant_ops.MovingAvgQuantize

    def immediate(*args: Any, **kwargs: Any) -> Any:
        kwargs["ema_decay"] = 0.0
        return original(*args, **kwargs)

    ranges = [v for v in qat_model.non_trainable_weights if re.search(r"_(min|max)(:\d+)?$", v.name)]
    others = [(v, v.numpy()) for v in qat_model.non_trainable_weights if all(v is not r for r in ranges)]
    seen: list[np.ndarray | None] = [None] * len(ranges)
    quant_ops.MovingAvgQuantize = immediate
    try:
        for start in range(0, len(x), batch_size):
            qat_model(x[start:start + batch_size], training=True)
            for i, v in enumerate(ranges):
                value = v.numpy()
                pick = np.minimum if v.name.rsplit("_", 1)[-1].startswith("min") else np.maximum
                seen[i] = value if seen[i] is None else pick(seen[i], value)
    finally:
        quant_ops.MovingAvgQuantize = original
        for v, value in others:
            v.assign(value)
    for v, value in zip(ranges, seen):
        if value is not None:
            v.assign(value)
    return len(ranges)


def _ends_in_softmax(model: Any) -> bool:
    layer = model.get_layer(model.output_names[0]) if getattr(model, "output_names", None) else model.layers[-1]
    if type(layer).__name__ == "Softmax":
        return True
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", "") == "softmax"


def _check_training(epochs: Any, batch_size: Any, learning_rate: Any) -> None:
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise EdgecnnError(f"quantization-aware training {name}: Expected an integer >= 1. Received: {value!r}")
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)) or not 0 < learning_rate < 1:
        raise EdgecnnError(
            f"quantization-aware training learning_rate: Expected a number in (0, 1). Received: {learning_rate!r}"
        )


def quantize_aware(
    model: Any,
    *,
    x: np.ndarray,
    y: np.ndarray,
    epochs: int,
    batch_size: int = 32,
    learning_rate: float = 1e-4,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    io: str = "float",
) -> QatResult:
    """Fine-tune ``model`` with fake quantization, then convert it to a full-int8 TFLite model.

    The activation ranges are first calibrated on the first 200 samples of ``x``
    (:func:`calibrate_ranges`), which are also the converter's representative dataset. The loss is
    sparse categorical cross-entropy (``from_logits`` unless the last layer is a softmax), the
    optimizer Adam.

    Args:
        model: a trained tf_keras classifier (e.g. from :func:`edgecnn.load`); it is not modified.
        x: training inputs ``(N, *input_shape)``, float32.
        y: integer class labels ``(N,)``.
        epochs: fine-tuning epochs (1-2 are often enough for a trained model).
        batch_size: fine-tuning batch size; every batch is full (the remainder of each shuffled epoch
            is left out), and an even size avoids a oneDNN kernel bug in stride-2 1x1 conv gradients.
        learning_rate: Adam learning rate; small, since the model is already trained.
        x_val: held-out inputs to measure accuracy before, after, and on LiteRT (optional).
        y_val: their labels (required with ``x_val``).
        io: ``float``, ``int8`` or ``uint8`` input/output tensors of the ``.tflite``.

    Returns:
        A :class:`QatResult`.

    Raises:
        EdgecnnError: a training option is invalid, or the TFLite conversion fails.
        UnsupportedModelError / UnsupportedLayerError: see :func:`prepare_qat`.
        ShapeMismatchError / DataError: ``x``/``y`` or ``x_val``/``y_val`` do not fit the model.

    Example:
        >>> quantize_aware(None, x=np.zeros((1, 8, 8, 1)), y=np.zeros(1, dtype=int), epochs=0)
        Traceback (most recent call last):
        ...
        edgecnn.errors.EdgecnnError: quantization-aware training epochs: Expected an integer >= 1. Received: 0
    """
    _check_training(epochs, batch_size, learning_rate)
    if (x_val is None) != (y_val is None):
        raise EdgecnnError("quantization-aware training validation: Expected x_val and y_val together. "
                           f"Received: x_val={'set' if x_val is not None else None}, "
                           f"y_val={'set' if y_val is not None else None}")
    from edgecnn.data.checks import check_labelled, top1_accuracy
    from edgecnn.runtimes.keras import keras_outputs
    from edgecnn.exporting.quantize import IO_TYPES, QuantMode, configure_tflite

    if io not in IO_TYPES:
        raise EdgecnnError(f"unknown io {io!r}: Expected one of {', '.join(IO_TYPES)}. Received: {io!r}")
    _require_tf_keras(model)
    x, y = check_labelled(model, x, y, what="training data")
    if len(x) < batch_size:
        raise DataError(f"quantization-aware training data: Expected at least batch_size={batch_size} samples. "
                        f"Received: {len(x)}")
    val = check_labelled(model, x_val, y_val, what="x_val") if x_val is not None else None
    plan = prepare_qat(model)
    before = top1_accuracy(keras_outputs(model, val[0])[0], val[1]) if val else None

    import tensorflow as tf
    import tf_keras

    qat = plan.model
    calibrate_ranges(qat, x[:CALIBRATION_SAMPLES])
    qat.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate=float(learning_rate)),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=not _ends_in_softmax(model)),
        metrics=["accuracy"],
    )
    # Full batches only, reshuffled every epoch: TF 2.21's oneDNN filter gradient of a stride-2 1x1 conv
    # corrupts the heap on odd batch sizes, e.g. a last batch of 29 (see scripts/train_models.py).
    batches = (tf.data.Dataset.from_tensor_slices((x, y))
               .shuffle(len(x), seed=0, reshuffle_each_iteration=True)
               .batch(batch_size, drop_remainder=True))
    history = qat.fit(batches, epochs=epochs, verbose=0).history
    qat_acc = top1_accuracy(keras_outputs(qat, val[0])[0], val[1]) if val else None

    converter = tf.lite.TFLiteConverter.from_keras_model(qat)
    configure_tflite(converter, mode=QuantMode.INT8, calibration=x[:CALIBRATION_SAMPLES], io=io)
    if plan.skipped_layers:  # the converter may leave ops of unannotated layers in float
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        with warnings.catch_warnings():  # QAT models carry their own input statistics
            warnings.filterwarnings("ignore", message=".*Statistics for quantized inputs.*")
            tflite = bytes(converter.convert())
    except Exception as exc:  # the converter raises several types, often with multi-line MLIR dumps
        line = first_line(exc)
        raise EdgecnnError(f"TFLite conversion of the QAT model failed: {line}") from exc
    tflite_acc = None
    if val:
        from edgecnn.runtimes.litert import LiteRTSession

        tflite_acc = top1_accuracy(LiteRTSession(tflite).run(val[0])[0], val[1])
    return QatResult(tflite, before, qat_acc, tflite_acc, plan.annotated_layers, plan.skipped_layers,
                     model=qat, history={k: [float(v) for v in vs] for k, vs in history.items()})
