"""Runnables for the GPU runtimes that :mod:`edgecnn.runtimes.gpu` found available.

Only reached when detection says a runtime is available (none is on a machine without a GPU); any
failure here becomes the result's ``load failed`` reason, never a crash.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from edgecnn.errors import EdgecnnError

_PROVIDERS = {"onnxruntime-cuda": "CUDAExecutionProvider", "onnxruntime-tensorrt": "TensorrtExecutionProvider"}


def load_gpu(data: bytes, runtime: str, *, threads: int, batch_size: int, seed: int = 0) -> Any:
    """A :class:`edgecnn.bench.targets.Runnable` for ``onnxruntime-cuda``, ``onnxruntime-tensorrt`` or ``litert-gpu``."""
    from edgecnn.bench.targets import Runnable

    if runtime in _PROVIDERS:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        session = ort.InferenceSession(data, options, providers=[_PROVIDERS[runtime], "CPUExecutionProvider"])
        if _PROVIDERS[runtime] not in session.get_providers():
            raise EdgecnnError(f"{_PROVIDERS[runtime]} did not initialise (session providers: "
                               f"{', '.join(session.get_providers())})")
        inp = session.get_inputs()[0]
        shape = [(batch_size if k == 0 else 1) if not isinstance(s, int) else s for k, s in enumerate(inp.shape)]
        x = np.random.default_rng(seed).random(shape, dtype=np.float32)
        run = session.run
        return Runnable(lambda: run(None, {inp.name: x}),
                        lambda xs: np.concatenate([run(None, {inp.name: xs[i:i + 1].astype(np.float32)})[0]
                                                   for i in range(len(xs))]), threads)
    if runtime == "litert-gpu":
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator

        model = CompiledModel.from_buffer(data, hardware_accel=HardwareAccelerator.GPU)
        if not model.is_fully_accelerated():
            raise EdgecnnError("LiteRT's GPU accelerator did not take the whole model (it would fall back to CPU)")
        inputs = model.create_input_buffers(0)
        outputs = model.create_output_buffers(0)
        details = model.get_input_tensor_details(next(iter(model.get_signature_list())))
        first = next(iter(details.values()))
        x = np.random.default_rng(seed).random(tuple(first["shape"]), dtype=np.float32)
        inputs[0].write(x)
        return Runnable(lambda: model.run_by_index(0, inputs, outputs), _no_predict, threads,
                        "GPU accelerator; accuracy not evaluated")
    raise EdgecnnError(f"no GPU session for {runtime!r}")


def _no_predict(x: np.ndarray) -> np.ndarray:
    raise EdgecnnError("accuracy on litert-gpu is not evaluated")
