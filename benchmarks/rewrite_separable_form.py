"""Which form should the separable rewrite take: one SeparableConv2D layer or DepthwiseConv2D + 1x1 Conv2D?

For trained reference models, the standard-conv original, the ``separable`` rewrite as built (explicit
DepthwiseConv2D + Conv2D) and the same weights as SeparableConv2D layers are converted to TFLite (fp32 and
full int8 calibrated on digits), their TFLite op lists compared, their outputs checked against each other,
and the three timed side by side on LiteRT, 1 thread, batch 1 (interleaved, medians; host CPU).
Writes docs/rewrite_separable_form.md.

    python benchmarks/rewrite_separable_form.py [--runs 300]
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def as_separable_layers(model):
    """The explicit DepthwiseConv2D (``X_dw``) + Conv2D (``X``) pairs of ``model`` as SeparableConv2D ``X``."""
    import tf_keras

    from edgecnn.surgery import rebuild

    pairs = {l.name[:-3]: l for l in model.layers if type(l).__name__ == "DepthwiseConv2D" and l.name.endswith("_dw")}

    def replace(call):
        name = call.layer.name
        if name.endswith("_dw") and name[:-3] in pairs:
            return call.inputs[0]
        if name in pairs:
            dw, pw = pairs[name], call.layer
            c = dw.get_config()
            sep = tf_keras.layers.SeparableConv2D(
                pw.filters, c["kernel_size"], strides=c["strides"], padding=c["padding"],
                dilation_rate=c["dilation_rate"], depth_multiplier=c["depth_multiplier"], use_bias=pw.use_bias,
                activation=pw.get_config()["activation"], name=name)
            out = sep(call.inputs[0])
            sep.set_weights([dw.get_weights()[0], *pw.get_weights()])
            return out
        return None

    return rebuild(model, replace=replace)


def tflite_ops(artifact: bytes) -> Counter:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=artifact)
    return Counter(op["op_name"] for op in interp._get_ops_details())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--out", default=str(ROOT / "docs" / "rewrite_separable_form.md"))
    args = parser.parse_args()

    from edgecnn._tf import import_tensorflow

    import_tensorflow()
    import numpy as np

    import edgecnn
    from edgecnn.data import load_data
    from edgecnn.runtimes.keras import keras_outputs
    from edgecnn.files import write_atomic
    from edgecnn.exporting.convert import convert
    from edgecnn.benchmarking.latency import model_latency

    lines = [
        "# Separable rewrite: SeparableConv2D layer or explicit DepthwiseConv2D + Conv2D",
        "",
        f"`python benchmarks/rewrite_separable_form.py --runs {args.runs}`: LiteRT 1 thread, batch 1, "
        f"{args.runs} interleaved runs each, medians (IQR); host CPU (AVX-512 VNNI / AMX), shared with other jobs.",
        "",
        "| model | quantization | form | TFLite ops | size KB | median ms | IQR ms | vs original |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for file in ("mnist_cnn.h5", "minimodel_w8.h5"):
        original = edgecnn.load(ROOT / "models" / file)
        shape = tuple(int(d) for d in original.inputs[0].shape[1:])
        data = load_data("digits", input_shape=shape, split="train")
        explicit = edgecnn.rewrite(original, to="separable").model
        layer = as_separable_layers(explicit)
        x = data.x[:16]
        diff = float(np.abs(keras_outputs(explicit, x)[0] - keras_outputs(layer, x)[0]).max())
        assert diff < 1e-5, f"the two forms differ by {diff}"
        variants = {"original Conv2D": original, "explicit DW + PW": explicit, "SeparableConv2D": layer}
        for quantize in ("none", "int8"):
            artifacts = {k: convert(m, quantize=quantize, calibration=data.x[:200]) for k, m in variants.items()}
            timing = model_latency(artifacts, quantize=quantize, runs=args.runs, warmup=20)
            base = timing["original Conv2D"].median_ms
            for k, art in artifacts.items():
                ops = ", ".join(f"{n} x{c}" for n, c in sorted(tflite_ops(art).items()) if n in (
                    "CONV_2D", "DEPTHWISE_CONV_2D"))
                t = timing[k]
                lines.append(f"| {file} | {'fp32' if quantize == 'none' else quantize} | {k} | {ops} | "
                             f"{len(art) / 1024:.0f} | {t.median_ms:.3f} | {t.spread_ms:.3f} | "
                             f"{t.median_ms / base:.2f}x |")
            print("\n".join(lines[-3:]), flush=True)
    lines.append("")
    write_atomic(Path(args.out), "\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
