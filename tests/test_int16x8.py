"""int16x8 export of an untrained MobileNetV2: LiteRT used to refuse it at allocate_tensors.

Untrained (``weights=None``) MobileNetV2 activations shrink block by block to ~1e-12, so calibrated int16 output
scales fall below ``6 / 2**31`` and LiteRT's fused-RELU6 bound ``round(6 / scale)`` overflows int32
(``no_integer_overflow_from_quantization``). The export rewrites those clamps exactly and the model must load.
"""
from __future__ import annotations

import time
import numpy as np
import pytest

import edgecnn
from edgecnn.exporting import export
from edgecnn.exporting.tflite import _relax_fused_clamps, float_ops
from edgecnn.exporting.quantize import SyntheticCalibrationWarning


@pytest.mark.slow
def test_mobilenetv2_int16x8_loads_and_runs_in_litert(keras3, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    start = time.perf_counter()
    keras3.utils.set_random_seed(0)
    model = keras3.applications.MobileNetV2(weights=None, input_shape=(64, 64, 3), classes=10,
                                            classifier_activation=None)  # logits: top-1 is not a softmax tie
    working = edgecnn.load(model)
    with pytest.warns(SyntheticCalibrationWarning):
        report = export(working, outdir=tmp_path, formats="tflite", quantize="int16x8",
                        calibration_samples=16, validation_samples=16)
    path = report.artifacts[0].path
    data = open(path, "rb").read()

    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()  # raised "no_integer_overflow_from_quantization was not true" before the fix
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    x = np.random.default_rng(123).random((16, 64, 64, 3), dtype=np.float32)
    tfl = []
    for sample in x:
        interp.set_tensor(inp["index"], sample[None])
        interp.invoke()
        tfl.append(interp.get_tensor(out["index"])[0].copy())
    tfl = np.stack(tfl)
    ref = np.asarray(working(x, training=False))
    agree = float(np.mean(tfl.argmax(-1) == ref.argmax(-1)))
    kept = float_ops(data)
    print(f"\nint16x8 MobileNetV2: top-1 agreement {agree:.2f} on 16 random inputs; "
          f"max |diff| {np.abs(tfl - ref).max():.3g} (logit scale {np.abs(ref).max():.3g}); "
          f"float ops {kept}; validation {report.artifacts[0].validation}; {time.perf_counter() - start:.0f} s")

    assert np.isfinite(tfl).all() and tfl.shape == ref.shape
    assert kept == []  # every op stays in 16x8: the rewrite keeps no op in float
    assert _relax_fused_clamps(data)[1] == []  # nothing left to rewrite
    assert agree >= 0.5
