"""Graph-only SavedModels (no Keras metadata, e.g. Keras 3 ``model.export()``): inspect, run, export.

Such a folder holds TensorFlow graphs, not Keras layers, so edgecnn cannot rewrite or prune it: surgery
stages raise :class:`UnsupportedModelError` and ask for the ``.keras``/``.h5`` file instead. It can be
inspected (MACs per convolution/matmul op of the frozen serving graph) and, in later stages, exported
and benchmarked, since the TFLite converter and tf2onnx take SavedModels directly.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecnn.errors import InputFileError, ShapeMismatchError, UnsupportedModelError, first_line

_CONV_OPS = {"Conv2D", "DepthwiseConv2dNative", "MatMul", "Conv2DBackpropInput", "Conv3D"}


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

    def analyze(self) -> Any:
        """The inspect table, one row per convolution or matmul op of the frozen serving graph."""
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        from edgecnn.analysis import LayerStats, _summarize, conv_macs, depthwise_macs

        shape = [None if d is None else int(d) for d in self.inputs[0].shape][1:]
        if any(d is None for d in shape):
            raise ShapeMismatchError(
                f"the SavedModel input has unknown dimensions {tuple(shape)}: Expected a fixed H,W,C to count "
                "MACs; export the model with a fixed input shape"
            )
        frozen = convert_variables_to_constants_v2(self.function)
        rows = []
        for op in frozen.graph.get_operations():
            if op.type not in _CONV_OPS:
                continue
            out = [None if d is None else int(d) for d in op.outputs[0].shape]
            w = [int(d) for d in op.inputs[1].shape]
            if op.type in ("Conv2D", "Conv3D"):
                macs = conv_macs(out_hw=tuple(out[1:-1]), kernel=tuple(w[:-2]), c_in=w[-2], c_out=w[-1])
            elif op.type == "DepthwiseConv2dNative":
                macs = depthwise_macs(out_hw=tuple(out[1:-1]), kernel=tuple(w[:2]), c_in=w[2], multiplier=w[3])
            elif op.type == "Conv2DBackpropInput":
                inp = [int(d) for d in op.inputs[2].shape]
                macs = inp[1] * inp[2] * inp[3] * w[0] * w[1] * w[2]
            else:
                macs = w[0] * w[1]
            params = 1
            for d in w:
                params *= d
            act = 4
            for d in out[1:]:
                act *= d
            rows.append(LayerStats(op.name, op.type, out, params, macs, act))
        stats = _summarize(self.name, shape, rows, trainable=self.count_params())
        stats.total_params = self.count_params()
        return stats
