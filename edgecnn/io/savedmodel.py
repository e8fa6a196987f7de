"""Graph-only SavedModels (no Keras metadata, e.g. Keras 3 ``model.export()``): inspect, run, export.

Such a folder holds TensorFlow graphs, not Keras layers, so edgecnn cannot rewrite or prune it: surgery
stages raise :class:`UnsupportedModelError` and ask for the ``.keras``/``.h5`` file instead. It can be
inspected (MACs per convolution/matmul op of the frozen serving graph) and, in later stages, exported
and benchmarked, since the TFLite converter and tf2onnx take SavedModels directly.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecnn.errors import InputFileError, UnsupportedModelError, first_line



class GraphModel:
    """The serving signature of a SavedModel without Keras metadata."""

    def __init__(self, path: Path, loaded: Any, function: Any) -> None:
        self.path = path
        self.name = path.name
        self._loaded = loaded  # keeps the variables alive
        self.function = function
        specs = function.structured_input_signature[1]
        self.input_names = sorted(specs)
        self.inputs = [specs[k] for k in self.input_names]
        self.outputs = list(function.structured_outputs.values())

    @classmethod
    def load(cls, path: Path) -> "GraphModel":
        """Load ``path`` with ``tf.saved_model.load`` (graph ops only; no Python code from the folder runs)."""
        import tensorflow as tf

        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as exc:
            line = first_line(exc)
            raise InputFileError(f"{path} is not a loadable SavedModel: {line}") from exc
        sigs = dict(getattr(loaded, "signatures", {}) or {})
        if not sigs:
            raise InputFileError(f"{path}: the SavedModel has no serving signature to run")
        fn = sigs.get("serving_default") or sigs[sorted(sigs)[0]]
        return cls(path, loaded, fn)

    def count_params(self) -> int:
        """Number of weights held in the signature's variables."""
        return int(sum(v.shape.num_elements() for v in self.function.variables))

    def with_input_shape(self, shape: tuple[int, ...]) -> "GraphModel":
        raise UnsupportedModelError(
            f"--input-shape cannot re-trace a graph-only SavedModel ({self.path}): Expected a Keras "
            f"file for a new input shape. Received: {shape}"
        )

    def __call__(self, x: Any, training: bool = False) -> Any:
        arrays = x if isinstance(x, (list, tuple)) else [x]
        out = self.function(**dict(zip(self.input_names, arrays)))
        return [out[k] for k in sorted(out)] if len(out) > 1 else next(iter(out.values()))
