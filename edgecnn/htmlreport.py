"""A self-contained HTML benchmark report with plotly charts (plotly.js is embedded: no network needed).

Charts: latency vs accuracy (one point per model x runtime x threads; latency vs size when no labelled data
was given), median latency per runtime (bars grouped by model, p90 as error bar), and the top ops of each
per-layer profile; then the full table.

Example:
    >>> import tempfile, pathlib
    >>> from edgecnn.bench.results import BenchReport, BenchResult
    >>> r = BenchResult(model="a", artifact="a.tflite", runtime="litert", threads=1, status="ok", median_ms=1.0,
    ...                 p90_ms=1.2, p99_ms=1.5, runs=10, size_bytes=1000, accuracy=0.9)
    >>> path = write_html(BenchReport(results=[r]), pathlib.Path(tempfile.mkdtemp()) / "r.html")
    >>> text = path.read_text()
    >>> "latency-vs-accuracy" in text and "plotly" in text and "<script src=" not in text
    True
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}td:first-child,td:nth-child(2){text-align:left}
h2{margin-top:1.6em}.note{color:#555}"""


def figures(report: Any) -> list[tuple[str, str, Any]]:
    """The charts as ``(id, title, plotly Figure)``."""
    import plotly.graph_objects as go

    ok = [r for r in report.results if r.status == "ok" and r.median_ms is not None]
    out = []
    labelled = any(r.accuracy is not None for r in ok)
    scatter = go.Figure()
    for runtime in dict.fromkeys(r.runtime for r in ok):
        rows = [r for r in ok if r.runtime == runtime]
        y = [(100 * r.accuracy if labelled else (r.size_bytes or 0) / 1024) if (r.accuracy is not None or not labelled)
             else None for r in rows]
        scatter.add_trace(go.Scatter(x=[r.median_ms for r in rows], y=y, mode="markers+text", name=runtime,
                                     text=[f"{r.model} ({r.threads}t)" for r in rows], textposition="top center",
                                     marker={"size": 11}))
    scatter.update_layout(xaxis_title="median latency (ms, log)", xaxis_type="log",
                          yaxis_title="accuracy (%)" if labelled else "size (KB)", height=480)
    out.append(("latency-vs-accuracy", "Latency vs accuracy" if labelled else "Latency vs size (no labelled data)",
                scatter))
    bars = go.Figure()
    for model in dict.fromkeys(r.model for r in ok):
        rows = [r for r in ok if r.model == model]
        bars.add_trace(go.Bar(name=model, x=[f"{r.runtime} {r.threads}t" for r in rows], y=[r.median_ms for r in rows],
                              error_y={"type": "data", "symmetric": False,
                                       "array": [max(0.0, (r.p90_ms or r.median_ms) - r.median_ms) for r in rows]}))
    bars.update_layout(barmode="group", yaxis_title="median latency (ms), bar to p90", height=440)
    out.append(("latency-per-runtime", "Latency per runtime", bars))
    for i, r in enumerate(x for x in ok if x.per_layer):
        ops = list(reversed(r.per_layer))
        fig = go.Figure(go.Bar(x=[o["ms"] for o in ops], y=[f"{o['name'][:48]} ({o['type']})" for o in ops],
                               orientation="h", text=[f"{100 * o['share']:.0f}%" for o in ops]))
        fig.update_layout(xaxis_title="ms per inference", height=120 + 28 * len(ops), margin={"l": 360})
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
    for i, (div_id, title, fig) in enumerate(figures(report)):
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=i == 0, div_id=div_id,
                                 config={"displaylogo": False, "responsive": True}))
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
