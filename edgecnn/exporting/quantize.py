"""Quantization modes and how each maps to TFLite converter settings and ONNX Runtime quantization.

Example:
    >>> QuantMode.parse("int8")
    <QuantMode.INT8: 'int8'>
    >>> QuantMode.parse("int4")
    Traceback (most recent call last):
    ...
    edgecnn.errors.EdgecnnError: unknown quantization 'int4': Expected one of none, fp16, dynamic, int8, int16x8. Received: 'int4'
    >>> QuantMode.INT8.needs_calibration, QuantMode.NONE.is_float, QuantMode.FP16.is_float
    (True, True, False)
"""
from __future__ import annotations

import enum
import warnings
from typing import Any, Callable, Iterator

import numpy as np

from edgecnn.errors import EdgecnnError


class QuantMode(str, enum.Enum):
    """How weights and activations are stored in an exported artifact."""

    NONE = "none"
    FP16 = "fp16"
    DYNAMIC = "dynamic"
    INT8 = "int8"
    INT16X8 = "int16x8"

    @classmethod
    def parse(cls, value: "str | QuantMode") -> "QuantMode":
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(m.value for m in cls)
            raise EdgecnnError(
                f"unknown quantization {value!r}: Expected one of {names}. Received: {value!r}"
            ) from None

    @property
    def needs_calibration(self) -> bool:
        """Full-integer modes quantize activations and need representative inputs."""
        return self in (QuantMode.INT8, QuantMode.INT16X8)

    @property
    def is_float(self) -> bool:
        """Modes that keep float32 arithmetic: outputs must match Keras within float tolerance."""
        return self is QuantMode.NONE


IO_TYPES = ("float", "int8", "uint8")


class SyntheticCalibrationWarning(UserWarning):
    """Full-integer quantization calibrated on synthetic inputs: accuracy is unverified."""


def synthetic_calibration(input_shape: tuple[int, ...], *, samples: int, seed: int = 0,
                          low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """Uniform random inputs in the model's input range, labelled as synthetic by the caller."""
    rng = np.random.default_rng(seed)
    return rng.uniform(low, high, size=(samples, *input_shape)).astype(np.float32)


def representative_dataset(x: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
    """The generator the TFLite converter calls: one float32 sample at a time, batch 1.

    The converter calls it from C++, which prints the traceback of an exception raised inside: a Ctrl-C that
    lands there ends the calibration instead (:mod:`edgecnn.signals` has recorded it, and the run stops at its
    next check with the one-line message, the stage not checkpointed)."""

    def gen() -> Iterator[list[np.ndarray]]:
        try:
            for sample in x:
                yield [np.asarray(sample[None], dtype=np.float32)]
        except KeyboardInterrupt:
            from edgecnn import signals

            if not signals.interrupted():  # not one that catching_interrupts recorded: keep it
                raise
            return

    return gen


def configure_tflite(converter: Any, *, mode: QuantMode, calibration: np.ndarray | None, io: str) -> None:
    """Set a ``tf.lite.TFLiteConverter`` for ``mode``.

    Args:
        converter: a fresh converter.
        mode: the quantization mode.
        calibration: representative inputs (required for int8 / int16x8).
        io: ``float`` keeps float input/output tensors; ``int8``/``uint8`` make them integer (int8 only).
    """
    import tensorflow as tf

    if io not in IO_TYPES:
        raise EdgecnnError(f"unknown --io {io!r}: Expected one of {', '.join(IO_TYPES)}. Received: {io!r}")
    if io != "float" and mode is not QuantMode.INT8:
        raise EdgecnnError(
            f"--io {io} needs full-integer quantization: Expected --quantize int8. Received: --quantize {mode.value}"
        )
    if mode is QuantMode.NONE:
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode is QuantMode.FP16:
        converter.target_spec.supported_types = [tf.float16]
        return
    if mode is QuantMode.DYNAMIC:
        return
    if calibration is None:
        raise EdgecnnError(f"--quantize {mode.value} needs calibration inputs: Expected --data or synthetic data")
    converter.representative_dataset = representative_dataset(calibration)
    if mode is QuantMode.INT16X8:
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
        return
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if io != "float":
        converter.inference_input_type = tf.int8 if io == "int8" else tf.uint8
        converter.inference_output_type = converter.inference_input_type


def warn_synthetic(mode: QuantMode) -> None:
    warnings.warn(
        f"--quantize {mode.value} without --data: calibrated on synthetic random inputs; accuracy is unverified",
        SyntheticCalibrationWarning,
        stacklevel=2,
    )
