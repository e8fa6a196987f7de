"""ONNX Runtime session: the CPU execution provider, or a GPU one (CUDA, TensorRT) when a GPU row asks for it."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np

from edgecnn.errors import EdgecnnError, InputFileError, first_line


class OrtSession:
    """Runs a .onnx / .ort file on ONNX Runtime (CPU provider, or ``provider`` with CPU fallback).

    Raises:
        InputFileError: the artifact does not load.
        EdgecnnError: ``provider`` was asked for and did not initialise.
    """

    def __init__(self, path: str | Path | bytes, *, threads: int = 1, provider: Optional[str] = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        providers = ([provider] if provider else []) + ["CPUExecutionProvider"]
        try:
            source = bytes(path) if isinstance(path, (bytes, bytearray)) else str(path)
            self.session = ort.InferenceSession(source, options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            line = first_line(exc)
            raise InputFileError(f"ONNX Runtime cannot load {path if not isinstance(path, bytes) else 'model'}: {line}") from exc
        if provider and provider not in self.session.get_providers():
            raise EdgecnnError(f"{provider} did not initialise (session providers: "
                               f"{', '.join(self.session.get_providers())})")
        self.input_name = self.session.get_inputs()[0].name
        self.threads = threads
        self.note = ""

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One sample's input shape (a symbolic dimension as 1)."""
        return tuple(d if isinstance(d, int) else 1 for d in self.session.get_inputs()[0].shape[1:])

    def invoker(self, *, batch_size: int = 1, seed: int = 0) -> Callable[[], None]:
        """A zero-argument callable: one ``run`` on a fixed random feed of ``batch_size`` samples (an input with a
        fixed batch keeps it)."""
        feed = {}
        for i in self.session.get_inputs():
            shape = [(batch_size if k == 0 else 1) if not isinstance(s, int) else s for k, s in enumerate(i.shape)]
            feed[i.name] = np.random.default_rng(seed).random(shape, dtype=np.float32)
        run = self.session.run
        return lambda: run(None, feed)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Float inputs (N, ...) -> list of float outputs (N, ...)."""
        outs = self.session.run(None, {self.input_name: np.asarray(x, dtype=np.float32)})
        return [np.asarray(o, dtype=np.float32) for o in outs]
