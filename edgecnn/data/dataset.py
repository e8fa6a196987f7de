"""The Dataset noun, its rows, and the one way to split rows into train and test.

Example:
    >>> import numpy as np
    >>> ds = Dataset(x=np.zeros((20, 2, 2, 1), np.float32), y=np.repeat(np.arange(2), 10), class_names=None,
    ...              source="arrays", ids=tuple(str(i) for i in range(20)))
    >>> train, test, stratified = split_indices(ds.y, len(ds), seed=0)
    >>> len(take(ds, test)), stratified
    (4, True)
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional

import numpy as np

from edgecnn.errors import DataError

TEST_FRACTION = 0.2
MIN_PER_CLASS = 5


@dataclass(frozen=True)
class Dataset:
    """Samples matched to a model input.

    Attributes:
        x: float32 array ``(N, H, W, C)``. Values are in ``[0, 1]`` for digits, image folders and
            uint8 ``.npz`` data; float ``.npz`` data is passed through unchanged.
        y: int64 array ``(N,)`` of class indices, or ``None`` when the source is unlabelled.
        class_names: one name per class index, or ``None`` when unknown.
        source: where the samples came from, e.g. ``"digits"``, ``"folder:/path"``, ``"npz:/path"``.
        ids: one identity per sample, to re-measure a result elsewhere: the file path relative to the
            folder, or the row index in the source (``.npz`` rows, ``load_digits()`` rows, arrays).
    """

    x: np.ndarray
    y: np.ndarray | None
    class_names: tuple[str, ...] | None
    source: str
    ids: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])


def take(ds: Any, index: np.ndarray) -> Any:
    """The rows ``index`` of a Dataset, ids included."""
    ids = None if ds.ids is None else tuple(ds.ids[i] for i in index)
    return replace(ds, x=ds.x[index], y=None if ds.y is None else ds.y[index], ids=ids)


def split_indices(y: Optional[np.ndarray], n: int, *, seed: int, test_fraction: float = TEST_FRACTION,
                  min_per_class: int = MIN_PER_CLASS, strict: bool = True) -> tuple[np.ndarray, np.ndarray, bool]:
    """(train rows, test rows, stratified), each ascending. ``strict``: refuse data too small to split."""
    from sklearn.model_selection import train_test_split

    index = np.arange(n)
    n_test = int(np.ceil(test_fraction * n))
    if y is not None:
        classes, counts = np.unique(y, return_counts=True)
        small = [(int(c), int(k)) for c, k in zip(classes, counts) if k < min_per_class]
        if strict and small:
            shown = ", ".join(f"class {c}: {k}" for c, k in small[:3])
            raise DataError(f"Expected at least {min_per_class} samples of every class to hold out a test split. "
                            f"Received: {len(small)} class(es) with fewer ({shown}); pass --eval-on-train "
                            "(eval_on_train=True) to measure on the training data instead")
        if counts.min() >= 2 and len(classes) <= n_test and len(classes) <= n - n_test:
            train, test = train_test_split(index, test_size=test_fraction, random_state=seed, stratify=y)
            return np.sort(train), np.sort(test), True
    if n < (2 * min_per_class if strict else 2):
        raise DataError(f"Expected at least {2 * min_per_class} samples to hold out a test split. Received: {n} "
                        "sample(s); pass --eval-on-train (eval_on_train=True) to measure on the training data instead")
    train, test = train_test_split(index, test_size=test_fraction, random_state=seed)
    return np.sort(train), np.sort(test), False
