"""Terminal tables (rich) for the reports edgecnn prints.

Example:
    >>> human(1536), human(703594), human(115605504)
    ('1.5K', '703.6K', '115.6M')
"""
from __future__ import annotations

from pathlib import Path
from typing import Any


def human(n: float) -> str:
    """Short human form of a count: 1.5K, 703.6K, 115.6M, 4.1G."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return str(int(n))


def _shape(shape: list) -> str:
    """A shape without its batch dimension, e.g. (30, 30, 32)."""
    dims = shape[1:] if shape and shape[0] is None else shape
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"


def print_inspect(stats: Any, info: Any = None, *, console: Any = None) -> None:
    """Print the inspect report: per-layer table, totals, share by type, conv rewrite candidates."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    title = f"{stats.name}  input ({', '.join(map(str, stats.input_shape))})"
    if info is not None:
        title += f"  [{info.written_by}, {info.format}"
        title += ", translated to tf_keras" if info.translated else ""
        title += "]"
    table = Table(title=title, title_justify="left")
    for col, just in (("layer", "left"), ("type", "left"), ("output shape", "left"), ("params", "right"),
                      ("MACs", "right"), ("activation", "right")):
        table.add_column(col, justify=just)
    for r in stats.layers:
        table.add_row(r.name, r.type, _shape(r.output_shape), f"{r.params:,}", f"{r.macs:,}",
                      f"{human(r.activation_bytes)}B")
    table.add_section()
    table.add_row("total", "", "", f"{stats.total_params:,}", f"{stats.total_macs:,}",
                  f"{human(stats.total_activation_bytes)}B", style="bold")
    console.print(table)

    shares = Table(title="share by layer type", title_justify="left")
    for col in ("type", "layers", "params", "% params", "MACs", "% MACs"):
        shares.add_column(col, justify="left" if col == "type" else "right")
    for kind, t in stats.by_type.items():
        if t["params"] or t["macs"]:
            shares.add_row(kind, str(t["layers"]), f"{t['params']:,}", f"{100 * t['params_share']:.1f}%",
                           f"{t['macs']:,}", f"{100 * t['macs_share']:.1f}%")
    console.print(shares)

    rows = [r for r in stats.layers if r.separable_macs is not None]
    if rows:
        cand = Table(title="Conv2D rewrite candidates (MACs, params)", title_justify="left")
        for col in ("layer", "MACs", "separable", "ratio", "bottleneck", "ratio", "params", "sep. params",
                    "bottl. params"):
            cand.add_column(col, justify="left" if col == "layer" else "right")
        for r in rows:
            cand.add_row(r.name, human(r.macs), human(r.separable_macs), f"{r.macs / r.separable_macs:.1f}x",
                         human(r.bottleneck_macs), f"{r.macs / r.bottleneck_macs:.1f}x", human(r.params),
                         human(r.separable_params), human(r.bottleneck_params))
        console.print(cand)
    top = max(stats.layers, key=lambda r: r.params, default=None)
    if top is not None and stats.total_params:
        console.print(
            f"largest layer: {top.name} ({top.type}) holds {100 * top.params / stats.total_params:.1f}% of "
            f"{stats.total_params:,} params; total {human(stats.total_macs)} MACs per image"
        )


def print_export(report: Any, *, console: Any = None) -> None:
    """One row per artifact: file, format, quantization, size, and what its runtime showed."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"exported to {report.outdir}", title_justify="left")
    for col in ("file", "format", "quant", "size", "runtime", "max rel diff", "top-1 agree", "accuracy"):
        table.add_column(col, justify="left" if col in ("file", "format", "quant", "runtime") else "right",
                         overflow="fold")
    for a in report.artifacts:
        v = a.validation
        pct = lambda x: "-" if x is None else f"{100 * x:.2f}%"  # noqa: E731
        table.add_row(Path(a.path).name, a.format, a.quantization, f"{human(a.size_bytes)}B", v["runtime"],
                      f"{v['max_rel_diff']:.2g}", pct(v["top1_agreement"]), pct(v["accuracy"]))
    console.print(table)
    if report.calibration:
        c = report.calibration
        console.print(f"calibration: {c['samples']} samples from {c['source']}")
