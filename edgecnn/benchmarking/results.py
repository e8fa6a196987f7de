"""What a benchmark run produces: one :class:`BenchResult` per (model, runtime, threads), in a :class:`BenchReport`.

Example:
    >>> r = BenchResult(model="a", artifact="a.tflite", runtime="litert", threads=1, status="ok",
    ...                 median_ms=2.0, p90_ms=2.5, p99_ms=3.0, runs=10, size_bytes=1000)
    >>> report = BenchReport(results=[r])
    >>> report.as_dict()["results"][0]["median_ms"], report.result("a", "litert", 1).status
    (2.0, 'ok')
    >>> "| a | litert | 1 | ok | 2.000 |" in report.markdown()
    True
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

STATUSES = ("ok", "load failed", "run failed", "unavailable")
SCHEMA = "edgecnn.bench/1"


@dataclass
class BenchResult:
    """One model on one runtime with one thread count.

    Times are milliseconds per call of ``batch_size`` images; ``throughput_ips`` is images per second at the
    median. ``cpu_ms`` is the median process CPU time per call. ``load_ms`` is the time from artifact bytes (or working model) to the first result, which
    includes lazy initialisation (XNNPACK weight packing, ``tf.function`` tracing). ``peak_mem_mb`` is the
    rise of the process's resident-memory high-water mark (Linux ``VmHWM``, reset before each load) while
    the runtime loads the artifact and runs it once: native allocations included. ``ratio_to_reference``
    is this model's 20th-percentile CPU time per call over the interleaved rounds divided by the reference
    model's, on the same runtime and threads, in the same run; ``wall_ratio_to_reference`` is the median
    over rounds of the wall-time ratio within a round (see docs/ci-latency-gate.md). ``accuracy`` and ``top1_agreement`` (with the Keras model) need ``data``.
    """

    model: str
    artifact: str
    runtime: str
    threads: int
    status: str
    reason: str = ""
    warning: str = ""
    median_ms: Optional[float] = None
    p90_ms: Optional[float] = None
    p99_ms: Optional[float] = None
    min_ms: Optional[float] = None
    spread_ms: Optional[float] = None
    runs: int = 0
    throughput_ips: Optional[float] = None
    load_ms: Optional[float] = None
    peak_mem_mb: Optional[float] = None
    size_bytes: Optional[int] = None
    gzip_bytes: Optional[int] = None
    accuracy: Optional[float] = None
    top1_agreement: Optional[float] = None
    ratio_to_reference: Optional[float] = None
    ratio_to_first: Optional[float] = None
    wall_ratio_to_reference: Optional[float] = None
    cpu_ms: Optional[float] = None
    batch_size: int = 1
    source: Optional[str] = None
    source_sha256: Optional[str] = None
    per_layer: Optional[list[dict]] = None
    samples_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def key(self) -> str:
        return f"{self.model}|{self.runtime}|{self.threads}"

    def as_dict(self, *, samples: bool = False) -> dict:
        d = asdict(self)
        if not samples:
            d.pop("samples_ms")
        return d


@dataclass
class BenchReport:
    """All results of one :func:`edgecnn.bench` call, and how they were measured."""

    results: list[BenchResult]
    reference: dict[str, dict] = field(default_factory=dict)  # "runtime|threads" -> reference model timing
    environment: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    gpu: list[dict] = field(default_factory=list)
    baseline_results: list[BenchResult] = field(default_factory=list)  # the baseline's files, measured now

    def result(self, model: str, runtime: str, threads: int) -> Optional[BenchResult]:
        """The result of one (model, runtime, threads), or None."""
        for r in self.results:
            if (r.model, r.runtime, r.threads) == (model, runtime, threads):
                return r
        return None

    @property
    def ok(self) -> list[BenchResult]:
        return [r for r in self.results if r.status == "ok"]

    def as_dict(self, *, samples: bool = False) -> dict:
        return {"schema": SCHEMA, "settings": self.settings, "environment": self.environment,
                "reference": self.reference, "gpu": self.gpu,
                "results": [r.as_dict(samples=samples) for r in self.results],
                "baseline_results": [r.as_dict(samples=samples) for r in self.baseline_results]}

    def to_json(self, path: str | Path, *, samples: bool = False) -> Path:
        """Write :meth:`as_dict` as JSON, atomically."""
        from edgecnn.files import write_atomic

        return write_atomic(path, json.dumps(self.as_dict(samples=samples), indent=2) + "\n")

    def markdown(self) -> str:
        """One table: a row per (model, runtime, threads)."""
        command = self.settings.get("command")
        lines = ([f"`{command}`", ""] if command else []) + [f"{self.environment.get('label', 'host measurement')}: "
                 f"{self.environment.get('cpu', '?')}, {self.environment.get('cores', '?')} cores; "
                 f"batch {self.settings.get('batch_size', 1)}; medians of interleaved runs.", "",
                 "| model | runtime | threads | status | median ms | p90 ms | p99 ms | min ms | spread ms | runs "
                 "| img/s | vs first | vs ref | load ms | peak MB | size | gzip | accuracy | top-1 agree |",
                 "|" + "---|" * 19]
        for r in self.results:
            if r.status == "unavailable":
                continue  # one line per runtime below
            cells = [r.model, r.runtime, str(r.threads), r.status if r.status == "ok" else f"{r.status}: {r.reason}",
                     _f(r.median_ms, 3), _f(r.p90_ms, 3), _f(r.p99_ms, 3), _f(r.min_ms, 3), _f(r.spread_ms, 3),
                     str(r.runs), _f(r.throughput_ips, 0), _x(r.ratio_to_first), _x(r.ratio_to_reference),
                     _f(r.load_ms, 1), _f(r.peak_mem_mb, 1), _kb(r.size_bytes), _kb(r.gzip_bytes),
                     _pct(r.accuracy), _pct(r.top1_agreement)]
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
        skipped: dict[str, tuple[str, list[str]]] = {}
        for r in self.results:
            if r.status == "unavailable":
                skipped.setdefault(r.runtime, (r.reason, []))[1].append(r.model)
        for g in self.gpu:
            if not g["available"] and g["runtime"] not in skipped:
                skipped[g["runtime"]] = (g["reason"], [])
        if skipped:
            lines += [""] + [f"- {rt}: unavailable ({reason})" + (f" for {', '.join(dict.fromkeys(models))}"
                                                                  if models else " (not requested)")
                             for rt, (reason, models) in skipped.items()]
        warned = [r for r in self.results if r.warning]
        if warned:
            lines += [""] + [f"- warning: {r.model} on {r.runtime} ({r.threads} thread(s)): {r.warning}" for r in warned]
        layered = [r for r in self.results if r.per_layer]
        for r in layered:
            lines += ["", f"Top ops, {r.model} on {r.runtime} ({r.threads} thread(s)):", "",
                      "| op | type | ms | share |", "|---|---|---|---|"]
            lines += [f"| {o['name']} | {o['type']} | {o['ms']:.4f} | {100 * o['share']:.1f}% |" for o in r.per_layer]
        return "\n".join(lines) + "\n"

    def to_markdown(self, path: str | Path) -> Path:
        """Write :meth:`markdown` atomically."""
        from edgecnn.files import write_atomic

        return write_atomic(path, self.markdown())

    def to_html(self, path: str | Path) -> Path:
        """A self-contained HTML report with charts; see :func:`edgecnn.report.html.write_html`."""
        from edgecnn.report.html import write_html

        return write_html(self, path)

    @classmethod
    def from_dict(cls, d: dict) -> "BenchReport":
        names = set(BenchResult.__dataclass_fields__)
        results = [BenchResult(**{k: v for k, v in r.items() if k in names}) for r in d.get("results", [])]
        base = [BenchResult(**{k: v for k, v in r.items() if k in names}) for r in d.get("baseline_results", [])]
        return cls(results=results, reference=d.get("reference", {}), environment=d.get("environment", {}),
                   settings=d.get("settings", {}), gpu=d.get("gpu", []), baseline_results=base)


def _f(v: Optional[float], digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _x(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _pct(v: Optional[float]) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _kb(v: Optional[int]) -> str:
    return "-" if v is None else f"{v / 1024:.1f} KB"
