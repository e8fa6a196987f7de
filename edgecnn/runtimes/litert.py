"""LiteRT (ai-edge-litert) interpreter session with XNNPACK, the runtime phones use."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgecnn.errors import InputFileError, first_line


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.floating):
        return x.astype(dtype)
    scale, zero = detail["quantization"]
    if not scale:
        return x.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if np.issubdtype(y.dtype, np.floating):
        return y.astype(np.float32)
    scale, zero = detail["quantization"]
    return ((y.astype(np.float32) - zero) * scale) if scale else y.astype(np.float32)


class LiteRTSession:
    """Runs a .tflite file one sample at a time (batch 1, as on a phone)."""

    def __init__(self, path: str | Path | bytes, *, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        from edgecnn._tf import muted

        try:
            with muted(2):  # LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate" and its own errors
                if isinstance(path, (bytes, bytearray)):
                    self.interpreter = Interpreter(model_content=bytes(path), num_threads=threads)
                else:
                    self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            line = first_line(exc)
            raise InputFileError(f"LiteRT cannot load {path if not isinstance(path, bytes) else 'model'}: {line}") from exc
        self.inputs = self.interpreter.get_input_details()
        self.outputs = self.interpreter.get_output_details()
        self.threads = threads
        self.note = ""

    @property
    def input_dtype(self) -> Any:
        return self.inputs[0]["dtype"]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One sample's input shape."""
        return tuple(int(d) for d in self.inputs[0]["shape"][1:])

    def invoker(self, *, batch_size: int = 1, seed: int = 0) -> Callable[[], None]:
        """A zero-argument callable: one ``invoke`` on a fixed random input of ``batch_size`` samples, set once
        (inputs are resized to it). The session then serves timing only: :meth:`run` expects batch 1."""
        interp = self.interpreter
        if batch_size != 1:
            for d in self.inputs:
                interp.resize_tensor_input(d["index"], [batch_size, *d["shape"][1:]])
            from edgecnn._tf import muted

            with muted(2):
                interp.allocate_tensors()
            self.inputs = interp.get_input_details()
        for d in self.inputs:
            x = np.random.default_rng(seed).random((batch_size, *d["shape"][1:]), dtype=np.float32)
            interp.set_tensor(d["index"], _quantize(x, d))
        return interp.invoke

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Float inputs (N, ...) -> list of float outputs (N, ...), one invoke per sample."""
        results: list[list[np.ndarray]] = [[] for _ in self.outputs]
        for sample in x:
            self.interpreter.set_tensor(self.inputs[0]["index"], _quantize(sample[None], self.inputs[0]))
            self.interpreter.invoke()
            for i, d in enumerate(self.outputs):
                results[i].append(_dequantize(self.interpreter.get_tensor(d["index"]), d))
        return [np.concatenate(r) for r in results]
