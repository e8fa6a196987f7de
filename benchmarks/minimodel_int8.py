"""Issue acceptance: int8 export of the book's full-width residual MiniModel (32/64/128/256, 4.37M params).

Trains the MiniModel on the bundled digits (32x32x3, train split, Adam 1e-3, batch 32, seed 0), then exports
fp32 and int8 to TFLite and ONNX, validated on LiteRT and ONNX Runtime against the held-out test split, and
int8 TFLite again under a 0.5-point accuracy budget. Writes docs/minimodel_int8.md. The trained model (17 MB)
is kept only in a temporary folder: it is too large to ship.

    python benchmarks/minimodel_int8.py [--epochs 15]      # about 8 minutes on 2 cores
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

# oneDNN's filter gradient of a stride-2 1x1 conv corrupts the heap on odd batch sizes (see
# scripts/train_models.py); training must run without it. Set before TensorFlow loads.
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--width", type=int, default=32)
    args = parser.parse_args()

    from edgecnn._tf import import_tensorflow

    import_tensorflow()
    import keras
    import tensorflow as tf

    import edgecnn
    from edgecnn.data import digits
    from edgecnn.exporting import export
    from edgecnn.files import write_atomic
    from models import zoo

    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()
    train = digits(input_shape=(32, 32, 3), split="train")
    model = zoo.minimodel(width=args.width)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(train.x, train.y, batch_size=32, epochs=args.epochs, verbose=2, shuffle=True)
    train_s = time.perf_counter() - start
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "minimodel.keras"
        model.save(path)
        working = edgecnn.load(path)
        runs = [("none", None), ("int8", None), ("int8", 0.5)]
        for quantize, budget in runs:
            formats = "tflite" if budget is not None else "all"
            out = Path(tmp) / f"out_{quantize}_{budget}"
            report = export(working, outdir=out, formats=formats, quantize=quantize, data="digits",
                            max_accuracy_drop=budget, name="minimodel")
            for a in report.artifacts:
                rows.append((a.format, quantize, "-" if budget is None else f"{budget} points", a.size_bytes,
                             a.validation, report.budget))
    base = {r[0]: r[3] for r in rows if r[1] == "none"}
    lines = [
        "# Full-width MiniModel, int8 export",
        "",
        f"Measured by `python benchmarks/minimodel_int8.py --epochs {args.epochs} --width {args.width}`: "
        f"{model.count_params():,} params, trained {args.epochs} epochs on the digits train split "
        f"({train_s:.0f} s on this 2-core host); accuracy on the 360-image held-out test split, each artifact "
        "run on its runtime (LiteRT 1 thread, ONNX Runtime CPU).",
        "",
        "| format | quantization | budget | size | vs fp32 same format | max rel diff | top-1 agreement | accuracy | Keras accuracy | float layers kept |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for fmt, q, budget, size, v, b in rows:
        kept = "-" if b is None or q == "none" or budget == "-" else (", ".join(b["float_layers"]) or "none")
        lines.append(
            f"| {fmt} | {q} | {budget} | {size / 1e6:.2f} MB | {size / base[fmt]:.3f}x | {v['max_rel_diff']:.2g} | "
            f"{100 * v['top1_agreement']:.2f}% | {100 * v['accuracy']:.2f}% | {100 * v['reference_accuracy']:.2f}% | {kept} |"
        )
    text = "\n".join(lines) + "\n"
    out = ROOT / "docs" / "minimodel_int8.md"
    write_atomic(out, text)
    print(text)


if __name__ == "__main__":
    main()
