"""Export acceptance matrix: every format x quantization on reference and keras.applications models.

Writes docs/export_matrix.md: size, size ratio to fp32 TFLite, max relative difference, top-1 agreement and
held-out accuracy (digits test split) of every artifact, each validated on its real runtime.

    python benchmarks/export_matrix.py            # everything (about 10-15 minutes on 2 cores)
    python benchmarks/export_matrix.py --quick    # trained reference models only
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgecnn._tf import import_tensorflow  # noqa: E402

import_tensorflow()

import edgecnn  # noqa: E402
from edgecnn.files import write_atomic  # noqa: E402
from edgecnn.errors import EdgecnnError  # noqa: E402
from edgecnn.exporting import export  # noqa: E402

MODES = ["none", "fp16", "dynamic", "int8", "int16x8"]


def _trained() -> list[tuple[str, Path]]:
    return [(p.stem, p) for p in sorted((ROOT / "models").glob("*")) if p.suffix in (".h5", ".keras")]


def _applications() -> list[tuple[str, object]]:
    import keras

    return [(name, getattr(keras.applications, name)(weights=None, input_shape=(64, 64, 3), classes=10))
            for name in ("MobileNetV2", "ResNet50", "EfficientNetB0")]


def run(*, quick: bool) -> str:
    rows = []
    models = [(n, p, "digits") for n, p in _trained()]
    if not quick:
        models += [(n, m, None) for n, m in _applications()]
    for name, source, data in models:
        working = edgecnn.load(source)
        base_size = None
        with tempfile.TemporaryDirectory() as tmp:
            for mode in MODES:
                start = time.perf_counter()
                try:
                    report = export(working, outdir=tmp, formats="all", quantize=mode, data=data, name=name)
                except EdgecnnError as exc:
                    rows.append((name, "all", mode, "-", "-", "-", "-", "-", f"FAILED: {exc}"[:120]))
                    continue
                for a in report.artifacts:
                    v = a.validation
                    if a.format == "tflite" and mode == "none":
                        base_size = a.size_bytes
                    ratio = f"{a.size_bytes / base_size:.2f}x" if base_size else "-"
                    pct = lambda x: "-" if x is None else f"{100 * x:.2f}%"  # noqa: E731
                    rows.append((name, a.format, mode, f"{a.size_bytes / 1024:.1f} KB", ratio,
                                 f"{v['max_rel_diff']:.2g}", pct(v["top1_agreement"]), pct(v["accuracy"]),
                                 f"ok ({time.perf_counter() - start:.1f} s)"))
        print(f"{name}: done", flush=True)
    head = ("model", "format", "quantization", "size", "vs fp32 tflite", "max rel diff", "top-1 agreement",
            "accuracy (digits test)", "status")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    table = run(quick=args.quick)
    out = ROOT / "docs" / ("export_matrix_quick.md" if args.quick else "export_matrix.md")
    text = (
        "# Export matrix\n\nMeasured by `python benchmarks/export_matrix.py"
        f"{' --quick' if args.quick else ''}` (host CPU, LiteRT and ONNX Runtime). Every artifact was run on its "
        "runtime against the Keras model; float (none) artifacts must match within 1e-4 relative. Trained models "
        "use the bundled digits (calibration: train split; accuracy: the 360-image test split); keras.applications "
        "models have random weights (weights=None, 64x64x3) and synthetic calibration, so only agreement is "
        "meaningful for them.\n\n" + table + "\n"
    )
    write_atomic(out, text)
    print(text)


if __name__ == "__main__":
    main()
