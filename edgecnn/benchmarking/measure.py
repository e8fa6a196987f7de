"""``bench()``: every model on every runtime and thread count, timed interleaved with a reference model.

Example:
    >>> import tf_keras
    >>> inp = tf_keras.Input((8, 8, 1))
    >>> m = tf_keras.Model(inp, tf_keras.layers.Dense(3)(tf_keras.layers.Flatten()(inp)))
    >>> report = bench({"tiny": m}, runtimes=("litert",), runs=5, warmup=1, progress=False)
    >>> r = report.results[0]
    >>> (r.model, r.runtime, r.threads, r.status, r.runs), r.median_ms > 0, r.ratio_to_reference > 0
    (('tiny', 'litert', 1, 'ok', 5), True, True)
"""
from __future__ import annotations

import os
import platform
import sys
from typing import Any, Iterable, Optional

from edgecnn.benchmarking.accuracy import accuracy
from edgecnn.benchmarking.core import GATE_PERCENTILE, MIN_SAMPLE_MS, measure
from edgecnn.benchmarking.host import cpu_name
from edgecnn.benchmarking.reference import REFERENCE_ID
from edgecnn.benchmarking.results import BenchReport
from edgecnn.benchmarking.targets import check_runtimes, parse_list, resolve
from edgecnn.errors import EdgecnnError
from edgecnn.runtimes import CPU_RUNTIMES

DEFAULT_RUNS = 100
DEFAULT_WARMUP = 10
DEFAULT_INSTANCES = 3


def bench(
    models: Any,
    *,
    runtimes: str | Iterable[str] = CPU_RUNTIMES,
    threads: str | Iterable[int] = (1,),
    data: Any = None,
    batch_size: int = 1,
    runs: Optional[int] = None,
    warmup: Optional[int] = None,
    budget_s: Optional[float] = None,
    profile: Optional[str] = None,
    per_layer: bool = False,
    progress: bool = True,
    reference: bool = True,
    instances: int = DEFAULT_INSTANCES,
    against: Any = None,
    seed: int = 0,
) -> BenchReport:
    """Measure latency, throughput, load time, memory, size and accuracy of models on runtimes.

    Every (model, runtime, threads) is timed in the same shuffled round-robin loop of
    :func:`edgecnn.benchmarking.core.measure`, with the reference model of :mod:`edgecnn.benchmarking.reference` on each
    (runtime, threads), so drift of a busy machine hits all alike and ratios stay meaningful. Load time and
    peak memory are measured in a fresh process per result, so they do not depend on the load order.

    Args:
        models: a path, a live model, a list of them, or ``{name: path_or_model}``. ``.h5``/``.keras``/
            SavedModel -> loaded with :func:`edgecnn.load`, run on ``keras`` and converted (plain fp32) for
            ``litert``/``onnxruntime``; ``.tflite`` -> litert; ``.onnx``/``.ort`` -> onnxruntime.
        runtimes: names or ``"a,b"``: ``keras``, ``litert``, ``onnxruntime``, the GPU runtimes of
            :data:`edgecnn.runtimes.GPU_RUNTIMES` (listed ``unavailable`` with the reason when they cannot
            run here), or ``all``.
        threads: thread counts for litert/onnxruntime (keras runs once, with TensorFlow's process-wide pool).
        data: ``digits``, an image folder, a ``.npz`` or a :class:`edgecnn.data.Dataset`: adds accuracy
            (when labelled) and top-1 agreement with the Keras model (held-out split for ``digits``).
        batch_size: images per timed call.
        runs: timed rounds (default 100); warmup: untimed rounds first (default 10).
        budget_s: stop timing after this many seconds (at least 5 rounds).
        profile: ``mobile-1t`` or ``mobile-4t`` (see :mod:`edgecnn.runtimes.profiles`): fixes runtimes and threads and
            pins this process to the profile's cores while measuring.
        per_layer: add the top ops by time (LiteRT and ONNX Runtime) to each result.
        progress: say what is happening on stderr.
        reference: measure the reference model for ``ratio_to_reference`` (needed by the gate).
        instances: sessions loaded per (model, runtime, threads), all timed in the same rounds; each round's
            figure is their mean. Two sessions of one artifact can differ by several percent for their
            whole life (memory placement), so more than one keeps that out of the gate.
        against: a baseline bench JSON (path or dict) for :func:`compare_to_baseline`: the baseline's files
            that are still on disk unchanged are measured in the same rounds (``report.baseline_results``).
        seed: seed of the random timing inputs and of the round order.

    Returns:
        A :class:`BenchReport`.

    Raises:
        EdgecnnError: unknown runtime or profile, a bad thread count or batch size, a model path that is
            missing or not a model. A runtime that cannot load one artifact is a result with status
            ``load failed`` (not an exception), so the other results survive.
    """
    from edgecnn.runtimes.profiles import HOST_LABEL, get_profile, pinned

    prof = get_profile(profile) if profile else None
    names = list(prof.runtimes) if prof else check_runtimes(runtimes)
    counts = list(prof.threads) if prof else [_int(t, "threads") for t in parse_list(threads)]
    if not counts or min(counts) < 1:
        raise EdgecnnError(f"bad --threads: Expected positive integers. Received: {counts}")
    if int(batch_size) < 1:
        raise EdgecnnError(f"bad batch size: Expected an integer >= 1. Received: {batch_size}")
    runs = DEFAULT_RUNS if runs is None else int(runs)
    warmup = DEFAULT_WARMUP if warmup is None else int(warmup)
    if int(instances) < 1:
        raise EdgecnnError(f"bad instances: Expected an integer >= 1. Received: {instances}")
    instances = int(instances)
    if runs < 1 or warmup < 0:
        raise EdgecnnError(f"bad runs/warmup: Expected runs >= 1 and warmup >= 0. Received: {runs}, {warmup}")
    if budget_s is not None:
        from edgecnn.checks import check_number

        check_number(budget_s, rule="positive", name="budget_s (--budget-s)")
    say = _sayer(progress)
    targets = resolve(models)
    if against is not None:
        from edgecnn.benchmarking.gate import check_model_set, load_baseline
        from edgecnn.benchmarking.targets import baseline_targets

        base = load_baseline(against)
        check_model_set(base, [t.name for t in targets])
        targets += baseline_targets(base, names)
    from edgecnn.runtimes import detect_all

    gpu = [g.as_dict() for g in detect_all()]
    with pinned(prof.cores if prof else None) as cores:
        m = measure(targets, runtimes=names, threads=counts, batch_size=int(batch_size), runs=runs, warmup=warmup,
                    budget_s=budget_s, instances=instances, reference=reference, load_stats=True, seed=seed, say=say)
        results, runnables = m.results, m.runnables
        from edgecnn.benchmarking.targets import BASELINE_PREFIX

        baseline_results = [r for r in results if r.model.startswith(BASELINE_PREFIX)]
        results = [r for r in results if not r.model.startswith(BASELINE_PREFIX)]
        targets = [t for t in targets if not t.name.startswith(BASELINE_PREFIX)]
        if per_layer:
            from edgecnn.benchmarking.perlayer import PROFILERS, top_ops

            for r in results:
                if r.status == "ok" and r.runtime in PROFILERS:
                    say(f"profiling ops of {r.model} on {r.runtime}")
                    target = next(t for t in targets if t.name == r.model)
                    r.per_layer = top_ops(target.artifact(r.runtime), runtime=r.runtime, threads=r.threads)
    if data is not None:
        accuracy(results, targets, runnables, data, say)
    reference_info = m.reference
    env = {"label": HOST_LABEL, "cpu": cpu_name(), "cores": len(os.sched_getaffinity(0)), "pinned_cores": list(cores),
           "python": sys.version.split()[0], "platform": platform.platform()}
    settings = {"runtimes": names, "threads": counts, "batch_size": int(batch_size), "runs": runs, "warmup": warmup,
                "budget_s": budget_s, "instances": instances, "min_sample_ms": MIN_SAMPLE_MS,
                "order": "shuffled rounds; per slot one untimed call, then the median of the timed calls",
                "load": "each in a fresh process, after the runtime loaded the reference model",
                "gate_statistic": f"p{GATE_PERCENTILE} process CPU ms per call",
                "profile": prof.as_dict() if prof else None, "reference": REFERENCE_ID if reference else None,
                "data": getattr(data, "source", data) if data is not None else None}
    return BenchReport(results=results, reference=reference_info, environment=env, settings=settings, gpu=gpu,
                       baseline_results=baseline_results)


def _int(v: Any, what: str) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        raise EdgecnnError(f"bad --{what}: Expected integers like 1,4. Received: {v!r}") from None


def _sayer(progress: bool) -> Any:
    def say(msg: str) -> None:
        if progress:
            print(f"bench: {msg}", file=sys.stderr, flush=True)

    return say
