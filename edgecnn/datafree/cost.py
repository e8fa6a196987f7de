"""How many inputs to synthesize, and for how many steps, within a time and a memory budget.

Synthesis is the data-free plan's largest cost at high resolution: every Adam step runs the model forward and
backward on a batch. Fitted (least squares) on the reference host (2 cores) to six keras.applications models at
batch 8, one sample-step costs about ``16.7 ms per GMAC + 0.42 ms per MB of activations`` (measured / fitted:
MobileNetV3Small 224 5.5 / 12.0 ms, MobileNetV2 96 14.3 / 7.3, MobileNetV2 224 41.0 / 39.7, EfficientNetB0 63.0
/ 46.4, DenseNet121 110.8 / 126.8, ResNet50 133.5 / 123.5: within a factor of two), and the backward pass holds
about twice the forward activations per sample (47 MB measured for MobileNetV3Small, 215 MB for ResNet50).

:func:`plan_synthesis` turns those rates into a deterministic decision (the same model and settings give the
same plan on any machine, so a seed still gives the same synthesized set): the batch is as large as the memory
budget allows, then samples (down to 64), steps (down to 30), and both to their minimums (32 samples, 10 steps)
are cut until the estimated seconds fit. The
plan says what it cut and why; a model too large for even the minimums is synthesized at the minimums and
said to be over budget.

Example:
    >>> p = plan_synthesis(samples=256, steps=100, batch_size=128, gmacs=0.06, activation_mb=26.5,
    ...                    max_seconds=60.0, memory_mb=1024.0)
    >>> p.batch_size, p.samples, p.steps, p.cut
    (19, 64, 77, 'samples 256 -> 64, steps 100 -> 77 to fit 60 s (estimated 12.1 ms per sample-step on the reference host)')
    >>> plan_synthesis(samples=64, steps=50, batch_size=32, gmacs=0.01, activation_mb=1.0, max_seconds=0.0,
    ...                memory_mb=1024.0).cut   # no time limit
    ''
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


__all__ = ["SynthesisPlan", "activation_mb", "plan_synthesis", "probe_batch", "step_seconds"]

MS_PER_GMAC = 16.7
MS_PER_ACTIVATION_MB = 0.42
BACKWARD_MEMORY = 2.0  # bytes held per sample during a step, in units of the forward activations
MIN_SAMPLES, MIN_STEPS = 32, 10


def activation_mb(model: Any) -> float:
    """MB of float32 activations one input produces: its input and every layer's output
    (:func:`edgecnn.graph.activation_elements`)."""
    from edgecnn.graph import activation_elements

    return 4.0 * activation_elements(model) / 2**20


def probe_batch(model: Any, *, memory_mb: float = 512.0, most: int = 64) -> int:
    """Inputs per batch when every layer's output of a batch is held at once (the equalization's and bias
    correction's probes): as many as fit ``memory_mb``, between 1 and ``most``.

    >>> import tf_keras
    >>> inp = tf_keras.Input((224, 224, 3))
    >>> probe_batch(tf_keras.Model(inp, tf_keras.layers.Conv2D(64, 3, padding="same")(inp)))  # 12.8 MB a sample, input included
    19
    """
    per_sample = 2.0 * activation_mb(model)  # float32 values and their transient copies
    return int(max(1, min(most, memory_mb // max(per_sample, 1e-6))))


def step_seconds(*, gmacs: float, activation_mb: float) -> float:
    """Estimated seconds of one sample-step (forward + backward) on the reference host.

    >>> round(step_seconds(gmacs=3.9, activation_mb=141.6), 3)
    0.125
    """
    return (MS_PER_GMAC * gmacs + MS_PER_ACTIVATION_MB * activation_mb) / 1000.0


@dataclass
class SynthesisPlan:
    """Samples, steps and batch size to synthesize with, and what was cut to fit."""

    samples: int
    steps: int
    batch_size: int
    estimated_s: float
    requested: dict
    cut: str = ""
    over_budget: bool = False

    def describe(self) -> dict:
        return asdict(self)


def plan_synthesis(*, samples: int, steps: int, batch_size: int, gmacs: float, activation_mb: float,
                   max_seconds: float, memory_mb: float) -> SynthesisPlan:
    """The settings to synthesize with (see the module docstring). ``max_seconds <= 0``: no time limit."""
    per_sample = max(BACKWARD_MEMORY * activation_mb, 1e-6)
    batch = max(1, min(batch_size, samples, int(memory_mb // per_sample)))
    cost = step_seconds(gmacs=gmacs, activation_mb=activation_mb)
    requested = {"samples": samples, "steps": steps, "batch_size": batch_size}
    n, k = samples, steps
    if max_seconds > 0:
        # samples first down to 64 (the proxy's resolution), then steps down to 30, then both to their minimums
        for what, floor in (("samples", 64), ("steps", 30), ("samples", MIN_SAMPLES), ("steps", MIN_STEPS)):
            if n * k * cost <= max_seconds:
                break
            if what == "samples":
                n = max(min(n, floor), min(n, math.floor(max_seconds / (cost * k))))
            else:
                k = max(min(k, floor), min(k, math.floor(max_seconds / (cost * n))))
    cuts = [f"{what} {a} -> {b}" for what, a, b in (("samples", samples, n), ("steps", steps, k)) if b < a]
    estimated = n * k * cost
    over = max_seconds > 0 and estimated > max_seconds * 1.0001
    cut = ""
    if cuts:
        cut = (", ".join(cuts) + f" to fit {max_seconds:g} s (estimated {1000 * cost:.1f} ms per sample-step on "
               "the reference host)" + ("; still over: the minimums" if over else ""))
    return SynthesisPlan(samples=n, steps=k, batch_size=min(batch, n), estimated_s=round(estimated, 1),
                         requested=requested, cut=cut, over_budget=over)
