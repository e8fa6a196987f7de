"""The compress report: report.json's content, the before/after table, and report.html.

Example:
    >>> ratio(4.0, 2.0), ratio(None, 2.0)
    (2.0, None)
    >>> duration(0.0152), duration(12.3456), duration(-0.00024)
    ('15.2 us', '12.346 ms', '-0.240 us')
"""
from __future__ import annotations

import html
from typing import Any, Optional

from edgecnn.pipeline.context import Context


def ratio(before: Optional[float], after: Optional[float]) -> Optional[float]:
    """before / after, rounded to 3 digits; None when either is unknown or after is 0."""
    if before is None or not after:
        return None
    return round(before / after, 3)


def build(ctx: Context, *, artifacts: list[dict], model_path: str, budget: dict) -> dict:
    """report.json's content from a finished context."""
    from edgecnn._version import __version__
    from edgecnn.analysis import analyze

    stats = analyze(ctx.model)
    original = dict(ctx.state["original"])
    latency = ctx.state.get("latency", {"original": {}, "compressed": {}})
    main = next((a for a in artifacts if a["format"] == ctx.target.format), artifacts[0] if artifacts else None)
    val = (main or {}).get("validation") or {}
    original["latency_ms"] = {rt: t["median_ms"] for rt, t in latency["original"].items()}
    original["plain_conversion_bytes"] = {rt: t["size_bytes"] for rt, t in latency["original"].items()}
    compressed = {
        "params": stats.total_params,
        "macs": stats.total_macs,
        "size_bytes": main["size_bytes"] if main else None,
        "accuracy": val.get("accuracy"),
        "keras_accuracy": ctx.state.get("compressed_keras_accuracy"),
        "latency_ms": {rt: t["median_ms"] for rt, t in latency["compressed"].items()},
        "model": model_path,
    }
    rt = ctx.target.runtime
    plain = original["plain_conversion_bytes"].get(rt)
    return {
        "tool": "edgecnn compress",
        "edgecnn_version": __version__,
        "source": ctx.source,
        "key": ctx.key,
        "target": ctx.target.name,
        "data": None if ctx.heldout is None else {"spec": ctx.data_spec, **ctx.heldout.describe(),
                                                  "memorized_suspect": ctx.state.get("memorized_suspect", False)},
        "original": original,
        "compressed": compressed,
        "speedup": {r: ratio(original["latency_ms"].get(r), compressed["latency_ms"].get(r))
                    for r in compressed["latency_ms"]},
        "size_ratio_vs_plain_conversion": ratio(plain, compressed["size_bytes"]),
        "params_ratio": ratio(original["params"], compressed["params"]),
        "budget": budget,
        "artifacts": [{k: a.get(k) for k in ("path", "format", "quantization", "size_bytes", "sha256", "validation")}
                      for a in artifacts],
        "stages": [s.__dict__ for s in ctx.stages],
        "plan": ctx.state.get("plan", {}),
        "latency": latency,
        "per_layer": ctx.state.get("per_layer", {}),
        "notes": ctx.notes,
        "datafree": ctx.state.get("datafree"),  # no --data: synthesized inputs, equalization, precision candidates
        "recipe": ctx.recipe,
    }


def duration(ms: Optional[float], *, scale: Optional[float] = None) -> str:
    """A time in milliseconds with enough digits: microseconds below 1 ms (a 15 us model shows as ``15.2 us``,
    not ``0.015 ms``). ``scale`` (ms) picks the unit from another value, so a small difference of large times
    stays in ms."""
    if ms is None:
        return "-"
    ref = abs(ms if scale is None else scale)
    if ref < 1.0:
        us = 1000 * ms
        return f"{us:.1f} us" if abs(us) >= 10 else f"{us:.3f} us"
    return f"{ms:.3f} ms"


def _fmt(v: Any, kind: str) -> str:
    if v is None:
        return "-"
    if kind == "pct":
        return f"{100 * v:.2f}%"
    if kind == "ms":
        return duration(v)
    if kind == "bytes":
        return f"{v / 1024:,.1f} KB"
    return f"{v:,}"


def rows(report: dict) -> list[tuple[str, str, str, str]]:
    """(metric, original, compressed, ratio) rows of the before/after table."""
    o, c = report["original"], report["compressed"]
    rt = next(iter(c["latency_ms"]), None)
    out = [
        ("params", _fmt(o["params"], "n"), _fmt(c["params"], "n"), _x(ratio(o["params"], c["params"]))),
        ("MACs", _fmt(o["macs"], "n"), _fmt(c["macs"], "n"), _x(ratio(o["macs"], c["macs"]))),
    ]
    for r, plain in o.get("plain_conversion_bytes", {}).items():
        size = c["size_bytes"] if r == rt else None
        out.append(("size (plain conversion vs compressed)", _fmt(plain, "bytes"),
                    _fmt(size, "bytes"), _x(ratio(plain, size))))
    out.append(("accuracy (held-out, on the runtime)", _fmt(o["accuracy"], "pct"), _fmt(c["accuracy"], "pct"),
                "-" if o["accuracy"] is None or c["accuracy"] is None
                else f"{100 * (c['accuracy'] - o['accuracy']):+.2f} pt"))
    for r, ms in c["latency_ms"].items():
        before = o["latency_ms"].get(r)
        scale = max(abs(v) for v in (before, ms) if v is not None) if (before, ms) != (None, None) else None
        out.append((f"latency {r} (median)", duration(before, scale=scale), duration(ms, scale=scale),
                    _x(report["speedup"].get(r))))
    return out


def _x(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.2f}x"


def applied(report: dict) -> list[str]:
    """What the run changed, as ``stage: change`` lines: the last attempt of each changing stage (after a
    back-off the stages from rewrite on run again), e.g. ``prune: pruned 50% of the channels ...``."""
    last: dict[str, dict] = {}
    for s in report["stages"]:
        last[s["name"]] = s
    return [f"{name}: {change}" for name in ("rewrite", "prune", "finetune", "quantize") if name in last
            for change in last[name]["changes"]]


def backoffs(report: dict) -> list[str]:
    """Each back-off as one line: ``back-off N: why: what was undone``."""
    out = []
    for i, text in enumerate(report["budget"].get("backoffs", []), 1):
        head, _, rest = text.partition(": ") if text.startswith("attempt ") else ("", "", text)
        why, _, undone = rest.rpartition("; ")
        out.append(f"back-off {i}: {why}: {undone}" if why else f"back-off {i}: {rest}")
    return out


def print_table(report: dict, *, console: Any = None) -> None:
    """The before/after table on the terminal (fitted to its width), what was changed, every back-off, the
    budget verdict and the notes."""
    from rich.console import Console

    from edgecnn.report.tables import new_table, print_table as print_fitted

    console = console or Console()
    table = new_table(f"edgecnn compress -> {report['target']}", [("", "text"), ("original", "number"),
                                                                   ("compressed", "number"), ("ratio", "number")])
    for row in rows(report):
        table.add_row(*row)
    print_fitted(table, console=console)
    chosen = [c["id"] for c in report["plan"].get("candidates", []) if c.get("chosen")]
    console.print(f"plan chose: {', '.join(chosen) or 'nothing (see report.html: each candidate and why)'}",
                  markup=False, highlight=False)
    for line in applied(report):
        console.print(f"  {line}", markup=False, highlight=False)
    for line in backoffs(report):
        console.print(line, markup=False, highlight=False)
    b = report["budget"]
    if b.get("met") is False:
        console.print("accuracy budget not met: ", style="bold red", end="")
        console.print(str(b.get("why")), markup=False, highlight=False)
    for note in report["notes"]:
        console.print(f"note: {note}", markup=False, highlight=False)


def to_html(report: dict) -> str:
    """A self-contained report.html: the before/after table, charts of latency, accuracy and size (from the
    benchmark), what was changed and undone, the plan with every candidate's measured effect and decision,
    the stages, the accuracy budget and the notes. Sections without content are left out."""
    from edgecnn.report.html import chart_html, plotly_script

    e = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>edgecnn compress report</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid "
             "#ccc;padding:4px 8px}td{text-align:right}td:first-child{text-align:left}</style></head><body>",
             f"<h1>edgecnn compress: {e(str(report['source']))} &rarr; {e(report['target'])}</h1>"]
    parts.append("<h2>Before / after</h2><table><tr><th></th><th>original</th><th>compressed</th><th>ratio</th></tr>")
    parts += ["<tr>" + "".join(f"<td>{e(v)}</td>" for v in r) + "</tr>" for r in rows(report)]
    parts.append("</table>")
    charts = _figures(report)
    if charts:
        parts.append(plotly_script())
    for div_id, title, fig in charts:
        parts.append(f"<h2>{e(title)}</h2>")
        parts.append(chart_html(div_id, fig))
    chosen = [c["id"] for c in report["plan"].get("candidates", []) if c.get("chosen")]
    changes = applied(report) + backoffs(report)
    parts.append(f"<h2>What changed</h2><p>plan chose: {e(', '.join(chosen) or 'nothing')}</p>")
    if changes:
        parts.append("<ul>" + "".join(f"<li>{e(c)}</li>" for c in changes) + "</ul>")
    cands = report["plan"].get("candidates", [])
    if cands:
        scale, unit = _time_unit(report)
        parts.append(f"<h2>Plan (measured on the target runtime)</h2><table><tr><th>candidate</th><th>params</th>"
                     f"<th>latency {unit}</th><th>gain {unit}</th><th>noise {unit}</th><th>acc. drop (pt, before "
                     "fine-tuning)</th><th>chosen</th><th>why</th></tr>")
        for c in cands:
            cells = [c["id"], _fmt(c.get("params"), "n"), _time(c.get("latency_ms"), scale),
                     _time(c.get("gain_ms"), scale), _time(c.get("noise_ms"), scale), _num(c.get("accuracy_drop")),
                     "yes" if c["chosen"] else "no", c["reason"]]
            parts.append("<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in cells) + "</tr>")
        parts.append("</table>")
    parts.append("<h2>Stages</h2><table><tr><th>stage</th><th>seconds</th><th>status</th><th>changes</th></tr>")
    for s in report["stages"]:
        parts.append(f"<tr><td>{e(s['name'])}</td><td>{s['seconds']:.1f}</td><td>{e(s['status'])}</td>"
                     f"<td>{e('; '.join(s['changes']))}</td></tr>")
    parts.append("</table>")
    parts.append(_budget_html(report["budget"]))
    if report["notes"]:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in report["notes"]) + "</ul>")
    parts.append("<p>Every figure of this page, and more (validation of each artifact, the data split, the "
                 "recipe as run), is in <a href='report.json'>report.json</a> next to it.</p></body></html>")
    return "\n".join(parts)


def _budget_html(b: dict) -> str:
    e = html.escape
    met = {True: "met", False: "not met", None: "not checked (no labelled data)"}[b.get("met")]
    out = (f"<h2>Accuracy budget</h2><p>at most {b['max_accuracy_drop']:g} points below the original's held-out "
           f"accuracy: {e(met)}</p>")
    if b.get("why"):
        out += f"<p>{e(str(b['why']))}</p>"
    return out


def _time_unit(report: dict) -> tuple[float, str]:
    """(factor from ms, unit) for the plan's times: microseconds when the model runs in under 1 ms."""
    plan = report["plan"]
    ref = plan.get("base_ms") or max((c.get("latency_ms") or 0 for c in plan.get("candidates", [])), default=0)
    return (1000.0, "us") if ref and ref < 1.0 else (1.0, "ms")


def _time(v: Optional[float], scale: float) -> str:
    return "-" if v is None else f"{v * scale:.2f}" if scale != 1.0 else f"{v:.3f}"


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"


def _figures(report: dict) -> list:
    """The bench report's charts (latency vs accuracy, latency per runtime, size per model, top ops per
    artifact) for the original (plain conversion) and the compressed model."""
    from edgecnn.benchmarking.results import BenchReport, BenchResult
    from edgecnn.report.html import figures

    results = []
    for which in ("original", "compressed"):
        for rt, t in report["latency"].get(which, {}).items():
            if t.get("median_ms") is None:  # not measured (status says why)
                continue
            results.append(BenchResult(
                model=which, artifact=which, runtime=rt, threads=int(t.get("threads", 1)), status="ok",
                median_ms=t["median_ms"], p90_ms=t["p90_ms"], p99_ms=t["p99_ms"], min_ms=t["min_ms"], runs=t["runs"],
                size_bytes=t["size_bytes"], accuracy=report[which].get("accuracy"),
                per_layer=report.get("per_layer", {}).get(which, {}).get(rt)))
    return figures(BenchReport(results=results)) if results else []
