"""ONNX Runtime session (CPU execution provider)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecnn.errors import InputFileError, first_line


class OrtSession:
    """Runs a .onnx / .ort file on ONNX Runtime's CPU provider."""

    def __init__(self, path: str | Path | bytes, *, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            source = bytes(path) if isinstance(path, (bytes, bytearray)) else str(path)
            self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            line = first_line(exc)
            raise InputFileError(f"ONNX Runtime cannot load {path if not isinstance(path, bytes) else 'model'}: {line}") from exc
        self.input_name = self.session.get_inputs()[0].name

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Float inputs (N, ...) -> list of float outputs (N, ...)."""
        outs = self.session.run(None, {self.input_name: np.asarray(x, dtype=np.float32)})
        return [np.asarray(o, dtype=np.float32) for o in outs]
