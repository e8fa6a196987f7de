"""The reference model every benchmark measures alongside the user's models, for machine-independent ratios.

A small fixed CNN (32x32x3 input; strided conv, depthwise-separable block, 3x3 conv, global pooling, dense),
built in code with seeded weights, so every install has the same one: :data:`REFERENCE_ID` names its
version. Its LiteRT and ONNX artifacts ship with the package (``reference.tflite``, ``reference.onnx``;
``python -m edgecnn.benchmarking.reference`` rewrites them), so benchmarking artifacts needs no TensorFlow. Its
time is measured on every (runtime, threads) in the same interleaved rounds as the models, and a model's
``ratio_to_reference`` divides by it. A CI machine twice as slow makes both slower alike; the ratio stays
(see docs/ci-latency-gate.md).

Example:
    >>> m = reference_model()
    >>> m.name, tuple(m.inputs[0].shape[1:]), m.count_params()
    ('edgecnn_reference', (32, 32, 3), 10730)
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

REFERENCE_NAME = "edgecnn-reference"
REFERENCE_ID = "edgecnn-reference-v1 (32x32x3 CNN, 10,730 params, seeded weights)"


def reference_model() -> Any:
    """The reference tf_keras model (deterministic weights)."""
    from edgecnn._tf import import_tensorflow

    import_tensorflow()
    import tf_keras as k

    inp = k.Input((32, 32, 3), name="image")
    x = k.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="stem")(inp)
    x = k.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")(x)
    x = k.layers.Conv2D(32, 1, activation="relu", name="pw")(x)
    x = k.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="conv")(x)
    x = k.layers.GlobalAveragePooling2D(name="gap")(x)
    out = k.layers.Dense(10, name="logits")(x)
    model = k.Model(inp, out, name="edgecnn_reference")
    rng = np.random.default_rng(20240601)
    model.set_weights([rng.normal(0, 0.2, w.shape).astype(np.float32) for w in model.get_weights()])
    return model


def _files() -> dict[str, str]:
    """CPU runtime with an export format -> the shipped file of its artifact (``reference.tflite`` ...)."""
    from edgecnn.runtimes import CONVERT_RUNTIMES, RUNTIMES

    return {rt: f"reference{RUNTIMES[rt].suffixes[0]}" for rt in CONVERT_RUNTIMES}


@functools.lru_cache(maxsize=8)
def reference_artifact(runtime: str) -> bytes:
    """The shipped reference artifact (plain fp32 conversion) of a CPU runtime with an export format, or of
    the CPU runtime a GPU row runs the artifact of."""
    from edgecnn.runtimes import RUNTIMES

    return (Path(__file__).parent / _files()[RUNTIMES[runtime].base]).read_bytes()


def write_artifacts() -> list[Path]:
    """Convert the reference model and write the shipped artifacts (run when the reference changes)."""
    from edgecnn.files import write_atomic
    from edgecnn.exporting.convert import convert

    model = reference_model()
    return [write_atomic(Path(__file__).parent / name, convert(model, runtime=rt, quantize="none"))
            for rt, name in _files().items()]


if __name__ == "__main__":  # pragma: no cover
    for path in write_artifacts():
        print(f"wrote {path} ({path.stat().st_size} bytes)")
