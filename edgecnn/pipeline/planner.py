"""Latency-aware planning: candidate changes, measured on the target runtime, chosen within the accuracy budget.

A candidate is one change to the model (a Dense head rewrite, one conv's separable rewrite, a global
channel-pruning ratio, keeping a first conv in float in an int8 model). Each candidate model is converted
for the target (e.g. LiteRT int8) and timed interleaved with the unchanged model (thousands of rounds for
small models, within a time budget); with labelled data its accuracy before fine-tuning is measured too.
A candidate is chosen when it is faster by more than the measured noise (the two medians' notches,
1.58 * IQR / sqrt(runs) each, must not overlap) and by at least ``min_gain`` of the base latency, or when
it makes the model at least 20% smaller without being slower beyond the noise. Candidates that change the
same layer exclude each other (the most valuable wins); pruning ratios exclude each other.

Example:
    >>> c = Candidate("separable:conv", kind="separable", layer="conv")
    >>> c.base_ms, c.latency_ms = 1.0, 1.3
    >>> c.gain_ms, c.noise_ms = -0.3, 0.05
    >>> judge(c, base_params=1000, min_gain=0.03, runtime="litert int8")
    >>> c.chosen, c.reason
    (False, 'slower on litert int8: +0.300 ms (+30.0%), noise 0.050 ms')
"""
from __future__ import annotations

import time
from typing import Any, Callable, Optional

import numpy as np

from edgecnn.errors import EdgecnnError
from edgecnn.pipeline.candidates import (FLOAT_KINDS, SIZE_GAIN, Candidate, apply, apply_all, base_id,
                                         enumerate_candidates, float_layers, group_candidates, precision_candidates)


def judge(cand: Candidate, *, base_params: int, min_gain: float, runtime: str) -> None:
    """Decide one measured candidate: faster beyond the noise, or much smaller and not slower."""
    base = cand.base_ms or 0.0
    rel = cand.gain_ms / base if base else 0.0
    size_gain = 1.0 - (cand.params or base_params) / base_params if base_params else 0.0
    drop = max(0.0, cand.accuracy_drop or 0.0)
    cand.value = (max(rel, 0.0) + 0.25 * max(size_gain, 0.0)) / (1.0 + drop / 10.0)
    if cand.gain_ms > cand.noise_ms and rel >= min_gain:
        cand.chosen, cand.reason = True, f"faster on {runtime}: -{cand.gain_ms:.3f} ms ({-100 * rel:+.1f}%)"
    elif size_gain >= SIZE_GAIN and cand.gain_ms >= -cand.noise_ms:
        cand.chosen, cand.reason = True, f"{100 * size_gain:.0f}% fewer params, not slower on {runtime}"
    elif cand.gain_ms < -cand.noise_ms:
        cand.reason = (f"slower on {runtime}: +{-cand.gain_ms:.3f} ms ({-100 * rel:+.1f}%), "
                       f"noise {cand.noise_ms:.3f} ms")
    elif cand.gain_ms > cand.noise_ms:
        cand.reason = (f"gain below plan.min_gain on {runtime}: -{cand.gain_ms:.3f} ms ({-100 * rel:+.1f}%), "
                       f"noise {cand.noise_ms:.3f} ms")
    else:
        cand.reason = (f"no measurable gain on {runtime}: {-cand.gain_ms:+.3f} ms, noise {cand.noise_ms:.3f} ms"
                       + (f", {100 * size_gain:.0f}% fewer params" if size_gain > 0 else ""))
    if cand.value <= 0:
        cand.value = 0.0
    cand.helps = cand.chosen


def predict_misses(cands: list[Candidate], *, max_drop: float) -> None:
    """Structural candidates whose accuracy before fine-tuning (BatchNorm re-estimated) dropped more than
    ``max_drop`` points are not chosen, now or by back-off: fine-tuning is not expected to recover that much
    (a MobileNetV2 pruned 0.75 globally lost 72-91 points and came back to 51.6%). Where a short fine-tune
    was measured (``probe_drop``, :mod:`edgecnn.pipeline.probe`), that drop decides instead.

    >>> c = Candidate("prune:0.75", kind="prune", ratio=0.75, chosen=True, accuracy_drop=80.0, reason="faster")
    >>> predict_misses([c], max_drop=10.0); c.chosen, c.predicted_miss, c.reason.split("; ")[1][:38]
    (False, True, 'not chosen: 80.0 points lost before fi')
    >>> c = Candidate("prune:0.5", kind="prune", ratio=0.5, chosen=True, accuracy_drop=80.0, probe_drop=4.0)
    >>> predict_misses([c], max_drop=10.0); c.chosen, c.predicted_miss
    (True, False)
    """
    for c in cands:
        drop = c.probe_drop if c.probe_drop is not None else c.accuracy_drop
        if c.kind in FLOAT_KINDS or drop is None or drop <= max_drop:
            continue
        c.predicted_miss = True
        if c.chosen:
            c.chosen = False
            when = "before fine-tuning" if c.probe_drop is None else "after a short fine-tune"
            c.reason += (f"; not chosen: {drop:.1f} points lost {when} (> "
                         f"plan.max_drop_before_finetune {max_drop:g}) predict the budget cannot be met")


def resolve_conflicts(cands: list[Candidate]) -> None:
    """Among chosen candidates on the same layer, keep the most valuable. (Pruning ratios are chosen by
    ``choose_ratio``, together with the precision changes each one makes worthwhile.)"""
    groups: dict[str, list[Candidate]] = {}
    for c in cands:
        if c.chosen and c.kind != "prune":
            groups.setdefault(c.layer or c.id, []).append(c)
    for members in groups.values():
        if len(members) < 2:
            continue
        best = max(members, key=lambda c: c.value)
        for c in members:
            if c is not best:
                c.chosen = False
                c.reason = f"{c.reason}; excluded by {best.id} (more valuable on the same layers)"


def measured_on(precision: list[Candidate], prune: Optional[Candidate]) -> list[Candidate]:
    """Tag precision candidates with the pruning candidate of the model they were timed on: ``with_prune``
    and the id suffix ``@prune:R`` that reports and ``plan.fixed`` carry (see ``base_id``).

    Example:
        >>> [c.id for c in measured_on([Candidate("float:conv1", kind="float-layer")],
        ...                            Candidate("prune:0.5", kind="prune", ratio=0.5))]
        ['float:conv1@prune:0.5']
    """
    for c in precision:
        c.with_prune = prune.id if prune is not None else None
        c.id += f"@{prune.id}" if prune is not None else ""
    return precision


def estimate(prune: Optional[Candidate], precision: list[Candidate]) -> float:
    """The estimated latency of a pruning ratio with its precision changes, as a fraction of the original's:
    the ratio's measured factor times the factor of its fastest helpful precision change, which was timed
    against the pruned model (two separate interleaved runs, so ratios of medians, not differences).

    Example:
        >>> p = Candidate("prune:0.5", kind="prune", ratio=0.5, base_ms=2.0, latency_ms=1.5)
        >>> f = Candidate("float-stage:32x32", kind="float-stage", base_ms=1.6, latency_ms=0.8, helps=True)
        >>> estimate(p, [f])
        0.375
    """
    factor = prune.latency_ms / prune.base_ms if prune is not None and prune.base_ms else 1.0
    helpful = [c.latency_ms / c.base_ms for c in precision if c.helps and c.base_ms and c.latency_ms]
    return round(factor * min(helpful, default=1.0), 6)


def choose_ratio(options: list[tuple[Optional[Candidate], list[Candidate]]], *, min_gain: float) -> Optional[float]:
    """Choose the pruning ratio (None: no pruning) whose estimated latency, precision changes included, is
    lowest; a smaller ratio within ``min_gain`` of the best wins, since it costs less accuracy. Which ratio is
    fastest depends on the precision changes: a thin first stage is faster in float than in int8 (see
    ``precision_candidates``), so the deepest ratio may win only together with them. Accuracy is checked
    after fine-tuning; back-off steps the ratio down. Marks the other ratios and sets the chosen precision.

    Example:
        >>> p = [Candidate(f"prune:{r}", kind="prune", ratio=r, base_ms=2.0, latency_ms=ms, helps=True)
        ...      for r, ms in ((0.25, 1.5), (0.75, 1.45))]
        >>> choose_ratio([(p[0], []), (p[1], [])], min_gain=0.05)
        0.25
    """
    if not options:
        return None
    scored = [(estimate(prune, precision), aggressiveness(prune), prune, precision) for prune, precision in options]
    fastest = min(s[0] for s in scored)
    best = min((s for s in scored if s[0] <= fastest * (1.0 + min_gain)), key=lambda s: s[1])
    for factor, _, prune, precision in scored:
        if prune is None:
            continue
        with_float = [c.id for c in precision if c.helps]
        text = (f"estimated {factor:.2f}x the original's latency"
                + (f" with {', '.join(with_float)}" if with_float else ""))
        prune.chosen = prune is best[2]
        winner = best[2].id if best[2] is not None else "no pruning"
        prune.reason += f"; {text}" if prune.chosen else f"; {text}, not chosen: {winner} {best[0]:.2f}x"
    select_precision([c for _, _, _, precision in scored for c in precision], best[2].id if best[2] else None)
    return best[2].ratio if best[2] is not None else None


def aggressiveness(prune: Optional[Candidate]) -> float:
    """How much a pruning candidate removes, for ordering: its measured share of the MACs removed, else its
    ratio (0 for no pruning).

    >>> aggressiveness(None), aggressiveness(Candidate("prune:0.5", kind="prune", ratio=0.5, removed=0.7))
    (0.0, 0.7)
    """
    if prune is None:
        return 0.0
    return float(prune.removed) if prune.removed is not None else float(prune.ratio or 0.0)


def select_precision(cands: list[Candidate], prune_id: Optional[str]) -> None:
    """Choose the precision changes that helped on the model pruned by candidate ``prune_id`` (None: not
    pruned; a float-stage includes the first-conv float choice it covers); the others are marked not chosen."""
    mine = [c for c in cands if c.kind in FLOAT_KINDS and c.with_prune == prune_id]
    stage = [c for c in mine if c.kind == "float-stage" and c.helps]
    for c in cands:
        if c.kind not in FLOAT_KINDS:
            continue
        c.reason = c.reason.split("; ")[0]
        c.chosen = c in mine and c.helps
        if c.chosen and stage and c.kind == "float-layer" and c.layer in (stage[0].layers or []):
            c.chosen = False
            c.reason += f"; included in {stage[0].id}"
        elif c not in mine:
            c.reason += "; measured for another pruning ratio"


def within_budget(cands: list[Candidate], *, base_ms: float, budget_ms: float) -> None:
    """With a latency budget, keep the most valuable chosen structural changes until the estimate meets it
    (precision changes cost no accuracy worth trading and stay as chosen)."""
    if budget_ms <= 0:
        return
    chosen = sorted((c for c in cands if c.chosen and c.kind not in FLOAT_KINDS), key=lambda c: -c.value)
    estimate = base_ms
    for c in chosen:
        if estimate <= budget_ms:
            c.chosen = False
            c.reason += f"; not needed: estimated {estimate:.3f} ms already meets the {budget_ms} ms budget"
            continue
        estimate -= max(c.gain_ms or 0.0, 0.0)


def back_off(cands: list[Candidate]) -> Optional[str]:
    """Undo the least valuable chosen change (a pruning ratio steps down to the next smaller one first).

    Returns:
        A sentence saying what was undone, or None when nothing is left to undo.
    """
    chosen = [c for c in cands if c.chosen and c.kind not in FLOAT_KINDS]  # float only adds accuracy
    if not chosen:
        return None
    prune = [c for c in chosen if c.kind == "prune"]
    if prune:
        current = prune[0]
        smaller = sorted((c for c in cands if c.kind == "prune" and aggressiveness(c) < aggressiveness(current)
                          and c.error is None and (c.gain_ms or 0) > 0 and not c.predicted_miss),
                         key=lambda c: -aggressiveness(c))
        victim_value = min(chosen, key=lambda c: c.value)
        if victim_value is current or not [c for c in chosen if c.kind != "prune"]:
            current.chosen = False
            current.reason += "; undone by back-off (accuracy budget exceeded)"
            if smaller:
                smaller[0].chosen = True
                smaller[0].reason += "; chosen by back-off instead of " + current.id
                if any(c.kind in FLOAT_KINDS and c.with_prune == smaller[0].id for c in cands):  # its own precision changes, when they were measured
                    select_precision(cands, smaller[0].id)
                return f"pruning {current.id} -> {smaller[0].id}"
            return f"undid {current.id}"
    victim = min(chosen, key=lambda c: c.value)
    victim.chosen = False
    victim.reason += "; undone by back-off (accuracy budget exceeded)"
    return f"undid {victim.id}"


def undo_all(cands: list[Candidate]) -> Optional[str]:
    """Undo every chosen change, structural and precision: what ships is the plain conversion of the original.
    None when nothing is chosen.

    >>> c = Candidate(id="prune:0.5", kind="prune", ratio=0.5, chosen=True)
    >>> undo_all([c]), c.chosen
    ('no change kept the budget: fell back to the plain conversion of the original (undid prune:0.5)', False)
    """
    chosen = [c for c in cands if c.chosen]
    if not chosen:
        return None
    for c in chosen:
        c.chosen = False
        c.reason += "; undone: fell back to the plain conversion"
    return ("no change kept the budget: fell back to the plain conversion of the original (undid "
            + ", ".join(c.id for c in chosen) + ")")


def deadline(recipe: dict, started: float) -> Optional[float]:
    """The ``time.perf_counter()`` time by which a plan started at ``started`` stops building candidates
    (``plan.max_seconds``; None: no limit).

    >>> deadline({"plan": {"max_seconds": 0}}, 10.0), deadline({"plan": {"max_seconds": 240}}, 10.0)
    (None, 250.0)
    """
    limit = float(recipe["plan"].get("max_seconds", 0) or 0)
    return started + limit if limit > 0 else None


def budget_name(recipe: dict) -> str:
    """How a report names the plan's time budget.

    >>> budget_name({"plan": {"max_seconds": 240}})
    'plan.max_seconds (240 s)'
    """
    return f"plan.max_seconds ({float(recipe['plan']['max_seconds']):g} s)"


def measure(model: Any, cands: list[Candidate], recipe: dict, *, runtime: str, quantize: str, threads: int,
            calibration: Optional[np.ndarray], x_val: Optional[np.ndarray], y_val: Optional[np.ndarray],
            progress: Callable[[str, int, int], None] = lambda text, done, total: None,
            base_artifact: Optional[bytes] = None) -> dict:
    """Build each candidate model, time all of them interleaved with the base on the target, score accuracy.

    ``base_artifact``: ``model`` already converted for the target (compress converts the original once per run
    and reuses it here and in the benchmark stage); None converts it here.

    Returns:
        ``{"base_ms": ..., "base_accuracy": ..., "base_params": ..., "warnings": [...]}``; the candidates are
        filled in place. ``warnings`` lists measurements whose repeats disagreed beyond the noise.
    """
    from edgecnn.analysis import analyze
    from edgecnn.exporting.convert import convert
    from edgecnn.runtimes.keras import keras_outputs

    started = time.perf_counter()
    base_stats = analyze(model)
    base_params, base_macs = base_stats.total_params, base_stats.total_macs
    ref = keras_outputs(model, x_val)[0] if x_val is not None else None
    base_acc = float(np.mean(np.argmax(ref, -1) == y_val)) if (ref is not None and y_val is not None) else None
    from edgecnn._tf import muted
    from edgecnn.exporting.quantize import synthetic_calibration

    cal = calibration if calibration is not None else synthetic_calibration(
        tuple(int(d) for d in model.inputs[0].shape[1:]), samples=64)
    artifacts = {"base": base_artifact if base_artifact is not None else
                 convert(model, runtime=runtime, quantize=quantize, calibration=cal)}
    stop = deadline(recipe, started)
    for k, cand in enumerate(cands):
        progress(f"measuring {cand.id}", k, len(cands))
        if stop is not None and time.perf_counter() > stop:
            cand.reason = f"skipped: {budget_name(recipe)} spent before it was built"
            continue
        try:
            variant = apply(model, cand, recipe, bn_data=calibration if ref is not None else None)
            if cand.kind in FLOAT_KINDS:
                from edgecnn.exporting.budget import int8_with_float_layers

                with muted(1, 2):
                    artifacts[cand.id] = int8_with_float_layers(variant, layers=float_layers([cand]), calibration=cal)
            else:
                artifacts[cand.id] = convert(variant, runtime=runtime, quantize=quantize, calibration=cal)
        except EdgecnnError as exc:
            cand.error, cand.reason = str(exc), f"cannot apply: {exc}"
            continue
        stats = analyze(variant)
        cand.params, cand.macs = stats.total_params, stats.total_macs
        if cand.kind == "prune" and base_macs:
            cand.removed = round(1.0 - stats.total_macs / base_macs, 4)
        if ref is not None:  # sensitivity with BN statistics re-estimated (apply did it, on training inputs)
            out = keras_outputs(variant, x_val)[0]
            cand.output_error = float(np.linalg.norm(out - ref) / (np.linalg.norm(ref) + 1e-12))
            if base_acc is not None:
                cand.accuracy = float(np.mean(np.argmax(out, -1) == y_val))
                cand.accuracy_drop = round(100 * (base_acc - cand.accuracy), 3)
    from edgecnn.rewriting.select import measure_rewrites

    base_bytes = artifacts.pop("base")
    deltas = measure_rewrites(base_bytes, artifacts, runtime=runtime, threads=threads,
                              runs=int(recipe["plan"]["latency_runs"]), warmup=3,
                              budget_s=float(recipe["plan"]["seconds"]) / max(1, len(artifacts)))
    by_name = {d.name: d for d in deltas}
    for cand in cands:
        d = by_name.get(cand.id)
        if d is None:
            continue
        cand.base_ms, cand.latency_ms = d.base_ms, d.rewritten_ms
        cand.gain_ms, cand.noise_ms = -d.delta_ms, d.spread_ms
        judge(cand, base_params=base_params, min_gain=float(recipe["plan"]["min_gain"]),
              runtime=f"{runtime} {quantize if quantize != 'none' else 'fp32'}")
    base_ms = float(np.median([d.base_ms for d in deltas])) if deltas else None
    warnings = [f"{d.name}: {d.warning}" for d in deltas if d.warning]
    return {"base_ms": base_ms, "base_accuracy": base_acc, "base_params": base_params, "warnings": warnings}


__all__ = ["Candidate", "aggressiveness", "apply", "apply_all", "back_off", "undo_all", "base_id", "budget_name",
           "choose_ratio", "deadline", "predict_misses",
           "enumerate_candidates", "estimate",
           "float_layers", "judge", "measure", "measured_on", "precision_candidates", "resolve_conflicts", "select_precision",
           "within_budget"]
