"""One held-out protocol for every data source: split once, stratified and seeded, then measure only on test.

Every accuracy edgecnn prints, checks or writes is measured on :attr:`HeldOut.test`; calibration,
BatchNorm re-estimation and fine-tuning draw from :attr:`HeldOut.train` only. :func:`split_data` takes
any source a user brings (``digits``, an image folder, a ``.npz``, a :class:`~edgecnn.data.Dataset`,
``(x, y)`` arrays, or a ``tf.data.Dataset``) and returns the same split for the same seed.
:meth:`HeldOut.describe` records the source, split sizes and the identity of each test sample (file names
for folders, row indices for ``.npz`` and arrays), so anyone can re-measure a reported accuracy.

Data too small to hold out a test split (fewer than :data:`MIN_PER_CLASS` samples of some class) is a
:class:`~edgecnn.errors.DataError` unless ``eval_on_train=True``; then train and test are the same samples and
``describe()["evaluated_on_training_data"]`` is True, which every report repeats.

Given ``val`` (``--val``: samples the model has not seen), nothing is split: all of ``data`` is train and
``val`` is test (:func:`split_val`; its checks in :mod:`edgecnn.data.val`). Without it, a model trained on
``data`` may have memorized the test split: :func:`edgecnn.data.val.memorized_note` says so.

Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).random((40, 4, 4, 1), dtype=np.float32)
    >>> y = np.repeat(np.arange(4), 10)
    >>> h = split_data((x, y), input_shape=(4, 4, 1))
    >>> len(h.train), len(h.test), sorted(np.bincount(h.test.y).tolist())
    (32, 8, [2, 2, 2, 2])
    >>> set(h.train.ids) & set(h.test.ids)
    set()
    >>> d = h.describe(); d["test_samples"], d["stratified"], d["test_ids"][:2]
    (8, True, ['0', '5'])
    >>> v = split_data((x, y), val=(x[:6] + 1, y[:6]), input_shape=(4, 4, 1))
    >>> len(v.train), len(v.test), v.describe()["test_from"], v.describe()["test_fraction"]
    (40, 6, 'val', None)
    >>> split_data((x[:12], y[:12]), input_shape=(4, 4, 1))
    Traceback (most recent call last):
    ...
    edgecnn.errors.DataError: Expected at least 5 samples of every class to hold out a test split. Received: 1 class(es) with fewer (class 1: 2); pass --eval-on-train (eval_on_train=True) to measure on the training data instead
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any, Optional

import numpy as np

from edgecnn.data.dataset import MIN_PER_CLASS, TEST_FRACTION, Dataset, split_indices, take
from edgecnn.errors import DataError, ShapeMismatchError

__all__ = ["EVAL_ON_TRAIN_NOTE", "HeldOut", "budget_outcome", "split_data", "split_val"]

MAX_TFDATA_SAMPLES = 100_000


@dataclass(frozen=True)
class HeldOut:
    """A train/test split of one data source, or a train source and a separate test source (``--val``).

    Attributes:
        train: samples for fine-tuning, calibration and BatchNorm re-estimation.
        test: samples for every accuracy and agreement; disjoint from ``train`` unless
            ``on_training_data`` (or, with ``--val``, but for the ``val_overlap`` samples both hold).
        seed: the split's seed. test_fraction: the test share (None when the test side is ``--val``).
            stratified: whether the split kept the class proportions. on_training_data: the user opted in to
            measuring on the training data.
        from_val: the test side is a separate source (``--val``), not split off ``train``'s.
        val_overlap: with ``from_val``, how many test samples are byte-identical to a train sample.
    """

    train: Any
    test: Any
    seed: int
    test_fraction: Optional[float]
    stratified: bool
    on_training_data: bool = False
    from_val: bool = False
    val_overlap: int = 0

    @property
    def labelled(self) -> bool:
        return self.test.y is not None

    @property
    def source(self) -> str:
        """Where the train side came from (``--data``); the test side's is ``test.source``."""
        return self.train.source

    @property
    def class_names(self) -> Optional[tuple[str, ...]]:
        return self.train.class_names or self.test.class_names

    @property
    def test_from(self) -> str:
        """``"split"`` (held out of --data), ``"val"`` (--val) or ``"train"`` (--eval-on-train)."""
        return "val" if self.from_val else "train" if self.on_training_data else "split"

    def describe(self) -> dict:
        """JSON-ready record of the split: enough to re-measure every reported accuracy (the source and ids of
        each side; ``test_source`` is ``source`` unless the test side is ``--val``)."""
        out = {"source": self.source, "test_source": self.test.source, "test_from": self.test_from,
               "seed": self.seed, "test_fraction": self.test_fraction, "stratified": self.stratified,
               "train_samples": len(self.train), "test_samples": len(self.test), "labelled": self.labelled,
               "evaluated_on_training_data": self.on_training_data, "id_kind": _id_kind(self.source),
               "test_id_kind": _id_kind(self.test.source), "test_ids": list(self.test.ids or ()),
               "train_ids": list(self.train.ids or ())}
        if self.from_val:
            out["val_overlap"] = self.val_overlap
        return out


def _id_kind(source: str) -> str:
    if source.startswith("folder:"):
        return "file path relative to the folder"
    if source == "digits":
        return "row index in sklearn.datasets.load_digits()"
    return "row index in the source arrays"


def split_data(data: Any, *, input_shape: tuple[int, int, int], seed: int = 0, test_fraction: float = TEST_FRACTION,
               eval_on_train: bool = False, val: Any = None) -> HeldOut:
    """Split ``data`` once into train and held-out test, or pair it with ``val`` (:func:`split_val`).

    Args:
        data: a :class:`HeldOut` (returned as it is), ``"digits"``, an image folder or ``.npz`` path, a
            :class:`~edgecnn.data.Dataset`, ``(x, y)`` arrays (``y`` may be None), an array ``x``
            (unlabelled), or a ``tf.data.Dataset`` of ``(x, y)`` or ``x`` elements (read into memory).
        input_shape: the model input ``(H, W, C)``.
        seed: ``random_state`` of the split.
        test_fraction: share of the test split, in (0, 1).
        eval_on_train: for data too small to split: measure on the training data (every report says so).
        val: held-out samples the model has not seen, any kind ``data`` takes but a HeldOut: then all of
            ``data`` is train and ``val`` is test; ``seed`` and ``test_fraction`` split nothing.

    Returns:
        A :class:`HeldOut`; ``train.ids`` and ``test.ids`` are disjoint unless ``eval_on_train`` was needed
        (with ``val``, ids name rows of two sources).

    Raises:
        DataError: an unreadable source, or data too small to split without ``eval_on_train``; with ``val``,
            see :func:`split_val`.
        ShapeMismatchError: samples that do not fit ``input_shape``.
    """
    if val is not None:
        return split_val(data, val, input_shape=input_shape, seed=seed, eval_on_train=eval_on_train)
    if isinstance(data, HeldOut):
        return data
    if not 0.0 < float(test_fraction) < 1.0:
        raise DataError(f"Expected test_fraction in (0, 1). Received: test_fraction={test_fraction!r}")
    ds = as_dataset(data, input_shape=input_shape)
    try:
        train, test, stratified = split_indices(ds.y, len(ds), seed=seed, test_fraction=test_fraction)
    except DataError:
        if not eval_on_train:
            raise
        return HeldOut(train=ds, test=ds, seed=seed, test_fraction=0.0, stratified=False, on_training_data=True)
    return HeldOut(train=take(ds, train), test=take(ds, test), seed=seed, test_fraction=float(test_fraction),
                   stratified=stratified)


def split_val(data: Any, val: Any, *, input_shape: tuple[int, int, int], seed: int = 0,
              eval_on_train: bool = False) -> HeldOut:
    """All of ``data`` as train and ``val`` as test, checked to pair up (:func:`edgecnn.data.val.check_pair`).

    >>> import numpy as np
    >>> x = np.random.default_rng(1).random((20, 2, 2, 1), dtype=np.float32); y = np.arange(20) % 2
    >>> h = split_val((x, y), (x[15:] * 0.5, y[15:]), input_shape=(2, 2, 1))
    >>> len(h.train), len(h.test), h.val_overlap, h.describe()["test_ids"]
    (20, 5, 0, ['0', '1', '2', '3', '4'])
    >>> split_val((x, y), (np.concatenate([x[:2], x[15:] * 0.5]), y[13:]), input_shape=(2, 2, 1)).val_overlap
    2

    Raises:
        DataError: ``val`` that cannot be the test side of ``data``: without it, with ``eval_on_train``, as or
            with a HeldOut, the same source, a labelled/unlabelled or class-name mismatch, every sample in ``data``.
        ShapeMismatchError: samples that do not fit ``input_shape``.
    """
    from edgecnn.data.val import check_pair, check_val

    check_val(data, val, eval_on_train=eval_on_train)
    if isinstance(data, HeldOut) or isinstance(val, HeldOut):
        raise DataError("a HeldOut already holds its test side: Expected data and val as sources (a path, a Dataset, "
                        "arrays). Received: a HeldOut with val")
    ds = as_dataset(data, input_shape=input_shape)
    vs = as_dataset(val, input_shape=input_shape)
    overlap = check_pair(ds, vs)
    return HeldOut(train=ds, test=vs, seed=seed, test_fraction=None, stratified=False, from_val=True,
                   val_overlap=overlap)


def as_dataset(data: Any, *, input_shape: tuple[int, int, int]) -> Any:
    """Every data source as one Dataset (all samples, with ids), matched to ``input_shape``."""
    from edgecnn.data.sources import load_data

    if isinstance(data, (str, os.PathLike)):
        return load_data(os.fspath(data), input_shape=input_shape, split="all")
    if isinstance(data, Dataset):
        ds = data
    elif _is_tf_dataset(data):
        ds = _from_tf_dataset(data)
    elif isinstance(data, tuple) and len(data) == 2:
        ds = _from_arrays(data[0], data[1])
    elif isinstance(data, np.ndarray):
        ds = _from_arrays(data, None)
    else:
        raise DataError("Expected 'digits', an image folder, a .npz file, a Dataset, (x, y) arrays or a "
                        f"tf.data.Dataset. Received: {type(data).__name__}")
    shape = tuple(int(d) for d in input_shape)
    x = ds.x
    if x.ndim == 3 and shape[2] == 1:
        x = x[..., None]
    if x.ndim != 4 or tuple(x.shape[1:]) != shape or len(x) == 0:
        raise ShapeMismatchError(f"data shape {tuple(ds.x.shape)} does not match the model input {shape}: "
                                 f"Expected x of shape (N, {shape[0]}, {shape[1]}, {shape[2]}) with N >= 1. "
                                 f"Received: {ds.source}")
    if not np.isfinite(x).all():
        raise DataError(f"Expected finite values in x. Received: NaN or inf in {ds.source}")
    ids = ds.ids if ds.ids is not None else tuple(str(i) for i in range(len(x)))
    return replace(ds, x=x.astype(np.float32, copy=False), ids=ids)


def _from_arrays(x: Any, y: Any) -> Any:
    from edgecnn.data.checks import check_labels

    x = np.asarray(x)
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    elif not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"Expected x as uint8 (scaled by 1/255) or floating point. Received: dtype {x.dtype}")
    labels = None if y is None else check_labels(np.asarray(y), len(x), where="the arrays")
    return Dataset(x=x.astype(np.float32), y=labels, class_names=None, source="arrays")


def _is_tf_dataset(data: Any) -> bool:
    return type(data).__module__.startswith("tensorflow") and hasattr(data, "as_numpy_iterator")


def _from_tf_dataset(data: Any) -> Any:
    """Read a tf.data.Dataset of ``(x, y)`` or ``x`` elements (batched or not) into arrays."""
    xs, ys = [], []
    count = 0
    for element in data.as_numpy_iterator():
        x, y = (element[0], element[1]) if isinstance(element, tuple) and len(element) == 2 else (element, None)
        x = np.asarray(x)
        batched = x.ndim == 4 or (x.ndim == 3 and y is not None and np.ndim(y) == 1)
        xs.append(x if batched else x[None])
        if y is not None:
            ys.append(np.asarray(y).reshape(-1) if batched else np.asarray(y).reshape(1))
        count += len(xs[-1])
        if count > MAX_TFDATA_SAMPLES:
            raise DataError(f"Expected a tf.data.Dataset of at most {MAX_TFDATA_SAMPLES} samples (it is read into "
                            f"memory). Received: more")
    if not xs:
        raise DataError("Expected a non-empty tf.data.Dataset. Received: no elements")
    if ys and len(ys) != len(xs):
        raise DataError("Expected every tf.data element to carry a label, or none. Received: a mix")
    ds = _from_arrays(np.concatenate(xs), np.concatenate(ys) if ys else None)
    return replace(ds, source="tf.data")


EVAL_ON_TRAIN_NOTE = ("accuracy was measured on the training data (--eval-on-train): the data was too small to "
                      "hold out a test split, so it overstates what unseen images would give")


def budget_outcome(before: Optional[float], after: Optional[float], *, max_drop: float, hint: str) -> dict:
    """Whether ``after`` stays within ``max_drop`` points of ``before`` (accuracies in [0, 1]), with what to try.

    >>> budget_outcome(0.98, 0.96, max_drop=1.0, hint="try x")["met"]
    False
    >>> budget_outcome(0.98, 0.975, max_drop=1.0, hint="try x")
    {'max_accuracy_drop': 1.0, 'drop_points': 0.5, 'met': True, 'why': None}
    >>> budget_outcome(None, None, max_drop=1.0, hint="")["met"] is None
    True
    """
    if before is None or after is None:
        return {"max_accuracy_drop": float(max_drop), "drop_points": None, "met": None,
                "why": "not checked: no labelled data"}
    drop = 100.0 * (before - after)
    met = drop <= float(max_drop) + 1e-9
    why = None if met else (f"accuracy {100 * after:.2f}% is {drop:.2f} points below the original's "
                            f"{100 * before:.2f}% (budget {float(max_drop):g}, missed by {drop - float(max_drop):.2f}); "
                            f"{hint}")
    return {"max_accuracy_drop": float(max_drop), "drop_points": round(drop, 3), "met": met, "why": why}
