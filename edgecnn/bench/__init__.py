"""Benchmarking across runtimes, and the CI latency regression gate.

``bench(models, ...)`` -> :class:`BenchReport`; ``compare_to_baseline(report, baseline_json, ...)`` ->
:class:`GateResult`. Modules: ``core`` (the one measuring loop), ``measure`` (``bench()``), ``loadprobe`` (load time and memory in a
fresh process), ``latency`` (``model_latency`` for scripts), ``targets`` (inputs -> runnables), ``reference``
(the calibration model), ``perlayer`` (top ops), ``gate`` (comparison, JUnit), ``results``.

Example:
    >>> from edgecnn.bench import bench, compare_to_baseline, BenchReport, GateResult
    >>> callable(bench), callable(compare_to_baseline)
    (True, True)
    >>> import edgecnn, edgecnn.bench
    >>> callable(edgecnn.bench)
    True
"""
import sys as _sys

from edgecnn.bench.gate import Comparison, GateResult, compare_to_baseline, junit_xml, write_junit
from edgecnn.bench.measure import bench
from edgecnn.bench.results import BenchReport, BenchResult

__all__ = ["BenchReport", "BenchResult", "Comparison", "GateResult", "bench", "compare_to_baseline", "junit_xml",
           "write_junit"]


class _CallableModule(type(_sys)):
    """``edgecnn.bench(...)`` keeps working after ``import edgecnn.bench`` replaces the package attribute
    (the function of the same name in ``edgecnn/__init__.py``) by this subpackage."""

    def __call__(self, *args, **kwargs) -> BenchReport:
        return bench(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
