"""``edgecnn prune``: magnitude, 2:4 or structured channel pruning; load, prune, save atomically, print."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from edgecnn.cli.app import (MODEL_HELP, STRATEGY_HELP, app, BudgetOption, CustomObjectsOption, EvalOnTrainOption,
                             InputShapeOption, TrustModelOption)
from edgecnn.cli.choices import Importance, PruneMethod, Schedule, Strategy
from edgecnn.errors import EdgecnnError, InputFileError


def parse_layer_sparsity(items: list[str]) -> Optional[dict[str, float]]:
    """``['conv*=0.3', 'dense1=0.5']`` -> ``{'conv*': 0.3, 'dense1': 0.5}``.

    >>> parse_layer_sparsity(["conv*=0.3"])
    {'conv*': 0.3}
    >>> parse_layer_sparsity(["conv"])
    Traceback (most recent call last):
    ...
    edgecnn.errors.EdgecnnError: --layer-sparsity: Expected GLOB=RATIO. Received: 'conv'
    """
    out = {}
    for item in items:
        glob, sep, value = item.rpartition("=")
        try:
            if not sep or not glob:
                raise ValueError
            out[glob] = float(value)
        except ValueError:
            raise EdgecnnError(f"--layer-sparsity: Expected GLOB=RATIO. Received: {item!r}") from None
    return out or None


def run_prune(model: str, *, output: Path, method: str, sparsity: float, importance: str, round_to: int,
              layer_sparsity: list[str], schedule: str, skip_first_last: bool, data: Optional[str], epochs: int,
              batch_size: int, seed: int, analyze: bool, as_json: bool, load_options: dict,
              max_accuracy_drop: Optional[float] = None, eval_on_train: bool = False,
              strategy: str = "default") -> Optional[bool]:
    """Check the options, load, (analyze,) prune, save atomically, print. Returns whether the accuracy budget
    was met (None: not checked, no labelled data)."""
    import edgecnn.io as model_io
    from edgecnn import distribute
    from edgecnn.pruning import _check, _check_strategy
    from edgecnn.report.prune import print_prune, print_sensitivity

    overrides = parse_layer_sparsity(layer_sparsity)
    _check(method, sparsity, schedule, importance, round_to, epochs, overrides)  # fail fast, before loading
    strategy = distribute.check_strategy(strategy)
    _check_strategy(strategy, method)
    if output.suffix.lower() not in (".h5", ".keras"):
        raise InputFileError(f"cannot save as {output.name}: Expected a .h5 or .keras path. Received: {output}")
    if Path(model).exists() and output.exists() and output.resolve() == Path(model).resolve():
        raise InputFileError(f"output would overwrite the input model: Expected another path. Received: {output}")
    if epochs > 0 and data is None:
        raise EdgecnnError(f"fine-tuning needs data: Expected --data with --epochs {epochs}. Received: no --data")
    if analyze and (method != "channels" or data is None):
        raise EdgecnnError("--analyze measures channel groups on labelled data: Expected --method channels and "
                           f"--data. Received: --method {method}{'' if data else ' without --data'}")
    distribute.start(strategy)  # before TensorFlow initializes (multiworker: waits for every worker)
    with distribute.output_path(output) as target:  # a non-chief worker writes into a private folder
        result, sens = _pruned(model, load_options=load_options, method=method, sparsity=sparsity,
                               importance=importance, round_to=round_to, overrides=overrides, schedule=schedule,
                               skip_first_last=skip_first_last, data=data, epochs=epochs, batch_size=batch_size,
                               seed=seed, analyze=analyze, as_json=as_json, max_accuracy_drop=max_accuracy_drop,
                               eval_on_train=eval_on_train, strategy=strategy)
        model_io.save(result.model, target)
    met = None if result.budget is None else result.budget["met"]
    worker = distribute.worker_line()
    if as_json:
        report: dict[str, Any] = result.as_dict()
        report["output"] = None if worker else str(output)
        if worker:
            report["worker"] = worker
        if sens is not None:
            report["sensitivity"] = sens
        from edgecnn.files import strict_json

        print(strict_json(report))
        return met
    if sens is not None:
        print_sensitivity(sens)
    print_prune(result, output=None if worker else output)
    if worker:
        print(worker)
    if met is False:
        import sys

        print(f"edgecnn: accuracy budget missed: {result.budget['why']}", file=sys.stderr)
    return met


def _pruned(model: str, *, load_options: dict, method: str, sparsity: float, importance: str, round_to: int,
            overrides: Any, schedule: str, skip_first_last: bool, data: Optional[str], epochs: int, batch_size: int,
            seed: int, analyze: bool, as_json: bool, max_accuracy_drop: Optional[float], eval_on_train: bool,
            strategy: str) -> tuple:
    """Load, (analyze,) prune: ``(PruneResult, sensitivity or None)``."""
    import edgecnn.io as model_io
    from edgecnn import distribute
    from edgecnn.pruning import prune

    working = model_io.load(model, **load_options)
    sens = None
    heldout = None
    if data is not None:
        from edgecnn.data import split_data

        shape = tuple(int(d) for d in working.inputs[0].shape[1:])
        heldout = split_data(data, input_shape=shape, seed=seed, eval_on_train=eval_on_train)
    if analyze:
        from edgecnn.pruning.sensitivity import sensitivity

        # measured on the train split: the test split only judges the final model
        sens = sensitivity(working, heldout.train, importance=importance, round_to=round_to)
    result = prune(working, method=method, sparsity=sparsity, schedule=schedule, layer_sparsity=overrides,
                   skip_first_last=skip_first_last, importance=importance, round_to=round_to, data=heldout,
                   epochs=epochs, batch_size=batch_size, seed=seed, progress=not as_json,
                   max_accuracy_drop=max_accuracy_drop if data is not None else None,
                   strategy=None if strategy == "default" else strategy)
    distribute.collectives_done()
    return result, sens


@app.command()
def prune(
    model: str = typer.Argument(..., metavar="MODEL", help=MODEL_HELP),
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
    strategy: Strategy = typer.Option("default", "--strategy", help=STRATEGY_HELP),
    analyze: bool = typer.Option(False, "--analyze", help="channels: accuracy drop per group at 25/50/75% (labelled --data)."),
    max_accuracy_drop: BudgetOption = 1.0,
    eval_on_train: EvalOnTrainOption = False,
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
    input_shape: InputShapeOption = None,
    custom_objects: CustomObjectsOption = None,
    trust_model: TrustModelOption = False,
) -> None:
    """Prune: magnitude / 2:4 sparsity (smaller gzip size) or structured channels (smaller, faster layers).

    Exit codes: 0 done, 1 written but the held-out accuracy missed --max-accuracy-drop (the message says what to
    try), 2 bad input.
    """
    from edgecnn.checks import check_number
    from edgecnn.files import check_output_file

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
