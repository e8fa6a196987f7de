"""Structural acceptance of issue 4: channel pruning of keras.applications MobileNetV2, ResNet50, DenseNet121.

Each architecture (weights=None, 32x32x3, 10 classes) is loaded into the working model, channel-pruned at
sparsity 0.5 (l1, round_to 8), converted to TFLite and ONNX, and each artifact is run on its runtime
(LiteRT, ONNX Runtime) against the pruned Keras model on the same 8 random inputs. Writes docs/prune_apps.md
with params before/after, output shapes, max relative differences and the time of each step.

    python benchmarks/prune_apps.py
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgecnn._tf import import_tensorflow  # noqa: E402

import_tensorflow()

import numpy as np  # noqa: E402

APPS = {"MobileNetV2": {}, "ResNet50": {}, "DenseNet121": {}}


def main() -> int:
    import keras

    import edgecnn
    from edgecnn.exporting.validate import compare
    from edgecnn.runtimes.keras import keras_outputs
    from edgecnn.files import write_atomic
    from edgecnn.exporting.convert import convert
    from edgecnn.pruning import channel_groups, prune_channels
    from edgecnn.runtimes import RUNTIMES

    x = np.random.default_rng(0).random((8, 32, 32, 3), dtype=np.float32)
    rows = []
    for name, kwargs in APPS.items():
        keras.utils.set_random_seed(0)
        t0 = time.perf_counter()
        working = edgecnn.load(getattr(keras.applications, name)(weights=None, input_shape=(32, 32, 3), classes=10,
                                                                 **kwargs))
        t1 = time.perf_counter()
        groups = channel_groups(working)
        pruned = prune_channels(working, ratios=0.5, round_to=8)
        t2 = time.perf_counter()
        reference = keras_outputs(pruned, x)
        diffs, times = {}, {}
        for runtime in ("litert", "onnxruntime"):
            s = time.perf_counter()
            session = RUNTIMES[runtime].load(convert(pruned, runtime=runtime, quantize="none"), threads=1)
            v = compare(reference, session.run(x), exact=True)
            times[runtime] = time.perf_counter() - s
            diffs[runtime] = (v.passed, v.max_rel_diff)
        row = (f"| {name} | {working.count_params():,} | {pruned.count_params():,} | "
               f"{pruned.count_params() / working.count_params():.3f}x | {len(groups)} | "
               f"{working.output_shape} -> {pruned.output_shape} | "
               f"{'ok' if diffs['litert'][0] else 'FAIL'} ({diffs['litert'][1]:.1e}) | "
               f"{'ok' if diffs['onnxruntime'][0] else 'FAIL'} ({diffs['onnxruntime'][1]:.1e}) | "
               f"{t1 - t0:.0f} / {t2 - t1:.0f} / {times['litert']:.0f} / {times['onnxruntime']:.0f} s |")
        print(row, flush=True)
        rows.append(row)
    lines = ["# Channel pruning of keras.applications models", "",
             "Measured by `python benchmarks/prune_apps.py`: weights=None, input 32x32x3, 10 classes; "
             "`prune_channels(model, ratios=0.5, round_to=8)` (no fine-tuning), then float TFLite (LiteRT) and ONNX "
             "(ONNX Runtime) exports compared with the pruned Keras model on 8 random inputs (max relative "
             "difference; ok = within the export tolerance 1e-4 of the output scale). Times: load / groups+prune / "
             "TFLite convert+run / ONNX convert+run, on the shared 2-core host.", "",
             "| model | params | pruned params | ratio | channel groups | output shape | LiteRT | ONNX Runtime | times |",
             "|---|---|---|---|---|---|---|---|---|", *rows]
    write_atomic(ROOT / "docs" / "prune_apps.md", "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
