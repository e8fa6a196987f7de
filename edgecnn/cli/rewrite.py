"""``edgecnn rewrite``: load, check the output path, rewrite, print the per-layer table, save atomically.

Example:
    >>> from edgecnn.rewriting.base import LayerRewrite
    >>> row = LayerRewrite("conv", "separable", 1000, 200, 50, 10, 0.1, 0.2, -0.05, 0.01, True, "")
    >>> _cells(row)[:4]
    ['conv', 'yes', '1.0K -> 200 (5.0x)', '50 -> 10 (5.0x)']
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from edgecnn.cli.app import (MODEL_HELP, STRATEGY_HELP, app, BudgetOption, CustomObjectsOption, EvalOnTrainOption,
                             InputShapeOption, TrustModelOption)
from edgecnn.cli.choices import LatencyQuantize, LatencyRuntime, Pooling, RewriteTo, Select, Strategy
from edgecnn.errors import EdgecnnError, InputFileError


def _cells(row: Any) -> list[str]:
    from edgecnn.report.tables import human

    def pair(before: Any, after: Any) -> str:
        if before is None:
            return "-"
        if not row.kept or after is None:
            return human(before)
        cut = f" ({before / after:.1f}x)" if after else ""
        return f"{human(before)} -> {human(after)}{cut}"

    latency = "-" if row.latency_delta_ms is None else f"{row.latency_delta_ms:+.3f} ± {row.latency_spread_ms:.3f}"
    err = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    return [row.name, "yes" if row.kept else "no", pair(row.macs_before, row.macs_after),
            pair(row.params_before, row.params_after), err(row.weight_error), err(row.output_error), latency,
            row.reason]


def print_rewrite(result: Any, *, to: str, console: Any = None) -> None:
    """The per-layer table, accuracy before/after and the notes."""
    from rich.console import Console

    from edgecnn.report.tables import new_table, print_table

    console = console or Console()
    narrow = console.width < 120  # the reasons go below the table, one line each, instead of a squeezed column
    columns = [("layer", "name"), ("done", "number"), ("MACs", "text"), ("params", "text"), ("weight\nerr", "number"),
               ("output\nerr", "number"), ("latency\nΔ ms", "text")] + ([] if narrow else [("reason", "text")])
    table = new_table(f"rewrite to {to}", columns)
    table.columns[1].justify = "left"
    for col, least in zip(table.columns[2:], (13, 13, 0, 0, 8)):  # "589.8K ->" over "139.3K (4.2x)"
        col.min_width = least or None
    for row in result.layers:
        table.add_row(*_cells(row)[:len(columns)])
    print_table(table, console=console)
    for row in (r for r in result.layers if narrow and r.reason):
        console.print(f"{row.name}: {row.reason}", markup=False, highlight=False)
    if result.accuracy_before is not None:
        after = "-" if result.accuracy_after is None else f"{100 * result.accuracy_after:.2f}%"
        console.print(f"held-out accuracy: {100 * result.accuracy_before:.2f}% before -> {after} after")
    if result.distill is not None:
        d = result.distill
        console.print(f"distillation: {d.epochs_run} epochs (best {d.best_epoch}), {d.seconds:.1f} s")
    for note in result.notes:
        console.print(f"note: {note}")


def run_rewrite(model: str, *, output: Path, to: str, layers: list[str], exclude: list[str], select: str,
                depth_multiplier: int, ratio: float, rank: Optional[int], energy: Optional[float], pooling: str,
                data: Optional[str], epochs: int, batch_size: int, seed: int, strategy: str, runtime: str,
                quantize: str, threads: int, runs: int, as_json: bool, load_options: dict,
                max_accuracy_drop: Optional[float] = None, eval_on_train: bool = False) -> Optional[bool]:
    """The command's body (see ``edgecnn rewrite --help``); returns whether the accuracy budget was met (None:
    not checked)."""
    import edgecnn.io as model_io
    from edgecnn.rewriting import rewrite

    output = Path(output)
    if output.suffix.lower() not in (".keras", ".h5"):
        raise InputFileError(f"cannot save as {output.name}: Expected a .h5 or .keras path. Received: {output}")
    source = Path(model)
    if output.exists() and source.exists() and output.resolve() == source.resolve():
        raise EdgecnnError(f"output is the input model: Expected a new path (the input is never modified). "
                           f"Received: {output}")
    from edgecnn import distribute

    strategy = distribute.check_strategy(strategy)
    if strategy == "multiworker" and select == "measured":
        raise EdgecnnError("--select measured times each rewrite on this host, so workers would choose differently: "
                           "Expected --select auto or all with --strategy multiworker. Received: --select measured")
    distribute.start(strategy)  # before TensorFlow initializes (multiworker: waits for every worker)
    with distribute.output_path(output) as target:  # a non-chief worker writes into a private folder
        working = model_io.load(model, **load_options)
        result = rewrite(working, to=to, layers=layers or None, exclude=exclude or None, select=select,
                         depth_multiplier=depth_multiplier, ratio=ratio, rank=rank, energy=energy, pooling=pooling,
                         data=data, epochs=epochs, batch_size=batch_size, seed=seed,
                         strategy=None if strategy == "default" else strategy, runtime=runtime, quantize=quantize,
                         threads=threads, runs=runs, progress=not as_json, eval_on_train=eval_on_train,
                         max_accuracy_drop=max_accuracy_drop if data is not None else None)
        distribute.collectives_done()
        model_io.save(result.model, target)
    met = None if result.budget is None else result.budget["met"]
    worker = distribute.worker_line()
    if as_json:
        from edgecnn.files import strict_json

        print(strict_json({**result.as_dict(), "output": None if worker else str(output),
                          **({"worker": worker} if worker else {})}))
        return met
    print_rewrite(result, to=to)
    print(worker or f"wrote {output}")
    if met is False:
        import sys

        print(f"edgecnn: accuracy budget missed: {result.budget['why']}", file=sys.stderr)
    return met


@app.command()
def rewrite(
    model: str = typer.Argument(..., metavar="MODEL", help=MODEL_HELP),
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
    strategy: Strategy = typer.Option("default", "--strategy", help=STRATEGY_HELP),
    runtime: LatencyRuntime = typer.Option("litert", "--runtime", help="--select measured: the runtime to time on."),
    quantize: LatencyQuantize = typer.Option("none", "--quantize", help="--select measured: precision of both sides."),
    threads: int = typer.Option(1, "--threads", help="--select measured: runtime threads."),
    runs: int = typer.Option(30, "--runs", help="--select measured: timed runs per model."),
    max_accuracy_drop: BudgetOption = 1.0,
    eval_on_train: EvalOnTrainOption = False,
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
    input_shape: InputShapeOption = None,
    custom_objects: CustomObjectsOption = None,
    trust_model: TrustModelOption = False,
) -> None:
    """Rewrite layers into cheaper blocks initialized from the trained weights; recover accuracy by distillation.

    Exit codes: 0 done, 1 written but the held-out accuracy missed --max-accuracy-drop (the message says what to
    try), 2 bad input.
    """
    from edgecnn.checks import check_number, check_optional
    from edgecnn.files import check_output_file

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
