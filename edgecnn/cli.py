"""The ``edgecnn`` command: parse arguments, call the public API, print. EdgecnnError -> exit code 2.

Example:
    >>> from typer.testing import CliRunner
    >>> CliRunner().invoke(app, ["--version"]).output.strip()
    'edgecnn 0.1.0'
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from edgecnn import __version__
from edgecnn.errors import EdgecnnError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Make trained Keras CNNs fit on the edge: inspect, rewrite, prune, quantize, export, benchmark.",
)

_MODEL_HELP = "A .h5 or .keras file (Keras 2 or 3), or a SavedModel folder."
_CUSTOM_HELP = "Python module that defines the model's custom classes (runs that module's code)."
_TRUST_HELP = "Allow Lambda layers: runs the Python bytecode stored in the model file."


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgecnn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """edgecnn: make trained Keras CNNs fit on the edge."""


@app.command()
def inspect(
    model: str = typer.Argument(..., help=_MODEL_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="H,W,C for inputs with unknown size."),
    custom_objects: Optional[Path] = typer.Option(None, "--custom-objects", help=_CUSTOM_HELP),
    trust_model: bool = typer.Option(False, "--trust-model", help=_TRUST_HELP),
) -> None:
    """Per-layer params, MACs and activation sizes, and what separable/bottleneck convs would cost."""
    import edgecnn
    from edgecnn.io import load_info

    working = edgecnn.load(
        model,
        input_shape=input_shape,
        custom_objects=str(custom_objects) if custom_objects else None,
        trust_model=trust_model,
    )
    from edgecnn.analysis import analyze

    stats = analyze(working)
    info = load_info(working)
    if as_json:
        report = stats.as_dict()
        if info is not None:
            report["source"] = {
                "path": info.source,
                "format": info.format,
                "written_by": info.written_by,
                "translated": info.translated,
                "max_rel_diff": info.max_rel_diff,
            }
        typer.echo(json.dumps(report, indent=2))
        return
    from edgecnn.report import print_inspect

    print_inspect(stats, info)


@app.command()
def export(
    model: str = typer.Argument(..., help=_MODEL_HELP),
    outdir: Path = typer.Option(..., "-o", "--outdir", help="Folder for the artifacts and export.json."),
    fmt: str = typer.Option("tflite", "--format", help="tflite, onnx or all."),
    quantize: str = typer.Option("none", "--quantize", help="none, fp16, dynamic, int8 or int16x8."),
    data: Optional[str] = typer.Option(None, "--data", help="digits, an image folder, or a .npz (x, y)."),
    io: str = typer.Option("float", "--io", help="Input/output tensor type: float, int8 or uint8 (TFLite int8)."),
    calibration_samples: int = typer.Option(200, "--calibration-samples", help="Representative samples."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset."),
    ort_format: bool = typer.Option(False, "--ort-format", help="Also write ONNX Runtime Mobile .ort files."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Text file, one class name per line."),
    max_accuracy_drop: Optional[float] = typer.Option(
        None, "--max-accuracy-drop", help="int8 accuracy budget in points (labelled --data): keep the worst ops in float."
    ),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="H,W,C for inputs with unknown size."),
    custom_objects: Optional[Path] = typer.Option(None, "--custom-objects", help=_CUSTOM_HELP),
    trust_model: bool = typer.Option(False, "--trust-model", help=_TRUST_HELP),
) -> None:
    """Export to TFLite/ONNX, validate every artifact on its runtime, write OUTDIR/export.json."""
    import warnings

    import edgecnn
    from edgecnn.export import export as run_export
    from edgecnn.quantize import QuantMode

    QuantMode.parse(quantize)  # fail fast, before loading the model
    working = edgecnn.load(model, input_shape=input_shape,
                           custom_objects=str(custom_objects) if custom_objects else None, trust_model=trust_model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = run_export(working, outdir=outdir, formats=fmt, quantize=quantize, data=data, io=io,
                            calibration_samples=calibration_samples, opset=opset, ort_format=ort_format,
                            name=Path(model).stem, labels=_read_labels(labels), max_accuracy_drop=max_accuracy_drop,
                            command="edgecnn " + " ".join(sys.argv[1:]))
    from edgecnn.report import print_export

    print_export(report)
    if report.budget is not None:
        b = report.budget
        kept = ", ".join(b["float_layers"]) or "none"
        typer.echo(f"accuracy budget {b['max_accuracy_drop']} points: keras {100 * b['keras_accuracy']:.2f}%, "
                   f"int8 {100 * b['int8_accuracy']:.2f}%, final {100 * b['final_accuracy']:.2f}%; "
                   f"kept in float: {kept}")
    for warning in report.warnings:
        typer.echo(f"warning: {warning}", err=True)


@app.command()
def quantize(
    model: str = typer.Argument(..., help=_MODEL_HELP),
    outdir: Path = typer.Option(..., "-o", "--outdir", help="Folder for the int8 .tflite and export.json."),
    qat: bool = typer.Option(False, "--qat", help="Quantization-aware training (tensorflow-model-optimization)."),
    data: str = typer.Option(..., "--data", help="Labelled data: digits, a class folder, or a .npz with y."),
    epochs: int = typer.Option(2, "--epochs", help="Fine-tuning epochs."),
    batch_size: int = typer.Option(32, "--batch-size"),
    learning_rate: float = typer.Option(1e-4, "--learning-rate"),
    io: str = typer.Option("float", "--io", help="float, int8 or uint8 input/output tensors."),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="H,W,C for inputs with unknown size."),
    custom_objects: Optional[Path] = typer.Option(None, "--custom-objects", help=_CUSTOM_HELP),
    trust_model: bool = typer.Option(False, "--trust-model", help=_TRUST_HELP),
) -> None:
    """Quantization-aware training, then an int8 .tflite validated on LiteRT (when post-training int8 loses too much)."""
    import edgecnn
    from edgecnn.errors import EdgecnnError

    if not qat:
        raise EdgecnnError("edgecnn quantize trains with fake quantization: Expected --qat. Received: no --qat "
                           "(post-training quantization is `edgecnn export --quantize ...`)")
    working = edgecnn.load(model, input_shape=input_shape,
                           custom_objects=str(custom_objects) if custom_objects else None, trust_model=trust_model)
    from edgecnn.data import load_data
    from edgecnn.export import export as run_export
    from edgecnn.qat import quantize_aware

    shape = tuple(int(d) for d in working.inputs[0].shape[1:])
    train = load_data(data, input_shape=shape, split="train")
    test = load_data(data, input_shape=shape, split="test")
    if train.y is None:
        raise EdgecnnError(f"--qat fine-tunes on labels: Expected labelled --data. Received: {data} without labels")
    result = quantize_aware(working, x=train.x, y=train.y, epochs=epochs, batch_size=batch_size,
                            learning_rate=learning_rate, x_val=test.x, y_val=test.y, io=io)
    report = run_export(working, outdir=outdir, formats="tflite", quantize="int8", data=test, io=io,
                        name=Path(model).stem + "_qat", prebuilt={"tflite": result.tflite},
                        command="edgecnn " + " ".join(sys.argv[1:]))
    from edgecnn.report import print_export

    print_export(report)
    pct = lambda x: "-" if x is None else f"{100 * x:.2f}%"  # noqa: E731
    typer.echo(f"QAT: float {pct(result.keras_accuracy_before)} -> fake-quant {pct(result.qat_keras_accuracy)} -> "
               f"int8 LiteRT {pct(result.tflite_accuracy)}; quantized {len(result.annotated_layers)} layers, "
               f"left in float: {', '.join(result.skipped_layers) or 'none'}")


def _read_labels(path: Optional[Path]) -> Optional[list[str]]:
    if path is None:
        return None
    from edgecnn.errors import InputFileError

    if not path.is_file():
        raise InputFileError(f"labels file not found: Expected a text file, one label per line. Received: {path}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point: runs the app, prints EdgecnnError as one line on stderr and exits 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    if not debug:
        import warnings

        warnings.filterwarnings("ignore")
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name="edgecnn", standalone_mode=False)
    except EdgecnnError as exc:
        if debug:
            raise
        print(f"edgecnn: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("edgecnn: aborted", file=sys.stderr)
        sys.exit(130)
    except typer.TyperException as exc:  # usage errors: typer prints them as click does
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            print(f"edgecnn: error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
