"""Issue 3 structural acceptance: rewrites of keras.applications models export and match on LiteRT and ONNX Runtime.

For each architecture (weights=None, no classifier softmax so the outputs are logits that differ between
inputs): load it into the working model, rewrite it, check the output shapes are kept, convert the
rewritten model to fp32 TFLite and ONNX, and compare each runtime's outputs with the rewritten Keras
model on random inputs (max abs diff relative to the largest output <= 1e-4). Where the default selection
finds nothing to rewrite (MobileNetV2 and EfficientNetB0 have no kxk Conv2D with >= 4 input channels), the
stem conv is rewritten with ``select="all"``. Writes docs/rewrite_apps.md.

    python benchmarks/rewrite_apps.py [--size 96] [--models MobileNetV2,ResNet50,...]   # ~30-40 min on 2 cores
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = ("MobileNetV2", "ResNet50", "DenseNet121", "EfficientNetB0", "VGG16", "Xception")
PLAN = {  # model -> rewrites to check
    "MobileNetV2": ("separable", "bottleneck"), "ResNet50": ("separable", "bottleneck"),
    "DenseNet121": ("separable",), "EfficientNetB0": ("separable",), "VGG16": ("separable", "gap-head"),
    "Xception": ("separable", "bottleneck"),
}


def application(name: str, size: int):
    """A keras.applications model (Keras 3, random weights) with logits outputs."""
    import keras

    kwargs = dict(weights=None, input_shape=(size, size, 3), classes=10, classifier_activation=None)
    if name == "VGG16":  # the Flatten -> Dense head is what gap-head rewrites
        kwargs["include_top"] = True
    return getattr(keras.applications, name)(**kwargs)


def check(model, *, to: str, seed: int = 0) -> dict:
    """Rewrite ``model`` (a working model) and validate the rewritten model's TFLite and ONNX exports."""
    import numpy as np

    from edgecnn.exporting.validate import compare
    from edgecnn.runtimes.keras import keras_outputs
    from edgecnn.exporting.convert import convert
    from edgecnn.rewriting import rewrite
    from edgecnn.runtimes import RUNTIMES

    start = time.perf_counter()
    result = rewrite(model, to=to)
    select = "auto"
    if not result.rewritten:
        stem = next(l.name for l in model.layers if type(l).__name__ == "Conv2D" and max(l.kernel_size) > 1)
        result = rewrite(model, to=to, layers=[stem], select="all")
        select = f"all, {stem}"
    row = {"rewrite": to, "select": select, "rewritten": len(result.rewritten),
           "macs_before": sum(r.macs_before for r in result.rewritten),
           "macs_after": sum(r.macs_after for r in result.rewritten),
           "params": (model.count_params(), result.model.count_params()),
           "shapes_kept": result.model.output_shape == model.output_shape,
           "rewrite_s": time.perf_counter() - start}
    x = np.random.default_rng(seed).random((2, *model.inputs[0].shape[1:]), dtype=np.float32)
    reference = keras_outputs(result.model, x)
    for runtime in ("litert", "onnxruntime"):
        artifact = convert(result.model, runtime=runtime)
        got = RUNTIMES[runtime].load(artifact).run(x)
        v = compare(reference, got, exact=True)
        row[runtime] = (v.passed, v.max_rel_diff)
    row["seconds"] = time.perf_counter() - start
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--out", default=str(ROOT / "docs" / "rewrite_apps.md"))
    args = parser.parse_args()

    from edgecnn._tf import import_tensorflow

    import_tensorflow()
    import edgecnn
    from edgecnn.files import write_atomic

    rows = []
    for name in args.models.split(","):
        model = edgecnn.load(application(name, args.size))
        for to in PLAN[name]:
            row = {"model": name, **check(model, to=to)}
            print(row, flush=True)
            rows.append(row)
    ok = all(r["shapes_kept"] and r["litert"][0] and r["onnxruntime"][0] for r in rows)
    lines = [
        "# Rewrites of keras.applications models: export and match",
        "",
        f"`python benchmarks/rewrite_apps.py --size {args.size}` (weights=None, {args.size}x{args.size}x3, 10 logits; "
        "fp32 TFLite on LiteRT and ONNX on ONNX Runtime, 2 random inputs, max abs diff / max |output| <= 1e-4).",
        "",
        "| model | rewrite | selection | layers rewritten | their MACs before -> after | params before -> after | "
        "shapes kept | LiteRT rel diff | ONNX Runtime rel diff | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cut = f"{r['macs_before'] / 1e6:.1f}M -> {r['macs_after'] / 1e6:.1f}M" if r["macs_after"] else "-"
        lines.append(
            f"| {r['model']} | {r['rewrite']} | {r['select']} | {r['rewritten']} | {cut} | "
            f"{r['params'][0]:,} -> {r['params'][1]:,} | {'yes' if r['shapes_kept'] else 'NO'} | "
            f"{r['litert'][1]:.1e} {'ok' if r['litert'][0] else 'FAIL'} | "
            f"{r['onnxruntime'][1]:.1e} {'ok' if r['onnxruntime'][0] else 'FAIL'} | {r['seconds']:.0f} |")
    lines += ["", f"All passed: {'yes' if ok else 'NO'}.", ""]
    write_atomic(Path(args.out), "\n".join(lines).encode())
    print(f"wrote {args.out}; all passed: {ok}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
