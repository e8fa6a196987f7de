"""edgecnn: make trained Keras CNNs fit on the edge.

The public API. Heavy libraries load on first use, so ``import edgecnn`` is instant.

Example:
    >>> import edgecnn
    >>> edgecnn.__version__
    '0.1.0'
"""
from __future__ import annotations

from typing import Any

from edgecnn._version import __version__
__all__ = ["__version__", "bench", "compress", "inspect", "load", "prune", "quantize_aware", "rewrite", "save"]
# Export lives in the subpackage: ``from edgecnn.export import export`` (a function of the same name here
# would be replaced by the subpackage as soon as it is imported).


def load(source: Any, **options: Any) -> Any:
    """Load a model file or live model into the working representation; see :func:`edgecnn.io.load`."""
    from edgecnn.io import load as _load

    return _load(source, **options)


def save(model: Any, path: Any) -> Any:
    """Save a working model atomically; see :func:`edgecnn.io.save`."""
    from edgecnn.io import save as _save

    return _save(model, path)


def bench(models: Any, **options: Any) -> Any:
    """Latency, load time, memory, size and accuracy of models on runtimes; see :func:`edgecnn.bench.measure.bench`.

    (Importing the subpackage ``edgecnn.bench`` replaces this attribute by the subpackage, which is callable
    with the same arguments.)
    """
    from edgecnn.bench.measure import bench as _bench

    return _bench(models, **options)


def inspect(source: Any, **options: Any) -> Any:
    """Per-layer params, MACs and activation sizes of a model or file; see :func:`edgecnn.analysis.analyze`.

    ``options`` are those of :func:`load` (``input_shape``, ``custom_objects``, ``trust_model``).
    """
    from edgecnn.analysis import analyze

    return analyze(load(source, **options))


def prune(model: Any, **options: Any) -> Any:
    """Magnitude, 2:4 or structured channel pruning with fine-tuning; see :func:`edgecnn.prune.prune`.

    (Importing the subpackage ``edgecnn.prune`` replaces this attribute by the subpackage, which is
    callable with the same arguments.)
    """
    from edgecnn.prune import prune as _prune

    return _prune(model, **options)


def rewrite(model: Any, **options: Any) -> Any:
    """Rewrite layers into cheaper blocks initialized from the trained weights (separable, bottleneck, gap-head,
    low-rank-dense), optionally recovered by distillation; see :func:`edgecnn.rewrite.rewrite`.

    (Importing the subpackage ``edgecnn.rewrite`` replaces this attribute by the subpackage, which is
    callable with the same arguments.)
    """
    from edgecnn.rewrite import rewrite as _rewrite

    return _rewrite(model, **options)


def quantize_aware(model: Any, **options: Any) -> Any:
    """Quantization-aware training to an int8 TFLite model; see :func:`edgecnn.export.qat.quantize_aware`."""
    from edgecnn.export.qat import quantize_aware as _qat

    return _qat(model, **options)


def compress(model: Any, **options: Any) -> Any:
    """analyze -> plan (measured on the target runtime) -> rewrite -> prune -> distil -> quantize -> export ->
    validate -> benchmark -> report, in one call; see :func:`edgecnn.pipeline.compress`.

    Returns a ``CompressReport``: ``.outdir`` and ``.report`` (the content of report.json).
    """
    from edgecnn.pipeline import compress as _compress

    return _compress(model, **options)
