"""TensorFlow/Keras session: the working model run as one compiled ``tf.function`` (a graph, not eager layers).

Example:
    >>> import numpy as np, tf_keras
    >>> inp = tf_keras.Input((8, 8, 1))
    >>> model = tf_keras.Model(inp, tf_keras.layers.Conv2D(2, 3)(inp))
    >>> session = KerasSession(model)
    >>> session.run(np.zeros((3, 8, 8, 1), np.float32))[0].shape
    (3, 6, 6, 2)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgecnn.errors import InputFileError, first_line


class KerasSession:
    """Runs a working model (or a .h5/.keras file, loaded with :func:`edgecnn.load`) as a traced graph.

    Args:
        source: a tf_keras working model, or a path that :func:`edgecnn.load` reads.
        threads: the intra-op threads asked for. TensorFlow fixes its thread pools when it starts (edgecnn
            starts it with the default: one thread per core), so :attr:`threads` is what runs and
            :attr:`threads_applied` says whether it is what was asked for.
        device: a TensorFlow device string (``"/GPU:0"``) or None for TensorFlow's default placement.

    Raises:
        InputFileError: the path does not load.
    """

    def __init__(self, source: Any, *, threads: int = 1, device: str | None = None) -> None:
        from edgecnn._tf import import_tensorflow

        import_tensorflow()
        import tensorflow as tf

        self.threads = tf_threads()
        self.threads_applied = threads == self.threads
        if isinstance(source, (str, Path)):
            import edgecnn.io as edgecnn_io

            try:
                source = edgecnn_io.load(source)
            except InputFileError:
                raise
            except Exception as exc:  # noqa: BLE001 - a foreign loader error becomes one typed line
                raise InputFileError(f"Keras cannot load {source}: {first_line(exc)}") from exc
        self.model = source
        self.device = device
        specs = [tf.TensorSpec([None, *[int(d) for d in t.shape[1:]]], tf.float32) for t in source.inputs]
        model = source

        @tf.function(input_signature=specs, reduce_retracing=True)
        def serve(*xs: Any) -> Any:
            return model(list(xs) if len(xs) > 1 else xs[0], training=False)

        self._fn = serve
        self._tf = tf
        self.note = "" if self.threads_applied else (
            f"TensorFlow's thread pool is fixed per process at {self.threads} threads")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One sample's input shape."""
        return tuple(int(d) for d in self.model.inputs[0].shape[1:])

    def _call(self, x: Any) -> list[np.ndarray]:
        if self.device:
            with self._tf.device(self.device):
                out = self._fn(x)
        else:
            out = self._fn(x)
        outs = out if isinstance(out, (list, tuple)) else [out]
        return [np.asarray(o.numpy(), dtype=np.float32) for o in outs]

    def run(self, x: np.ndarray, *, batch_size: int = 64) -> list[np.ndarray]:
        """Float inputs (N, ...) -> list of float outputs (N, ...), in batches of ``batch_size``."""
        x = np.asarray(x, dtype=np.float32)
        parts = [self._call(self._tf.constant(x[i:i + batch_size])) for i in range(0, len(x), batch_size)]
        return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]

    def invoker(self, *, batch_size: int = 1, seed: int = 0) -> Callable[[], None]:
        """A zero-argument callable: one inference on a fixed random batch, waiting for the result."""
        shape = (batch_size, *[int(d) for d in self.model.inputs[0].shape[1:]])
        x = self._tf.constant(np.random.default_rng(seed).random(shape, dtype=np.float32))
        fn, device, tf = self._fn, self.device, self._tf

        def run() -> None:
            if device:
                with tf.device(device):
                    out = fn(x)
            else:
                out = fn(x)
            (out[0] if isinstance(out, (list, tuple)) else out).numpy()  # wait for the value

        return run


def tf_threads() -> int:
    """TensorFlow's intra-op thread count in this process (its default, 0, resolved to the number of cores)."""
    import os

    import tensorflow as tf

    n = tf.config.threading.get_intra_op_parallelism_threads()
    return n or len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (n or os.cpu_count() or 1)


def keras_outputs(model: Any, x: np.ndarray, *, batch: int | None = None) -> list[np.ndarray]:
    """The Keras model's outputs on ``x`` as a list of float arrays, ``batch`` inputs at a time (default: up to
    64, fewer when the model's largest activation would hold over 512 MB in a batch, e.g. ResNet50 at 224 px)."""
    if batch is None:
        from edgecnn.graph import largest_tensor

        per_sample = 4 * 8 * largest_tensor(model)[1]  # bytes: a few tensors of the largest size alive at once
        batch = int(max(1, min(64, (512 * 2**20) // max(per_sample, 1))))
    parts: list[list[np.ndarray]] = []
    for start in range(0, len(x), batch):
        out = model(x[start:start + batch], training=False)
        out = out if isinstance(out, (list, tuple)) else [out]
        parts.append([np.asarray(o, dtype=np.float32) for o in out])
    return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]
