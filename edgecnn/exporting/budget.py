"""Full-int8 TFLite within an accuracy budget: keep the fewest ops in float that bring accuracy back.

:func:`int8_within_budget` converts a model to full int8 (calibrated on real inputs) and measures
top-1 accuracy of the Keras model and of the ``.tflite`` on LiteRT. When int8 costs more than the
budget, TFLite's quantization debugger (``tf.lite.experimental.QuantizationDebugger``) measures each
quantized op's error against its float twin on the calibration inputs, and ops are moved back to float
one at a time, worst first (re-measured after every step, because keeping one op in float moves the
error to its neighbours), until the budget holds or ``max_float_layers`` is reached. Ops that turn out
not to be needed are then put back into int8, so the result keeps as few float ops as the greedy search
can show are necessary.

Ops are ranked by RMSE: the root-mean-square difference between the quantized op's dequantized output
and the float op's output on the same (quantized) input. A tensor whose range is set by a few extreme
values has a large quantization step, so its RMSE is large even though its RMSE in steps (``rmse /
scale``) looks ordinary; RMSE catches both that case and ops with an unusual error per step.

Example:
    >>> BudgetResult(tflite=b"", met=True, keras_accuracy=0.98, int8_accuracy=0.975, final_accuracy=0.975,
    ...              float_layers=[], per_layer_error=[], message="").drop_points
    0.5
"""
from __future__ import annotations

import contextlib
import csv
import io as _io
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence, Iterator

import numpy as np

from edgecnn.data.checks import check_inputs, check_labelled, top1_accuracy
from edgecnn.errors import DataError, EdgecnnError, ShapeMismatchError, first_line
from edgecnn.exporting.quantize import QuantMode, configure_tflite, representative_dataset

__all__ = ["BudgetResult", "int8_within_budget", "int8_with_float_layers"]

DEBUG_SAMPLES = 64  # calibration samples the debugger runs per ranking (the error statistics settle fast)
BUDGET_IO = ("float", "int8")
QAT_HINT = "try quantization-aware training: edgecnn quantize --qat"


@dataclass
class BudgetResult:
    """What :func:`int8_within_budget` produced.

    Attributes:
        tflite: the ``.tflite`` flatbuffer: plain full int8 when that met the budget, else the most
            accurate selective model found (plain int8 when no float op helped).
        met: whether ``keras_accuracy - final_accuracy`` is within the budget.
        keras_accuracy: top-1 accuracy of the Keras model on ``x_val`` (fraction in ``[0, 1]``).
        int8_accuracy: the same for the plain full-int8 model on LiteRT.
        final_accuracy: the same for :attr:`tflite` on LiteRT.
        float_layers: Keras layer names of the ops kept in float (the TFLite tensor name where an op
            does not map to one layer), in the order the search added them.
        per_layer_error: one dict per quantized op of the plain int8 model, worst first: ``tensor``
            (TFLite output tensor name), ``layer``, ``op`` (TFLite op type), ``rmse``, ``scale``,
            ``rmse_per_scale``, ``max_abs_error``, ``range`` (``255 * scale``). Empty when int8 met the
            budget without the debugger.
        message: one line saying what happened; when the budget is not met it says so and points to
            quantization-aware training.
        float_tensors: the TFLite tensor names denylisted (to reproduce the model).
        max_accuracy_drop: the budget, in accuracy points.
    """

    tflite: bytes = field(repr=False)
    met: bool
    keras_accuracy: float
    int8_accuracy: float
    final_accuracy: float
    float_layers: list[str]
    per_layer_error: list[dict]
    message: str
    float_tensors: list[str] = field(default_factory=list)
    max_accuracy_drop: float = 0.0

    @property
    def drop_points(self) -> float:
        """Accuracy lost by :attr:`tflite` against Keras, in points (negative when it gained)."""
        return round((self.keras_accuracy - self.final_accuracy) * 100.0, 6)


def _check_options(max_accuracy_drop: Any, io: str, max_float_layers: Any) -> None:
    if isinstance(max_accuracy_drop, bool) or not isinstance(max_accuracy_drop, (int, float)) or not (
        0.0 <= float(max_accuracy_drop) <= 100.0
    ):
        raise EdgecnnError(
            f"max_accuracy_drop is in accuracy points: Expected a number in [0, 100]. "
            f"Received: {max_accuracy_drop!r}"
        )
    if io not in BUDGET_IO:
        raise EdgecnnError(
            f"int8 accuracy budget io: Expected one of {', '.join(BUDGET_IO)} (selective float models "
            f"cannot have uint8 tensors). Received: {io!r}"
        )
    if isinstance(max_float_layers, bool) or not isinstance(max_float_layers, int) or max_float_layers < 0:
        raise EdgecnnError(
            f"max_float_layers: Expected an integer >= 0. Received: {max_float_layers!r}"
        )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the converter's and tf.lite.Interpreter's known, harmless warnings."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Statistics for quantized inputs.*")
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
        yield


def _litert_accuracy(tflite: bytes, x: np.ndarray, y: np.ndarray) -> float:
    from edgecnn.runtimes.litert import LiteRTSession

    return top1_accuracy(LiteRTSession(tflite).run(x)[0], y)


def _layer_name(tensor: str, model: Any) -> str:
    """The Keras layer an op's output tensor belongs to, else the tensor name."""
    names = {layer.name for layer in model.layers}
    for part in tensor.split(";"):
        for piece in part.split("/")[1:2]:
            if piece in names:
                return piece
    match = re.fullmatch(r"StatefulPartitionedCall(?:_\d+)?:(\d+)", tensor)
    outputs = list(getattr(model, "output_names", None) or [])
    if match and int(match.group(1)) < len(outputs):
        return outputs[int(match.group(1))]
    return tensor


class _Search:
    """The debugger calibrated once; quantized variants with a denylist of float ops, and their stats."""

    def __init__(self, model: Any, calibration: np.ndarray, *, io: str) -> None:
        import tensorflow as tf

        from edgecnn.exporting.converter import keras_converter

        self.io = io
        self._tf = tf
        with keras_converter(model) as converter, _quiet():  # the debugger converts once, here
            configure_tflite(converter, mode=QuantMode.INT8, calibration=calibration, io="float")
            # ops left in float need the float kernels too
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
            try:
                self.debugger = tf.lite.experimental.QuantizationDebugger(
                    converter=converter,
                    debug_dataset=representative_dataset(calibration[:DEBUG_SAMPLES]),
                )
            except Exception as exc:  # converter / MLIR errors come as several types
                line = first_line(exc)
                raise EdgecnnError(f"TFLite quantization debugger failed: {line}") from exc

    def _set_denylist(self, tensors: list[str]) -> None:
        options = self._tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(tensors) or None)
        with _quiet():
            self.debugger.options = options

    def quantized(self, tensors: list[str]) -> bytes:
        """The deployable model with ``tensors``' ops kept in float."""
        self._set_denylist(tensors)
        with _quiet():
            if self.io == "float":
                return bytes(self.debugger.get_nondebug_quantized_model())
            # the debugger's public call always gives float io; this is the call it makes, with int8 io
            from tensorflow.lite.python import convert

            return bytes(convert.mlir_quantize(
                self.debugger.calibrated_model,
                disable_per_channel=self.debugger.converter._experimental_disable_per_channel,
                fully_quantize=True,
                input_data_type=self._tf.int8,
                output_data_type=self._tf.int8,
                denylisted_nodes=list(tensors) or None,
            ))

    def errors(self, tensors: list[str], model: Any) -> list[dict]:
        """Per-op error of the quantized ops left with ``tensors`` in float, worst RMSE first."""
        self._set_denylist(tensors)
        with _quiet():
            self.debugger.run()
            dump = _io.StringIO()
            self.debugger.layer_statistics_dump(dump)
        rows = []
        for row in csv.DictReader(_io.StringIO(dump.getvalue())):
            scale = float(row["scale"])
            rmse = float(np.sqrt(max(float(row["mean_squared_error"]), 0.0)))
            rows.append({
                "tensor": row["tensor_name"],
                "layer": _layer_name(row["tensor_name"], model),
                "op": row["op_name"],
                "rmse": rmse,
                "scale": scale,
                "rmse_per_scale": rmse / scale if scale else float("inf"),
                "max_abs_error": float(row["max_abs_error"]),
                "range": 255.0 * scale,
            })
        rows = [r for r in rows if np.isfinite(r["rmse"])]
        return sorted(rows, key=lambda r: r["rmse"], reverse=True)


def int8_within_budget(
    model: Any,
    *,
    calibration: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    max_accuracy_drop: float,
    io: str = "float",
    max_float_layers: int = 10,
    float_layers: Sequence[str] = (),
) -> BudgetResult:
    """Full-int8 TFLite that loses at most ``max_accuracy_drop`` points of accuracy, or an honest no.

    Converts ``model`` to full int8 and measures accuracy (Keras vs LiteRT) on ``x_val``/``y_val``. If the
    drop is over budget, ops are kept in float one by one, worst quantization error first (as measured by
    ``tf.lite.experimental.QuantizationDebugger`` on ``calibration``), re-measuring after each, until the
    budget holds or ``max_float_layers`` ops are float; unneeded float ops are then re-quantized.

    Args:
        model: a Keras classifier (a working model from :func:`edgecnn.load`) with one ``(N, classes)``
            output.
        calibration: representative float inputs ``(N, *input_shape)`` (real data, e.g. training images).
        x_val: held-out inputs on which accuracy is measured.
        y_val: their integer class labels ``(N,)``.
        max_accuracy_drop: the budget, in accuracy points (``1.0`` = one percentage point).
        io: ``"float"`` or ``"int8"`` input/output tensors of the ``.tflite``.
        max_float_layers: at most this many ops are kept in float (``0``: only check plain int8).
        float_layers: Keras layer names whose ops stay in float from the start (e.g. a first conv that is
            faster in float on the target, see :func:`int8_with_float_layers`); never re-quantized.

    Returns:
        A :class:`BudgetResult`. ``met`` is False when no model within ``max_float_layers`` float ops
        meets the budget; ``tflite`` is then the most accurate model found, and ``message`` says so.

    Raises:
        EdgecnnError: an option is out of range, or conversion or the debugger fails.
        ShapeMismatchError: ``calibration``/``x_val`` do not fit the model, or it is not a classifier.
        DataError: ``y_val`` is not integer class indices matching ``x_val``.

    Example:
        >>> import tf_keras
        >>> inp = tf_keras.Input((8, 8, 1))
        >>> out = tf_keras.layers.Dense(2, activation="softmax")(tf_keras.layers.Flatten()(inp))
        >>> x = np.random.default_rng(0).uniform(size=(16, 8, 8, 1)).astype("float32")
        >>> result = int8_within_budget(tf_keras.Model(inp, out), calibration=x, x_val=x,
        ...                             y_val=np.zeros(16, dtype=int), max_accuracy_drop=100.0)
        >>> result.met, result.float_layers, result.tflite[4:8]
        (True, [], b'TFL3')
    """
    _check_options(max_accuracy_drop, io, max_float_layers)
    budget = float(max_accuracy_drop)
    calibration = check_inputs(model, calibration, what="calibration")
    x_val, y_val = check_labelled(model, x_val, y_val, what="x_val")

    from edgecnn.exporting.tflite import to_tflite
    from edgecnn.runtimes.keras import keras_outputs

    keras_acc = top1_accuracy(keras_outputs(model, x_val)[0], y_val)
    search = _Search(model, calibration, io=io) if float_layers else None
    fixed = _tensors_of(search, model, float_layers) if search is not None else []
    with _quiet():
        plain = search.quantized(fixed) if fixed else to_tflite(model, mode=QuantMode.INT8, calibration=calibration,
                                                                 io=io)
    int8_acc = _litert_accuracy(plain, x_val, y_val)

    def within(acc: float) -> bool:
        return (keras_acc - acc) * 100.0 <= budget + 1e-9

    def summary(acc: float) -> str:
        return (f"Keras {keras_acc:.2%}, full int8 {int8_acc:.2%}, final {acc:.2%} "
                f"(drop {(keras_acc - acc) * 100:.2f} points, budget {budget:g})")

    if within(int8_acc) or max_float_layers == 0:
        met = within(int8_acc)
        message = (f"full int8 meets the accuracy budget: {summary(int8_acc)}" if met else
                   f"full int8 misses the accuracy budget and max_float_layers=0: {summary(int8_acc)}; {QAT_HINT}")
        return BudgetResult(plain, met, keras_acc, int8_acc, int8_acc, [_layer_name(t, model) for t in fixed], [],
                            message, float_tensors=list(fixed), max_accuracy_drop=budget)

    search = search or _Search(model, calibration, io=io)
    per_layer = search.errors(list(fixed), model)
    denied: list[str] = list(fixed)
    best = (int8_acc, plain, list(fixed))  # most accurate so far; ties keep fewer float ops
    while len(denied) < max_float_layers + len(fixed):
        ranking = search.errors(denied, model) if denied else per_layer
        candidates = [r["tensor"] for r in ranking if r["tensor"] not in denied]
        if not candidates:
            break
        denied.append(candidates[0])
        tflite = search.quantized(denied)
        acc = _litert_accuracy(tflite, x_val, y_val)
        if acc > best[0]:
            best = (acc, tflite, list(denied))
        if within(acc):
            best = (acc, tflite, list(denied))
            break

    acc, tflite, denied = best
    if within(acc):
        for tensor in [t for t in reversed(denied) if t not in fixed]:  # put back what the budget does not need
            trial = [t for t in denied if t != tensor]
            trial_bytes = search.quantized(trial) if trial else plain
            trial_acc = _litert_accuracy(trial_bytes, x_val, y_val)
            if within(trial_acc):
                acc, tflite, denied = trial_acc, trial_bytes, trial
    layers = [_layer_name(t, model) for t in denied]
    if within(acc):
        message = (f"int8 with {len(denied)} op(s) kept in float ({', '.join(layers)}) meets the accuracy "
                   f"budget: {summary(acc)}")
    else:
        message = (f"int8 misses the accuracy budget: Expected a drop <= {budget:g} points. Received: "
                   f"{(keras_acc - acc) * 100:.2f} points at best with up to {max_float_layers} op(s) in float "
                   f"({summary(acc)}); {QAT_HINT}")
    return BudgetResult(tflite, within(acc), keras_acc, int8_acc, acc, layers, per_layer, message,
                        float_tensors=list(denied), max_accuracy_drop=budget)


_FUSED = ("BatchNormalization", "ReLU", "Activation")


def _tensors_of(search: _Search, model: Any, layers: Sequence[str]) -> list[str]:
    """The TFLite tensors computed by ``layers``; a conv fused with the BatchNorm/activation after it is
    named after the last fused layer, so those names count for it too."""
    from edgecnn.graph import ModelGraph

    rows = search.errors([], model)
    graph = ModelGraph(model)
    types = {layer.name: type(layer).__name__ for layer in model.layers}
    found = {r["layer"] for r in rows}
    names: dict[str, str] = {}
    for layer in layers:
        names[layer] = layer
        current = layer
        while names[layer] == current and current not in found:
            nxt = [c for c in graph.consumers(current) if types.get(c) in _FUSED]
            if len(graph.consumers(current)) != 1 or not nxt:
                break
            current = names[layer] = nxt[0]
    wanted = set(names.values())
    tensors = [r["tensor"] for r in rows if r["layer"] in wanted]
    # A layer with no op of its own (an activation fused into the conv before it, Dropout) needs nothing.
    missing = sorted(k for k in names if k not in types)
    if missing:
        raise EdgecnnError(f"cannot keep {', '.join(missing)} in float: Expected layers of the model. "
                           f"Received: {', '.join(missing)}")
    return tensors


def int8_with_float_layers(model: Any, *, layers: Sequence[str], calibration: np.ndarray, io: str = "float") -> bytes:
    """Full-int8 TFLite except the ops of ``layers`` (Keras layer names), which stay in float.

    For layers that are slower in int8 than in float on the target: measured on this CPU, a 3x3 conv on a
    single-channel input takes about 50 us in int8 and 8 us in float in LiteRT/XNNPACK.

    Example:
        >>> import tf_keras
        >>> inp = tf_keras.Input((8, 8, 1))
        >>> y = tf_keras.layers.Conv2D(4, 3, name="first")(inp)
        >>> out = tf_keras.layers.Dense(2, name="head")(tf_keras.layers.Flatten()(y))
        >>> x = np.random.default_rng(0).uniform(size=(8, 8, 8, 1)).astype("float32")
        >>> data = int8_with_float_layers(tf_keras.Model(inp, out), layers=["first"], calibration=x)
        >>> from edgecnn.exporting.tflite import float_ops
        >>> [op.split(":")[0] for op in float_ops(data)]
        ['CONV_2D']
    """
    calibration = check_inputs(model, calibration, what="calibration")
    search = _Search(model, calibration, io=io)
    return search.quantized(_tensors_of(search, model, layers))
