"""Interleaved timing with robust statistics: the one measuring loop of rewrite, prune, bench and compress.

Several callables are timed round-robin (A B C A B C ...), after a warm-up, so drift of a noisy machine
hits all of them alike; each gets the median, percentiles and spread of its own samples, and ratios
between them are taken from medians.

Example:
    >>> import time
    >>> t = interleaved({"fast": lambda: None, "slow": lambda: time.sleep(0.002)}, runs=15, warmup=2)
    >>> t["fast"].runs, t["slow"].median_ms > t["fast"].median_ms
    (15, True)
    >>> round(Timing.of([1.0, 2.0, 3.0, 4.0, 100.0]).median_ms, 1)
    3.0
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Mapping, Optional

import numpy as np


@dataclass(frozen=True)
class Timing:
    """Statistics of one callable's timed runs, in milliseconds.

    ``spread_ms`` is the interquartile range (p75 - p25): the noise to beat before a difference counts.
    """

    median_ms: float
    p90_ms: float
    p99_ms: float
    min_ms: float
    mean_ms: float
    spread_ms: float
    runs: int
    samples_ms: tuple[float, ...] = ()

    @classmethod
    def of(cls, samples_ms: list[float] | np.ndarray) -> "Timing":
        """Statistics of raw samples (ms)."""
        s = np.asarray(samples_ms, dtype=np.float64)
        if s.size == 0:
            raise ValueError("Timing.of: Expected at least one sample. Received: none")
        p25, p50, p75, p90, p99 = np.percentile(s, [25, 50, 75, 90, 99])
        return cls(median_ms=float(p50), p90_ms=float(p90), p99_ms=float(p99), min_ms=float(s.min()),
                   mean_ms=float(s.mean()), spread_ms=float(p75 - p25), runs=int(s.size),
                   samples_ms=tuple(float(v) for v in s))

    def as_dict(self, *, samples: bool = False) -> dict:
        d = {k: getattr(self, k) for k in ("median_ms", "p90_ms", "p99_ms", "min_ms", "mean_ms", "spread_ms", "runs")}
        if samples:
            d["samples_ms"] = list(self.samples_ms)
        return d


def median_noise(a: Timing, b: Timing) -> float:
    """How far apart two medians must be to differ: the sum of their box-plot notch half-widths,
    1.58 * IQR / sqrt(runs) each (about a 95% interval for a median; McGill, Tukey and Larsen 1978).

    The per-sample spread (IQR) says how much one inference varies; what decides whether one model is
    faster than another is how well each median is known, which shrinks with the number of runs.

    Example:
        >>> a = Timing.of([1.0, 1.1, 0.9, 1.0] * 25)
        >>> round(median_noise(a, a), 4)
        0.0158
    """
    return 1.58 * (a.spread_ms / a.runs ** 0.5 + b.spread_ms / b.runs ** 0.5)


def interleaved(
    fns: Mapping[str, Callable[[], object]],
    *,
    runs: int = 50,
    warmup: int = 5,
    budget_s: Optional[float] = None,
    min_runs: int = 5,
    shuffle: bool = False,
    seed: int = 0,
) -> dict[str, Timing]:
    """Time each callable ``runs`` times, round-robin, after ``warmup`` untimed rounds.

    Args:
        fns: name -> zero-argument callable (one inference).
        runs: timed rounds (each callable once per round).
        warmup: untimed rounds first.
        budget_s: stop early once this many seconds of timed rounds have passed (at least ``min_runs``).
        min_runs: the fewest rounds a time budget may cut to.
        shuffle: a fresh random order every round (seeded by ``seed``) instead of alternating forward and
            backward, so no callable keeps the same neighbours (cache state left by the one before it).

    Returns:
        name -> Timing, in the order of ``fns``.
    """
    if not fns:
        raise ValueError("interleaved: Expected at least one callable. Received: none")
    if runs < 1:
        raise ValueError(f"interleaved: Expected runs >= 1. Received: runs={runs}")
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    samples: dict[str, list[float]] = {n: [] for n in names}
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for r in range(runs):
        # Alternate the order every round so no callable always runs right after the same neighbour.
        order = [names[i] for i in rng.permutation(len(names))] if shuffle else names if r % 2 == 0 else names[::-1]
        for n in order:
            t0 = time.perf_counter()
            fns[n]()
            samples[n].append((time.perf_counter() - t0) * 1e3)
        if budget_s is not None and r + 1 >= min_runs and time.perf_counter() - start > budget_s:
            break
    return {n: Timing.of(samples[n]) for n in names}
