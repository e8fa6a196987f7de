"""``edgecnn compress`` (the whole pipeline) and ``edgecnn recipes`` (its presets)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from edgecnn.cli.app import (MODEL_HELP, STRATEGY_HELP, app, CustomObjectsOption, EvalOnTrainOption, InputShapeOption,
                             LabelsOption, MinAgreementOption, MinSnrOption, TrustModelOption)
from edgecnn.cli.choices import Profile, Strategy, Target, complete_recipe, recipe_metavar
from edgecnn.errors import EdgecnnError
from edgecnn.files import read_labels
from edgecnn.recipes import preset_names


@app.command()
def compress(
    model: str = typer.Argument(..., metavar="MODEL", help=MODEL_HELP),
    outdir: Optional[Path] = typer.Option(None, "-o", "--outdir", help="Output folder (default: <model>_edgecnn/ next to it)."),
    data: Optional[str] = typer.Option(None, "--data", help="digits, an image folder, or a .npz (x[, y]); without it only data-free steps run."),
    val: Optional[str] = typer.Option(None, "--val", help="Held-out data the model has not seen (same kinds as --data): "
                                      "the reported accuracies and the budget are measured on it, all of --data trains. "
                                      "Default: a split of --data."),
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
    labels: LabelsOption = None,
    min_agreement: MinAgreementOption = None,
    min_snr_db: MinSnrOption = None,
    eval_on_train: EvalOnTrainOption = False,
    input_shape: InputShapeOption = None,
    custom_objects: CustomObjectsOption = None,
    trust_model: TrustModelOption = False,
    input_range: Optional[str] = typer.Option(None, "--input-range", help="LO,HI of the model input (e.g. -1,1) "
                                              "for data-free runs; default: inferred from the model."),
    strategy: Optional[Strategy] = typer.Option(None, "--strategy", help=STRATEGY_HELP + " Overrides the recipe's "
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
                              input_range=input_range, strategy=strategy, val=val)
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
