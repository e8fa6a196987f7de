"""Calibration inputs synthesized from the model itself: no data needed.

A batch of inputs is optimized (Adam, from noise) so that

- each BatchNormalization layer sees, on its input, the per-channel mean and variance it stored as moving
  statistics (ZeroQ, Cai et al. 2020; DeepInversion, Yin et al. 2020): the term is scale-free,
  ``((mu - m)^2 + (sigma - s)^2) / s^2`` averaged over channels and layers, so every layer counts alike;
- each input is classified, confidently, as the class assigned to it (classes cycle 0, 1, 2, ...), as in
  DeepInversion; for models without BatchNorm this "classifier inversion" is the only data term;
- a small smoothness prior (total variation) and an L2 prior toward the middle of the range hold.

Inputs stay inside the input range (:mod:`edgecnn.datafree.inputrange`) by projection after each step. The
result is deterministic for a seed on CPU (the noise it starts from and every step are seeded; a test checks
two runs give the same bytes).

Example:
    >>> import tf_keras
    >>> inp = tf_keras.Input((8, 8, 1))
    >>> x = tf_keras.layers.Conv2D(4, 3, name="c")(inp)
    >>> x = tf_keras.layers.BatchNormalization(name="bn")(x)
    >>> out = tf_keras.layers.Dense(3, activation="softmax")(tf_keras.layers.GlobalAveragePooling2D()(x))
    >>> s = synthesize(tf_keras.Model(inp, out), samples=6, steps=3, batch_size=3, input_range=(0.0, 1.0))
    >>> s.x.shape, float(s.x.min()) >= 0.0, float(s.x.max()) <= 1.0, s.targets.tolist()
    ((6, 8, 8, 1), True, True, [0, 1, 2, 0, 1, 2])
    >>> s.method
    'BatchNorm statistics + class inversion'
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np

from edgecnn.errors import EdgecnnError

__all__ = ["Synthesized", "synthesize", "batchnorm_layers"]


@dataclass
class Synthesized:
    """A synthesized input set and how it was made.

    Attributes:
        x: the inputs, ``(samples, *input_shape)`` float32, inside ``input_range``.
        targets: the class assigned to each input (None for models that are not classifiers).
        input_range: ``(lo, hi)`` the inputs were kept in.
        method: which terms were optimized (``"BatchNorm statistics + class inversion"``, ...).
        steps, batch_size, seed: the optimization's settings.
        bn_layers: BatchNorm layers whose statistics were matched.
        bn_loss: the final BatchNorm term (mean over batches; 0 is a perfect match).
        target_agreement: the share of inputs the float model classifies as their assigned class.
        seconds: wall time.
        outputs: the float model's outputs on ``x`` (a list, one array per output), when they were computed.
    """

    x: np.ndarray = field(repr=False)
    targets: Optional[np.ndarray]
    input_range: tuple[float, float]
    method: str
    steps: int
    batch_size: int
    seed: int
    bn_layers: int = 0
    bn_loss: Optional[float] = None
    target_agreement: Optional[float] = None
    seconds: float = 0.0
    outputs: Optional[list] = field(default=None, repr=False)

    def describe(self) -> dict:
        """JSON-ready, without the arrays."""
        d = {k: v for k, v in asdict(self).items() if k not in ("x", "targets", "outputs")}
        d["samples"] = int(len(self.x))
        d["input_range"] = [float(v) for v in self.input_range]
        return d


def batchnorm_layers(model: Any) -> list:
    """The model's BatchNormalization layers with a 4-D input, in graph order."""
    return [layer for layer in model.layers if "BatchNormalization" in type(layer).__name__
            and len(layer.input.shape) == 4]


def _check(samples: Any, steps: Any, batch_size: Any, input_range: Sequence[float]) -> tuple[float, float]:
    for name, value, low in (("samples", samples, 1), ("steps", steps, 0), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise EdgecnnError(f"synthesis {name}: Expected an integer >= {low}. Received: {value!r}")
    lo, hi = (float(v) for v in input_range)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise EdgecnnError(f"input range: Expected finite LO < HI. Received: {lo}, {hi}")
    return lo, hi


def _init(rng: np.random.Generator, shape: tuple, kind: str) -> np.ndarray:
    """Starting points in [0, 1]: ``uniform`` noise, ``smooth`` noise (upsampled from 1/8 resolution) or
    ``gauss`` (N(0.5, 0.1))."""
    if kind == "uniform":
        return rng.uniform(0.0, 1.0, size=shape).astype(np.float32)
    if kind == "gauss":
        return np.clip(rng.normal(0.5, 0.1, size=shape), 0, 1).astype(np.float32)
    if kind == "smooth":
        import tensorflow as tf

        n, h, w, c = shape
        low = rng.uniform(0.0, 1.0, size=(n, max(1, h // 8), max(1, w // 8), c)).astype(np.float32)
        return np.clip(tf.image.resize(low, (h, w), method="bilinear").numpy(), 0, 1).astype(np.float32)
    raise EdgecnnError(f"synthesis init: Expected uniform, smooth or gauss. Received: {kind!r}")


def _is_probability(model: Any) -> bool:
    """Whether the classifier's output is a softmax (then the class term is -log p, else cross-entropy)."""
    layer = model.layers[-1]
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", "") == "softmax" or type(layer).__name__ == "Softmax"


def synthesize(
    model: Any,
    *,
    samples: int = 512,
    steps: int = 200,
    batch_size: int = 128,
    input_range: Sequence[float] = (0.0, 1.0),
    seed: int = 0,
    learning_rate: float = 0.05,
    bn_weight: float = 1.0,
    class_weight: float = 1.0,
    tv_weight: float = 0.05,
    l2_weight: float = 0.001,
    init: str = "uniform",
    progress: Optional[Callable[[str, int, int], None]] = None,
) -> Synthesized:
    """Optimize ``samples`` inputs so that the model's BatchNorm layers see their stored statistics and the
    classifier is confident of an assigned class (see the module docstring).

    Args:
        model: a tf_keras functional model with one image input (the working model).
        samples: inputs to make; they are optimized ``batch_size`` at a time (BatchNorm statistics are
            matched per batch).
        steps: Adam steps per batch (0: the initial noise).
        input_range: ``(lo, hi)``; inputs are projected into it after each step.
        seed: the noise the inputs start from, and TensorFlow's seed.
        learning_rate: Adam's step size, in units of the input range.
        bn_weight, class_weight, tv_weight, l2_weight: the terms' weights.
        progress: called with (text, done, total) after each batch.

    Returns:
        :class:`Synthesized`.

    Raises:
        EdgecnnError: a setting out of range, or a model with neither BatchNorm layers nor a classifier
            output (nothing to match).
    """
    import tensorflow as tf
    import tf_keras

    lo, hi = _check(samples, steps, batch_size, input_range)
    t0 = time.perf_counter()
    bns = batchnorm_layers(model)
    out = model.outputs[0]
    classes = int(out.shape[-1]) if len(model.outputs) == 1 and len(out.shape) == 2 and out.shape[-1] else 0
    classify = classes >= 2 and class_weight > 0
    if not bns and not classify:
        raise EdgecnnError("data-free synthesis needs BatchNorm statistics or a classifier output to match: Expected "
                           "a model with BatchNormalization layers or one (N, classes) output. Received: "
                           f"{[tuple(o.shape) for o in model.outputs]} and no BatchNorm")
    probe = tf_keras.Model(model.inputs, [b.input for b in bns] + [out])
    stats = [(tf.constant(np.asarray(b.moving_mean), tf.float32),
              tf.constant(np.sqrt(np.asarray(b.moving_variance) + b.epsilon), tf.float32)) for b in bns]
    probability = _is_probability(model)
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    width = hi - lo
    tf_keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    targets = np.arange(samples) % classes if classify else None
    batch_size = min(batch_size, samples)

    def losses(u: Any, t: Any) -> tuple[Any, Any]:
        outs = probe(lo + width * u, training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        bn = tf.constant(0.0)
        for (mean, std), a in zip(stats, outs[:-1]):
            mu = tf.reduce_mean(a, axis=[0, 1, 2])
            sd = tf.sqrt(tf.reduce_mean(tf.square(a - mu), axis=[0, 1, 2]) + 1e-8)
            bn += tf.reduce_mean((tf.square(mu - mean) + tf.square(sd - std)) / tf.square(std))
        bn = bn / max(1, len(stats))
        total = bn_weight * bn
        if classify:
            y = outs[-1]
            if probability:
                picked = tf.gather(y, t, axis=1, batch_dims=1)
                ce = -tf.reduce_mean(tf.math.log(picked + 1e-8))
            else:
                ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=t, logits=y))
            total += class_weight * ce
        tv = (tf.reduce_mean(tf.square(u[:, 1:] - u[:, :-1])) + tf.reduce_mean(tf.square(u[:, :, 1:] - u[:, :, :-1])))
        total += tv_weight * tv + l2_weight * tf.reduce_mean(tf.square(u - 0.5))
        return total, bn

    @tf.function(reduce_retracing=True)
    def step(u: Any, m: Any, v: Any, t: Any, k: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(u)
            total, bn = losses(u, t)
        g = tape.gradient(total, u)
        m.assign(0.9 * m + 0.1 * g)
        v.assign(0.999 * v + 0.001 * tf.square(g))
        kf = tf.cast(k, tf.float32)
        mhat = m / (1.0 - tf.pow(0.9, kf))
        vhat = v / (1.0 - tf.pow(0.999, kf))
        u.assign(tf.clip_by_value(u - learning_rate * mhat / (tf.sqrt(vhat) + 1e-8), 0.0, 1.0))
        return bn

    parts, bn_values = [], []
    batches = range(0, samples, batch_size)
    for i, start in enumerate(batches):
        n = min(batch_size, samples - start)
        u = tf.Variable(_init(rng, (n, *shape), init))
        m, v = tf.Variable(tf.zeros_like(u)), tf.Variable(tf.zeros_like(u))
        t = tf.constant(targets[start:start + n] if classify else np.zeros(n, np.int64), tf.int64)
        bn = None
        for k in range(1, steps + 1):
            bn = step(u, m, v, t, tf.constant(k))
        if bn is None:
            bn = losses(u, t)[1]
        bn_values.append(float(bn))
        parts.append(u.numpy())
        if progress is not None:
            progress(f"synthesized {start + n}/{samples} inputs", i + 1, len(batches))
    x = (lo + width * np.concatenate(parts)).astype(np.float32)
    agreement, outputs = None, None
    if classify:
        from edgecnn.runtimes.keras import keras_outputs

        from edgecnn.data.checks import top1_accuracy

        outputs = keras_outputs(model, x)
        agreement = top1_accuracy(outputs[0], targets)
    method = " + ".join((["BatchNorm statistics"] if bns else []) + (["class inversion"] if classify else []))
    return Synthesized(x=x, targets=targets, input_range=(lo, hi), method=method, steps=steps,
                       batch_size=batch_size, seed=seed, bn_layers=len(bns),
                       bn_loss=float(np.mean(bn_values)) if bns else None, target_agreement=agreement,
                       seconds=round(time.perf_counter() - t0, 3), outputs=outputs)
