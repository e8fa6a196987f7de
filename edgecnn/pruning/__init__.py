"""Pruning: unstructured magnitude and 2:4 sparsity (tfmot) for size, structured channels for speed.

``prune(model, method=..., sparsity=...)`` is the one entry point; :data:`METHODS` lists the methods.

- ``magnitude``: tfmot ``prune_low_magnitude`` to ``sparsity`` zeros per layer (PolynomialDecay or
  constant schedule), fine-tuned with ``UpdatePruningStep`` (distillation from the original when data is
  given), then ``strip_pruning``. The model keeps its shape: the zeros shrink the gzip-compressed file,
  but dense runtimes do not get faster from unstructured zeros.
- ``m-by-n``: tfmot's 2:4 structured sparsity (2 zeros in every 4 weights along the input channels), for
  sparse tensor-core style kernels; on CPU runtimes it is a size saving like ``magnitude``.
- ``channels``: edgecnn's structured pruning. ``sparsity`` is the fraction of channels removed from every
  prunable group (Conv2D filters, SeparableConv2D pointwise filters, Dense units, tied across residual
  Adds), so a conv between two pruned groups keeps about ``(1 - s)^2`` of its weights: 0.5 gives about
  0.25x conv parameters and MACs. The layers really get smaller, so the model gets faster.

Example:
    >>> import tf_keras
    >>> inp = tf_keras.Input((8, 8, 3))
    >>> x = tf_keras.layers.Conv2D(16, 3, padding="same", name="c1")(inp)
    >>> x = tf_keras.layers.Conv2D(16, 3, padding="same", name="c2")(x)
    >>> x = tf_keras.layers.GlobalAveragePooling2D()(x)
    >>> model = tf_keras.Model(inp, tf_keras.layers.Dense(4, name="head")(x))
    >>> r = prune(model, method="channels", sparsity=0.5, progress=False)
    >>> [(row["name"], row["channels_before"], row["channels_after"]) for row in r.layers]
    [('c1', 16, 8), ('c2', 16, 8)]
    >>> r.params_after < r.params_before, r.accuracy_after is None
    (True, True)
"""
from __future__ import annotations

import gzip
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Union

import numpy as np

from edgecnn.errors import EdgecnnError
from edgecnn.pruning.channels import apply_selection, check_ratio, prune_channels, select
from edgecnn.pruning.groups import ChannelGraph, PruningGroup, channel_groups
from edgecnn.pruning.importance import IMPORTANCES
from edgecnn.pruning.sensitivity import sensitivity

__all__ = ["METHODS", "PruneResult", "PruningGroup", "apply_selection", "channel_groups", "prune",
           "prune_channels", "sensitivity"]

METHODS = {
    "magnitude": "unstructured zeros (tfmot prune_low_magnitude): smaller gzip size, same dense latency",
    "m-by-n": "2:4 structured sparsity (tfmot sparsity_m_by_n): smaller gzip size, same dense latency",
    "channels": "structured channel pruning (edgecnn): smaller layers, fewer params and MACs, faster",
}
DENSE_NOTE = ("unstructured zeros do not make dense runtimes faster (LiteRT/XNNPACK and ONNX Runtime on CPU "
              "still multiply them): they shrink the compressed file; use --method channels for speed")


@dataclass
class PruneResult:
    """What :func:`prune` produced.

    Attributes:
        model: the pruned, stripped plain tf_keras model (save it with :func:`edgecnn.save`).
        method: ``magnitude``, ``m-by-n`` or ``channels``.
        layers: per-layer rows: channels: ``name``, ``producers``, ``channels_before``, ``channels_after``;
            magnitude: ``name``, ``target``, ``sparsity`` (achieved fraction of zero kernel weights).
        params_before, params_after: parameter counts (magnitude: the same; see ``nonzero_after``).
        nonzero_before, nonzero_after: parameters that are not exactly zero.
        sizes: gzip sizes in bytes (magnitude methods): ``h5_dense``, ``h5_pruned``, ``h5_dense_gzip``,
            ``h5_pruned_gzip``, ``tflite_dense``, ``tflite_pruned``, ``tflite_dense_gzip``, ``tflite_pruned_gzip``.
        accuracy_before, accuracy_after: top-1 on the held-out split of labelled data, else None;
            ``accuracy_before`` is the original's with re-estimated BatchNorm statistics when the ones it came
            with were stale (``original_batchnorm["stale"]``), ``accuracy_before_as_given`` the file's own.
        epochs_run: fine-tuning epochs actually run.
        notes: what the numbers mean (e.g. that zeros do not speed up dense runtimes).
        data: the held-out split the accuracies were measured on (:meth:`edgecnn.data.HeldOut.describe`).
        budget: with ``max_accuracy_drop``: ``met``, ``drop_points`` and, when missed, ``why`` with what to try.
    """

    model: Any = field(repr=False)
    method: str
    layers: list[dict]
    params_before: int
    params_after: int
    nonzero_before: int
    nonzero_after: int
    sizes: dict = field(default_factory=dict)
    accuracy_before: Optional[float] = None
    accuracy_after: Optional[float] = None
    epochs_run: int = 0
    notes: list[str] = field(default_factory=list)
    data: Optional[dict] = None
    budget: Optional[dict] = None
    accuracy_before_as_given: Optional[float] = None
    original_batchnorm: Optional[dict] = None

    def as_dict(self) -> dict:
        """Everything but the model, JSON-ready."""
        return {"method": self.method, "layers": self.layers, "params_before": self.params_before,
                "params_after": self.params_after, "nonzero_before": self.nonzero_before,
                "nonzero_after": self.nonzero_after, "sizes": dict(self.sizes),
                "accuracy_before": self.accuracy_before, "accuracy_after": self.accuracy_after,
                "epochs_run": self.epochs_run, "notes": list(self.notes), "data": self.data, "budget": self.budget,
                "accuracy_before_as_given": self.accuracy_before_as_given,
                "original_batchnorm": self.original_batchnorm}


def _working(model: Any) -> Any:
    from edgecnn._tf import import_tensorflow

    import_tensorflow()
    import tf_keras

    if isinstance(model, tf_keras.Model) and getattr(model, "_is_graph_network", False):
        return model
    from edgecnn.io import load

    return load(model)


PRUNE_HINT = ("try a smaller --sparsity, more --epochs, --importance bn or activation, or --layer-sparsity to spare "
              "the sensitive groups that --analyze lists")


def _datasets(data: Any, model: Any, *, seed: int, eval_on_train: bool) -> Any:
    """The HeldOut split of any data source (:func:`edgecnn.data.split_data`), or None."""
    if data is None:
        return None
    from edgecnn.data import split_data

    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    return split_data(data, input_shape=shape, seed=seed, eval_on_train=eval_on_train)


def accuracy(model: Any, ds: Any) -> Optional[float]:
    """Top-1 accuracy of ``model`` (inference mode) on a labelled Dataset, else None."""
    if ds is None or ds.y is None:
        return None
    from edgecnn.data import top1_accuracy

    return top1_accuracy(model.predict(ds.x, batch_size=128, verbose=0), ds.y)


def _nonzero(model: Any) -> int:
    return int(sum(int(np.count_nonzero(w)) for w in model.get_weights()))


def fine_tune(student: Any, teacher: Any, train: Any, *, epochs: int, batch_size: int, seed: int,
              progress: bool, callbacks: tuple = (), strategy: Any = None) -> int:
    """Distill ``teacher`` into ``student`` on ``train`` (labels used when present); returns epochs run."""
    from edgecnn.distill import distill

    if epochs <= 0 or train is None:
        return 0
    result = distill(student, teacher, x=train.x, y=train.y, epochs=epochs, batch_size=batch_size, seed=seed,
                     callbacks=callbacks, progress=progress, strategy=strategy)
    return int(result.epochs_run)


def _gzip_sizes(dense: Any, pruned: Any) -> dict:
    from edgecnn.exporting.tflite import to_tflite
    from edgecnn.io import save
    from edgecnn.exporting.quantize import QuantMode
    from edgecnn._tf import muted

    import warnings

    sizes = {}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for key, m in (("dense", dense), ("pruned", pruned)):
            path = save(m, os.path.join(tmp, f"{key}.h5"))
            data = path.read_bytes()
            sizes[f"h5_{key}"], sizes[f"h5_{key}_gzip"] = len(data), len(gzip.compress(data, 9))
            with muted(1, 2):
                flat = to_tflite(m, mode=QuantMode.NONE, calibration=None)
            sizes[f"tflite_{key}"], sizes[f"tflite_{key}_gzip"] = len(flat), len(gzip.compress(flat, 9))
    return sizes


def _check(method: str, sparsity: Any, schedule: str, importance: str, round_to: Any, epochs: Any,
           layer_sparsity: Any) -> float:
    if method not in METHODS:
        raise EdgecnnError(f"unknown pruning method {method!r}: Expected one of {', '.join(METHODS)}. "
                           f"Received: {method!r}")
    s = check_ratio(sparsity)
    for key, value in (layer_sparsity or {}).items():
        check_ratio(value, f"sparsity of '{key}'")
    if schedule not in ("polynomial", "constant"):
        raise EdgecnnError(f"unknown pruning schedule {schedule!r}: Expected polynomial or constant. "
                           f"Received: {schedule!r}")
    if importance not in IMPORTANCES:
        raise EdgecnnError(f"unknown importance {importance!r}: Expected one of {', '.join(IMPORTANCES)}. "
                           f"Received: {importance!r}")
    if not isinstance(round_to, int) or round_to < 1:
        raise EdgecnnError(f"round_to: Expected an integer >= 1. Received: {round_to!r}")
    if not isinstance(epochs, int) or epochs < 0:
        raise EdgecnnError(f"epochs: Expected an integer >= 0. Received: {epochs!r}")
    return s


def prune(model: Any, *, method: str = "magnitude", sparsity: float, schedule: str = "polynomial",
          layer_sparsity: Optional[Mapping[str, float]] = None, skip_first_last: bool = True,
          importance: str = "l1", round_to: int = 8, data: Any = None, epochs: int = 0, batch_size: int = 32,
          seed: int = 0, progress: bool = True, max_accuracy_drop: Optional[float] = None,
          eval_on_train: bool = False, strategy: Any = None) -> PruneResult:
    """Prune a model by ``method`` and fine-tune it (distillation from the original) when data is given.

    Args:
        model: a working model, a live Keras model or a model file (anything :func:`edgecnn.load` takes).
            It is never modified.
        method: ``magnitude``, ``m-by-n`` or ``channels`` (see :data:`METHODS`).
        sparsity: in [0, 1): the fraction of zero weights per pruned layer (magnitude), or of channels
            removed per channel group (channels). Ignored by ``m-by-n`` (always 2 of 4).
        schedule: ``polynomial`` (0 -> sparsity over the fine-tuning steps) or ``constant`` (magnitude).
        layer_sparsity: ``{layer name or glob: sparsity}`` overrides (for channels, matched against each
            group's producing layers).
        skip_first_last: magnitude methods leave the first and last prunable layers dense (channel
            pruning never touches the model outputs; the first conv's filters are pruned like any other).
        importance: channels: ``l1``, ``bn`` or ``activation`` (measured on ``data``).
        round_to: channels: kept channel counts are multiples of this (never 0).
        data: a ``--data`` spec (``digits``, a folder, a .npz), a ``Dataset``, ``(x, y)``, a ``tf.data.Dataset``
            or a :class:`edgecnn.data.HeldOut`. It is split once (:func:`edgecnn.data.split_data`): the train
            split fine-tunes (labels used when present) and re-estimates the BatchNorm statistics after the
            cuts; the held-out test split measures accuracy before and after.
        epochs: fine-tuning epochs (0: prune only; magnitude masks are then applied one-shot).
        batch_size, seed, progress: fine-tuning options (``batch_size`` is the global batch).
        strategy: the fine-tuning's ``tf.distribute`` strategy (see :func:`edgecnn.distill.make_strategy`);
            ``channels`` only: magnitude pruning fine-tunes on one device.
        max_accuracy_drop: points of held-out accuracy the pruned model may lose; ``result.budget`` says
            whether it was met and what to try when not.
        eval_on_train: data too small to hold out a test split is measured on the training data (said in
            the notes) instead of refused.

    Returns:
        A :class:`PruneResult`.

    Raises:
        EdgecnnError: an unknown method/schedule/importance, sparsity outside [0, 1), fine-tuning without data.
        UnsupportedModelError: nothing prunable. UnsupportedLayerError: a layer channel pruning cannot handle.
    """
    s = _check(method, sparsity, schedule, importance, round_to, epochs, layer_sparsity)
    _check_strategy(strategy, method)
    if epochs > 0 and data is None:
        raise EdgecnnError(f"fine-tuning needs data: Expected --data with epochs={epochs}. Received: no data")
    working = _working(model)
    heldout = _datasets(data, working, seed=seed, eval_on_train=eval_on_train)
    train, test = (heldout.train, heldout.test) if heldout is not None else (None, None)
    as_given = accuracy(working, test)
    notes = []
    from edgecnn.training import repair_stale_batchnorm, stale_note

    working, bn_info = repair_stale_batchnorm(working, train)
    if bn_info and bn_info["stale"]:
        notes.append(stale_note(bn_info) + f" (held-out: {100 * as_given:.2f}% as given)")
    before = accuracy(working, test)
    if method == "channels":
        result = _prune_channels(working, s, layer_sparsity, importance, round_to, train, notes)
    else:
        result = _prune_magnitude(working, method, s, schedule, layer_sparsity, skip_first_last, train,
                                  epochs, batch_size, seed, notes)
    pruned, rows, epochs_run = result
    if method == "channels":
        epochs_run = fine_tune(pruned, working, train, epochs=epochs, batch_size=batch_size, seed=seed,
                               progress=progress, strategy=strategy)
        sizes = {}
    else:
        sizes = _gzip_sizes(working, pruned)
    if heldout is not None and heldout.on_training_data:
        from edgecnn.data import EVAL_ON_TRAIN_NOTE

        notes.append(EVAL_ON_TRAIN_NOTE)
    after = accuracy(pruned, test)
    budget = None
    if max_accuracy_drop is not None:
        from edgecnn.data import budget_outcome

        budget = budget_outcome(before, after, max_drop=max_accuracy_drop, hint=PRUNE_HINT)
    return PruneResult(model=pruned, method=method, layers=rows, params_before=int(working.count_params()),
                       params_after=int(pruned.count_params()), nonzero_before=_nonzero(working),
                       nonzero_after=_nonzero(pruned), sizes=sizes, accuracy_before=before,
                       accuracy_after=after, epochs_run=epochs_run, notes=notes,
                       data=None if heldout is None else heldout.describe(), budget=budget,
                       accuracy_before_as_given=as_given, original_batchnorm=bn_info)


def _prune_channels(working: Any, s: float, layer_sparsity: Any, importance: str, round_to: int, train: Any,
                    notes: list) -> tuple:
    from edgecnn.errors import UnsupportedModelError

    if importance == "activation" and train is None:
        raise EdgecnnError("activation importance measures the model on data: Expected --data. Received: none")
    cg = ChannelGraph(working)
    groups = cg.groups()
    if not groups:
        raise UnsupportedModelError(
            f"model '{working.name}' has nothing to prune: Expected a Conv2D, SeparableConv2D or Dense layer whose "
            "channels do not feed the model output directly. Received: no prunable channel group")
    ratios: Union[float, dict] = dict(layer_sparsity) if layer_sparsity else s
    x = None if train is None else train.x[:256]
    selection = select(cg, ratios=ratios, importance=importance, round_to=round_to, default=s, x=x)
    pruned = apply_selection(working, selection, cg=cg, bn_data=None if train is None else train.x)
    from edgecnn.surgery import stale_batchnorms

    if stale_batchnorms(pruned):
        notes.append("no data: the BatchNorm statistics after the cuts were not re-estimated, so the pruned model "
                     "may be far off in inference mode; pass --data")
    rows = [{"name": g.name, "producers": list(g.producers), "channels_before": g.channels,
             "channels_after": int(len(selection[g.id])) if g.id in selection else g.channels} for g in groups]
    notes.append(f"channels: sparsity is the fraction of channels removed per group (rounded to multiples of "
                 f"{round_to}); a conv between two pruned groups keeps about (1-s)^2 of its weights")
    return pruned, rows, 0


def _check_strategy(strategy: Any, method: str) -> None:
    """Distributed fine-tuning is for channel pruning (a plain model); magnitude pruning's tfmot wrappers (masks,
    step counter, ``UpdatePruningStep``) fine-tune on one device: their distributed use is not tested here."""
    from edgecnn.distribute import check_strategy

    if strategy is None or not isinstance(strategy, str):
        return
    if check_strategy(strategy) != "default" and method != "channels":
        raise EdgecnnError(f"--strategy {strategy} distributes the fine-tuning of channel pruning only: Expected "
                           f"--method channels (or --strategy default). Received: --method {method}")


def _prune_magnitude(working: Any, method: str, s: float, schedule: str, layer_sparsity: Any, skip_first_last: bool,
                     train: Any, epochs: int, batch_size: int, seed: int, notes: list) -> tuple:
    from edgecnn.pruning import magnitude as mag

    m_by_n = method == "m-by-n"
    steps = 1
    if train is not None and epochs > 0:
        steps = max(1, epochs * (int(len(train) * 0.9) // batch_size))  # distill holds out 10% for validation
    wrapped, targets = mag.wrap(working, sparsity=s, schedule=schedule, m_by_n=m_by_n, steps=steps,
                                layer_sparsity=layer_sparsity, skip_first_last=skip_first_last)
    epochs_run = 0
    if train is not None and epochs > 0:
        epochs_run = fine_tune(wrapped, working, train, epochs=epochs, batch_size=batch_size, seed=seed,
                               progress=False, callbacks=tuple(mag.callbacks()))
    else:
        mag.one_shot(wrapped)
        notes.append("no fine-tuning: the masks were applied one-shot at the schedule's final sparsity")
    pruned = mag.strip(wrapped)
    done = mag.achieved(pruned, list(targets))
    rows = [{"name": name, "target": 0.5 if m_by_n else targets[name], "sparsity": round(done[name], 4)}
            for name in targets]
    notes.append(DENSE_NOTE)
    if m_by_n:
        notes.append("m-by-n: 2 of every 4 weights along the input channels are zero (tfmot sparsity_m_by_n=(2, 4))")
    return pruned, rows, epochs_run
