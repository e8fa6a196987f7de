"""Shorter tensor names in a .tflite: the same model in fewer bytes.

The TFLite converter names every tensor after the whole chain of TensorFlow ops fused into it
(``mnist_cnn/conv2/Relu;mnist_cnn/conv2/BiasAdd;mnist_cnn/conv2/Conv2D;...``): 0.9 KB of a 435 KB MNIST CNN,
5.2 KB of a 106 KB mini-Xception, more than the TFLite metadata edgecnn adds. Each inner tensor is renamed to
the Keras layer it comes from (``conv2``, ``conv2:1`` for a second tensor of the same layer); the model's input
and output tensors keep their names (signatures and apps refer to them). Nothing else changes: operators,
buffers, quantization, signatures and metadata are untouched, so outputs are bit-identical.

Example:
    >>> shorten("mnist_cnn/conv2/Relu;mnist_cnn/conv2/BiasAdd;mnist_cnn/conv2/Conv2D", "mnist_cnn")
    'conv2'
    >>> shorten("tfl.quantize", "m"), shorten("arith.constant", "m")
    ('quantize', 'constant')
"""
from __future__ import annotations

import re

__all__ = ["shorten", "slim_names"]


def shorten(name: str, model_name: str = "") -> str:
    """A short, readable name for a converter tensor name."""
    first = name.split(";")[0]
    parts = [p for p in first.split("/") if p]
    if model_name and parts and parts[0] == model_name and len(parts) > 1:
        parts = parts[1:]
    if len(parts) > 1:
        return parts[0]
    token = parts[0] if parts else name
    return re.sub(r"^(tfl|arith|stablehlo)\.", "", token)[:32] or "t"


def slim_names(tflite: bytes, *, model_name: str = "") -> bytes:
    """``tflite`` with every inner tensor renamed by :func:`shorten` (made unique); I/O names kept."""
    from tensorflow.lite.tools import flatbuffer_utils

    obj = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite))
    for sg in obj.subgraphs or []:
        keep = set(int(i) for i in list(sg.inputs) + list(sg.outputs))
        used: dict[str, int] = {}
        for i, t in enumerate(sg.tensors or []):
            if i in keep:
                continue
            raw = t.name.decode() if isinstance(t.name, bytes) else str(t.name or "")
            base = shorten(raw, model_name)
            n = used.get(base, 0)
            used[base] = n + 1
            t.name = (base if n == 0 else f"{base}:{n}").encode()
    return bytes(flatbuffer_utils.convert_object_to_bytearray(obj))
