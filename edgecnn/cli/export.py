"""``edgecnn export`` and ``edgecnn quantize``: validated TFLite/ONNX artifacts, post-training or QAT."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from edgecnn.cli.app import (MODEL_HELP, app, CustomObjectsOption, EvalOnTrainOption, InputShapeOption, LabelsOption,
                             MinAgreementOption, MinSnrOption, TrustModelOption)
from edgecnn.cli.choices import ExportFormat, IOType, Quantize, names
from edgecnn.files import check_outdir_path, read_labels


@app.command()
def export(
    model: str = typer.Argument(..., metavar="MODEL", help=MODEL_HELP),
    outdir: Path = typer.Option(..., "-o", "--outdir", help="Folder for the artifacts and export.json."),
    fmt: str = typer.Option("tflite", "--format", metavar="[" + "|".join(names(ExportFormat)) + "]",
                            autocompletion=lambda incomplete: [n for n in names(ExportFormat) if n.startswith(incomplete)],
                            help="Artifact format (tflite,onnx: both, like all)."),
    quantize: Quantize = typer.Option("none", "--quantize", help="Weights/activations: float, float16, int8 ..."),
    data: Optional[str] = typer.Option(None, "--data", help="digits, an image folder, or a .npz (x, y)."),
    io: IOType = typer.Option("float", "--io", help="Input/output tensor type (TFLite int8)."),
    calibration_samples: int = typer.Option(200, "--calibration-samples", help="Representative samples."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset."),
    ort_format: bool = typer.Option(False, "--ort-format", help="Also write ONNX Runtime Mobile .ort files."),
    labels: LabelsOption = None,
    max_accuracy_drop: Optional[float] = typer.Option(
        None, "--max-accuracy-drop", help="int8 accuracy budget in points (labelled --data): keep the worst ops in float."
    ),
    min_agreement: MinAgreementOption = None,
    min_snr_db: MinSnrOption = None,
    eval_on_train: EvalOnTrainOption = False,
    input_shape: InputShapeOption = None,
    custom_objects: CustomObjectsOption = None,
    trust_model: TrustModelOption = False,
) -> None:
    """Export to TFLite/ONNX, validate every artifact on its runtime (held-out split of --data), write export.json."""
    import warnings

    import edgecnn.io as model_io
    from edgecnn.checks import check_number, check_optional
    from edgecnn.exporting import export as run_export
    from edgecnn.exporting import parse_formats
    from edgecnn.files import guarded_outdir
    from edgecnn.exporting.quantize import QuantMode

    QuantMode.parse(quantize)  # fail fast, before loading the model
    parse_formats(fmt)
    check_number(calibration_samples, rule="count", name="--calibration-samples")
    check_number(opset, rule="opset", name="--opset")
    check_optional(max_accuracy_drop, rule="points", name="--max-accuracy-drop")
    names = read_labels(labels)
    check_outdir_path(outdir)
    command = "edgecnn " + " ".join(sys.argv[1:])
    with guarded_outdir(outdir, command=command):  # one run per OUTDIR; a failed run leaves nothing there
        working = model_io.load(model, input_shape=input_shape,
                               custom_objects=str(custom_objects) if custom_objects else None, trust_model=trust_model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = run_export(working, outdir=outdir, formats=fmt, quantize=quantize, data=data, io=io,
                                calibration_samples=calibration_samples, opset=opset, ort_format=ort_format,
                                name=Path(model).stem, labels=names, max_accuracy_drop=max_accuracy_drop,
                                min_agreement=min_agreement, min_snr_db=min_snr_db, eval_on_train=eval_on_train,
                                command=command)
    from edgecnn.report.tables import print_export

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
    model: str = typer.Argument(..., metavar="MODEL", help=MODEL_HELP),
    outdir: Path = typer.Option(..., "-o", "--outdir", help="Folder for the int8 .tflite and export.json."),
    qat: bool = typer.Option(False, "--qat", help="Quantization-aware training (tensorflow-model-optimization)."),
    data: str = typer.Option(..., "--data", help="Labelled data: digits, a class folder, or a .npz with y."),
    epochs: int = typer.Option(2, "--epochs", help="Fine-tuning epochs."),
    batch_size: int = typer.Option(32, "--batch-size"),
    learning_rate: float = typer.Option(1e-4, "--learning-rate"),
    io: IOType = typer.Option("float", "--io", help="Input/output tensor type."),
    input_shape: InputShapeOption = None,
    custom_objects: CustomObjectsOption = None,
    trust_model: TrustModelOption = False,
) -> None:
    """Quantization-aware training, then an int8 .tflite validated on LiteRT (when post-training int8 loses too much)."""
    import edgecnn.io as model_io
    from edgecnn.checks import check_number
    from edgecnn.errors import EdgecnnError
    from edgecnn.files import guarded_outdir

    if not qat:
        raise EdgecnnError("edgecnn quantize trains with fake quantization: Expected --qat. Received: no --qat "
                           "(post-training quantization is `edgecnn export --quantize ...`)")
    check_number(epochs, rule="epochs", name="--epochs")
    check_number(batch_size, rule="count", name="--batch-size")
    check_number(learning_rate, rule="positive", name="--learning-rate")
    check_outdir_path(outdir)
    command = "edgecnn " + " ".join(sys.argv[1:])
    with guarded_outdir(outdir, command=command):
        working = model_io.load(model, input_shape=input_shape,
                               custom_objects=str(custom_objects) if custom_objects else None, trust_model=trust_model)
        from edgecnn.analysis import fixed_input_shape
        from edgecnn.data import split_data
        from edgecnn.exporting import export as run_export
        from edgecnn.exporting.qat import quantize_aware

        heldout = split_data(data, input_shape=fixed_input_shape(working))
        train, test = heldout.train, heldout.test
        if train.y is None:
            raise EdgecnnError(f"--qat fine-tunes on labels: Expected labelled --data. Received: {data} without labels")
        result = quantize_aware(working, x=train.x, y=train.y, epochs=epochs, batch_size=batch_size,
                                learning_rate=learning_rate, x_val=test.x, y_val=test.y, io=io)
        report = run_export(working, outdir=outdir, formats="tflite", quantize="int8", data=heldout, io=io,
                            name=Path(model).stem + "_qat", prebuilt={"tflite": result.tflite}, command=command)
    from edgecnn.report.tables import print_export

    print_export(report)
    pct = lambda x: "-" if x is None else f"{100 * x:.2f}%"  # noqa: E731
    typer.echo(f"QAT: float {pct(result.keras_accuracy_before)} -> fake-quant {pct(result.qat_keras_accuracy)} -> "
               f"int8 LiteRT {pct(result.tflite_accuracy)}; quantized {len(result.annotated_layers)} layers, "
               f"left in float: {', '.join(result.skipped_layers) or 'none'}")
