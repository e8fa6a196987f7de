"""The range a model's inputs live in, inferred from the model when no data says it.

Synthesized calibration inputs, and the int8 input quantizer, must cover what the model was trained on: a
model that expects [-1, 1] but is calibrated on [0, 1) clamps every negative pixel. In order:

1. ``--input-range LO,HI`` (``override``) wins;
2. a Rescaling or Normalization layer right after the input says it: the raw range among [0, 1], [0, 255] and
   [-1, 1] that the layer maps closest to [0, 1] or [-1, 1] (or to zero mean and unit-ish spread);
3. TFLite metadata beside the model file (``<stem>.tflite`` with NormalizationOptions): ``(0 - mean) / std``
   to ``(255 - mean) / std``;
4. the first BatchNormalization after the first convolution: its moving mean and variance are what the
   training images produced, so the input's mean and spread follow from the conv's kernel (least squares over
   the output channels, pixels assumed strongly correlated within a kernel window); of the standard ranges,
   the one that leaves the least of a normal with that mean and spread outside (weight 2) and whose width
   fits the spread best (a spread of about 0.3 of the width) is taken;
5. else [0, 1], edgecnn's convention for image inputs (pixels / 255), said to be an assumption.

Example:
    >>> import tf_keras
    >>> inp = tf_keras.Input((8, 8, 3))
    >>> x = tf_keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="rescaling")(inp)
    >>> m = tf_keras.Model(inp, tf_keras.layers.Conv2D(2, 3)(x))
    >>> r = infer_input_range(m)
    >>> r.low, r.high, r.source
    (0.0, 255.0, "Rescaling layer 'rescaling' (scale 0.00784, offset -1): raw pixels 0..255")
    >>> infer_input_range(m, override="-1,1").as_tuple(), parse_range("-1,1")
    ((-1.0, 1.0), (-1.0, 1.0))
    >>> parse_range("1,0")
    Traceback (most recent call last):
    ...
    edgecnn.errors.EdgecnnError: --input-range: Expected LO,HI with LO < HI (e.g. -1,1). Received: '1,0'
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from edgecnn.errors import EdgecnnError
from edgecnn.graph import producer

__all__ = ["InputRange", "STANDARD_RANGES", "infer_input_range", "parse_range"]

STANDARD_RANGES: tuple[tuple[float, float], ...] = ((0.0, 1.0), (-1.0, 1.0), (0.0, 255.0))
DEFAULT = (0.0, 1.0)
PIXEL_CORRELATION = 0.9  # neighbouring pixels of real images, within a 3x3 window


@dataclass(frozen=True)
class InputRange:
    """``low``..``high`` and where that came from (a sentence for the report)."""

    low: float
    high: float
    source: str
    assumed: bool = False

    def as_tuple(self) -> tuple[float, float]:
        return (self.low, self.high)

    def describe(self) -> dict:
        return {"low": self.low, "high": self.high, "source": self.source, "assumed": self.assumed}

    def normalization(self) -> tuple[float, float]:
        """The TFLite metadata (mean, std) that maps 0..255 pixels onto this range: ``(pixel - mean) / std``.

        >>> InputRange(-1.0, 1.0, "").normalization(), InputRange(0.0, 1.0, "").normalization()
        ((127.5, 127.5), (0.0, 255.0))
        """
        std = 255.0 / (self.high - self.low)
        return (round(-self.low * std, 6) + 0.0, round(std, 6))


def parse_range(value: Any) -> tuple[float, float]:
    """``"LO,HI"`` or a pair of numbers -> ``(lo, hi)``; raises EdgecnnError unless finite and lo < hi."""
    try:
        parts = value.split(",") if isinstance(value, str) else list(value)
        lo, hi = (float(p) for p in parts)
    except (TypeError, ValueError):
        lo = hi = float("nan")
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise EdgecnnError(f"--input-range: Expected LO,HI with LO < HI (e.g. -1,1). Received: {value!r}")
    return lo, hi


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def infer_input_range(model: Any, *, override: Any = None, source: Optional[str] = None) -> InputRange:
    """Where the model's inputs live (see the module docstring for the order of the rules).

    Args:
        model: the working model (tf_keras, one image input).
        override: ``"LO,HI"`` or ``(lo, hi)``; None or empty to infer.
        source: the model file, to look for TFLite metadata beside it.
    """
    if override is not None and not (isinstance(override, (list, tuple)) and len(override) == 0) and override != "":
        lo, hi = parse_range(override)
        return InputRange(lo, hi, "given (--input-range)")
    first = _first_layers(model)
    for layer in first:
        found = _from_preprocessing(layer)
        if found is not None:
            return found
    if source:
        found = _from_tflite_metadata(Path(source))
        if found is not None:
            return found
    found = _from_first_batchnorm(model, first)
    if found is not None:
        return found
    return InputRange(*DEFAULT, "assumed: edgecnn's default for image inputs (pixels / 255); pass --input-range "
                                "LO,HI if the model expects another range", assumed=True)


def _first_layers(model: Any) -> list:
    """The chain of layers from the input while each has one consumer (stops at the first branch)."""
    from edgecnn.graph import ModelGraph

    graph = ModelGraph(model)
    name = producer(model.inputs[0]).name
    chain = []
    for _ in range(8):
        nxt = graph.consumers(name)
        if len(nxt) != 1:
            break
        name = nxt[0]
        chain.append(model.get_layer(name))
    return chain


def _closest(mapped: dict[tuple[float, float], float]) -> tuple[float, float]:
    return min(mapped, key=lambda r: mapped[r])


def _from_preprocessing(layer: Any) -> Optional[InputRange]:
    cls = type(layer).__name__
    if cls == "Rescaling":
        scale = float(np.mean(np.asarray(layer.scale, dtype=np.float64)))
        offset = float(np.mean(np.asarray(layer.offset, dtype=np.float64)))
        targets = ((0.0, 1.0), (-1.0, 1.0))
        cost = {r: min(abs(scale * r[0] + offset - t[0]) + abs(scale * r[1] + offset - t[1]) for t in targets)
                for r in STANDARD_RANGES}
        lo, hi = _closest(cost)
        return InputRange(lo, hi, f"Rescaling layer '{layer.name}' (scale {_fmt(scale)}, offset {_fmt(offset)}): "
                                  f"raw pixels {_fmt(lo)}..{_fmt(hi)}")
    if cls == "Normalization":
        mean = np.asarray(getattr(layer, "mean", 0.0), dtype=np.float64).ravel()
        var = np.asarray(getattr(layer, "variance", 1.0), dtype=np.float64).ravel()
        mu, sd = float(np.mean(mean)), float(np.sqrt(np.mean(var)))
        cost = {r: abs((r[0] + r[1]) / 2 - mu) / max(sd, 1e-12) + abs(np.log((r[1] - r[0]) / (4 * max(sd, 1e-12))))
                for r in STANDARD_RANGES}
        lo, hi = _closest(cost)
        return InputRange(lo, hi, f"Normalization layer '{layer.name}' (mean {_fmt(mu)}, std {_fmt(sd)}): "
                                  f"raw inputs {_fmt(lo)}..{_fmt(hi)}")
    return None


def _from_tflite_metadata(path: Path) -> Optional[InputRange]:
    candidate = path.with_suffix(".tflite") if path.is_file() else None
    if candidate is None or not candidate.is_file():
        return None
    from edgecnn.errors import EdgecnnError as _E
    from edgecnn.exporting.metadata import read_metadata

    try:
        inputs = read_metadata(candidate.read_bytes()).get("inputs") or []
    except (_E, ValueError, OSError):
        return None
    mean, std = (inputs[0].get("mean"), inputs[0].get("std")) if inputs else (None, None)
    if not mean or not std or min(std) <= 0:
        return None
    m, s = float(np.mean(mean)), float(np.mean(std))
    return InputRange((0.0 - m) / s, (255.0 - m) / s, f"TFLite metadata of {candidate.name} (mean {_fmt(m)}, "
                                                      f"std {_fmt(s)} on 0..255 pixels)")


def _from_first_batchnorm(model: Any, first: Sequence[Any]) -> Optional[InputRange]:
    """Mean and spread of the input from the first conv + BatchNorm (see rule 4)."""
    conv = None
    for i, layer in enumerate(first):
        cls = type(layer).__name__
        if cls in ("ZeroPadding2D", "InputLayer"):
            continue
        if cls in ("Conv2D", "DepthwiseConv2D") and i + 1 < len(first) and \
                "BatchNormalization" in type(first[i + 1]).__name__:
            conv, bn = layer, first[i + 1]
        break
    if conv is None:
        return None
    linear = getattr(getattr(conv, "activation", None), "__name__", "linear") == "linear"
    if not linear:
        return None
    w = conv.get_weights()
    kernel = np.asarray(w[0], dtype=np.float64)
    bias = np.asarray(w[1], dtype=np.float64) if conv.use_bias else 0.0
    if type(conv).__name__ == "DepthwiseConv2D":
        kernel = kernel.reshape(*kernel.shape[:2], kernel.shape[2], -1)
        per_out = kernel.sum(axis=(0, 1)).reshape(-1)  # output channel c*m gets only input channel c
        channels = kernel.shape[2]
        a = np.zeros((per_out.size, channels))
        for c in range(channels):
            a[c * kernel.shape[3]:(c + 1) * kernel.shape[3], c] = kernel[:, :, c, :].sum(axis=(0, 1))
        sums = per_out
        squares = (kernel ** 2).sum(axis=(0, 1)).reshape(-1)
    else:
        a = kernel.sum(axis=(0, 1)).T  # (out, in): the conv's response to a constant image per input channel
        sums = kernel.sum(axis=(0, 1, 2))
        squares = (kernel ** 2).sum(axis=(0, 1, 2))
    moving_mean = np.asarray(bn.moving_mean, dtype=np.float64)
    moving_var = np.asarray(bn.moving_variance, dtype=np.float64)
    mu = np.linalg.lstsq(a, moving_mean - bias, rcond=None)[0]
    mean = float(np.mean(mu))
    rho = PIXEL_CORRELATION
    gain = rho * sums ** 2 + (1 - rho) * squares
    ok = gain > 1e-12 * max(float(gain.max()), 1e-30)
    if not np.any(ok):
        return None
    sd = float(np.sqrt(max(np.median(moving_var[ok] / gain[ok]), 0.0)))

    def cost(r: tuple[float, float]) -> float:
        # the share of N(mean, sd) outside the range, and how far the spread is from a typical 0.3 of its width
        from math import erf, sqrt

        spread = max(sd, 1e-12)
        below = 0.5 * (1 + erf((r[0] - mean) / (spread * sqrt(2))))
        above = 0.5 * (1 - erf((r[1] - mean) / (spread * sqrt(2))))
        return 2.0 * (below + above) + abs(np.log(spread / (0.3 * (r[1] - r[0]))))

    lo, hi = min(STANDARD_RANGES, key=cost)
    return InputRange(lo, hi, f"statistics of the first BatchNorm '{bn.name}' after '{conv.name}': inputs with mean "
                              f"{_fmt(mean)} and spread {_fmt(sd)} fit {_fmt(lo)}..{_fmt(hi)}")
