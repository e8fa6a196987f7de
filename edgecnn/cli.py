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

from edgecnn._version import __version__
from edgecnn.choices import (ExportFormat, Importance, IOType, LatencyQuantize, LatencyRuntime, Pooling, Profile,
                             PruneMethod, Quantize, RewriteTo, Schedule, Select, Strategy, Target, complete_recipe,
                             names, recipe_metavar)
from edgecnn.errors import EdgecnnError
from edgecnn.files import check_outdir_path, read_labels
from edgecnn.recipes import preset_names

app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    help="Make trained Keras CNNs fit on the edge: inspect, rewrite, prune, quantize, export, benchmark.",
)

_MODEL_HELP = "A .h5 or .keras file (Keras 2 or 3), or a SavedModel folder."
_CUSTOM_HELP = "Python module that defines the model's custom classes (runs that module's code)."
_TRUST_HELP = "Allow Lambda layers: runs the Python bytecode stored in the model file."
_BUDGET_HELP = "With labelled --data: points of held-out accuracy the result may lose; missed -> exit 1."
_EVAL_ON_TRAIN_HELP = ("Data too small to hold out a test split (< 5 images of a class): measure on the training "
                       "data instead of refusing (every report says so).")
_AGREE_HELP = "Validation floor: top-1 agreement of each quantized artifact with Keras (default per mode)."
_STRATEGY_HELP = ("Fine-tuning: default (one device), mirrored (this machine's GPUs) or multiworker (the machines in "
                  "each worker's TF_CONFIG; the chief writes the outputs; docs/distributed.md).")
_SNR_HELP = "Validation floor: output SNR in dB of each quantized artifact against Keras (default per mode)."


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
    model: str = typer.Argument(..., metavar="MODEL", help=_MODEL_HELP),
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
    model: str = typer.Argument(..., metavar="MODEL", help=_MODEL_HELP),
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
    labels: Optional[Path] = typer.Option(None, "--labels", help="Text file, one class name per line."),
    max_accuracy_drop: Optional[float] = typer.Option(
        None, "--max-accuracy-drop", help="int8 accuracy budget in points (labelled --data): keep the worst ops in float."
    ),
    min_agreement: Optional[float] = typer.Option(None, "--min-agreement", help=_AGREE_HELP),
    min_snr_db: Optional[float] = typer.Option(None, "--min-snr-db", help=_SNR_HELP),
    eval_on_train: bool = typer.Option(False, "--eval-on-train", help=_EVAL_ON_TRAIN_HELP),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="H,W,C for inputs with unknown size."),
    custom_objects: Optional[Path] = typer.Option(None, "--custom-objects", help=_CUSTOM_HELP),
    trust_model: bool = typer.Option(False, "--trust-model", help=_TRUST_HELP),
) -> None:
    """Export to TFLite/ONNX, validate every artifact on its runtime (held-out split of --data), write export.json."""
    import warnings

    import edgecnn
    from edgecnn.checks import check_number, check_optional
    from edgecnn.export import export as run_export
    from edgecnn.export import parse_formats
    from edgecnn.files import guarded_outdir
    from edgecnn.export.quantize import QuantMode

    QuantMode.parse(quantize)  # fail fast, before loading the model
    parse_formats(fmt)
    check_number(calibration_samples, rule="count", name="--calibration-samples")
    check_number(opset, rule="opset", name="--opset")
    check_optional(max_accuracy_drop, rule="points", name="--max-accuracy-drop")
    names = read_labels(labels)
    check_outdir_path(outdir)
    command = "edgecnn " + " ".join(sys.argv[1:])
    with guarded_outdir(outdir, command=command):  # one run per OUTDIR; a failed run leaves nothing there
        working = edgecnn.load(model, input_shape=input_shape,
                               custom_objects=str(custom_objects) if custom_objects else None, trust_model=trust_model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = run_export(working, outdir=outdir, formats=fmt, quantize=quantize, data=data, io=io,
                                calibration_samples=calibration_samples, opset=opset, ort_format=ort_format,
                                name=Path(model).stem, labels=names, max_accuracy_drop=max_accuracy_drop,
                                min_agreement=min_agreement, min_snr_db=min_snr_db, eval_on_train=eval_on_train,
                                command=command)
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
    model: str = typer.Argument(..., metavar="MODEL", help=_MODEL_HELP),
    outdir: Path = typer.Option(..., "-o", "--outdir", help="Folder for the int8 .tflite and export.json."),
    qat: bool = typer.Option(False, "--qat", help="Quantization-aware training (tensorflow-model-optimization)."),
    data: str = typer.Option(..., "--data", help="Labelled data: digits, a class folder, or a .npz with y."),
    epochs: int = typer.Option(2, "--epochs", help="Fine-tuning epochs."),
    batch_size: int = typer.Option(32, "--batch-size"),
    learning_rate: float = typer.Option(1e-4, "--learning-rate"),
    io: IOType = typer.Option("float", "--io", help="Input/output tensor type."),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="H,W,C for inputs with unknown size."),
    custom_objects: Optional[Path] = typer.Option(None, "--custom-objects", help=_CUSTOM_HELP),
    trust_model: bool = typer.Option(False, "--trust-model", help=_TRUST_HELP),
) -> None:
    """Quantization-aware training, then an int8 .tflite validated on LiteRT (when post-training int8 loses too much)."""
    import edgecnn
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
        working = edgecnn.load(model, input_shape=input_shape,
                               custom_objects=str(custom_objects) if custom_objects else None, trust_model=trust_model)
        from edgecnn.analysis import fixed_input_shape
        from edgecnn.data import split_data
        from edgecnn.export import export as run_export
        from edgecnn.export.qat import quantize_aware

        heldout = split_data(data, input_shape=fixed_input_shape(working))
        train, test = heldout.train, heldout.test
        if train.y is None:
            raise EdgecnnError(f"--qat fine-tunes on labels: Expected labelled --data. Received: {data} without labels")
        result = quantize_aware(working, x=train.x, y=train.y, epochs=epochs, batch_size=batch_size,
                                learning_rate=learning_rate, x_val=test.x, y_val=test.y, io=io)
        report = run_export(working, outdir=outdir, formats="tflite", quantize="int8", data=heldout, io=io,
                            name=Path(model).stem + "_qat", prebuilt={"tflite": result.tflite}, command=command)
    from edgecnn.report import print_export

    print_export(report)
    pct = lambda x: "-" if x is None else f"{100 * x:.2f}%"  # noqa: E731
    typer.echo(f"QAT: float {pct(result.keras_accuracy_before)} -> fake-quant {pct(result.qat_keras_accuracy)} -> "
               f"int8 LiteRT {pct(result.tflite_accuracy)}; quantized {len(result.annotated_layers)} layers, "
               f"left in float: {', '.join(result.skipped_layers) or 'none'}")


@app.command()
def compress(
    model: str = typer.Argument(..., metavar="MODEL", help=_MODEL_HELP),
    outdir: Optional[Path] = typer.Option(None, "-o", "--outdir", help="Output folder (default: <model>_edgecnn/ next to it)."),
    data: Optional[str] = typer.Option(None, "--data", help="digits, an image folder, or a .npz (x[, y]); without it only data-free steps run."),
    recipe: str = typer.Option("mobile", "--recipe", metavar=recipe_metavar(preset_names()),
                               autocompletion=complete_recipe,
                               help="A preset (see `edgecnn recipes`) or a .toml file (e.g. an earlier OUTDIR/recipe.toml)."),
    target: Optional[Target] = typer.Option(None, "--target", help="Runtime and precision (overrides the recipe)."),
    max_accuracy_drop: Optional[float] = typer.Option(None, "--max-accuracy-drop", help="Accuracy budget in points."),
    latency_budget_ms: Optional[float] = typer.Option(None, "--latency-budget-ms", help="Stop adding changes once this latency is met."),
    runtime_profile: Optional[Profile] = typer.Option(None, "--runtime-profile", help="mobile-1t: one pinned core; mobile-4t: 4 threads."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Fine-tuning epochs (overrides the recipe)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for data splits, fine-tuning and calibration."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from its last finished stage."),
    force: bool = typer.Option(False, "--force", help="Write into an output folder that holds unrelated files."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress, only the final table."),
    as_json: bool = typer.Option(False, "--json", help="Print report.json on stdout and nothing else."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Text file, one class name per line."),
    min_agreement: Optional[float] = typer.Option(None, "--min-agreement", help=_AGREE_HELP),
    min_snr_db: Optional[float] = typer.Option(None, "--min-snr-db", help=_SNR_HELP),
    eval_on_train: bool = typer.Option(False, "--eval-on-train", help=_EVAL_ON_TRAIN_HELP),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="H,W,C for inputs with unknown size."),
    custom_objects: Optional[Path] = typer.Option(None, "--custom-objects", help=_CUSTOM_HELP),
    trust_model: bool = typer.Option(False, "--trust-model", help=_TRUST_HELP),
    input_range: Optional[str] = typer.Option(None, "--input-range", help="LO,HI of the model input (e.g. -1,1) "
                                              "for data-free runs; default: inferred from the model."),
    strategy: Optional[Strategy] = typer.Option(None, "--strategy", help=_STRATEGY_HELP + " Overrides the recipe's "
                                           "finetune.strategy; multiworker needs its plan.fixed."),
) -> None:
    """One command: analyze, plan on measured latency, rewrite, prune, distil, quantize, export, validate, benchmark.

    Exit codes: 0 done, 1 done but the accuracy budget was not met (see report.json), 2 bad input.
    """
    from edgecnn.pipeline import compress as run_compress

    from edgecnn.pipeline import STAGES
    from edgecnn.pipeline.progress import StageProgress

    show = not (quiet or as_json)
    with StageProgress([n for n, _ in STAGES]) as on_stage:
        result = run_compress(model, outdir=outdir, data=data, recipe=recipe, target=target,
                              max_accuracy_drop=max_accuracy_drop, latency_budget_ms=latency_budget_ms,
                              runtime_profile=runtime_profile, epochs=epochs, seed=seed, resume=resume, force=force,
                              quiet=not show, labels=read_labels(labels), input_shape=input_shape,
                              min_agreement=min_agreement, min_snr_db=min_snr_db, eval_on_train=eval_on_train,
                              custom_objects=str(custom_objects) if custom_objects else None, trust_model=trust_model,
                              command="edgecnn " + " ".join(sys.argv[1:]), on_stage=on_stage if show else None,
                              input_range=input_range, strategy=strategy)
    worker = result.report.get("worker")
    if worker:  # a non-chief worker of a multiworker run: the chief prints and writes the results
        typer.echo(worker)
        return
    if as_json:
        typer.echo(json.dumps(result.report, indent=2, default=str))
    else:
        from edgecnn.pipeline.summary import print_table

        print_table(result.report)
        typer.echo(f"wrote {result.outdir}/ (report.json, report.html, recipe.toml, artifacts)")
    if result.budget_met is False:
        if not as_json:
            typer.echo(f"accuracy budget missed: {result.report['budget']['why']}", err=True)
        raise typer.Exit(1)


@app.command()
def recipes(
    name: Optional[str] = typer.Argument(None, metavar="[" + "|".join(preset_names()) + "]",
                                         autocompletion=lambda incomplete: [n for n in preset_names()
                                                                            if n.startswith(incomplete)],
                                         help="A preset to print as TOML."),
) -> None:
    """List the shipped compress recipes, or print one (copy it, edit it, pass it with --recipe)."""
    from edgecnn.pipeline.recipe import load_recipe
    from edgecnn.recipes import PRESETS_DIR, preset_names

    if name is None:
        for preset in preset_names():
            r = load_recipe(preset)
            typer.echo(f"{preset:8} {r['target']:12} {r['description']}")
        return
    if name not in preset_names():
        raise EdgecnnError(f"unknown recipe {name!r}: Expected one of {', '.join(preset_names())}. Received: {name!r}")
    typer.echo((PRESETS_DIR / f"{name}.toml").read_text(), nl=False)


@app.command()
def bench(
    models: list[str] = typer.Argument(..., metavar="MODEL...", help="Model files (.h5, .keras, SavedModel) or artifacts (.tflite, "
                                       ".onnx, .ort); NAME=PATH names one."),
    runtime: str = typer.Option("keras,litert,onnxruntime", "--runtime", help="Comma-separated: keras, litert, "
                                "onnxruntime, onnxruntime-cuda, onnxruntime-tensorrt, tensorflow-gpu, litert-gpu, or all."),
    threads: str = typer.Option("1", "--threads", help="Thread counts for litert/onnxruntime, e.g. 1,2,4."),
    data: Optional[str] = typer.Option(None, "--data", help="digits, an image folder, or a .npz: adds accuracy."),
    batch_size: int = typer.Option(1, "--batch-size", help="Images per timed call."),
    runs: Optional[int] = typer.Option(None, "--runs", help="Timed rounds (default 100)."),
    warmup: Optional[int] = typer.Option(None, "--warmup", help="Untimed rounds first (default 10)."),
    budget_s: Optional[float] = typer.Option(None, "--budget-s", help="Stop timing after this many seconds."),
    profile: Optional[Profile] = typer.Option(None, "--profile", help="LiteRT on pinned cores, as a phone would run it."),
    per_layer: bool = typer.Option(False, "--per-layer", help="Top ops by time (LiteRT, ONNX Runtime)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the results as JSON (a baseline for the gate)."),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="Write a markdown table."),
    html: Optional[Path] = typer.Option(None, "--html", help="Write a self-contained HTML report with charts."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="Earlier --json of the same models: the gate."),
    max_regression: float = typer.Option(10.0, "--max-regression", help="Allowed slowdown vs --baseline, percent."),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Write the gate's verdict as JUnit XML."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress lines on stderr."),
) -> None:
    """Latency, throughput, load time, memory, size and accuracy per model x runtime x threads; CI latency gate.

    Exit codes: 0 ok (gate passed), 1 latency regression over --max-regression against --baseline,
    2 bad input (a model or artifact that does not load, an unknown runtime, a malformed baseline or one
    from another model set).
    """
    from edgecnn.bench import bench as run_bench
    from edgecnn.bench import compare_to_baseline, write_junit
    from edgecnn.bench.console import print_bench
    from edgecnn.bench.gate import load_baseline
    from edgecnn.bench.targets import check_runtimes

    from edgecnn.bench.gate import check_max_regression
    from edgecnn.checks import check_number, check_optional
    from edgecnn.files import check_output_file

    check_runtimes(runtime)  # fail fast, before loading models
    check_number(batch_size, rule="count", name="--batch-size")
    check_optional(runs, rule="count", name="--runs")
    check_optional(warmup, rule="non_negative_int", name="--warmup")
    check_optional(budget_s, rule="positive", name="--budget-s")
    check_max_regression(max_regression)
    outputs = {"--json": json_out, "--markdown": markdown, "--html": html, "--junit": junit}
    for flag, path in outputs.items():
        check_output_file(path, flag=flag)
    base = load_baseline(baseline) if baseline is not None else None
    report = run_bench(models, runtimes=runtime, threads=threads, data=data, batch_size=batch_size, runs=runs,
                       warmup=warmup, budget_s=budget_s, profile=profile, per_layer=per_layer, progress=not quiet,
                       against=base)
    report.settings["command"] = "edgecnn " + " ".join(sys.argv[1:])
    print_bench(report)
    for r in report.results:  # repeated measurements that disagree: the figure is not to be trusted
        if r.warning:
            typer.echo(f"warning: {r.model} on {r.runtime} ({r.threads} thread(s)): {r.warning}", err=True)
    failed = [r for r in report.results if r.status in ("load failed", "run failed")]
    if failed:
        raise EdgecnnError("; ".join(f"{r.model} on {r.runtime}: {r.status}: {r.reason}" for r in failed))
    gate = compare_to_baseline(report, base, max_regression_pct=max_regression) if base is not None else None
    new = [Path(p) for p in outputs.values() if p is not None and not Path(p).exists()]
    try:  # all outputs or none: a failure while writing one removes those this run wrote
        for path, write in ((json_out, report.to_json), (markdown, report.to_markdown), (html, report.to_html)):
            if path is not None:
                write(path)
                typer.echo(f"wrote {path}")
        if gate is not None and junit is not None:
            write_junit(gate, junit)
            typer.echo(f"wrote {junit}")
    except BaseException:
        for path in new:
            path.unlink(missing_ok=True)
        raise
    if gate is not None:
        typer.echo(gate.message, err=not gate.ok)
        if not gate.ok:
            raise typer.Exit(1)


@app.command()
def prune(
    model: str = typer.Argument(..., metavar="MODEL", help=_MODEL_HELP),
    output: Path = typer.Option(..., "-o", "--output", help="The pruned model (.keras or .h5)."),
    method: PruneMethod = typer.Option("magnitude", "--method", help="Zeros (magnitude, m-by-n) or whole channels."),
    sparsity: float = typer.Option(0.5, "--sparsity", help="[0, 1): zero weights per layer, or channels removed per group."),
    importance: Importance = typer.Option("l1", "--importance", help="channels: how channels are ranked (activation needs --data)."),
    round_to: int = typer.Option(8, "--round-to", help="channels: kept channel counts are multiples of this."),
    layer_sparsity: Optional[list[str]] = typer.Option(None, "--layer-sparsity", help="'GLOB=RATIO' override (repeat)."),
    schedule: Schedule = typer.Option("polynomial", "--schedule", help="magnitude: sparsity schedule."),
    prune_first_last: bool = typer.Option(False, "--prune-first-last", help="magnitude: also prune the first/last layers."),
    data: Optional[str] = typer.Option(None, "--data", help="digits, an image folder, or a .npz (x[, y])."),
    epochs: int = typer.Option(0, "--epochs", help="Fine-tuning epochs (distillation from the original)."),
    batch_size: int = typer.Option(32, "--batch-size"),
    seed: int = typer.Option(0, "--seed"),
    strategy: Strategy = typer.Option("default", "--strategy", help=_STRATEGY_HELP),
    analyze: bool = typer.Option(False, "--analyze", help="channels: accuracy drop per group at 25/50/75% (labelled --data)."),
    max_accuracy_drop: float = typer.Option(1.0, "--max-accuracy-drop", help=_BUDGET_HELP),
    eval_on_train: bool = typer.Option(False, "--eval-on-train", help=_EVAL_ON_TRAIN_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="H,W,C for inputs with unknown size."),
    custom_objects: Optional[Path] = typer.Option(None, "--custom-objects", help=_CUSTOM_HELP),
    trust_model: bool = typer.Option(False, "--trust-model", help=_TRUST_HELP),
) -> None:
    """Prune: magnitude / 2:4 sparsity (smaller gzip size) or structured channels (smaller, faster layers).

    Exit codes: 0 done, 1 written but the held-out accuracy missed --max-accuracy-drop (the message says what to
    try), 2 bad input.
    """
    from edgecnn.checks import check_number
    from edgecnn.files import check_output_file
    from edgecnn.prune.cli import run_prune

    for value, rule, flag in ((round_to, "count", "--round-to"), (epochs, "epochs", "--epochs"),
                              (batch_size, "count", "--batch-size"), (seed, "seed", "--seed"),
                              (max_accuracy_drop, "points", "--max-accuracy-drop")):
        check_number(value, rule=rule, name=flag)
    check_output_file(output, flag="-o", make_parents=True)
    met = run_prune(model, output=output, method=method, sparsity=sparsity, importance=importance, round_to=round_to,
                    layer_sparsity=layer_sparsity or [], schedule=schedule, skip_first_last=not prune_first_last,
                    data=data, epochs=epochs, batch_size=batch_size, seed=seed, analyze=analyze, as_json=as_json,
                    max_accuracy_drop=max_accuracy_drop, eval_on_train=eval_on_train, strategy=strategy,
                    load_options={"input_shape": input_shape, "trust_model": trust_model,
                                  "custom_objects": str(custom_objects) if custom_objects else None})
    if met is False:
        raise typer.Exit(1)


@app.command()
def rewrite(
    model: str = typer.Argument(..., metavar="MODEL", help=_MODEL_HELP),
    output: Path = typer.Option(..., "-o", "--output", help="The rewritten model (.keras or .h5)."),
    to: RewriteTo = typer.Option(..., "--to", help="The cheaper block to rewrite into."),
    layers: Optional[list[str]] = typer.Option(None, "--layers", help="Layer name glob to consider (repeat)."),
    exclude: Optional[list[str]] = typer.Option(None, "--exclude", help="Layer name glob to leave alone (repeat)."),
    select: Select = typer.Option("auto", "--select", help="measured: keep only rewrites faster on --runtime."),
    depth_multiplier: int = typer.Option(1, "--depth-multiplier", help="separable: depthwise channels per input channel."),
    ratio: float = typer.Option(0.5, "--ratio", help="bottleneck: reduced width as a fraction of the input channels, (0, 1]."),
    rank: Optional[int] = typer.Option(None, "--rank", help="low-rank-dense rank / bottleneck width."),
    energy: Optional[float] = typer.Option(None, "--energy", help="Instead of --rank: keep this share of singular value energy."),
    pooling: Pooling = typer.Option("avg", "--pooling", help="gap-head: global average or max pooling."),
    data: Optional[str] = typer.Option(None, "--data", help="digits, an image folder, or a .npz (x[, y])."),
    epochs: int = typer.Option(0, "--epochs", help="Distillation epochs from the original model (needs --data)."),
    batch_size: int = typer.Option(32, "--batch-size"),
    seed: int = typer.Option(0, "--seed"),
    strategy: Strategy = typer.Option("default", "--strategy", help=_STRATEGY_HELP),
    runtime: LatencyRuntime = typer.Option("litert", "--runtime", help="--select measured: the runtime to time on."),
    quantize: LatencyQuantize = typer.Option("none", "--quantize", help="--select measured: precision of both sides."),
    threads: int = typer.Option(1, "--threads", help="--select measured: runtime threads."),
    runs: int = typer.Option(30, "--runs", help="--select measured: timed runs per model."),
    max_accuracy_drop: float = typer.Option(1.0, "--max-accuracy-drop", help=_BUDGET_HELP),
    eval_on_train: bool = typer.Option(False, "--eval-on-train", help=_EVAL_ON_TRAIN_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="H,W,C for inputs with unknown size."),
    custom_objects: Optional[Path] = typer.Option(None, "--custom-objects", help=_CUSTOM_HELP),
    trust_model: bool = typer.Option(False, "--trust-model", help=_TRUST_HELP),
) -> None:
    """Rewrite layers into cheaper blocks initialized from the trained weights; recover accuracy by distillation.

    Exit codes: 0 done, 1 written but the held-out accuracy missed --max-accuracy-drop (the message says what to
    try), 2 bad input.
    """
    from edgecnn.checks import check_number, check_optional
    from edgecnn.files import check_output_file
    from edgecnn.rewrite.cli import run_rewrite

    for value, rule, flag in ((depth_multiplier, "count", "--depth-multiplier"), (ratio, "energy", "--ratio"),
                              (epochs, "epochs", "--epochs"), (batch_size, "count", "--batch-size"),
                              (seed, "seed", "--seed"), (threads, "count", "--threads"), (runs, "count", "--runs"),
                              (max_accuracy_drop, "points", "--max-accuracy-drop")):
        check_number(value, rule=rule, name=flag)
    check_optional(rank, rule="count", name="--rank")
    check_optional(energy, rule="energy", name="--energy")
    check_output_file(output, flag="-o", make_parents=True)
    met = run_rewrite(model, output=output, to=to, layers=layers or [], exclude=exclude or [], select=select,
                      depth_multiplier=depth_multiplier, ratio=ratio, rank=rank, energy=energy, pooling=pooling,
                      data=data, epochs=epochs, batch_size=batch_size, seed=seed, strategy=strategy, runtime=runtime,
                      quantize=quantize, threads=threads, runs=runs, as_json=as_json,
                      max_accuracy_drop=max_accuracy_drop, eval_on_train=eval_on_train,
                      load_options={"input_shape": input_shape, "trust_model": trust_model,
                                    "custom_objects": str(custom_objects) if custom_objects else None})
    if met is False:
        raise typer.Exit(1)


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point: runs the app; every failure becomes one line on stderr and an exit code
    (:data:`edgecnn.exits.EXIT_CODES`: 2 bad input, 3 a bug, 130 interrupted; never 1 for a crash)."""
    import os

    from edgecnn.exits import run

    command = typer.main.get_command(app)
    args = list(sys.argv[1:] if argv is None else argv)
    if os.environ.get("_EDGECNN_COMPLETE"):  # a shell asking for completions (see `edgecnn --install-completion`)
        command.main(args=args, prog_name="edgecnn")  # prints them and exits
    sys.exit(run(command, args))


if __name__ == "__main__":  # pragma: no cover
    main()
