"""``--val``: a test side the model has not seen, checked against ``--data``; and the note for when it is missing.

Without ``--val``, compress holds out a split of ``--data`` (:func:`edgecnn.data.split_data`). Users usually
pass the data the model was trained on, so the original scores about 100% on that split from memory while a
fine-tuned student scores what it generalizes to, and every structural change looks worse than it is.
:func:`memorized_note` says so when the original's accuracy there is :data:`MEMORIZED_ACCURACY` or more.
With ``--val`` (:func:`edgecnn.data.split_val`) all of ``--data`` trains and ``--val`` is the test side, after
:func:`check_val` (before anything is loaded) and :func:`check_pair` (on the loaded samples).

Example:
    >>> import numpy as np
    >>> from edgecnn.data import Dataset
    >>> x = np.arange(24, dtype=np.float32).reshape(6, 2, 2, 1); y = np.arange(6) % 2
    >>> data = Dataset(x=x, y=y, class_names=("a", "b"), source="npz:train.npz")
    >>> check_pair(data, Dataset(x=np.concatenate([x[:1], x[:2] + 100]), y=y[:3], class_names=None, source="npz:v"))
    1
    >>> check_pair(data, Dataset(x=x[:2] + 100, y=None, class_names=None, source="npz:v.npz"))
    Traceback (most recent call last):
    ...
    edgecnn.errors.DataError: --val must be labelled exactly when --data is: Expected both labelled or both unlabelled. Received: --data is labelled, --val is not (npz:v.npz)
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgecnn.errors import DataError

__all__ = ["MEMORIZED_ACCURACY", "check_pair", "check_val", "memorized_note", "val_note"]

MEMORIZED_ACCURACY = 0.995  # the original's top-1 on the split of --data at or above this: probably trained on it


def check_val(data: Any, val: Any, *, eval_on_train: bool = False) -> None:
    """Refuse a ``val`` that cannot be the test side of ``data``, before anything is loaded.

    >>> check_val("digits", None), check_val("train.npz", "val.npz")
    (None, None)
    >>> check_val(None, "val.npz")
    Traceback (most recent call last):
    ...
    edgecnn.errors.DataError: --val is the held-out side of --data: Expected --data with it. Received: --val 'val.npz' without --data
    >>> check_val("./train.npz", "npz:train.npz")
    Traceback (most recent call last):
    ...
    edgecnn.errors.DataError: --val must hold samples the model has not seen: Expected another source than --data. Received: --val 'npz:train.npz' is --data './train.npz'

    Raises:
        DataError: ``val`` without ``data``, with ``eval_on_train``, or the same source as ``data``.
    """
    if val is None:
        return
    if data is None:
        raise DataError(f"--val is the held-out side of --data: Expected --data with it. Received: --val {_shown(val)} "
                        "without --data")
    if eval_on_train:
        raise DataError("--eval-on-train measures on the training data, --val on held-out data: Expected one of them. "
                        "Received: both")
    if val is data or _same_source(data, val):
        raise DataError(f"--val must hold samples the model has not seen: Expected another source than --data. "
                        f"Received: --val {_shown(val)} is --data {_shown(data)}")


def check_pair(data: Any, val: Any) -> int:
    """How many samples of the Dataset ``val`` are byte-identical to one of ``data`` (both already matched to the
    model input), after checking that ``val`` can be ``data``'s test side.

    Raises:
        DataError: ``val`` labelled and ``data`` not, or the other way round; both carry class names (two class
            folders) and they differ; every ``val`` sample is also in ``data``.
    """
    if (data.y is None) != (val.y is None):
        which = ("--data is labelled, --val is not", "--val is labelled, --data is not")[data.y is None]
        raise DataError(f"--val must be labelled exactly when --data is: Expected both labelled or both unlabelled. "
                        f"Received: {which} ({val.source})")
    if data.class_names and val.class_names and tuple(data.class_names) != tuple(val.class_names):
        raise DataError(f"--val's classes must be --data's, in the same order: Expected {_names(data.class_names)}. "
                        f"Received: {_names(val.class_names)} in {val.source}")
    overlap = _overlap(data.x, val.x)
    if overlap == len(val):
        raise DataError(f"--val must hold samples the model has not seen: Expected samples that are not in --data. "
                        f"Received: all {len(val)} --val samples of {val.source} are also in --data")
    return overlap


def val_note(heldout: Any) -> Optional[str]:
    """The report note of a ``--val`` that partly repeats ``--data`` (:class:`~edgecnn.data.HeldOut`), else None."""
    if heldout is None or not heldout.from_val or not heldout.val_overlap:
        return None
    return (f"{heldout.val_overlap} of {len(heldout.test)} --val samples are also in --data (byte-identical): the "
            "model may have trained on them, so its accuracy on --val is not all on unseen samples")


def memorized_note(heldout: Any, accuracy: Optional[float]) -> Optional[str]:
    """The report note when the original's top-1 ``accuracy`` on the test split of ``--data`` (a
    :class:`~edgecnn.data.HeldOut` without ``--val``) is :data:`MEMORIZED_ACCURACY` or more, else None.

    >>> import numpy as np
    >>> from edgecnn.data import Dataset, HeldOut
    >>> ds = Dataset(x=np.zeros((288, 1, 1, 1), np.float32), y=np.zeros(288, np.int64), class_names=None, source="x")
    >>> split = HeldOut(train=ds, test=ds, seed=0, test_fraction=0.2, stratified=True)
    >>> memorized_note(split, 1.0)[:71]
    'the original model scores 100.00% on the 288 held-out samples of --data'
    >>> memorized_note(split, 0.98), memorized_note(None, 1.0)
    (None, None)
    """
    if heldout is None or heldout.from_val or heldout.on_training_data or accuracy is None:
        return None
    if accuracy < MEMORIZED_ACCURACY:
        return None
    return (f"the original model scores {100 * accuracy:.2f}% on the {len(heldout.test)} held-out samples of --data: "
            "it was probably trained on them, so accuracy drops are judged against memorized answers and structural "
            "changes may be undone; pass --val with samples it has not seen")


def _shown(source: Any) -> str:
    return repr(os.fspath(source)) if isinstance(source, (str, os.PathLike)) else f"<{type(source).__name__}>"


def _names(names: tuple[str, ...]) -> str:
    shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
    return f"{len(names)} classes ({shown})"


def _same_source(a: Any, b: Any) -> bool:
    """Whether two source specs name the same source: ``digits`` twice, or one file or folder (prefixes
    ``folder:``/``npz:``, ``~`` and relative paths resolved)."""
    if not (isinstance(a, (str, os.PathLike)) and isinstance(b, (str, os.PathLike))):
        return False

    def where(spec: Any) -> str:
        text = os.fspath(spec).strip()
        if text.lower() == "digits":
            return "digits"
        for prefix in ("folder:", "npz:"):
            text = text[len(prefix):] if text.startswith(prefix) else text
        return str(Path(text).expanduser().resolve())

    return where(a) == where(b)


def _overlap(data_x: np.ndarray, val_x: np.ndarray) -> int:
    """How many rows of ``val_x`` are byte-identical to a row of ``data_x`` (each row's bytes hashed)."""

    def digest(row: np.ndarray) -> bytes:
        return hashlib.blake2b(np.ascontiguousarray(row).tobytes(), digest_size=16).digest()

    seen = {digest(row) for row in data_x}
    return sum(digest(row) in seen for row in val_x)
