"""``edgecnn bench``: latency, load time, memory, size and accuracy; the CI latency gate."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from edgecnn.cli.app import app
from edgecnn.cli.choices import Profile
from edgecnn.errors import EdgecnnError


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
    from edgecnn.benchmarking import bench as run_bench
    from edgecnn.benchmarking import compare_to_baseline, write_junit
    from edgecnn.report.bench import print_bench
    from edgecnn.benchmarking.gate import load_baseline
    from edgecnn.benchmarking.targets import check_runtimes

    from edgecnn.benchmarking.gate import check_max_regression
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
