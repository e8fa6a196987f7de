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
import time
from typing import Any, Iterable, Optional

import numpy as np

from edgecnn.bench.accuracy import accuracy
from edgecnn.bench.host import cpu_name, hwm_reset, hwm_rise
from edgecnn.bench.reference import REFERENCE_ID, REFERENCE_NAME
from edgecnn.bench.results import BenchReport, BenchResult
from edgecnn.bench.targets import BASE_RUNTIME, CPU_RUNTIMES, Target, check_runtimes, load_runnable, parse_list, resolve
from edgecnn._tf import muted
from edgecnn.errors import EdgecnnError, first_line
from edgecnn.timing import Timing

DEFAULT_RUNS = 100
DEFAULT_WARMUP = 10
# A timed sample is at least this long: fast models run several times per sample (then divided), so timer
# and call overhead and sub-microsecond jitter do not dominate the figures.
MIN_SAMPLE_MS = 2.0
DEFAULT_INSTANCES = 3
SHUFFLE = True
# ratio_to_reference: the 20th percentile of process CPU ms per call over rounds, model / reference. CPU time
# leaves out the time a busy machine keeps the process waiting for a core; a low percentile leaves out rounds
# that other processes' cache and frequency effects slowed (interference only ever adds time).
GATE_PERCENTILE = 20


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

    Every (model, runtime, threads) is timed in the same round-robin loop (A B C ... then reversed), with
    the reference model of :mod:`edgecnn.bench.reference` on each (runtime, threads), so drift of a busy
    machine hits all alike and ratios stay meaningful.

    Args:
        models: a path, a live model, a list of them, or ``{name: path_or_model}``. ``.h5``/``.keras``/
            SavedModel -> loaded with :func:`edgecnn.load`, run on ``keras`` and converted (plain fp32) for
            ``litert``/``onnxruntime``; ``.tflite`` -> litert; ``.onnx``/``.ort`` -> onnxruntime.
        runtimes: names or ``"a,b"``: ``keras``, ``litert``, ``onnxruntime``, the GPU runtimes of
            :data:`edgecnn.runtimes.gpu.GPU_RUNTIMES` (listed ``unavailable`` with the reason when they cannot
            run here), or ``all``.
        threads: thread counts for litert/onnxruntime (keras runs once, with TensorFlow's process-wide pool).
        data: ``digits``, an image folder, a ``.npz`` or a :class:`edgecnn.data.Dataset`: adds accuracy
            (when labelled) and top-1 agreement with the Keras model (held-out split for ``digits``).
        batch_size: images per timed call.
        runs: timed rounds (default 100); warmup: untimed rounds first (default 10).
        budget_s: stop timing after this many seconds (at least 5 rounds).
        profile: ``mobile-1t`` or ``mobile-4t`` (see :mod:`edgecnn.profiles`): fixes runtimes and threads and
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
    from edgecnn.profiles import HOST_LABEL, get_profile, pinned

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
        from edgecnn.bench.gate import check_model_set, load_baseline
        from edgecnn.bench.targets import baseline_targets

        base = load_baseline(against)
        check_model_set(base, [t.name for t in targets])
        targets += baseline_targets(base, names)
    from edgecnn.runtimes.gpu import GPU_RUNTIMES, detect, detect_all

    gpu = [g.as_dict() for g in detect_all()]
    with pinned(prof.cores if prof else None) as cores:
        results, fns, runnables = [], {}, {}
        for runtime in names:
            gpu_state = detect(runtime) if runtime in GPU_RUNTIMES else None
            single = BASE_RUNTIME.get(runtime, runtime) == "keras" or (gpu_state is not None and not gpu_state.available)
            for t in counts[:1] if single else counts:
                for target in targets:
                    if not target.runs_on(runtime):
                        continue
                    r = BenchResult(model=target.name, artifact=target.artifact_label(runtime), runtime=runtime,
                                    threads=t, status="ok", batch_size=int(batch_size), source=target.path,
                                    source_sha256=target.sha256)
                    results.append(r)
                    if gpu_state is not None and not gpu_state.available:
                        r.status, r.reason = "unavailable", gpu_state.reason
                        continue
                    say(f"loading {target.name} on {runtime} ({t} thread(s))")
                    _load(r, target, runtime, t, int(batch_size), seed, fns, runnables, instances)
        ref = _reference_fns(results, runnables, int(batch_size), seed, say, instances) if reference else {}
        fns.update(ref)
        say(f"timing {sum(map(len, fns.values()))} sessions interleaved: {runs} rounds after {warmup} warm-up")
        timings, cpu_ms = _time_all(fns, runs=runs, warmup=warmup, budget_s=budget_s, results=results, seed=seed)
        _fill_timings(results, timings, cpu_ms)
        from edgecnn.bench.targets import BASELINE_PREFIX

        baseline_results = [r for r in results if r.model.startswith(BASELINE_PREFIX)]
        results = [r for r in results if not r.model.startswith(BASELINE_PREFIX)]
        targets = [t for t in targets if not t.name.startswith(BASELINE_PREFIX)]
        if per_layer:
            from edgecnn.bench.perlayer import top_ops

            for r in results:
                if r.status == "ok" and r.runtime in ("litert", "onnxruntime"):
                    say(f"profiling ops of {r.model} on {r.runtime}")
                    target = next(t for t in targets if t.name == r.model)
                    r.per_layer = top_ops(target.artifact(r.runtime), runtime=r.runtime, threads=r.threads)
    if data is not None:
        accuracy(results, targets, runnables, data, say)
    reference_info = {f"{k[1]}|{k[2]}": {"model": REFERENCE_NAME, "id": REFERENCE_ID, **timings[k].as_dict()}
                      for k in ref if k in timings}
    env = {"label": HOST_LABEL, "cpu": cpu_name(), "cores": len(os.sched_getaffinity(0)), "pinned_cores": list(cores),
           "python": sys.version.split()[0], "platform": platform.platform()}
    settings = {"runtimes": names, "threads": counts, "batch_size": int(batch_size), "runs": runs, "warmup": warmup,
                "budget_s": budget_s, "instances": instances, "min_sample_ms": MIN_SAMPLE_MS, "order": "shuffled rounds",
                "gate_statistic": f"p{GATE_PERCENTILE} process CPU ms per call",
                "profile": prof.as_dict() if prof else None, "reference": REFERENCE_ID if reference else None,
                "data": getattr(data, "source", data) if data is not None else None}
    return BenchReport(results=results, reference=reference_info, environment=env, settings=settings, gpu=gpu,
                       baseline_results=baseline_results)


def _load(r: BenchResult, target: Target, runtime: str, threads: int, batch_size: int, seed: int,
          fns: dict, runnables: dict, instances: int) -> None:
    """Load one runnable: size, load time, peak memory; its first call is part of loading."""
    try:
        r.size_bytes, r.gzip_bytes = target.sizes(runtime)
    except EdgecnnError as exc:
        r.status, r.reason = "load failed", str(exc)
        return
    mark = hwm_reset()
    t0 = time.perf_counter()
    try:
        with muted(2):  # LiteRT prints "Created TensorFlow Lite XNNPACK delegate" on stderr
            runnable = load_runnable(target, runtime, threads=threads, batch_size=batch_size, seed=seed)
    except Exception as exc:  # noqa: BLE001 - kept as the result's reason
        r.status, r.reason = "load failed", first_line(exc)
        return
    try:
        runnable.invoke()
    except Exception as exc:  # noqa: BLE001
        r.status, r.reason = "run failed", first_line(exc)
        return
    r.load_ms = (time.perf_counter() - t0) * 1e3
    r.peak_mem_mb = hwm_rise(mark)
    r.threads = runnable.threads if BASE_RUNTIME.get(runtime, runtime) == "keras" else r.threads
    r.reason = runnable.note
    key = (r.model, runtime, r.threads)
    fns[key] = [runnable.invoke]
    runnables[key] = runnable
    try:
        with muted(2):
            for _ in range(instances - 1):
                extra = load_runnable(target, runtime, threads=threads, batch_size=batch_size, seed=seed)
                extra.invoke()
                fns[key].append(extra.invoke)
    except Exception as exc:  # noqa: BLE001 - the first instance loaded, so this is unexpected
        r.status, r.reason = "load failed", f"second instance: {first_line(exc)}"
        del fns[key], runnables[key]


def _reference_fns(results: list[BenchResult], runnables: dict, batch_size: int, seed: int, say: Any,
                   instances: int) -> dict:
    """Reference-model callables for each (runtime, threads) that has a loaded result."""
    from edgecnn.bench.reference import reference_model

    fns: dict = {}
    combos = dict.fromkeys((r.runtime, r.threads) for r in results if (r.model, r.runtime, r.threads) in runnables)
    if not combos:
        return fns
    say("loading the reference model")
    from edgecnn.bench.reference import reference_artifact

    needs_keras = any(BASE_RUNTIME.get(rt, rt) == "keras" for rt, _ in combos)
    target = Target(REFERENCE_NAME, REFERENCE_NAME, keras=reference_model() if needs_keras else None,
                    artifacts={rt: reference_artifact(rt) for rt in ("litert", "onnxruntime")})
    for runtime, threads in combos:
        try:
            invokes = []
            for _ in range(instances):
                with muted(2):
                    runnable = load_runnable(target, runtime, threads=threads, batch_size=batch_size, seed=seed)
                runnable.invoke()
                invokes.append(runnable.invoke)
            fns[(REFERENCE_NAME, runtime, threads)] = invokes
        except Exception as exc:  # noqa: BLE001 - no reference: ratios stay None
            say(f"reference model failed on {runtime}: {first_line(exc)}")
    return fns


def _repeats(fn: Any, min_ms: float) -> int:
    """Calls per timed sample so that a sample lasts at least ``min_ms`` (from the fastest of 3 calls)."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        fn()
        best = min(best, (time.perf_counter() - t0) * 1e3)
    return max(1, int(np.ceil(min_ms / max(best, 1e-4))))


def _looped(fn: Any, n: int, cpu_ms: list) -> Any:
    """``n`` calls of ``fn``; appends the process CPU time they took (ms) to ``cpu_ms``."""
    clock = time.process_time

    def run() -> None:
        c0 = clock()
        for _ in range(n):
            fn()
        cpu_ms.append((clock() - c0) * 1e3)

    return run


def _fill_timings(results: list[BenchResult], timings: dict, cpu_ms: dict) -> None:
    firsts: dict = {}
    for r in results:
        t = timings.get((r.model, r.runtime, r.threads))
        if r.status != "ok" or t is None:
            continue
        r.median_ms, r.p90_ms, r.p99_ms, r.min_ms, r.spread_ms, r.runs = (
            t.median_ms, t.p90_ms, t.p99_ms, t.min_ms, t.spread_ms, t.runs)
        r.samples_ms = list(t.samples_ms)
        r.throughput_ips = r.batch_size * 1e3 / t.median_ms if t.median_ms > 0 else None
        key, ref = (r.model, r.runtime, r.threads), (REFERENCE_NAME, r.runtime, r.threads)
        if ref in cpu_ms and key in cpu_ms and len(cpu_ms[ref]) == len(cpu_ms[key]):
            r.cpu_ms = float(np.median(cpu_ms[key]))
            low, low_ref = np.percentile(cpu_ms[key], GATE_PERCENTILE), np.percentile(cpu_ms[ref], GATE_PERCENTILE)
            r.ratio_to_reference = float(low / low_ref) if low_ref > 0 else None
            rt = timings[ref]
            r.wall_ratio_to_reference = float(np.median(np.asarray(t.samples_ms) / np.asarray(rt.samples_ms)))
        first = firsts.setdefault((r.runtime, r.threads), r)
        r.ratio_to_first = r.median_ms / first.median_ms if first.median_ms else None


def _time_all(fns: dict, *, runs: int, warmup: int, budget_s: Optional[float],
              results: list[BenchResult], seed: int = 0) -> tuple[dict, dict]:
    """Time every instance of every key in one interleaved loop; per key, per round: the mean over instances.

    Returns (key -> Timing of wall ms per call, key -> array of process CPU ms per call, one per round).
    A callable that raises is dropped (its result becomes ``run failed``) and the rest are timed again.
    """
    from edgecnn.timing import interleaved

    while fns:
        flat = {(key, i): fn for key, fs in fns.items() for i, fn in enumerate(fs)}
        repeats = {k: _repeats(fn, MIN_SAMPLE_MS) for k, fn in flat.items()}
        cpu: dict = {k: [] for k in flat}
        looped = {k: _looped(fn, repeats[k], cpu[k]) for k, fn in flat.items()}
        try:
            raw = interleaved(looped, runs=runs, warmup=warmup, budget_s=budget_s, shuffle=SHUFFLE, seed=seed)
        except Exception as exc:  # noqa: BLE001 - find the failing key, mark it, time the rest
            bad = _failing(flat)
            for r in results:
                if (r.model, r.runtime, r.threads) in bad:
                    r.status, r.reason = "run failed", first_line(exc)
            fns = {k: v for k, v in fns.items() if k not in bad}
            if not bad:
                raise
            continue
        timings, cpu_ms = {}, {}
        for key, fs in fns.items():
            n = raw[(key, 0)].runs
            wall = np.mean([np.asarray(raw[(key, i)].samples_ms) / repeats[(key, i)] for i in range(len(fs))], axis=0)
            cpu_ms[key] = np.mean([np.asarray(cpu[(key, i)][-n:]) / repeats[(key, i)] for i in range(len(fs))], axis=0)
            timings[key] = Timing.of(wall)
        return timings, cpu_ms
    return {}, {}


def _failing(flat: dict) -> set:
    bad = set()
    for (key, _), fn in flat.items():
        try:
            fn()
        except Exception:  # noqa: BLE001
            bad.add(key)
    return bad


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
