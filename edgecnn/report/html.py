"""A self-contained HTML benchmark report with plotly charts (plotly.js is embedded: no network needed).

Charts: latency vs accuracy (one point per model x runtime x threads; latency vs size when no labelled data
was given), median latency per runtime (bars grouped by model, p90 as error bar), size per model, and the top
ops of each per-layer profile; then the full table.

plotly.js is inlined once (:func:`plotly_script`): plotly.js's partial "basic" bundle (scatter, bar and pie
traces, all these charts need), shipped in ``edgecnn/report/assets`` (1.2 MB; ``scripts/vendor_plotly_basic.sh``
refreshes it), when its major version is the one the installed plotly package writes figures for; else
plotly's full minified bundle (4.8 MB).

Example:
    >>> import tempfile, pathlib
    >>> from edgecnn.benchmarking.results import BenchReport, BenchResult
    >>> r = BenchResult(model="a", artifact="a.tflite", runtime="litert", threads=1, status="ok", median_ms=1.0,
    ...                 p90_ms=1.2, p99_ms=1.5, runs=10, size_bytes=1000, accuracy=0.9)
    >>> path = write_html(BenchReport(results=[r]), pathlib.Path(tempfile.mkdtemp()) / "r.html")
    >>> text = path.read_text()
    >>> "latency-vs-accuracy" in text and "size-per-model" in text and "<script src=" not in text
    True
    >>> text.count("Copyright 2012-")  # plotly.js, once
    1
"""
from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

PLOTLY_BASIC = Path(__file__).parent / "assets" / "plotly-basic.min.js"

_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}td:first-child,td:nth-child(2){text-align:left}
h2{margin-top:1.6em}.note{color:#555}"""


def plotly_js() -> tuple[str, str]:
    """(plotly.js source, which bundle): the shipped basic bundle when its major version matches the plotly.js
    the installed plotly package writes for, else plotly's full bundle. Nothing is downloaded."""
    import plotly.offline

    wanted = plotly.offline.get_plotlyjs_version()
    if PLOTLY_BASIC.is_file():
        js = PLOTLY_BASIC.read_text(encoding="utf-8")
        found = re.search(r"plotly\.js \(basic[^)]*\) v(\d+)\.", js[:400])
        if found and found.group(1) == wanted.split(".")[0]:
            return js, "basic"
    return plotly.offline.get_plotlyjs(), "full"


def plotly_script() -> str:
    """plotly.js as one inline ``<script>`` (include it once, before the charts)."""
    return f"<script type='text/javascript'>{plotly_js()[0]}</script>"


def chart_html(div_id: str, fig: Any) -> str:
    """One chart's div and ``Plotly.newPlot`` call (plotly.js itself comes from :func:`plotly_script`)."""
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})


def time_unit(values_ms: list) -> tuple[float, str]:
    """(factor from ms, unit) for a chart's times: microseconds when every time is under 1 ms.

    >>> time_unit([0.015, 0.4]), time_unit([0.5, 2.0]), time_unit([])
    ((1000.0, 'us'), (1.0, 'ms'), (1.0, 'ms'))
    """
    known = [abs(v) for v in values_ms if v is not None]
    return (1000.0, "us") if known and max(known) < 1.0 else (1.0, "ms")


def figures(report: Any) -> list[tuple[str, str, Any]]:
    """The charts as ``(id, title, plotly Figure)``."""
    import plotly.graph_objects as go

    ok = [r for r in report.results if r.status == "ok" and r.median_ms is not None]
    k, unit = time_unit([r.median_ms for r in ok])
    out = []
    labelled = any(r.accuracy is not None for r in ok)
    scatter = go.Figure()
    for runtime in dict.fromkeys(r.runtime for r in ok):
        rows = [r for r in ok if r.runtime == runtime]
        y = [(100 * r.accuracy if labelled else (r.size_bytes or 0) / 1024) if (r.accuracy is not None or not labelled)
             else None for r in rows]
        scatter.add_trace(go.Scatter(x=[k * r.median_ms for r in rows], y=y, mode="markers+text", name=runtime,
                                     text=[f"{r.model} ({r.threads}t)" for r in rows], textposition="top center",
                                     marker={"size": 11}))
    scatter.update_layout(xaxis_title=f"median latency ({unit}, log)", xaxis_type="log",
                          yaxis_title="accuracy (%)" if labelled else "size (KB)", height=480)
    out.append(("latency-vs-accuracy", "Latency vs accuracy" if labelled else "Latency vs size (no labelled data)",
                scatter))
    bars = go.Figure()
    for model in dict.fromkeys(r.model for r in ok):
        rows = [r for r in ok if r.model == model]
        bars.add_trace(go.Bar(name=model, x=[f"{r.runtime} {r.threads}t" for r in rows],
                              y=[k * r.median_ms for r in rows],
                              error_y={"type": "data", "symmetric": False,
                                       "array": [k * max(0.0, (r.p90_ms or r.median_ms) - r.median_ms) for r in rows]}))
    bars.update_layout(barmode="group", yaxis_title=f"median latency ({unit}), bar to p90", height=440)
    out.append(("latency-per-runtime", "Latency per runtime", bars))
    sized = [r for r in ok if r.size_bytes]
    if sized:
        size = go.Figure()
        for runtime in dict.fromkeys(r.runtime for r in sized):
            rows = list({r.model: r for r in reversed([r for r in sized if r.runtime == runtime])}.values())[::-1]
            size.add_trace(go.Bar(name=runtime, x=[r.model for r in rows], y=[r.size_bytes / 1024 for r in rows],
                                  text=[f"{r.size_bytes / 1024:,.1f} KB" for r in rows], textposition="auto",
                                  hovertext=[f"gzip {r.gzip_bytes / 1024:,.1f} KB" if r.gzip_bytes else ""
                                             for r in rows]))
        size.update_layout(barmode="group", yaxis_title="file size on the runtime (KB)", height=400)
        out.append(("size-per-model", "Size per model", size))
    for i, r in enumerate(x for x in ok if x.per_layer):
        ops = list(reversed(r.per_layer))
        ko, op_unit = time_unit([o["ms"] for o in ops])
        fig = go.Figure(go.Bar(x=[ko * o["ms"] for o in ops], y=[f"{o['name'][:48]} ({o['type']})" for o in ops],
                               orientation="h", text=[f"{100 * o['share']:.0f}%" for o in ops]))
        fig.update_layout(xaxis_title=f"{op_unit} per inference", height=120 + 28 * len(ops), margin={"l": 360})
        out.append((f"per-layer-{i}", f"Top ops: {r.model} on {r.runtime} ({r.threads} thread(s))", fig))
    return out


def render(report: Any) -> str:
    """The report as one HTML document (plotly.js inlined once)."""
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>edgecnn bench</title>",
             f"<style>{_STYLE}</style></head><body><h1>edgecnn bench</h1>"]
    env = report.environment
    parts.append(f"<p class='note'>{html.escape(str(env.get('label', 'host measurement')))}: "
                 f"{html.escape(str(env.get('cpu', '?')))}, {env.get('cores', '?')} cores; batch "
                 f"{report.settings.get('batch_size', 1)}; times are medians of interleaved runs.</p>")
    charts = figures(report) if any(r.status == "ok" and r.median_ms is not None for r in report.results) else []
    if charts:
        parts.append(plotly_script())
    for div_id, title, fig in charts:
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts.append(chart_html(div_id, fig))
    parts.append("<h2>All results</h2>" + _table(report))
    gpu = [g for g in report.gpu if not g["available"]]
    if gpu:
        parts.append("<p class='note'>" + "<br>".join(html.escape(f"{g['runtime']}: unavailable ({g['reason']})")
                                                      for g in gpu) + "</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(report: Any, path: str | Path) -> Path:
    """Write :func:`render` atomically to ``path``."""
    from edgecnn.files import write_atomic

    return write_atomic(path, render(report))


def _table(report: Any) -> str:
    cols = ("model", "runtime", "threads", "status", "median_ms", "p90_ms", "p99_ms", "min_ms", "runs",
            "throughput_ips", "ratio_to_reference", "load_ms", "peak_mem_mb", "size_bytes", "gzip_bytes", "accuracy",
            "top1_agreement")
    head = "".join(f"<th>{c}</th>" for c in cols)
    rows = []
    for r in report.results:
        cells = []
        for c in cols:
            v = getattr(r, c)
            if c == "status" and r.reason:
                v = f"{v}: {r.reason}"
            cells.append(f"<td>{html.escape(f'{v:.4g}' if isinstance(v, float) else '-' if v is None else str(v))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
