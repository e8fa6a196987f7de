"""GPU runtimes, detected at run time: each is available or unavailable with the reason, never a crash.

The GPU rows of :data:`edgecnn.runtimes.RUNTIMES` probe through :func:`probe`: ONNX Runtime's CUDA and
TensorRT execution providers, TensorFlow's GPU devices and LiteRT's GPU accelerator. A package that is
missing, a provider not compiled in, or no device present each gives its own reason.
:func:`edgecnn.runtimes.detect` gives a row's answer as a record. (This module imports nothing of
``edgecnn.runtimes``: the table imports it.)

Example:
    >>> r = probe("ort", "TensorrtExecutionProvider")
    >>> r is None or "TensorrtExecutionProvider" in r or "onnxruntime" in r
    True
"""
from __future__ import annotations

import functools
import glob
import importlib.util
import os


def nvidia_device() -> str | None:
    """Why no NVIDIA GPU is visible (None when one is): the kernel driver exposes /dev/nvidia0 and friends."""
    if glob.glob("/dev/nvidia[0-9]*"):
        return None
    return "no NVIDIA GPU device on this machine (/dev/nvidia* absent)"


@functools.lru_cache(maxsize=None)
def probe(kind: str, *args: str) -> str | None:
    """Why a GPU runtime cannot run here (None when it can): ``kind`` is ``ort`` (with the execution
    provider's name), ``tensorflow`` or ``litert``. Never raises for a runtime problem."""
    checks = {"ort": _ort, "tensorflow": _tensorflow, "litert": _litert}
    if kind not in checks:
        raise ValueError(f"probe: Expected one of {', '.join(checks)}. Received: {kind!r}")
    try:
        return checks[kind](*args)
    except Exception as exc:  # noqa: BLE001 - detection must never crash a benchmark
        return f"detection failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _ort(provider: str) -> str | None:
    if importlib.util.find_spec("onnxruntime") is None:
        return "package onnxruntime missing"
    import onnxruntime as ort

    if provider not in ort.get_available_providers():
        return (f"{provider} not in this onnxruntime build (onnxruntime {ort.__version__} has "
                f"{', '.join(ort.get_available_providers())}; install onnxruntime-gpu)")
    return nvidia_device()


def _tensorflow() -> str | None:
    """Without importing TensorFlow when the answer is already clear (no CUDA build, or no device)."""
    spec = importlib.util.find_spec("tensorflow")
    if spec is None:
        return "package tensorflow missing"
    info = os.path.join(os.path.dirname(spec.origin or ""), "python", "platform", "build_info.py")
    try:
        with open(info) as f:
            text = f.read()
        if "('is_cuda_build', False)" in text:
            return "this tensorflow build has no CUDA support (install tensorflow[and-cuda])"
    except OSError:
        pass
    device = nvidia_device()
    if device:
        return f"TensorFlow is built with CUDA, but {device}"
    from edgecnn._tf import import_tensorflow

    import_tensorflow()
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        return "TensorFlow sees no GPU device (CUDA libraries missing? install tensorflow[and-cuda])"
    return None


def _litert() -> str | None:
    if importlib.util.find_spec("ai_edge_litert") is None:
        return "package ai-edge-litert missing"
    import ai_edge_litert

    folder = os.path.dirname(ai_edge_litert.__file__)
    libs = [os.path.basename(p) for p in glob.glob(os.path.join(folder, "libLiteRt*Gpu*Accelerator*.so"))]
    native = [lib for lib in libs if "WebGpu" not in lib]
    if not libs:
        return "ai-edge-litert ships no GPU accelerator library for this platform"
    if not native and not _vulkan_icd():
        return (f"only {', '.join(libs)} (WebGPU over Vulkan) is installed and no Vulkan driver "
                "(ICD) is present: no GPU device")
    device = nvidia_device()
    if device and not glob.glob("/dev/dri/renderD*"):
        return "no GPU device (/dev/dri render nodes and /dev/nvidia* absent)"
    return None


def _vulkan_icd() -> bool:
    return any(glob.glob(os.path.join(d, "*.json")) for d in
               ("/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d", "/usr/local/share/vulkan/icd.d"))
