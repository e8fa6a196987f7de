"""The one measuring function: ``measure(targets, runtimes=..., threads=...)`` -> :class:`Measured`.

``edgecnn bench``, the CI gate (through it), the compress planner and ``rewrite --select measured`` (through
:func:`edgecnn.rewriting.select.measure_rewrites`) and the compress benchmark stage all time models here, so
every figure in every report comes from the same loop and carries the same status, reference ratio and
warnings.

How a round is timed: every session (``instances`` per (model, runtime, threads), and the reference model on
each (runtime, threads)) gets one *slot* per round, in a fresh shuffled order, so a busy machine's drift hits
all of them alike. A slot makes :data:`WARM_CALLS` untimed calls first (the slot before ran another session,
whose weights took the caches, while LiteRT's own benchmark tool, like an app, runs one model back to back),
then ``n`` timed calls (``n`` so that a slot lasts at least :data:`MIN_SAMPLE_MS`), and records their median
(wall time) and their process CPU time per call. A round's figure for a key is the mean over its instances.

Repeated measurements of one model (its instances, the first and second half of the rounds) that disagree
beyond the noise and :data:`REPEAT_TOLERANCE` put a ``warning`` on the result (see :func:`disagreement`).

Example:
    >>> import tf_keras
    >>> inp = tf_keras.Input((8, 8, 1))
    >>> m = tf_keras.Model(inp, tf_keras.layers.Conv2D(4, 3)(inp))
    >>> from edgecnn.exporting.convert import convert
    >>> r = time_artifacts({"m": convert(m)}, runtime="litert", runs=5, warmup=1, reference=True)["m"]
    >>> r.status, r.runs, r.median_ms > 0, r.ratio_to_reference > 0
    ('ok', 5, True, True)
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from edgecnn._tf import muted
from edgecnn.benchmarking.reference import REFERENCE_ID, REFERENCE_NAME
from edgecnn.benchmarking.results import BenchResult
from edgecnn.benchmarking.targets import Target, load_runnable
from edgecnn.errors import EdgecnnError, first_line
from edgecnn.runtimes import RUNTIMES
from edgecnn.runtimes.timing import Timing, median_noise

# Untimed calls that start each slot. Measured on a 4.4 MB int8 MiniModel among 3 instances and the reference
# model: 1 call left the median 2-3% above LiteRT's benchmark tool, 3 calls brought it within 0.5%.
WARM_CALLS = 3
# A slot's timed calls last at least this long (fast models are called several times; their median is the figure).
MIN_SAMPLE_MS = 2.0
# ratio_to_reference: the 20th percentile of process CPU ms per call over rounds, model / reference. CPU time
# leaves out the time a busy machine keeps the process waiting for a core; a low percentile leaves out rounds
# that other processes' cache and frequency effects slowed (interference only ever adds time).
GATE_PERCENTILE = 20
# Two sessions of one artifact can differ by a few percent for their whole life (memory placement); repeated
# measurements of one model that differ by more than this, and by more than their notches, are flagged.
REPEAT_TOLERANCE = 0.10
# ... and by more than this many ms: on a model of a few microseconds a fraction of a microsecond is timer and
# call-overhead jitter, not a busy machine (a 0.002 ms model was flagged at 0.002 / 0.002 / 0.002 ms).
REPEAT_MIN_GAP_MS = 0.005


@dataclass
class Measured:
    """What :func:`measure` produced: one result per (model, runtime, threads), the loaded runnables (for
    accuracy), and the reference model's timing per ``"runtime|threads"``."""

    results: list[BenchResult]
    runnables: dict = field(default_factory=dict)
    reference: dict = field(default_factory=dict)


def measure(
    targets: Sequence[Target],
    *,
    runtimes: Sequence[str],
    threads: Sequence[int] = (1,),
    batch_size: int = 1,
    runs: int = 100,
    warmup: int = 10,
    budget_s: Optional[float] = None,
    min_runs: int = 5,
    instances: int = 1,
    reference: bool = True,
    load_stats: bool = False,
    gzip: bool = True,
    seed: int = 0,
    say: Callable[[str], None] = lambda msg: None,
) -> Measured:
    """Load every target on every runtime and thread count, time all of them in one interleaved loop.

    Args:
        targets: what to measure (:func:`edgecnn.benchmarking.targets.resolve`, or :class:`Target` built in memory).
        runtimes: rows of :data:`edgecnn.runtimes.RUNTIMES`; one that cannot run here gives ``unavailable``
            results with the row's reason.
        threads: thread counts (a runtime whose pool is fixed per process runs once).
        batch_size: images per timed call.
        runs: timed rounds; warmup: untimed rounds first; budget_s: stop after this many seconds of timed
            rounds, but not before ``min_runs``.
        instances: sessions per (model, runtime, threads), each timed in every round.
        reference: time the reference model on each (runtime, threads) for ``ratio_to_reference``.
        load_stats: measure ``load_ms`` and ``peak_mem_mb`` of each, in a fresh process
            (:mod:`edgecnn.benchmarking.loadprobe`), so neither depends on what loaded before.
        gzip: record each artifact's gzip size (``gzip_bytes``): level 9, about a second per 24 MB artifact,
            which the timings of a plan or a per-op profile (16 prefixes of each model) do not need.
        seed: seed of the timing inputs and of the round order.

    Returns:
        :class:`Measured`. A runtime that cannot load or run one artifact gives a result with status
        ``load failed`` or ``run failed`` and the reason, not an exception.
    """
    results: list[BenchResult] = []
    fns: dict = {}
    runnables: dict = {}
    loaded: dict = {}
    for runtime in runtimes:
        row = RUNTIMES[runtime]
        reason = row.reason()
        for t in list(threads)[:1] if (row.process_threads or reason is not None) else threads:
            for target in targets:
                if not target.runs_on(runtime):
                    continue
                r = BenchResult(model=target.name, artifact=target.artifact_label(runtime), runtime=runtime,
                                threads=t, status="ok", batch_size=int(batch_size), source=target.path,
                                source_sha256=target.sha256)
                results.append(r)
                if reason is not None:
                    r.status, r.reason = "unavailable", reason
                    continue
                say(f"loading {target.name} on {runtime} ({t} thread(s))")
                if _load(r, target, runtime, t, int(batch_size), seed, fns, runnables, instances, gzip=gzip):
                    loaded[r.key] = (r, target, t)
    ref = _reference_fns(results, runnables, int(batch_size), seed, say, instances) if reference else {}
    fns.update(ref)
    say(f"timing {sum(map(len, fns.values()))} sessions interleaved: {runs} rounds after {warmup} warm-up")
    timings, cpu_ms, parts = _time_all(fns, runs=runs, warmup=warmup, budget_s=budget_s, min_runs=min_runs,
                                       results=results, seed=seed)
    _fill(results, timings, cpu_ms, parts)
    if load_stats:
        from edgecnn.benchmarking.loadprobe import load_stats as probe

        for r, target, t in loaded.values():
            if r.status == "ok":
                say(f"load time and memory of {r.model} on {r.runtime}, in a fresh process")
                probe(r, target, threads=t, batch_size=int(batch_size), seed=seed)
    reference_info = {f"{k[1]}|{k[2]}": {"model": REFERENCE_NAME, "id": REFERENCE_ID, **timings[k].as_dict()}
                      for k in ref if k in timings}
    return Measured(results=results, runnables=runnables, reference=reference_info)


def time_artifacts(artifacts: Mapping[str, bytes], *, runtime: str, threads: int = 1, runs: int = 50,
                   warmup: int = 3, budget_s: Optional[float] = None, min_runs: int = 5, reference: bool = False,
                   instances: int = 1, seed: int = 0) -> dict[str, BenchResult]:
    """Artifact bytes (for ``runtime``'s format) by name -> their :class:`BenchResult`, timed in one
    :func:`measure` loop (with ``budget_s``, ``runs`` is the most rounds and ``min_runs`` the fewest); sizes
    without gzip."""
    base = RUNTIMES[runtime].base
    targets = [Target(name, f"{name} ({len(data):,} bytes)", artifacts={base: bytes(data)})
               for name, data in artifacts.items()]
    m = measure(targets, runtimes=[runtime], threads=[threads], runs=runs, warmup=warmup, budget_s=budget_s,
                min_runs=min_runs, instances=instances, reference=reference, seed=seed, gzip=False)
    return {r.model: r for r in m.results}


def timing_of(result: BenchResult) -> Timing:
    """The :class:`Timing` of a measured result (raises EdgecnnError when it was not measured)."""
    if result.status != "ok" or not result.samples_ms:
        raise EdgecnnError(f"{result.model} on {result.runtime} was not measured: {result.status}"
                           + (f": {result.reason}" if result.reason else ""))
    return Timing.of(result.samples_ms)


def disagreement(parts: Mapping[str, Sequence[float]], *, tolerance: float = REPEAT_TOLERANCE) -> Optional[str]:
    """A warning when repeated measurements of one model disagree beyond the noise, else None.

    Two series disagree when their medians differ by more than the notch noise of the two medians
    (:func:`edgecnn.runtimes.timing.median_noise`), ``tolerance`` of the smaller median and
    :data:`REPEAT_MIN_GAP_MS`.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> clean = 3.05 + 0.03 * rng.standard_normal(100)
        >>> disagreement({"first half": clean[:50], "second half": clean[50:]}) is None
        True
        >>> busy = np.concatenate([clean[:50], 7.31 + 0.05 * rng.standard_normal(50)])
        >>> disagreement({"first half": busy[:50], "second half": busy[50:]})  # doctest: +ELLIPSIS
        'repeated measurements disagree: first half 3.05..., second half 7.3... ms (median); the machine was ...'
    """
    stats = {name: Timing.of(list(s)) for name, s in parts.items() if len(s)}
    names = list(stats)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            ta, tb = stats[a], stats[b]
            gap = abs(ta.median_ms - tb.median_ms)
            if gap > max(median_noise(ta, tb), tolerance * min(ta.median_ms, tb.median_ms), REPEAT_MIN_GAP_MS):
                shown = ", ".join(f"{n} {stats[n].median_ms:.3f}" for n in names)
                return (f"repeated measurements disagree: {shown} ms (median); the machine was probably busy "
                        f"during part of the run: rerun on a quieter machine before trusting this figure")
    return None


def _load(r: BenchResult, target: Target, runtime: str, threads: int, batch_size: int, seed: int,
          fns: dict, runnables: dict, instances: int, *, gzip: bool = True) -> bool:
    """Load ``instances`` runnables of one result (their first call is part of loading); False on failure."""
    try:
        r.size_bytes, r.gzip_bytes = target.sizes(runtime, with_gzip=gzip)
    except EdgecnnError as exc:
        r.status, r.reason = "load failed", str(exc)
        return False
    invokes, first = [], None
    for i in range(instances):
        try:
            with muted(2):  # LiteRT prints "Created TensorFlow Lite XNNPACK delegate" on stderr
                runnable = load_runnable(target, runtime, threads=threads, batch_size=batch_size, seed=seed)
        except Exception as exc:  # noqa: BLE001 - kept as the result's reason
            r.status, r.reason = "load failed", (f"instance {i + 1}: " if i else "") + first_line(exc)
            return False
        try:
            runnable.invoke()
        except Exception as exc:  # noqa: BLE001
            r.status, r.reason = "run failed", first_line(exc)
            return False
        invokes.append(runnable.invoke)
        first = first or runnable
    r.threads, r.reason = first.threads, first.note
    fns[(r.model, runtime, r.threads)] = invokes
    runnables[(r.model, runtime, r.threads)] = first
    return True


def _reference_fns(results: list[BenchResult], runnables: dict, batch_size: int, seed: int, say: Any,
                   instances: int) -> dict:
    """Reference-model callables for each (runtime, threads) that has a loaded result."""
    from edgecnn.benchmarking.reference import reference_artifact, reference_model
    from edgecnn.runtimes import CONVERT_RUNTIMES

    combos = dict.fromkeys((r.runtime, r.threads) for r in results if (r.model, r.runtime, r.threads) in runnables)
    if not combos:
        return {}
    say("loading the reference model")
    needs_keras = any(RUNTIMES[rt].format is None for rt, _ in combos)
    target = Target(REFERENCE_NAME, REFERENCE_NAME, keras=reference_model() if needs_keras else None,
                    artifacts={rt: reference_artifact(rt) for rt in CONVERT_RUNTIMES})
    fns: dict = {}
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


def _calls(fn: Any, min_ms: float) -> int:
    """Timed calls per slot so that a slot lasts at least ``min_ms`` (from the fastest of 3 calls)."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        fn()
        best = min(best, (time.perf_counter() - t0) * 1e3)
    return max(1, int(np.ceil(min_ms / max(best, 1e-4))))


def _slot(fn: Any, n: int, wall: list, cpu: list) -> Callable[[], None]:
    """One slot: :data:`WARM_CALLS` untimed calls, then ``n`` timed calls; appends their median wall ms and the
    CPU ms per call."""
    clock, pc = time.process_time, time.perf_counter

    def run() -> None:
        for _ in range(WARM_CALLS):  # the slot before ran another session: bring this one back into the caches
            fn()
        ts = []
        c0 = clock()
        for _ in range(n):
            t0 = pc()
            fn()
            ts.append(pc() - t0)
        cpu.append((clock() - c0) * 1e3 / n)
        wall.append(float(np.median(ts)) * 1e3)

    return run


def _rounds(slots: dict, *, runs: int, warmup: int, budget_s: Optional[float], min_runs: int, seed: int) -> int:
    """Warm-up rounds, then timed rounds in a fresh random order each; returns the number of timed rounds."""
    names = list(slots)
    for _ in range(warmup):
        for n in names:
            slots[n]()
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for r in range(runs):
        for i in rng.permutation(len(names)):
            slots[names[i]]()
        if budget_s is not None and r + 1 >= min_runs and time.perf_counter() - start > budget_s:
            return r + 1
    return runs


def _time_all(fns: dict, *, runs: int, warmup: int, budget_s: Optional[float], min_runs: int,
              results: list[BenchResult], seed: int = 0) -> tuple[dict, dict, dict]:
    """Time every instance of every key in one loop of slots.

    Returns (key -> Timing of wall ms per call (per round: the mean over instances), key -> array of process
    CPU ms per call, one per round, key -> {part name: series} for :func:`disagreement`). A callable that
    raises is dropped (its result becomes ``run failed``) and the rest are timed again.
    """
    while fns:
        flat = {(key, i): fn for key, fs in fns.items() for i, fn in enumerate(fs)}
        wall: dict = {k: [] for k in flat}
        cpu: dict = {k: [] for k in flat}
        slots = {k: _slot(fn, _calls(fn, MIN_SAMPLE_MS), wall[k], cpu[k]) for k, fn in flat.items()}
        try:
            n = _rounds(slots, runs=runs, warmup=warmup, budget_s=budget_s, min_runs=min_runs, seed=seed)
        except Exception as exc:  # noqa: BLE001 - find the failing key, mark it, time the rest
            bad = _failing(flat)
            for r in results:
                if (r.model, r.runtime, r.threads) in bad:
                    r.status, r.reason = "run failed", first_line(exc)
            fns = {k: v for k, v in fns.items() if k not in bad}
            if not bad:
                raise
            continue
        timings, cpu_ms, parts = {}, {}, {}
        for key, fs in fns.items():
            series = [np.asarray(wall[(key, i)][-n:]) for i in range(len(fs))]
            per_round = np.mean(series, axis=0)
            cpu_ms[key] = np.mean([np.asarray(cpu[(key, i)][-n:]) for i in range(len(fs))], axis=0)
            timings[key] = Timing.of(per_round)
            parts[key] = {f"instance {i + 1}": s for i, s in enumerate(series)} if len(fs) > 1 else {}
            half = n // 2
            if half >= 5:
                parts[key].update({"first half": per_round[:half], "second half": per_round[half:]})
        return timings, cpu_ms, parts
    return {}, {}, {}


def _fill(results: list[BenchResult], timings: dict, cpu_ms: dict, parts: dict) -> None:
    firsts: dict = {}
    for r in results:
        key, ref = (r.model, r.runtime, r.threads), (REFERENCE_NAME, r.runtime, r.threads)
        t = timings.get(key)
        if r.status != "ok" or t is None:
            continue
        r.median_ms, r.p90_ms, r.p99_ms, r.min_ms, r.spread_ms, r.runs = (
            t.median_ms, t.p90_ms, t.p99_ms, t.min_ms, t.spread_ms, t.runs)
        r.samples_ms = list(t.samples_ms)
        r.throughput_ips = r.batch_size * 1e3 / t.median_ms if t.median_ms > 0 else None
        r.warning = disagreement(parts.get(key, {})) or ""
        if ref in cpu_ms and key in cpu_ms and len(cpu_ms[ref]) == len(cpu_ms[key]):
            r.cpu_ms = float(np.median(cpu_ms[key]))
            low, low_ref = np.percentile(cpu_ms[key], GATE_PERCENTILE), np.percentile(cpu_ms[ref], GATE_PERCENTILE)
            r.ratio_to_reference = float(low / low_ref) if low_ref > 0 else None
            r.wall_ratio_to_reference = float(np.median(np.asarray(t.samples_ms) / np.asarray(timings[ref].samples_ms)))
        first = firsts.setdefault((r.runtime, r.threads), r)
        r.ratio_to_first = r.median_ms / first.median_ms if first.median_ms else None


def _failing(flat: dict) -> set:
    bad = set()
    for (key, _), fn in flat.items():
        try:
            fn()
        except Exception:  # noqa: BLE001
            bad.add(key)
    return bad
