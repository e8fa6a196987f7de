"""The CI latency regression gate: compare this run's ratios to the reference model with a baseline's.

Raw milliseconds differ between machines; the ratio of a model's time to the reference model's time,
measured in the same interleaved rounds, mostly does not. A model regresses when its ratio grew by more
than ``max_regression_pct`` percent over the baseline's ratio (see docs/ci-latency-gate.md).

Example:
    >>> from edgecnn.benchmarking.results import BenchReport, BenchResult
    >>> def rep(ratio):
    ...     r = BenchResult(model="m", artifact="m.tflite", runtime="litert", threads=1, status="ok",
    ...                     median_ms=ratio, ratio_to_reference=ratio)
    ...     return BenchReport(results=[r], settings={"reference": "ref"})
    >>> compare_to_baseline(rep(1.05), rep(1.0).as_dict()).ok
    True
    >>> g = compare_to_baseline(rep(1.30), rep(1.0).as_dict(), max_regression_pct=10)
    >>> g.ok, g.regressions[0].change_pct
    (False, 30.0)
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional
from xml.sax.saxutils import quoteattr

from edgecnn.errors import InputFileError


@dataclass(frozen=True)
class Comparison:
    """One (model, runtime, threads) compared with its baseline."""

    model: str
    runtime: str
    threads: int
    baseline_ratio: float
    current_ratio: float
    baseline_ms: Optional[float]
    current_ms: Optional[float]
    change_pct: float
    regressed: bool
    method: str = "reference model"  # or "same run": the baseline's file measured beside the model

    def describe(self) -> str:
        where = "baseline measured in this run" if self.method == "same run" else "in the baseline run"
        ms = (f"; median {self.baseline_ms:.3f} ms {where}, {self.current_ms:.3f} ms now"
              if self.baseline_ms is not None and self.current_ms is not None else "")
        return (f"{self.model} on {self.runtime} ({self.threads} thread(s)): {self.change_pct:+.1f}% vs baseline "
                f"(CPU time / reference model {self.baseline_ratio:.3f} -> {self.current_ratio:.3f}{ms}; "
                f"{self.method})")


@dataclass
class GateResult:
    """What the gate found: ``ok`` is False when any comparison regressed."""

    regressions: list[Comparison]
    comparisons: list[Comparison] = field(default_factory=list)
    max_regression_pct: float = 10.0

    @property
    def ok(self) -> bool:
        return not self.regressions

    @property
    def message(self) -> str:
        if self.ok:
            worst = max(self.comparisons, key=lambda c: c.change_pct, default=None)
            tail = f"; largest change {worst.describe()}" if worst else ""
            return (f"latency gate passed: {len(self.comparisons)} comparison(s) within "
                    f"+{self.max_regression_pct:g}%{tail}")
        return (f"latency regression over +{self.max_regression_pct:g}%: "
                + "; ".join(c.describe() for c in self.regressions))

    def as_dict(self) -> dict:
        return {"ok": self.ok, "max_regression_pct": self.max_regression_pct, "message": self.message,
                "comparisons": [c.__dict__ for c in self.comparisons]}


def load_baseline(baseline: Any) -> dict:
    """A baseline JSON path (or already-parsed dict) -> dict, every figure the gate reads checked.

    A gate must fail closed: a figure that is NaN, infinite, zero, negative or not a number, or a field of
    the wrong type, makes the baseline malformed (InputFileError, exit 2), never a pass.

    Raises:
        InputFileError: missing, not JSON, over the size/depth caps, or malformed.

    Example:
        >>> row = {"model": "m", "runtime": "litert", "threads": 1, "ratio_to_reference": float("nan")}
        >>> load_baseline({"results": [row]})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        edgecnn.errors.InputFileError: malformed baseline: results[0] (m on litert) ratio_to_reference: Expected a finite number > 0. Received: nan
    """
    if isinstance(baseline, dict):
        data = baseline
    else:
        from edgecnn.limits import check_text_size, parse_json

        path = Path(baseline)
        if not path.is_file():
            raise InputFileError(f"baseline not found: Expected a bench JSON file. Received: {path}")
        with open(path, "rb") as f:
            raw = f.read(64 * 2**20 + 1)
        check_text_size(raw, where=f"baseline {path}")
        data = parse_json(raw, where=f"baseline {path}", what="JSON (`edgecnn bench --json` output)")
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, list) or not all(isinstance(r, dict) and {"model", "runtime", "threads"} <= set(r)
                                                  for r in results):
        raise InputFileError("malformed baseline: Expected `edgecnn bench --json` output with results[] of "
                             "model/runtime/threads. Received: " + (", ".join(sorted(map(str, data)))[:100]
                                                                    if isinstance(data, dict) else type(data).__name__))
    settings = data.get("settings")
    if settings is not None and not (isinstance(settings, dict) and isinstance(settings.get("reference"), (str, type(None)))):
        raise InputFileError(f"malformed baseline: settings: Expected an object with a reference name. Received: "
                             f"{str(settings)[:80]}")
    for i, row in enumerate(results):
        _check_row(i, row)
    return data


# The figures the gate divides by: each must be a finite number > 0 in a row that says it measured ("ok").
GATE_FIGURES = ("ratio_to_reference", "median_ms")


def _check_row(i: int, row: dict) -> None:
    from edgecnn.checks import RULES

    where = f"results[{i}]"
    for key, kinds in (("model", str), ("runtime", str), ("status", str), ("source", str), ("source_sha256", str)):
        if key in row and row[key] is not None and not isinstance(row[key], kinds):
            raise InputFileError(f"malformed baseline: {where} {key}: Expected a string. Received: {row[key]!r}")
    where = f"{where} ({row['model']} on {row['runtime']})"
    if not RULES["count"].accepts(row["threads"]):
        raise InputFileError(f"malformed baseline: {where} threads: Expected an integer >= 1. "
                             f"Received: {row['threads']!r}")
    if row.get("status", "ok") != "ok":
        return
    for key in GATE_FIGURES:
        value = row.get(key)
        if value is not None and not RULES["positive"].accepts(value):
            raise InputFileError(f"malformed baseline: {where} {key}: Expected {RULES['positive'].describe()}. "
                                 f"Received: {value!r}")


def check_model_set(baseline: dict, models: list[str]) -> None:
    """Raise InputFileError unless the baseline measured exactly these model names."""
    base_models = sorted({r["model"] for r in baseline["results"]})
    now_models = sorted(set(models))
    if base_models != now_models:
        raise InputFileError(f"baseline is from another model set: Expected models {', '.join(now_models)}. "
                             f"Received: {', '.join(base_models) or 'none'}")


def compare_to_baseline(report: Any, baseline_json: Any, *, max_regression_pct: float = 10) -> GateResult:
    """Compare ``report`` (a BenchReport) with a baseline bench JSON (path or dict).

    Args:
        report: this run's :class:`edgecnn.benchmarking.BenchReport` (measured with ``reference=True``).
        baseline_json: a path to, or the dict of, an earlier ``edgecnn bench --json`` of the same models.
        max_regression_pct: allowed growth of a model's time/reference ratio, in percent.

    Returns:
        A :class:`GateResult`.

    Raises:
        InputFileError: the baseline is missing or malformed, measured other models (a different model set),
            another reference model, or nothing in it can be compared with this run.
    """
    check_max_regression(max_regression_pct)
    base = load_baseline(baseline_json)
    check_model_set(base, [r.model for r in report.results])
    ref_now = (report.settings or {}).get("reference")
    ref_base = (base.get("settings") or {}).get("reference")
    if not ref_now:
        raise InputFileError("the gate needs the reference model: Expected a run with reference=True. Received: none")
    if ref_base != ref_now:
        raise InputFileError(f"baseline measured another reference model: Expected {ref_now!r}. Received: {ref_base!r}")
    by_key = {(r["model"], r["runtime"], int(r["threads"])): r for r in base["results"]}
    from edgecnn.benchmarking.targets import BASELINE_PREFIX

    same_run = {(r.model[len(BASELINE_PREFIX):], r.runtime, r.threads): r for r in report.baseline_results
                if r.status == "ok" and r.ratio_to_reference}
    comparisons = []
    for r in report.results:
        key = (r.model, r.runtime, r.threads)
        b = by_key.get(key)
        if r.status != "ok" or b is None or b.get("status", "ok") != "ok" or not r.ratio_to_reference:
            continue
        if key in same_run:  # the baseline's own file, measured in this run's rounds
            base_ratio, method = same_run[key].ratio_to_reference, "same run"
            base_ms = same_run[key].median_ms
        elif b.get("ratio_to_reference"):
            base_ratio, method, base_ms = float(b["ratio_to_reference"]), "reference model", b.get("median_ms")
        else:
            continue
        if not (math.isfinite(r.ratio_to_reference) and r.ratio_to_reference > 0 and math.isfinite(base_ratio)
                and base_ratio > 0):  # the gate fails closed: a figure it cannot trust is never a pass
            raise InputFileError(f"the gate cannot compare {r.model} on {r.runtime}: Expected finite ratios > 0. "
                                 f"Received: baseline {base_ratio!r}, now {r.ratio_to_reference!r}")
        change = 100.0 * (r.ratio_to_reference / base_ratio - 1.0)
        comparisons.append(Comparison(r.model, r.runtime, r.threads, base_ratio, r.ratio_to_reference, base_ms,
                                      r.median_ms, round(change, 2), change > max_regression_pct, method))
    if not comparisons:
        raise InputFileError("baseline shares no measured (model, runtime, threads) with this run: Expected "
                             f"{', '.join(sorted(r.key for r in report.ok)) or 'none'}. Received: "
                             f"{', '.join(sorted('|'.join(map(str, k)) for k in by_key)) or 'none'}")
    return GateResult([c for c in comparisons if c.regressed], comparisons, float(max_regression_pct))


def check_max_regression(value: Any) -> float:
    """``--max-regression``: a finite percentage >= 0 (NaN would make every comparison pass).

    >>> check_max_regression(float("nan"))
    Traceback (most recent call last):
    ...
    edgecnn.errors.InputFileError: bad --max-regression: Expected a finite number >= 0. Received: nan
    """
    from edgecnn.checks import RULES

    if not RULES["percent"].accepts(value):
        raise InputFileError(f"bad --max-regression: Expected {RULES['percent'].describe()}. Received: {value!r}")
    return float(value)


def junit_xml(gate: GateResult) -> str:
    """JUnit XML: one testcase per comparison, a failure for each regression."""
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             f'<testsuite name="edgecnn-latency-gate" tests="{len(gate.comparisons)}" '
             f'failures="{len(gate.regressions)}" errors="0">']
    for c in gate.comparisons:
        name = quoteattr(f"{c.model}[{c.runtime},threads={c.threads}]")
        lines.append(f'  <testcase classname="edgecnn.bench" name={name}>')
        if c.regressed:
            lines.append(f'    <failure message={quoteattr(c.describe())} type="LatencyRegression"/>')
        else:
            lines.append(f"    <system-out>{_esc(c.describe())}</system-out>")
        lines.append("  </testcase>")
    lines.append("</testsuite>")
    return "\n".join(lines) + "\n"


def write_junit(gate: GateResult, path: str | Path) -> Path:
    """Write :func:`junit_xml` atomically."""
    from edgecnn.files import write_atomic

    return write_atomic(path, junit_xml(gate))


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
