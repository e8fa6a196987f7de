"""Which inputs an export calibrates on and which it validates on, and what the report says about them.

Labelled data is split once (:func:`edgecnn.data.split_data`): full-integer modes calibrate on its train
split; every artifact is validated on its held-out test split. Without data, inputs synthesized from the
model (:mod:`edgecnn.datafree`) or, failing those, uniform noise in [0, 1) take both roles, and the report
says that accuracy was not measured.

Example:
    >>> from edgecnn.exporting.quantize import QuantMode
    >>> s = choose_samples((4, 4, 1), mode=QuantMode.INT8, heldout=None, synthesized=None, seed=0,
    ...                    calibration_samples=8, validation_samples=None)
    >>> s.calibration.shape, s.x_val.shape, s.y_val, s.calibration_info["synthetic"]
    ((8, 4, 4, 1), (256, 4, 4, 1), None, True)
    >>> s.warnings
    ['calibrated on synthetic random inputs: accuracy is unverified']
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from edgecnn.exporting.quantize import QuantMode, SyntheticCalibrationWarning, synthetic_calibration, warn_synthetic

NOISE = "synthetic uniform [0, 1)"


@dataclass
class Samples:
    """Calibration and validation inputs of one export, with what the report records about them."""

    calibration: Optional[np.ndarray]
    calibration_info: Optional[dict]
    x_val: np.ndarray
    y_val: Optional[np.ndarray]
    data: dict
    source: str
    class_names: Optional[list[str]] = None
    warnings: list[str] = field(default_factory=list)


def _calibration(mode: QuantMode, heldout: Any, synthesized: Any, shape: tuple, *, samples: int,
                 seed: int) -> tuple[Optional[np.ndarray], Optional[dict], list[str]]:
    if not mode.needs_calibration:
        return None, None, []
    if heldout is not None:
        x = heldout.train.x[:samples]
        return x, {"source": heldout.source, "split": "train", "samples": int(len(x)), "synthetic": False}, []
    if synthesized is not None:
        x = np.asarray(synthesized[0], np.float32)[:samples]
        return (x, {"source": synthesized[1], "samples": int(len(x)), "synthetic": True},
                [f"calibrated on inputs {synthesized[1]}: accuracy is not measured on real data"])
    with warnings.catch_warnings():
        warnings.simplefilter("always", SyntheticCalibrationWarning)
        warn_synthetic(mode)
    return (synthetic_calibration(shape, samples=samples, seed=seed),
            {"source": NOISE, "samples": samples, "synthetic": True},
            ["calibrated on synthetic random inputs: accuracy is unverified"])


def choose_samples(shape: tuple[int, ...], *, mode: QuantMode, heldout: Any, synthesized: Any, seed: int,
                   calibration_samples: int, validation_samples: Optional[int]) -> Samples:
    """The calibration and validation inputs for an export of a model with input ``shape``.

    Args:
        heldout: the :class:`edgecnn.data.HeldOut` split of the user's data, or None.
        synthesized: without data, ``(inputs, description)`` synthesized from the model, or None.
        calibration_samples: at most this many calibration inputs.
        validation_samples: at most this many validation inputs (None: the whole test split).
    """
    calibration, info, notes = _calibration(mode, heldout, synthesized, shape, samples=calibration_samples,
                                            seed=seed)
    if heldout is not None:
        test = heldout.test
        x_val = test.x[:validation_samples]
        y_val = None if test.y is None else test.y[:validation_samples]
        data = {**heldout.describe(), "validated_samples": int(len(x_val)),
                "validated_ids": list((test.ids or ())[:len(x_val)])}
        return Samples(calibration, info, x_val, y_val, data, test.source,
                       list(test.class_names) if test.class_names else None, notes)
    if synthesized is not None:
        x_val = np.asarray(synthesized[0], np.float32)[:validation_samples]
        data = {"source": synthesized[1], "validated_samples": int(len(x_val)),
                "note": "no --data: artifacts were validated against Keras on inputs synthesized from the model; "
                        "their agreement is a proxy, not measured on real data"}
        return Samples(calibration, info, x_val, None, data, "none", None, notes)
    x_val = synthetic_calibration(shape, samples=min(validation_samples or 256, 256), seed=seed + 1)
    data = {"source": NOISE, "validated_samples": int(len(x_val)),
            "note": "no --data: artifacts were validated against Keras on random inputs, which shows "
                    "that they compute the same function, not how accurate they are"}
    return Samples(calibration, info, x_val, None, data, "none", None, notes)
