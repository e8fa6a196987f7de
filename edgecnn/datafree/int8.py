"""The full-int8 candidates of a data-free plan: one calibration shared by every int8 variant.

For each int8 kind (per-channel or per-tensor weights) the variants are:

1. the equalized model with bias correction (``"equalization and bias correction"``; ``"bias correction"``
   when nothing was equalized);
2. the equalized model as calibrated (``"equalization"``; ``"neither"`` when nothing was equalized);
3. with ``compare_steps`` and enough held-out inputs, the original model, calibrated too (``"neither"``).

Variants 1 and 2 of both kinds come from ONE calibration (a conversion and a calibration pass: 20-30 s for a
ResNet50 at 224 px): the corrections are written into its float biases (:mod:`edgecnn.datafree.patch`), and
quantizing takes a fraction of a second. A layer whose op cannot be identified there goes uncorrected, listed in
``details["bias_not_placed"]``; when that is most of them, the corrected Keras model is calibrated instead.
Which variant is kept:

- with at least ``MIN_HOLD`` synthesized inputs beyond the ``calibration_samples`` that calibration and bias
  correction used: the one with the highest output SNR on those held-out inputs (``details["steps"]``);
- else the first, unless it is larger than ``max_bytes`` (the plain conversion) and the second is not: each
  corrected bias is stored on its own, and the zero biases of an untrained model, which the converter stores
  once, then cost 0.4% of a ResNet50's file (docs/scale.md).

Example:
    >>> import numpy as np, tf_keras
    >>> inp = tf_keras.Input((8, 8, 1))
    >>> y = tf_keras.layers.BatchNormalization()(tf_keras.layers.Conv2D(4, 3, use_bias=False)(inp))
    >>> m = tf_keras.Model(inp, tf_keras.layers.Dense(3)(tf_keras.layers.Flatten()(tf_keras.layers.ReLU()(y))))
    >>> x = np.random.default_rng(0).uniform(0, 1, size=(48, 8, 8, 1)).astype("float32")
    >>> cal = Calibrations(original=m, equalized=m, x=x[:16], input_range=(0.0, 1.0))
    >>> ref = m.predict(x, verbose=0)
    >>> details = {}
    >>> v = build_int8(cal, kind="int8", x=x, reference=ref, calibration_samples=16, details=details)
    >>> steps = details["steps"]["int8"]   # both variants from one calibration, judged on 32 held-out inputs
    >>> sorted(steps["snr_db"]), steps["kept"] == v.label, cal.calibrations, "bias_not_placed" in details
    (['bias correction', 'neither'], True, 1, False)
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np

__all__ = ["Calibrations", "Int8Variant", "MIN_CALIBRATION", "MIN_HOLD", "build_int8", "calibration_split"]

MIN_HOLD = 32  # synthesized inputs held out from calibration to judge equalization and bias correction
MIN_CALIBRATION = 48  # fewest inputs calibrated on so that MIN_HOLD others can judge (the ranges' histograms take 64)


def calibration_split(total: int, wanted: int, *, compare_steps: bool = True) -> int:
    """How many of ``total`` synthesized inputs calibrate: ``wanted``, or, when that would leave fewer than
    :data:`MIN_HOLD` to judge equalization and bias correction by, ``total - MIN_HOLD`` as long as that is at
    least :data:`MIN_CALIBRATION`. A MobileNetV2 0.35 at 96 px gets 201 synthesized inputs within its time
    budget: calibrated on 200, equalization + bias correction shipped unjudged (their gain over plain PTQ on real
    digits ranged from -1.9 to +1.5 dB between runs, docs/data_free.md and its history); 169 + 32 judge them.

    >>> calibration_split(256, 200), calibration_split(201, 200), calibration_split(79, 200)
    (200, 169, 79)
    >>> calibration_split(201, 200, compare_steps=False)
    200
    """
    wanted = min(int(wanted), int(total))
    if not compare_steps or total - wanted >= MIN_HOLD or total - MIN_HOLD < MIN_CALIBRATION:
        return wanted
    return int(total) - MIN_HOLD


class Calibrations:
    """The calibrated int8 builders of one plan, made when first needed and shared by the int8 kinds."""

    def __init__(self, *, original: Any, equalized: Any, x: np.ndarray, input_range: Sequence[float],
                 ranges: str = "mse", per_channel: Sequence[bool] = (True, False),
                 batchnorm_sigmas: float = 0.0) -> None:
        self.original, self.equalized, self.x = original, equalized, x
        self.batchnorm_sigmas = float(batchnorm_sigmas)  # edgecnn.datafree.bnranges: 0 = ranges from x alone
        self.input_range, self.ranges = tuple(float(v) for v in input_range), ranges
        self.per_channel = tuple(per_channel)  # the int8 kinds the plan builds (their bias corrections are shared)
        self._builders: dict[str, Any] = {}
        self._corrections: dict[bool, tuple[dict, list]] = {}
        self.calibrations = 0  # conversions made
        self.seconds = 0.0  # the last one's

    def builder(self, key: str, model: Optional[Any] = None) -> Any:
        """The builder of ``key`` (``"equalized"``, ``"original"``, or a name for ``model``), calibrated once."""
        if key not in self._builders:
            from edgecnn.datafree.calibrate import Int8Builder

            started = time.perf_counter()
            source = model if model is not None else (self.original if key == "original" else self.equalized)
            self._builders[key] = Int8Builder(source, x=self.x, input_range=self.input_range, ranges=self.ranges,
                                              batchnorm_sigmas=self.batchnorm_sigmas)
            self.calibrations += 1
            self.seconds = time.perf_counter() - started
        return self._builders[key]

    def affordable(self, key: str, deadline: Optional[float]) -> bool:
        """Whether ``key`` is calibrated, or another calibration (as long as the last) ends before ``deadline``."""
        return key in self._builders or deadline is None or time.perf_counter() + self.seconds <= deadline

    def corrections(self, per_channel: bool) -> tuple[dict, list[dict]]:
        """(``{layer: change of its folded bias}``, the rows of :func:`edgecnn.datafree.bias.correct_bias`) for
        the equalized model's int8 kernels, per-channel or per-tensor: computed for every kind of
        ``per_channel`` at once (one pass of the calibration inputs through the model)."""
        if per_channel not in self._corrections:
            from edgecnn.datafree.bias import correct_biases, corrections

            kinds = [per_channel] + [k for k in self.per_channel if k != per_channel]
            for k, (fixed, rows) in correct_biases(self.equalized, x=self.x, per_channel=kinds,
                                                   expected="batchnorm").items():
                self._corrections[k] = (corrections(self.equalized, fixed), rows)
        return self._corrections[per_channel]

    def clear(self) -> None:
        """Free the calibrated models (hundreds of MB at 224 px)."""
        self._builders.clear()


@dataclass
class Int8Variant:
    """The kept variant of one int8 kind: its bytes, what it is, and how to rebuild it with ops kept in float."""

    data: bytes
    label: str
    description: str
    builder: Any
    bias: Optional[dict]

    def build(self, *, per_channel: bool, float_ops: Sequence[str] = ()) -> bytes:
        return self.builder.build(per_channel=per_channel, float_ops=float_ops, bias=self.bias)

    def sensitive_ops(self, *, per_channel: bool, exclude: Sequence[str] = ()) -> list[dict]:
        return self.builder.sensitive_ops(per_channel=per_channel, exclude=exclude, bias=self.bias)


def build_int8(cal: Calibrations, *, kind: str, x: np.ndarray, reference: np.ndarray, calibration_samples: int,
               details: dict, bias_correction: bool = True, compare_steps: bool = True,
               max_bytes: Optional[int] = None, slim: Callable[[bytes], bytes] = lambda data: data,
               deadline: Optional[float] = None) -> Int8Variant:
    """The kept variant of ``kind`` (``"int8"``: per-channel weights, ``"int8-per-tensor"``), see the module
    docstring. ``x`` is every synthesized input (``cal`` calibrates on its first ``calibration_samples``),
    ``reference`` the float model's outputs on ``x``; ``details`` receives ``bias_correction[kind]`` (the
    corrections) and ``steps[kind]`` (what was compared and kept)."""
    from edgecnn.datafree.proxy import proxy

    per_channel = kind == "int8"
    hold = x[calibration_samples:]
    equalized = cal.equalized is not cal.original
    eq = cal.builder("equalized")
    variants: list[tuple[str, Any, Optional[dict]]] = []
    if bias_correction:
        bias, rows = cal.corrections(per_channel)
        details.setdefault("bias_correction", {})[kind] = rows
        label = "equalization and bias correction" if equalized else "bias correction"
        missing = eq.not_placed(bias)
        if missing:
            details.setdefault("bias_not_placed", {})[kind] = missing
        if len(missing) > len(bias) / 2:  # the converted ops do not match the layers: calibrate the corrected model
            from edgecnn.datafree.bias import correct_bias

            fixed = correct_bias(cal.equalized, x=cal.x, per_channel=per_channel, expected="batchnorm")[0]
            variants.append((label, cal.builder(f"corrected {kind}", model=fixed), None))
        else:  # a few ops (a model output named after the graph, a zero bias left out) go uncorrected
            variants.append((label, eq, bias))
    variants.append(("equalization" if equalized else "neither", eq, None))
    judge = compare_steps and len(hold) >= MIN_HOLD and (len(variants) > 1 or equalized)
    if judge and equalized and cal.affordable("original", deadline):
        variants.append(("neither", cal.builder("original"), None))
    if judge:
        tried = []
        for label, builder, bias in variants:
            data = builder.build(per_channel=per_channel, bias=bias)
            tried.append((proxy(data, hold, reference[calibration_samples:])[1], label, builder, bias, data))
        best = max(range(len(tried)), key=lambda i: (tried[i][0], -i))  # the first of equals
        _, label, builder, bias, data = tried[best]
        details.setdefault("steps", {})[kind] = {"held_out_inputs": int(len(hold)),
                                                 "snr_db": {t[1]: t[0] for t in tried}, "kept": label}
    else:
        label, builder, bias = variants[0]
        data = builder.build(per_channel=per_channel, bias=bias)
        if bias is not None and max_bytes is not None and (size := len(slim(data))) > max_bytes:
            other = builder.build(per_channel=per_channel)
            if len(slim(other)) <= max_bytes:
                details.setdefault("steps", {})[kind] = {
                    "held_out_inputs": int(len(hold)), "kept": variants[1][0],
                    "why": f"bias correction made the file larger than the plain conversion ({size:,} vs "
                           f"{max_bytes:,} bytes: each corrected bias is stored on its own), and "
                           f"{len(hold)} synthesized inputs beyond the calibration ones are too few to judge it "
                           f"(at least {MIN_HOLD})"}
                label, bias, data = variants[1][0], None, other
    weights = "per-channel" if per_channel else "per-tensor"
    how = {"equalization and bias correction": ", equalized, bias-corrected", "bias correction": ", bias-corrected",
           "equalization": ", equalized", "neither": ", not equalized" if equalized else ""}[label]
    return Int8Variant(data=data, label=label, description=f"full int8, {weights} weights{how}, {cal.ranges} "
                       "activation ranges", builder=builder, bias=bias)
