"""Accuracy and top-1 agreement of each benchmarked runtime on the held-out test split of ``--data``."""
from __future__ import annotations

from typing import Any

import numpy as np

from edgecnn.benchmarking.results import BenchResult
from edgecnn.benchmarking.targets import Target
from edgecnn.errors import first_line


def accuracy(results: list[BenchResult], targets: list[Target], runnables: dict, data: Any, say: Any) -> None:
    """Accuracy (labelled data) and top-1 agreement with the target's Keras model, per ok result."""
    from edgecnn.data import Dataset, split_data

    cache: dict = {}
    for target in targets:
        rows = [r for r in results if r.model == target.name and (r.model, r.runtime, r.threads) in runnables]
        if not rows:
            continue
        shape = target.input_shape() or artifact_shape(target)
        if isinstance(data, Dataset):
            ds = data  # the caller's own evaluation set, taken as it is
        else:  # the held-out test split of the one protocol, as every other command measures
            key = (str(data), shape)
            if key not in cache:
                cache[key] = split_data(data, input_shape=shape).test
            ds = cache[key]
        keras_top1 = None
        if target.keras is not None:
            from edgecnn.runtimes.keras import KerasSession

            keras_top1 = np.argmax(KerasSession(target.keras).run(ds.x)[0], axis=-1)
        for r in rows:
            say(f"accuracy of {r.model} on {r.runtime}")
            try:
                top1 = np.argmax(runnables[(r.model, r.runtime, r.threads)].predict(ds.x), axis=-1)
            except Exception as exc:  # noqa: BLE001 - accuracy is extra; keep the timing
                r.reason = (r.reason + "; " if r.reason else "") + f"accuracy not measured: {first_line(exc)}"
                continue
            if ds.y is not None:
                r.accuracy = float(np.mean(top1 == np.asarray(ds.y)))
            if keras_top1 is not None:
                r.top1_agreement = float(np.mean(top1 == keras_top1))


def artifact_shape(target: Target) -> tuple[int, ...]:
    from edgecnn.runtimes import RUNTIMES

    runtime, data = next(iter(target.artifacts.items()))
    return RUNTIMES[runtime].load(data, threads=1).input_shape
