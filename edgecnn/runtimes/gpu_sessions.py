"""LiteRT's GPU accelerator as a Session (the ``litert-gpu`` row; ONNX Runtime's GPU providers and TensorFlow's
GPU are :class:`~edgecnn.runtimes.onnxruntime.OrtSession` and :class:`~edgecnn.runtimes.keras.KerasSession`
with a provider or device).

Only reached when the row's probe says the runtime is available (it is not on a machine without a GPU); any
failure here becomes the result's ``load failed`` reason, never a crash. The GPU code paths could not be run
on the development machines (no GPU).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgecnn.errors import EdgecnnError


class LiteRTGpuSession:
    """A .tflite on LiteRT's ``CompiledModel`` with the GPU accelerator, refused unless fully accelerated."""

    def __init__(self, source: str | Path | bytes, *, threads: int = 1) -> None:
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator

        data = bytes(source) if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()
        self.model = CompiledModel.from_buffer(data, hardware_accel=HardwareAccelerator.GPU)
        if not self.model.is_fully_accelerated():
            raise EdgecnnError("LiteRT's GPU accelerator did not take the whole model (it would fall back to CPU)")
        details = self.model.get_input_tensor_details(next(iter(self.model.get_signature_list())))
        self._first = next(iter(details.values()))
        self.threads = threads
        self.note = "GPU accelerator; accuracy not evaluated"

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self._first["shape"][1:])

    def invoker(self, *, batch_size: int = 1, seed: int = 0) -> Callable[[], Any]:
        inputs = self.model.create_input_buffers(0)
        outputs = self.model.create_output_buffers(0)
        x = np.random.default_rng(seed).random(tuple(self._first["shape"]), dtype=np.float32)
        inputs[0].write(x)
        model = self.model
        return lambda: model.run_by_index(0, inputs, outputs)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        raise EdgecnnError("accuracy on litert-gpu is not evaluated")
