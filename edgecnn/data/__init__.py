"""``--data`` sources, the one held-out split, input and label checks, and the one accuracy function.

- :mod:`edgecnn.data.dataset`: the :class:`Dataset` noun and how rows are split.
- :mod:`edgecnn.data.sources`: ``digits``, an image folder or a ``.npz`` -> a Dataset matched to a model input.
- :mod:`edgecnn.data.heldout`: :func:`split_data` -> :class:`HeldOut` (train for fitting and calibration,
  test for every accuracy); with ``val`` (``--val``), all of the data trains and ``val`` is the test side.
- :mod:`edgecnn.data.val`: the checks of a ``--val`` against ``--data``, and the note for a held-out split the
  original probably memorized.
- :mod:`edgecnn.data.checks`: :func:`check_inputs`, :func:`check_labelled`, :func:`check_labels`,
  :func:`top1_accuracy`.

Example:
    >>> from edgecnn.data import load_data
    >>> ds = load_data("digits", input_shape=(28, 28, 1), split="test")
    >>> ds.x.shape, ds.x.dtype.name, ds.y.shape, ds.class_names[:3]
    ((360, 28, 28, 1), 'float32', (360,), ('0', '1', '2'))
"""
from edgecnn.data.checks import check_inputs, check_labelled, check_labels, top1_accuracy
from edgecnn.data.dataset import MIN_PER_CLASS, TEST_FRACTION, Dataset, split_indices, take
from edgecnn.data.heldout import EVAL_ON_TRAIN_NOTE, HeldOut, budget_outcome, split_data, split_val
from edgecnn.data.sources import SPLITS, digits, load_data
from edgecnn.data.val import MEMORIZED_ACCURACY, check_val, memorized_note, val_note

__all__ = ["EVAL_ON_TRAIN_NOTE", "MEMORIZED_ACCURACY", "MIN_PER_CLASS", "SPLITS", "TEST_FRACTION", "Dataset", "HeldOut",
           "budget_outcome", "check_inputs", "check_labelled", "check_labels", "check_val", "digits", "load_data",
           "memorized_note", "split_data", "split_indices", "split_val", "take", "top1_accuracy", "val_note"]
