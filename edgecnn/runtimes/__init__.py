"""Runtimes behind one surface: ``RUNTIMES[name].load(path, threads=...) -> Session``; ``Session.run(x)``.

A Session takes and returns float arrays whatever the artifact's tensor types: integer inputs and outputs
are (de)quantized with the tensor's own scale and zero point, so every runtime is compared on the same
footing.

Example:
    >>> sorted(RUNTIMES)
    ['keras', 'litert', 'onnxruntime']
    >>> runtime_for("model.tflite"), runtime_for("model.onnx")
    ('litert', 'onnxruntime')
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edgecnn.errors import EdgecnnError


@dataclass(frozen=True)
class Runtime:
    """One runtime adapter."""

    name: str
    suffixes: tuple[str, ...]
    load: Callable[..., Any]


def _litert(path: Any, *, threads: int = 1) -> Any:
    from edgecnn.runtimes.litert import LiteRTSession

    return LiteRTSession(path, threads=threads)


def _ort(path: Any, *, threads: int = 1) -> Any:
    from edgecnn.runtimes.onnxruntime import OrtSession

    return OrtSession(path, threads=threads)


def _keras(source: Any, *, threads: int = 1) -> Any:
    from edgecnn.runtimes.keras import KerasSession

    return KerasSession(source, threads=threads)


RUNTIMES: dict[str, Runtime] = {
    "keras": Runtime("keras", (".h5", ".keras"), _keras),
    "litert": Runtime("litert", (".tflite",), _litert),
    "onnxruntime": Runtime("onnxruntime", (".onnx", ".ort"), _ort),
}


def runtime_for(path: str | Path) -> str:
    """The runtime that runs an artifact, by suffix."""
    suffix = Path(path).suffix.lower()
    for rt in RUNTIMES.values():
        if suffix in rt.suffixes:
            return rt.name
    raise EdgecnnError(f"no runtime runs {Path(path).name}: Expected .h5, .keras, .tflite, .onnx or .ort. "
                       f"Received: {suffix!r}")
