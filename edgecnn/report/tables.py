"""Terminal tables (rich) for the reports edgecnn prints, readable at any width (80-column terminals, pipes,
CI logs): :func:`new_table` declares what each column holds and :func:`print_table` fits it to the console.

A ``number`` column is never wrapped (no figure is split across lines); a ``name`` column (layer, model, file)
is never cut: it takes the room it needs, and only when even that does not fit does it wrap, whole; ``text``
wraps at spaces; ``type`` may be shortened with an ellipsis. Narrow consoles get a compact frame.

Example:
    >>> human(1536), human(703594), human(115605504)
    ('1.5K', '703.6K', '115.6M')
    >>> import io
    >>> from rich.console import Console
    >>> out = io.StringIO()
    >>> t = new_table("layers", [("layer", "name"), ("type", "type"), ("MACs", "number")])
    >>> t.add_row("stage1_unit2_conv_expand_relu", "BatchNormalization", "115,605,504")
    >>> t.add_row("stage1_unit2_conv_reduce_relu", "BatchNormalization", "2,359,808")
    >>> print_table(t, console=Console(file=out, width=56))
    >>> text = out.getvalue()
    >>> "stage1_unit2_conv_expand_relu" in text and "stage1_unit2_conv_reduce_relu" in text
    True
    >>> "115,605,504" in text and max(len(line) for line in text.splitlines()) <= 56
    True
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


KINDS = ("name", "type", "number", "text")
# How a ``type`` column shortens Keras layer types when the console is too narrow for the full names.
TYPE_ABBREVIATIONS = {"BatchNormalization": "BatchNorm", "GlobalAveragePooling2D": "GlobalAvgPool2D",
                      "GlobalMaxPooling2D": "GlobalMaxPool2D", "AveragePooling2D": "AvgPool2D",
                      "MaxPooling2D": "MaxPool2D", "DepthwiseConv2D": "DWConv2D", "SeparableConv2D": "SepConv2D",
                      "Conv2DTranspose": "ConvT2D", "ZeroPadding2D": "ZeroPad2D", "Concatenate": "Concat"}


def new_table(title: str, columns: list[tuple[str, str]], **options: Any) -> Any:
    """A rich Table whose columns are ``(header, kind)``, kind one of :data:`KINDS` (see the module doc)."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", **options)
    for header, kind in columns:
        if kind not in KINDS:
            raise ValueError(f"column kind: Expected one of {KINDS}. Received: {kind!r}")
        if kind == "number":
            table.add_column(header, justify="right", no_wrap=True)
        elif kind == "name":
            table.add_column(header, justify="left", no_wrap=True)
        elif kind == "type":
            table.add_column(header, justify="left", overflow="ellipsis", min_width=9)  # "BatchNorm", "DWConv2D"
        else:
            table.add_column(header, justify="left", overflow="fold")
        table.columns[-1].kind = kind  # type: ignore[attr-defined]
    return table


def print_table(table: Any, *, console: Any = None) -> None:
    """Print ``table`` fitted to the console width: first as it is, then with a compact frame (two spaces between
    columns, then one), then with its name columns wrapped (whole, never cut) when even that is wider than the
    console."""
    from rich import box
    from rich.console import Console
    from rich.measure import Measurement

    console = console or Console()
    width = console.width

    def natural() -> int:
        return Measurement.get(console, console.options.update(max_width=10**4), table).maximum

    def longest(col: Any) -> int:
        return max([len(line) for c in [*col._cells, col.header] for line in str(c).splitlines()] or [0])

    def longest_word(col: Any) -> int:
        return max([len(w) for c in [*col._cells, col.header] for w in str(c).split()] or [0])

    def squeezable() -> int:  # how much the type/text columns can give up
        return sum(max(0, longest(c) - (c.min_width or 6)) for c in table.columns
                   if getattr(c, "kind", "text") in ("type", "text"))

    if natural() > width:
        for col in table.columns:
            if getattr(col, "kind", "") == "type":
                col._cells = [TYPE_ABBREVIATIONS.get(c, c) if isinstance(c, str) else c for c in col._cells]
        table.box, table.padding, table.pad_edge, table.show_edge = box.SIMPLE_HEAD, (0, 1, 0, 0), False, False
    if natural() - squeezable() > width:  # one space between columns rather than a folded name
        table.padding = (0, 0, 0, 0)
    names = [c for c in table.columns if getattr(c, "kind", "") == "name"]
    if natural() - squeezable() > width and names:  # names cannot all stay on one line: fold the longest, whole
        for col in table.columns:
            if getattr(col, "kind", "") == "type":
                col.max_width = col.min_width
            elif getattr(col, "kind", "") == "text":  # wrapped at spaces, no word cut
                col.max_width = max(col.min_width or 0, longest_word(col))
        for col in names:
            col.width = longest(col)
        while natural() > width:
            col = max(names, key=lambda c: c.width)
            if col.width <= 8:
                break
            col.width -= 1
            col.no_wrap, col.overflow = False, "fold"
    console.print(table)


def _shape(shape: list, *, compact: bool = False) -> str:
    """A shape without its batch dimension, e.g. (30, 30, 32), or 30x30x32 when ``compact``.

    >>> _shape([None, 30, 30, 32]), _shape([None, 30, 30, 32], compact=True), _shape([None, 10], compact=True)
    ('(30, 30, 32)', '30x30x32', '10')
    """
    dims = ["?" if d is None else str(d) for d in (shape[1:] if shape and shape[0] is None else shape)]
    return "x".join(dims) if compact else "(" + ", ".join(dims) + ")"


def print_inspect(stats: Any, info: Any = None, *, console: Any = None) -> None:
    """Print the inspect report: per-layer table, totals, share by type, conv rewrite candidates."""
    from rich.console import Console

    console = console or Console()
    title = f"{stats.name}  input ({', '.join(map(str, stats.input_shape))})"
    if info is not None:
        title += f"  [{info.written_by}, {info.format}"
        title += ", translated to tf_keras" if info.translated else ""
        title += "]"
    table = new_table(title, [("layer", "name"), ("type", "type"), ("output", "number"), ("params", "number"),
                              ("MACs", "number"), ("act.", "number")])
    table.columns[2].justify = "left"
    for r in stats.layers:
        shape = _shape(r.output_shape, compact=console.width < 100)
        table.add_row(r.name, r.type, shape, f"{r.params:,}", f"{r.macs:,}",
                      f"{human(r.activation_bytes)}B")
    table.add_section()
    table.add_row("total", "", "", f"{stats.total_params:,}", f"{stats.total_macs:,}",
                  f"{human(stats.total_activation_bytes)}B", style="bold")
    print_table(table, console=console)

    shares = new_table("share by layer type", [("type", "name"), ("layers", "number"), ("params", "number"),
                                               ("% params", "number"), ("MACs", "number"), ("% MACs", "number")])
    for kind, t in stats.by_type.items():
        if t["params"] or t["macs"]:
            shares.add_row(kind, str(t["layers"]), f"{t['params']:,}", f"{100 * t['params_share']:.1f}%",
                           f"{t['macs']:,}", f"{100 * t['macs_share']:.1f}%")
    print_table(shares, console=console)

    rows = [r for r in stats.layers if r.separable_macs is not None]
    if rows:
        cand = new_table("Conv2D rewrite candidates (sep. = depthwise-separable, bottl. = 1x1 bottleneck)",
                         [("layer", "name"), ("MACs", "number"), ("sep.\nMACs", "number"), ("ratio", "number"),
                          ("bottl.\nMACs", "number"), ("ratio", "number"), ("params", "number"),
                          ("sep.\nparams", "number"), ("bottl.\nparams", "number")])
        for r in rows:
            cand.add_row(r.name, human(r.macs), human(r.separable_macs), f"{r.macs / r.separable_macs:.1f}x",
                         human(r.bottleneck_macs), f"{r.macs / r.bottleneck_macs:.1f}x", human(r.params),
                         human(r.separable_params), human(r.bottleneck_params))
        print_table(cand, console=console)
    top = max(stats.layers, key=lambda r: r.params, default=None)
    if top is not None and stats.total_params:
        console.print(
            f"largest layer: {top.name} ({top.type}) holds {100 * top.params / stats.total_params:.1f}% of "
            f"{stats.total_params:,} params; total {human(stats.total_macs)} MACs per image"
        )


def print_export(report: Any, *, console: Any = None) -> None:
    """One row per artifact: file, format, quantization, size, and what its runtime showed."""
    from rich.console import Console

    console = console or Console()
    table = new_table(f"exported to {report.outdir}",
                      [("file", "name"), ("format", "type"), ("quant", "type"), ("size", "number"),
                       ("runtime", "type"), ("max rel\ndiff", "number"), ("top-1\nagree", "number"),
                       ("accuracy", "number")])
    for a in report.artifacts:
        v = a.validation
        pct = lambda x: "-" if x is None else f"{100 * x:.2f}%"  # noqa: E731
        table.add_row(Path(a.path).name, a.format, a.quantization, f"{human(a.size_bytes)}B", v["runtime"],
                      f"{v['max_rel_diff']:.2g}", pct(v["top1_agreement"]), pct(v["accuracy"]))
    print_table(table, console=console)
    if report.calibration:
        c = report.calibration
        console.print(f"calibration: {c['samples']} samples from {c['source']}")
