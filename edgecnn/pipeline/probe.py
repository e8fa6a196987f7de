"""Short fine-tuning probes: does a structural candidate recover, before the plan bets a full fine-tune on it?

Accuracy right after pruning (BatchNorm re-estimated) is a poor predictor for a network that will be
fine-tuned: a MobileNetV2 transfer model pruned 0.25 globally lost 73 points before fine-tuning, yet such
losses are mostly the broken co-adaptation of the remaining channels, which a few epochs of distillation
restore. So, where it is cheap (``plan.probe_epochs`` epochs of distillation from the original, on the
training inputs outside the plan's validation slice, within ``plan.probe_seconds``), each faster pruning
candidate that lost more than ``plan.max_drop_before_finetune`` points is fine-tuned briefly and measured
again on the slice. Its ``probe_drop`` then replaces the drop before fine-tuning in
:func:`edgecnn.pipeline.planner.predict_misses`. Candidates are probed most MACs removed first, so the
fastest ones get the budget (the first is always probed); what was not probed keeps its drop before fine-tuning (and the report says so).

The slice's images are ones the original may have been trained on (compress's planning data is the train
side): the original's accuracy there can be memorized, the probed student's cannot, so a probe drop is a
pessimistic estimate, which is the safe side for a prediction that only rules candidates out.

Example:
    >>> from edgecnn.pipeline.candidates import Candidate
    >>> c = [Candidate("prune:0.5", kind="prune", ratio=0.5, removed=0.7, gain_ms=0.1, accuracy_drop=80.0),
    ...      Candidate("prune:0.25", kind="prune", ratio=0.25, removed=0.4, gain_ms=0.05, accuracy_drop=3.0),
    ...      Candidate("prune:0.75", kind="prune", ratio=0.75, removed=0.9, gain_ms=-0.01, accuracy_drop=90.0)]
    >>> [x.id for x in to_probe(c, max_drop=10.0)]   # lost too much, and faster: the others need no probe
    ['prune:0.5']
"""
from __future__ import annotations

import time
from typing import Any, Callable, Optional

import numpy as np

from edgecnn.pipeline.candidates import Candidate, apply
from edgecnn.pipeline.planner import aggressiveness

__all__ = ["probe", "to_probe"]


def to_probe(cands: list[Candidate], *, max_drop: float) -> list[Candidate]:
    """The pruning candidates worth probing, most MACs removed first: faster on the target, measured, and
    more than ``max_drop`` points lost before fine-tuning."""
    keep = [c for c in cands if c.kind == "prune" and c.error is None and (c.gain_ms or 0) > 0
            and c.accuracy_drop is not None and c.accuracy_drop > max_drop]
    return sorted(keep, key=lambda c: -aggressiveness(c))


def probe(model: Any, cands: list[Candidate], recipe: dict, *, x_train: np.ndarray, y_train: Optional[np.ndarray],
          x_val: np.ndarray, y_val: np.ndarray, base_accuracy: float, bn_data: Optional[np.ndarray],
          progress: Callable[[str, int, int], None] = lambda text, done, total: None) -> dict:
    """Fine-tune each of :func:`to_probe`'s candidates for ``plan.probe_epochs`` and re-measure it on
    ``x_val`` (its ``probe_accuracy`` / ``probe_drop`` are set in place).

    ``x_train`` must not contain ``x_val``'s samples. Returns ``{"epochs", "seconds", "probed", "skipped"}``
    for the report; nothing happens when ``plan.probe_epochs`` is 0.
    """
    plan = recipe["plan"]
    epochs, budget = int(plan.get("probe_epochs", 0)), float(plan.get("probe_seconds", 0.0))
    todo = to_probe(cands, max_drop=float(plan["max_drop_before_finetune"])) if epochs > 0 else []
    ft = recipe["finetune"]
    batch = int(ft["batch_size"])
    if not todo or len(x_train) < batch:
        return {"epochs": epochs, "seconds": 0.0, "probed": [], "skipped": [c.id for c in todo]}
    from edgecnn.distill import distill

    started, probed, skipped, last = time.perf_counter(), [], [], 0.0
    for k, cand in enumerate(todo):
        spent = time.perf_counter() - started
        if probed and budget > 0 and spent + last > budget:  # the next would likely overrun (the first always runs)
            skipped.append(cand.id)
            cand.reason += f"; not probed: plan.probe_seconds ({budget:g} s) spent"
            continue
        progress(f"probing {cand.id} ({epochs} epochs)", k, len(todo))
        t0 = time.perf_counter()
        student = apply(model, cand, recipe, bn_data=bn_data)
        result = distill(student, model, x=x_train, y=y_train, x_val=x_val, y_val=y_val, epochs=epochs,
                         batch_size=batch, learning_rate=float(ft["learning_rate"]),
                         temperature=float(ft["temperature"]), alpha=float(ft["alpha"]), patience=epochs,
                         seed=0, progress=False)
        acc = result.val_accuracy
        if acc is None:  # no labels: nothing to re-measure
            break
        cand.probe_accuracy = float(acc)
        cand.probe_drop = round(100 * (base_accuracy - float(acc)), 3)
        last = time.perf_counter() - t0
        probed.append(cand.id)
        del student, result
    return {"epochs": epochs, "seconds": round(time.perf_counter() - started, 1), "probed": probed,
            "skipped": skipped}
