"""The one table of runtimes: ``RUNTIMES[name]`` -> a :class:`Runtime` row; ``row.load(source, threads=...)``.

Each row says what the runtime runs (artifact suffixes and export format, or the working model itself), whether
it can run here (``row.probe()``: None, or the reason it cannot), which CPU runtime's artifact it runs
(``base``), and what it can do. Every other list of runtime names in edgecnn derives from this table, and no
caller tests a runtime by name: it reads the row's fields.

A Session (what ``load`` returns) has ``run(x)`` (float inputs (N, ...) -> list of float outputs; integer
tensors are (de)quantized with their own scale and zero point, so every runtime is compared on the same
footing), ``invoker(batch_size=..., seed=...)`` (a zero-argument callable: one inference on a fixed random
input, for timing), ``input_shape`` (one sample's shape), ``threads`` (what runs) and ``note``.

Example:
    >>> CPU_RUNTIMES, GPU_RUNTIMES
    (('keras', 'litert', 'onnxruntime'), ('onnxruntime-cuda', 'onnxruntime-tensorrt', 'tensorflow-gpu', 'litert-gpu'))
    >>> runtime_for("model.tflite"), runtime_for("model.onnx"), artifact_runtime(".ort")
    ('litert', 'onnxruntime', 'onnxruntime')
    >>> RUNTIMES["litert-gpu"].base, RUNTIMES["litert"].format, RUNTIMES["keras"].format
    ('litert', 'tflite', None)
    >>> for_format("onnx").name, CONVERT_RUNTIMES
    ('onnxruntime', ('litert', 'onnxruntime'))
    >>> g = detect("onnxruntime-tensorrt")
    >>> g.name, isinstance(g.available, bool), bool(g.available or g.reason)
    ('onnxruntime-tensorrt', True, True)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from edgecnn.errors import EdgecnnError


@dataclass(frozen=True)
class Runtime:
    """One runtime.

    Attributes:
        name: what ``--runtime`` calls it.
        suffixes: artifact file suffixes it runs (the working model's for ``keras``).
        format: the export format of its artifact (``tflite``, ``onnx``), None when it runs the working model.
        load: ``load(source, *, threads=1) -> Session``; source is artifact bytes or a path (or the working
            model when ``format`` is None).
        probe: ``probe() -> None`` when it can run here, else the reason it cannot (never raises).
        base: the CPU runtime whose artifact (or working model) it runs (itself for a CPU runtime).
        device: ``cpu`` or ``gpu``.
        process_threads: the thread pool is fixed per process (TensorFlow), so one thread count is measured.
        per_op_precision: its converter can keep chosen ops in float inside an int8 artifact
            (:func:`edgecnn.exporting.budget.int8_with_float_layers`): the planner's precision candidates and the
            data-free path need it.
    """

    name: str
    suffixes: tuple[str, ...]
    format: Optional[str]
    load: Callable[..., Any]
    probe: Callable[[], Optional[str]]
    base: str
    device: str = "cpu"
    process_threads: bool = False
    per_op_precision: bool = False

    def reason(self) -> Optional[str]:
        """None when this runtime can run here, else why not (cached per process for GPU rows)."""
        return self.probe()

    @property
    def available(self) -> bool:
        return self.reason() is None


def _litert(source: Any, *, threads: int = 1) -> Any:
    from edgecnn.runtimes.litert import LiteRTSession

    return LiteRTSession(source, threads=threads)


def _ort(source: Any, *, threads: int = 1) -> Any:
    from edgecnn.runtimes.onnxruntime import OrtSession

    return OrtSession(source, threads=threads)


def _keras(source: Any, *, threads: int = 1) -> Any:
    from edgecnn.runtimes.keras import KerasSession

    return KerasSession(source, threads=threads)


def _ort_gpu(provider: str) -> Callable[..., Any]:
    def load(source: Any, *, threads: int = 1) -> Any:
        from edgecnn.runtimes.onnxruntime import OrtSession

        return OrtSession(source, threads=threads, provider=provider)

    return load


def _tf_gpu(source: Any, *, threads: int = 1) -> Any:
    from edgecnn.runtimes.keras import KerasSession

    return KerasSession(source, threads=threads, device="/GPU:0")


def _litert_gpu(source: Any, *, threads: int = 1) -> Any:
    from edgecnn.runtimes.gpu_sessions import LiteRTGpuSession

    return LiteRTGpuSession(source, threads=threads)


def _here() -> Optional[str]:
    return None  # the CPU runtimes are dependencies of edgecnn


def _probe(kind: str, *args: str) -> Callable[[], Optional[str]]:
    def probe() -> Optional[str]:
        from edgecnn.runtimes import gpu

        return gpu.probe(kind, *args)

    return probe


_ROWS = (
    Runtime("keras", (".h5", ".hdf5", ".keras"), None, _keras, _here, "keras", process_threads=True),
    Runtime("litert", (".tflite",), "tflite", _litert, _here, "litert", per_op_precision=True),
    Runtime("onnxruntime", (".onnx", ".ort"), "onnx", _ort, _here, "onnxruntime"),
    Runtime("onnxruntime-cuda", (), "onnx", _ort_gpu("CUDAExecutionProvider"),
            _probe("ort", "CUDAExecutionProvider"), "onnxruntime", device="gpu"),
    Runtime("onnxruntime-tensorrt", (), "onnx", _ort_gpu("TensorrtExecutionProvider"),
            _probe("ort", "TensorrtExecutionProvider"), "onnxruntime", device="gpu"),
    Runtime("tensorflow-gpu", (), None, _tf_gpu, _probe("tensorflow"), "keras", device="gpu", process_threads=True),
    Runtime("litert-gpu", (), "tflite", _litert_gpu, _probe("litert"), "litert", device="gpu"),
)
RUNTIMES: dict[str, Runtime] = {r.name: r for r in _ROWS}
CPU_RUNTIMES = tuple(r.name for r in _ROWS if r.device == "cpu")
GPU_RUNTIMES = tuple(r.name for r in _ROWS if r.device == "gpu")
# The CPU runtimes a working model is converted for (each runs one export format).
CONVERT_RUNTIMES = tuple(r.name for r in _ROWS if r.device == "cpu" and r.format is not None)


def get_runtime(name: str) -> Runtime:
    """The row called ``name``.

    Raises:
        EdgecnnError: no such runtime.
    """
    if name not in RUNTIMES:
        raise EdgecnnError(f"unknown runtime {name!r}: Expected one of {', '.join(RUNTIMES)}. Received: {name!r}")
    return RUNTIMES[name]


def for_format(fmt: str) -> Runtime:
    """The CPU runtime that runs export format ``fmt`` (``tflite`` -> litert, ``onnx`` -> onnxruntime)."""
    for r in _ROWS:
        if r.device == "cpu" and r.format == fmt:
            return r
    raise EdgecnnError(f"no runtime runs format {fmt!r}: Expected one of "
                       f"{', '.join(RUNTIMES[n].format for n in CONVERT_RUNTIMES)}. Received: {fmt!r}")


def artifact_runtime(suffix: str) -> Optional[str]:
    """The CPU runtime that runs an artifact with this suffix (None: not an artifact suffix)."""
    for r in _ROWS:
        if r.device == "cpu" and r.format is not None and suffix.lower() in r.suffixes:
            return r.name
    return None


def runtime_for(path: str | Path) -> str:
    """The CPU runtime that runs a file, by suffix.

    Raises:
        EdgecnnError: a suffix no runtime runs.
    """
    suffix = Path(path).suffix.lower()
    for r in _ROWS:
        if r.device == "cpu" and suffix in r.suffixes:
            return r.name
    known = ", ".join(s for r in _ROWS for s in r.suffixes)
    raise EdgecnnError(f"no runtime runs {Path(path).name}: Expected one of {known}. Received: {suffix!r}")


@dataclass(frozen=True)
class GpuRuntime:
    """Whether a GPU runtime can run here, and why not."""

    name: str
    available: bool
    reason: str  # why unavailable ("" when available)

    def as_dict(self) -> dict:
        return {"runtime": self.name, "available": self.available, "reason": self.reason}


def detect(name: str) -> GpuRuntime:
    """A GPU row's availability as a record (one of :data:`GPU_RUNTIMES`)."""
    if name not in GPU_RUNTIMES:
        raise ValueError(f"detect: Expected one of {', '.join(GPU_RUNTIMES)}. Received: {name!r}")
    reason = RUNTIMES[name].reason()
    return GpuRuntime(name, reason is None, reason or "")


def detect_all() -> list[GpuRuntime]:
    """Every GPU runtime, in :data:`GPU_RUNTIMES` order."""
    return [detect(n) for n in GPU_RUNTIMES]
