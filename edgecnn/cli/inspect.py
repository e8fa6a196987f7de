"""``edgecnn inspect``: per-layer params, MACs and activation sizes."""
from __future__ import annotations

import json

import typer

from edgecnn.cli.app import MODEL_HELP, app, CustomObjectsOption, InputShapeOption, TrustModelOption


@app.command()
def inspect(
    model: str = typer.Argument(..., metavar="MODEL", help=MODEL_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    input_shape: InputShapeOption = None,
    custom_objects: CustomObjectsOption = None,
    trust_model: TrustModelOption = False,
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
