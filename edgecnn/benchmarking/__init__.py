"""Benchmarking across runtimes, and the CI latency regression gate.

``bench(models, ...)`` -> :class:`BenchReport`; ``compare_to_baseline(report, baseline_json, ...)`` ->
:class:`GateResult`. Modules: ``core`` (the one measuring loop), ``measure`` (``bench()``), ``loadprobe`` (load time and memory in a
fresh process), ``latency`` (``model_latency`` for scripts), ``targets`` (inputs -> runnables), ``reference``
(the calibration model), ``perlayer`` (top ops), ``gate`` (comparison, JUnit), ``results``.

Example:
    >>> from edgecnn.benchmarking import bench, compare_to_baseline, BenchReport, GateResult
    >>> callable(bench), callable(compare_to_baseline)
    (True, True)
    >>> import edgecnn, edgecnn.benchmarking
    >>> edgecnn.bench is not edgecnn.benchmarking and callable(edgecnn.bench)  # the verb and its package
    True
"""
from edgecnn.benchmarking.gate import Comparison, GateResult, compare_to_baseline, junit_xml, write_junit
from edgecnn.benchmarking.measure import bench
from edgecnn.benchmarking.results import BenchReport, BenchResult

__all__ = ["BenchReport", "BenchResult", "Comparison", "GateResult", "bench", "compare_to_baseline", "junit_xml",
           "write_junit"]
