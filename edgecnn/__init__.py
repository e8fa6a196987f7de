"""edgecnn: make trained Keras CNNs fit on the edge.

The public API: one verb per capability. Each verb is a function here; the work is done in the package named
after it (``load``/``save``: :mod:`edgecnn.io`; ``inspect``: :mod:`edgecnn.analysis`; ``rewrite``:
:mod:`edgecnn.rewriting`; ``prune``: :mod:`edgecnn.pruning`; ``quantize``, ``quantize_aware``, ``export``:
:mod:`edgecnn.exporting`; ``bench``: :mod:`edgecnn.benchmarking`; ``compress``: :mod:`edgecnn.pipeline`).
Nothing inside the package imports this module. Heavy libraries load on first use, so ``import edgecnn`` is
instant.

Example:
    >>> import edgecnn
    >>> edgecnn.__version__
    '0.1.0'
    >>> import edgecnn.exporting, edgecnn.pruning  # plain packages: the verbs stay functions
    >>> callable(edgecnn.export) and callable(edgecnn.prune) and edgecnn.export is not edgecnn.exporting
    True
"""
from __future__ import annotations

from typing import Any

from edgecnn._version import __version__

__all__ = ["__version__", "bench", "compress", "export", "inspect", "load", "prune", "quantize", "quantize_aware",
           "rewrite", "save"]


def load(source: Any, **options: Any) -> Any:
    """Load a model file or live model into the working representation; see :func:`edgecnn.io.load`."""
    from edgecnn.io import load as _load

    return _load(source, **options)


def save(model: Any, path: Any) -> Any:
    """Save a working model atomically; see :func:`edgecnn.io.save`."""
    from edgecnn.io import save as _save

    return _save(model, path)


def inspect(source: Any, **options: Any) -> Any:
    """Per-layer params, MACs and activation sizes of a model or file; see :func:`edgecnn.analysis.analyze`.

    ``options`` are those of :func:`load` (``input_shape``, ``custom_objects``, ``trust_model``).
    """
    from edgecnn.analysis import analyze

    return analyze(load(source, **options))


def rewrite(model: Any, **options: Any) -> Any:
    """Rewrite layers into cheaper blocks initialized from the trained weights (separable, bottleneck, gap-head,
    low-rank-dense), optionally recovered by distillation; see :func:`edgecnn.rewriting.rewrite`."""
    from edgecnn.rewriting import rewrite as _rewrite

    return _rewrite(model, **options)


def prune(model: Any, **options: Any) -> Any:
    """Magnitude, 2:4 or structured channel pruning with fine-tuning; see :func:`edgecnn.pruning.prune`."""
    from edgecnn.pruning import prune as _prune

    return _prune(model, **options)


def export(model: Any, **options: Any) -> Any:
    """Export to TFLite and/or ONNX, every artifact validated on its real runtime; see
    :func:`edgecnn.exporting.export` (``outdir=``, ``formats=``, ``quantize=``, ``data=``, ...)."""
    from edgecnn.exporting import export as _export

    return _export(model, **options)


def quantize(model: Any, *, mode: str = "int8", **options: Any) -> Any:
    """Post-training quantization to a validated artifact: :func:`export` with ``quantize=mode`` (``fp16``,
    ``dynamic``, ``int8``, ``int16x8``); full-integer modes calibrate on the train split of ``data=``. For
    quantization-aware training see :func:`quantize_aware`."""
    from edgecnn.exporting import export as _export

    return _export(model, quantize=mode, **options)


def quantize_aware(model: Any, **options: Any) -> Any:
    """Quantization-aware training to an int8 TFLite model; see :func:`edgecnn.exporting.qat.quantize_aware`."""
    from edgecnn.exporting.qat import quantize_aware as _qat

    return _qat(model, **options)


def bench(models: Any, **options: Any) -> Any:
    """Latency, load time, memory, size and accuracy of models on runtimes; see
    :func:`edgecnn.benchmarking.measure.bench`."""
    from edgecnn.benchmarking.measure import bench as _bench

    return _bench(models, **options)


def compress(model: Any, **options: Any) -> Any:
    """analyze -> plan (measured on the target runtime) -> rewrite -> prune -> distil -> quantize -> export ->
    validate -> benchmark -> report, in one call; see :func:`edgecnn.pipeline.compress`.

    Returns a ``CompressReport``: ``.outdir`` and ``.report`` (the content of report.json).
    """
    from edgecnn.pipeline import compress as _compress

    return _compress(model, **options)
