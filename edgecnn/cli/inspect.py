"""``edgecnn inspect``: per-layer params, MACs and activation sizes."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from edgecnn.cli.app import CUSTOM_HELP, MODEL_HELP, TRUST_HELP, app


@app.command()
def inspect(
    model: str = typer.Argument(..., metavar="MODEL", help=MODEL_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="H,W,C for inputs with unknown size."),
    custom_objects: Optional[Path] = typer.Option(None, "--custom-objects", help=CUSTOM_HELP),
    trust_model: bool = typer.Option(False, "--trust-model", help=TRUST_HELP),
) -> None:
    """Per-layer params, MACs and activation sizes, and what separable/bottleneck convs would cost."""
    import edgecnn.io as model_io
    from edgecnn.io import load_info

    working = model_io.load(
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
    from edgecnn.report.tables import print_inspect

    print_inspect(stats, info)
