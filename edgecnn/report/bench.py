"""Terminal table (rich) of a benchmark report and of the gate's verdict.

Example:
    >>> import io
    >>> from rich.console import Console
    >>> from edgecnn.benchmarking.results import BenchReport, BenchResult
    >>> r = BenchResult(model="a", artifact="a.tflite", runtime="litert", threads=1, status="ok", median_ms=1.5,
    ...                 p90_ms=1.6, p99_ms=1.9, runs=10, size_bytes=2048, gzip_bytes=1024)
    >>> out = io.StringIO()
    >>> print_bench(BenchReport(results=[r]), console=Console(file=out, width=200))
    >>> "1.500" in out.getvalue() and "litert" in out.getvalue()
    True
"""
from __future__ import annotations

from typing import Any


def print_bench(report: Any, *, console: Any = None) -> None:
    """One row per (model, runtime, threads); GPU runtimes that are unavailable, with the reason.

    The terminal shows the essentials; spread, min and the reference ratio are in ``--json``/``--markdown``.
    """
    from rich.console import Console

    from edgecnn.report.tables import human, print_table

    console = console or Console()
    env = report.environment
    prof = report.settings.get("profile")
    where = (f"profile {prof['name']} pinned to CPU(s) {', '.join(map(str, env.get('pinned_cores', [])))}, "
             if prof else "")
    title = (f"bench: {env.get('label', 'host measurement')}, {where}{env.get('cpu', '?')}, "
             f"{env.get('cores', '?')} cores, batch {report.settings.get('batch_size', 1)}")
    f = lambda v, d=3: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
    x = lambda v: "-" if v is None else f"{v:.2f}x"  # noqa: E731
    pct = lambda v: "-" if v is None else f"{100 * v:.2f}%"  # noqa: E731
    size = lambda v: "-" if v is None else f"{human(v)}B"  # noqa: E731
    rows = [r for r in report.results if not (r.status == "unavailable" and r.runtime in _gpu_names(report))]
    latency = _table(title, ("model", "runtime", "thr", "status", "median\nms", "p90", "p99", "runs", "img/s",
                             "vs\nfirst"))
    other = _table("load, memory, size, accuracy", ("model", "runtime", "thr", "load\nms", "peak\nMB", "size",
                                                    "gzip", "accuracy", "top-1\nagree"))
    for r in rows:
        status = r.status if r.status == "ok" else f"{r.status}: {r.reason}"
        latency.add_row(r.model, r.runtime, str(r.threads), status, f(r.median_ms), f(r.p90_ms), f(r.p99_ms),
                        str(r.runs), f(r.throughput_ips, 0), x(r.ratio_to_first))
        if r.status == "ok":
            other.add_row(r.model, r.runtime, str(r.threads), f(r.load_ms, 1), f(r.peak_mem_mb, 1), size(r.size_bytes),
                          size(r.gzip_bytes), pct(r.accuracy), pct(r.top1_agreement))
    print_table(latency, console=console)
    print_table(other, console=console)
    for g in report.gpu:
        if not g["available"]:
            console.print(f"{g['runtime']}: unavailable ({g['reason']})")
    notes = sorted({f"{r.runtime}: {r.reason}" for r in report.results if r.status == "ok" and r.reason})
    for note in notes:
        console.print(f"note: {note}")
    for r in report.results:
        if r.per_layer:
            top = ", ".join(f"{o['name']} ({o['type']}) {o['ms']:.3f} ms {100 * o['share']:.0f}%" for o in r.per_layer[:5])
            console.print(f"top ops {r.model} on {r.runtime}/{r.threads}t: {top}")


def _table(title: str, cols: tuple[str, ...]) -> Any:
    from edgecnn.report.tables import new_table

    kinds = {"model": "name", "runtime": "name", "status": "text"}
    return new_table(title, [(c, kinds.get(c, "number")) for c in cols])


def _gpu_names(report: Any) -> set[str]:
    """GPU runtimes not asked for explicitly are summarised in one line each, not one row per model."""
    asked = set(report.settings.get("runtimes") or [])
    return {g["runtime"] for g in report.gpu} - asked
