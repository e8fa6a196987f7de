"""The compress stages: each one function over the Context; the runner in ``edgecnn.pipeline`` orders them.

analyze -> plan -> rewrite -> prune -> finetune -> quantize -> validate -> benchmark -> report.
(``quantize`` converts to the target and exports the extra formats; every artifact is checked on its real
runtime as it is written, and ``validate`` checks the accuracy budget, which may send the run back to
``rewrite`` with one change fewer.)
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from edgecnn.pipeline.context import Context, StageRecord
from edgecnn.pipeline import planner
from edgecnn.runtimes.profiles import profile_threads


def floors(recipe: dict) -> dict:
    """The recipe's validation floors as export overrides (-1: the mode's default)."""
    v = recipe["validate"]
    return {k: (None if float(v[k]) == -1.0 else float(v[k])) for k in ("min_agreement", "min_snr_db")}


class BudgetExceeded(Exception):
    """Internal: the compressed artifact lost more accuracy than the budget allows."""


def accuracy_on(model: Any, data: Any) -> Optional[float]:
    """Top-1 accuracy of ``model`` (inference mode) on a labelled Dataset, else None."""
    if data is None or data.y is None:
        return None
    from edgecnn.data import top1_accuracy
    from edgecnn.runtimes.keras import keras_outputs

    return top1_accuracy(keras_outputs(model, data.x)[0], data.y)


_accuracy = accuracy_on


def _validation_split(ctx: Context, *, rest: bool = False) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """A held-back slice of the TRAIN split for planning (the test split is only for the final accuracy);
    ``rest``: the other training samples instead (what a probe may fine-tune on)."""
    if ctx.train is None:
        return None, None
    n = len(ctx.train.x)
    k = min(300, max(1, n // 5))
    order = np.random.default_rng(ctx.seed).permutation(n)
    idx = np.sort(order[k:]) if rest else order[:k]
    return ctx.train.x[idx], (ctx.train.y[idx] if ctx.train.y is not None else None)


def _probe(ctx: Context, cands: list, x_val: Any, y_val: Any, summary: dict) -> None:
    """Short fine-tunes of the pruning candidates that lost too much before fine-tuning (edgecnn.pipeline.probe)."""
    if summary.get("base_accuracy") is None or y_val is None:
        return
    from edgecnn.pipeline.probe import probe

    x_rest, y_rest = _validation_split(ctx, rest=True)
    summary["probes"] = probe(ctx.original, cands, ctx.recipe, x_train=x_rest, y_train=y_rest, x_val=x_val,
                              y_val=y_val, base_accuracy=summary["base_accuracy"], bn_data=_bn_data(ctx)[:256],
                              progress=ctx.progress)


def _group_candidates(ctx: Context) -> list:
    """The per-group pruning candidates (``prune.per_group``; with labelled data only), the schedule that
    chose them kept for the report (``plan.group_schedule``)."""
    x_val, y_val = _validation_split(ctx)
    bn = _bn_data(ctx)
    cands, schedule = planner.group_candidates(ctx.original, ctx.recipe, x_val=x_val, y_val=y_val,
                                               bn_data=None if bn is None else bn[:256], progress=ctx.progress)
    if schedule:
        ctx.state["group_schedule"] = schedule
    return cands


def _bn_data(ctx: Context) -> Optional[np.ndarray]:
    """Training inputs to re-estimate BatchNorm statistics on after a structural change (None without data)."""
    return None if ctx.train is None else ctx.train.x


def _calibration(ctx: Context, samples: int) -> Optional[np.ndarray]:
    if ctx.train is None:
        return None
    return ctx.train.x[:samples]


def analyze(ctx: Context, rec: StageRecord) -> None:
    """Params, MACs, size and (with labels) accuracy of the original model."""
    from edgecnn.analysis import analyze as analyze_model

    stats = analyze_model(ctx.original)
    src = Path(ctx.source)
    size = sum(p.stat().st_size for p in ([src] if src.is_file() else src.rglob("*") if src.exists() else [])
               if p.is_file())
    ctx.state["original"] = {"params": stats.total_params, "macs": stats.total_macs, "size_bytes": size or None,
                             "accuracy": _accuracy(ctx.original, ctx.test)}
    bn = ctx.state.get("original_batchnorm")
    if bn:  # the file's own accuracy, next to the one with re-estimated BatchNorm statistics used as reference
        ctx.state["original"]["batchnorm"] = bn
        ctx.state["original"]["accuracy_as_given"] = bn.get("test_accuracy_as_given",
                                                              ctx.state["original"]["accuracy"])
    rec.details = dict(ctx.state["original"])
    if not ctx.labelled:
        ctx.note("accuracy was not measured: no labelled --data was given")
    from edgecnn.data import memorized_note

    memorized = memorized_note(ctx.heldout, ctx.state["original"]["accuracy"])  # no --val: a split of --data
    ctx.state["memorized_suspect"] = memorized is not None
    if memorized:
        ctx.note(memorized)


def plan(ctx: Context, rec: StageRecord) -> None:
    """Measure every candidate change on the target runtime and choose within the budget, in two phases:
    structural changes (rewrites, pruning ratios) against the original, then precision changes (ops kept in
    float in an int8 model) against the model with the chosen rewrites and each helpful pruning ratio, since
    whether float is faster depends on how many channels are left. The ratio is chosen with its precision
    changes (``planner.choose_ratio``)."""
    recipe, target = ctx.recipe, ctx.target
    from edgecnn.pipeline import datafree

    if datafree.active(ctx):  # no --data: synthesized inputs, equalization, precision by measured agreement
        return datafree.plan(ctx, rec, progress=ctx.progress)
    cands = planner.enumerate_candidates(ctx.original, recipe)
    fixed = list(recipe["plan"]["fixed"])
    wanted = {planner.base_id(f) for f in fixed}
    if not fixed or any(w.startswith("prune-groups:") for w in wanted):
        cands += _group_candidates(ctx)
    if fixed:  # ids as a report writes them; a precision id's "@prune:R" only says what it was measured on
        structural = [c for c in cands if c.id in wanted]
        ratio = next((c for c in structural if c.kind == "prune"), None)
        model = planner.apply_all(ctx.original, structural, recipe, bn_data=_bn_data(ctx))[0]
        cands += planner.measured_on(planner.precision_candidates(model, recipe), ratio)
        known = [planner.base_id(c.id) for c in cands]
        missing = sorted(wanted - set(known))
        if missing:
            from edgecnn.errors import EdgecnnError

            raise EdgecnnError(f"recipe plan.fixed names changes this model does not allow: Expected some of "
                               f"{', '.join(known) or 'none'}. Received: {', '.join(missing)}")
        for c in cands:
            c.chosen = planner.base_id(c.id) in wanted
            c.reason = "fixed by the recipe (plan.fixed)" if c.chosen else "not in the recipe's plan.fixed"
        ctx.state["plan"] = {"candidates": [c.as_dict() for c in cands], "measured": False}
        rec.changes = [f"chose {c.id}" for c in cands if c.chosen]
        return
    from edgecnn.pipeline.artifacts import base_artifact

    with profile_threads(recipe["runtime_profile"]) as threads:
        x_val, y_val = _validation_split(ctx)
        summary = planner.measure(
            ctx.original, cands, recipe, runtime=target.runtime, quantize=target.quantize, threads=threads,
            calibration=_calibration(ctx, 64), x_val=x_val, y_val=y_val, progress=ctx.progress,
            base_artifact=base_artifact(ctx))
    _probe(ctx, cands, x_val, y_val, summary)  # training: on every core, not the target's pinned one
    with profile_threads(recipe["runtime_profile"]) as threads:
        planner.predict_misses(cands, max_drop=float(recipe["plan"]["max_drop_before_finetune"]))
        planner.resolve_conflicts(cands)
        if ctx.train is None and not recipe["plan"]["apply_without_data"]:
            for c in cands:
                if c.chosen:
                    c.chosen = False
                    c.reason += ("; not applied without --data: a weight-initialized change loses accuracy that only "
                                 "fine-tuning recovers (set plan.apply_without_data = true to apply it anyway)")
            ctx.note("no --data: only data-free steps ran (quantization calibrated on synthetic inputs)")
        # Each helpful pruning ratio with the precision changes measured on it: which ratio is fastest depends
        # on them (a thin first stage runs faster in float), so they are chosen together.
        others = [c for c in cands if c.chosen and c.kind != "prune"]
        options = []
        for ratio in [c for c in cands if c.kind == "prune" and c.chosen] or [None]:
            structural, _ = planner.apply_all(ctx.original, others + ([ratio] if ratio else []), recipe,
                                              bn_data=_bn_data(ctx))
            precision = planner.measured_on(planner.precision_candidates(structural, recipe), ratio)
            if precision:
                second = planner.measure(
                    structural, precision, recipe, runtime=target.runtime, quantize=target.quantize,
                    threads=threads, calibration=_calibration(ctx, 64), x_val=None, y_val=None, progress=ctx.progress,
                    base_artifact=base_artifact(ctx) if structural is ctx.original else None)
                summary.setdefault("precision_base_ms", {})[ratio.id if ratio else "none"] = second["base_ms"]
                summary["warnings"] += second["warnings"]
            options.append((ratio, precision))
            cands += precision
        planner.choose_ratio(options, min_gain=float(recipe["plan"]["min_gain"]))
        planner.within_budget(cands, base_ms=summary["base_ms"], budget_ms=float(recipe["latency_budget_ms"]))
        summary["estimates"] = {(p.id if p else "none"): planner.estimate(p, fl) for p, fl in options}
    for w in summary["warnings"]:
        ctx.note(f"plan: {w}")
    if ctx.state.get("group_schedule"):
        summary["group_schedule"] = ctx.state["group_schedule"]
    ctx.state["plan"] = {"candidates": [c.as_dict() for c in cands], "measured": True, **summary}
    rec.changes = [f"chose {c.id}" for c in cands if c.chosen]
    rec.details = {"candidates": len(cands), "chosen": sum(c.chosen for c in cands), **summary}


def back_off(ctx: Context) -> Optional[str]:
    """Undo the least valuable chosen change (:func:`edgecnn.pipeline.planner.back_off`) in the plan; what was
    undone, or None when nothing is left to undo."""
    cands = ctx.candidates
    undone = planner.back_off(cands)
    ctx.candidates = cands
    return undone


def fall_back(ctx: Context) -> Optional[str]:
    """Once back-off is spent: undo every change, so the run ships the plain conversion of the original (never
    worse than it), said in the report. None when that was done already or nothing is left to undo."""
    if ctx.state.get("fallback"):
        return None
    cands = ctx.candidates
    undone = planner.undo_all(cands)
    if undone is not None:
        ctx.candidates = cands
        ctx.state["fallback"] = undone
        ctx.note(undone)
    return undone


def rewrite(ctx: Context, rec: StageRecord) -> None:
    """Apply the chosen rewrites to a fresh copy of the original (weights initialized from it)."""
    if ctx.state.get("plan", {}).get("datafree"):
        from edgecnn.pipeline import datafree

        return datafree.rewrite(ctx, rec)
    chosen = [c for c in ctx.candidates if c.chosen and c.kind not in ("prune", *planner.FLOAT_KINDS)]
    ctx.model, rec.changes = planner.apply_all(ctx.original, chosen, ctx.recipe, bn_data=_bn_data(ctx))
    if not chosen:
        rec.status = "skipped"
        rec.details["why"] = "no rewrite chosen"
        from edgecnn.surgery import rebuild

        ctx.model = rebuild(ctx.original)


def prune(ctx: Context, rec: StageRecord) -> None:
    """Apply the chosen channel-pruning ratio."""
    chosen = [c for c in ctx.candidates if c.chosen and c.kind == "prune"]
    if not chosen:
        rec.status = "skipped"
        rec.details["why"] = "no pruning ratio chosen"
        return
    ctx.model, rec.changes = planner.apply_all(ctx.model, chosen, ctx.recipe, bn_data=_bn_data(ctx))


def finetune(ctx: Context, rec: StageRecord) -> None:
    """Distil the original (teacher) into the changed model (student) on the training split."""
    changed = any(r.changes for r in ctx.stages if r.name in ("rewrite", "prune") and r.attempt == rec.attempt)
    ft = ctx.recipe["finetune"]
    if not changed or ctx.train is None or not ft["enabled"] or int(ft["epochs"]) <= 0:
        rec.status = "skipped"
        rec.details["why"] = ("nothing changed" if not changed else "no --data" if ctx.train is None
                              else "disabled by the recipe")
        return
    from edgecnn.distill import distill

    _deterministic(ctx.seed)
    # The BatchNorm statistics were re-estimated where the structure changed (surgery.rebuild), and distill
    # re-estimates them before each validation pass, so early stopping judges the model that will ship.
    result = distill(ctx.model, ctx.original, x=ctx.train.x, y=ctx.train.y, epochs=int(ft["epochs"]),
                     batch_size=int(ft["batch_size"]), learning_rate=float(ft["learning_rate"]),
                     temperature=float(ft["temperature"]), alpha=float(ft["alpha"]), patience=int(ft["patience"]),
                     seed=ctx.seed, progress=False, callbacks=[_epochs(ctx, int(ft["epochs"]))],
                     strategy=None if ft["strategy"] == "default" else ft["strategy"], keep_initial=True)
    from edgecnn import distribute

    distribute.collectives_done()
    ctx.model = result.model
    rec.changes = [f"distilled {result.epochs_run} epochs (best {result.best_epoch})" if result.best_epoch >= 0 else
                   f"distilled {result.epochs_run} epochs; none beat the model before fine-tuning on validation loss: "
                   "kept it"]
    rec.details = {"epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
                   "val_accuracy": result.val_accuracy, "teacher_val_accuracy": result.teacher_val_accuracy}


def _epochs(ctx: Context, total: int) -> Any:
    """A Keras callback that reports each finished epoch to the progress display."""
    import tf_keras

    class Epochs(tf_keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
            loss = (logs or {}).get("val_loss")
            ctx.progress(f"epoch {epoch + 1}" + (f" val_loss {loss:.4f}" if loss is not None else ""), epoch + 1,
                         total)

    return Epochs()


def _deterministic(seed: int) -> None:
    import tensorflow as tf
    import tf_keras

    tf_keras.utils.set_random_seed(seed)
    with contextlib.suppress(Exception):
        tf.config.experimental.enable_op_determinism()


def staging(ctx: Context) -> Path:
    return ctx.outdir / ".edgecnn" / "staging"


def quantize(ctx: Context, rec: StageRecord) -> None:
    """Convert to the target (and the extra formats), each artifact validated on its runtime as it is written."""
    import shutil

    from edgecnn.exporting import export

    target, recipe = ctx.target, ctx.recipe
    out = staging(ctx)
    shutil.rmtree(out, ignore_errors=True)
    formats = list(dict.fromkeys([target.format, *recipe["export"]["extra_formats"]]))
    float_layers = planner.float_layers([c for c in ctx.candidates if c.chosen])
    if float_layers:
        rec.changes.append(f"kept in float (faster than int8 on {target.runtime}): {', '.join(float_layers)}")
    compressed_acc = _accuracy(ctx.model, ctx.test)
    budget = None
    original_acc = ctx.state["original"]["accuracy"]
    if target.quantize == "int8" and ctx.labelled and original_acc is not None and compressed_acc is not None:
        limit = float(recipe["max_accuracy_drop"])  # never more than the budget, even when fine-tuning gained
        budget = min(limit, max(0.0, limit - 100 * (original_acc - compressed_acc)))
    import warnings

    from edgecnn.pipeline import datafree

    options = datafree.export_options(ctx) or {"quantize": target.quantize}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = export(ctx.model, outdir=out, formats=formats, data=ctx.heldout, io=recipe["io"], **options,
                        **floors(recipe),
                        calibration_samples=int(recipe["quantize"]["calibration_samples"]), seed=ctx.seed,
                        name=ctx.name, labels=ctx.labels, max_accuracy_drop=budget, quiet=True,
                        command=ctx.state.get("command", ""), float_layers=float_layers)
    del caught  # the converters' own warnings; edgecnn's are in report.warnings
    for w in report.warnings:
        ctx.note(w)
    ctx.state["export"] = report.as_dict()
    ctx.state["compressed_keras_accuracy"] = compressed_acc
    if "synthesized" in options:
        datafree.validated(ctx, report)
    rec.changes += [f"wrote {Path(a.path).name} ({a.size_bytes:,} bytes)" for a in report.artifacts]
    if report.budget is not None:
        rec.details["int8_budget"] = report.budget


def validate(ctx: Context, rec: StageRecord) -> None:
    """Check the target artifact's accuracy (on its runtime) against the original's, within the budget."""
    arts = ctx.state["export"]["artifacts"]
    main = next(a for a in arts if a["format"] == ctx.target.format)
    acc = (main.get("validation") or {}).get("accuracy")
    original = ctx.state["original"]["accuracy"]
    rec.details = {"artifact": Path(main["path"]).name, "accuracy": acc, "original_accuracy": original}
    if acc is None or original is None:
        rec.details["budget"] = "not checked: no labelled data"
        return
    drop = 100 * (original - acc)
    limit = float(ctx.recipe["max_accuracy_drop"])
    rec.details.update(drop_points=round(drop, 3), max_accuracy_drop=limit)
    if drop > limit + 1e-9:
        rec.status = "failed"
        raise BudgetExceeded(f"{Path(main['path']).name}: accuracy {100 * acc:.2f}% is {drop:.2f} points below "
                             f"the original's {100 * original:.2f}% (budget {limit})")


PROFILE_CUTS, PROFILE_SECONDS = 16, 4.0


def _top_ops(data: bytes, *, runtime: str, threads: int) -> Optional[list[dict]]:
    """The runtime's per-op profile of an artifact (top 10 ops by time), or None if profiling fails; bounded
    (:data:`PROFILE_CUTS` prefixes, :data:`PROFILE_SECONDS` of timing) so that deep models do not cost minutes:
    beyond that many ops, entries are runs of consecutive ops."""
    from edgecnn.benchmarking.perlayer import top_ops
    from edgecnn.errors import EdgecnnError

    try:
        return top_ops(data, runtime=runtime, threads=threads, runs=20, top=10, max_cuts=PROFILE_CUTS,
                       budget_s=PROFILE_SECONDS)
    except (EdgecnnError, RuntimeError, ValueError):
        return None


def benchmark(ctx: Context, rec: StageRecord) -> None:
    """Original (the run's base artifact: plain conversion at the target's quantization) vs compressed artifact,
    timed in one loop of :func:`edgecnn.benchmarking.core.measure` with the reference model, per runtime. Each entry
    carries the bench result's status, reference ratio and warning; an original whose median disagrees with
    the plan's measurement of the same artifact beyond the noise is flagged too."""
    from edgecnn.benchmarking.core import REPEAT_MIN_GAP_MS, REPEAT_TOLERANCE, time_artifacts
    from edgecnn.exporting.convert import convert
    from edgecnn.pipeline.artifacts import base_artifact, calibration

    target, recipe = ctx.target, ctx.recipe
    arts = {a["format"]: a for a in ctx.state["export"]["artifacts"]}
    runtimes = list(dict.fromkeys([target.runtime, *recipe["bench"]["runtimes"]]))
    latency: dict[str, dict] = {"original": {}, "compressed": {}}
    from edgecnn.runtimes import RUNTIMES

    with profile_threads(recipe["runtime_profile"]) as threads:
        for runtime in runtimes:
            fmt = RUNTIMES[runtime].format
            original = base_artifact(ctx, runtime)
            if fmt in arts:
                compressed = Path(arts[fmt]["path"]).read_bytes()
            else:
                compressed = convert(ctx.model, runtime=runtime, quantize=target.quantize, calibration=calibration(ctx))
            data = {"original": original, "compressed": compressed}
            runs = int(recipe["bench"]["runs"])
            t = time_artifacts(data, runtime=runtime, threads=threads, runs=max(runs, 100_000), min_runs=runs,
                               warmup=3, budget_s=float(recipe["bench"]["seconds"]), reference=True)
            for k in ("original", "compressed"):
                r = t[k]
                keep = ("status", "reason", "warning", "median_ms", "p90_ms", "p99_ms", "min_ms", "spread_ms",
                        "runs", "cpu_ms", "ratio_to_reference", "wall_ratio_to_reference")
                latency[k][runtime] = {**{f: getattr(r, f) for f in keep}, "mean_ms": _mean(r.samples_ms),
                                       "threads": r.threads, "quantize": target.quantize, "size_bytes": len(data[k])}
                if r.status != "ok":
                    ctx.note(f"benchmark: {k} on {runtime}: {r.status}: {r.reason}")
            plan_ms = (ctx.state.get("plan") or {}).get("base_ms") if runtime == target.runtime else None
            now = t["original"].median_ms
            gap = abs(now - plan_ms) if plan_ms and now else 0.0
            if gap > max(REPEAT_TOLERANCE * min(now or 0.0, plan_ms or 0.0), REPEAT_MIN_GAP_MS) and not \
                    latency["original"][runtime]["warning"]:
                latency["original"][runtime]["warning"] = (
                    f"repeated measurements disagree: the plan measured this artifact at {plan_ms:.3f} ms, the "
                    f"benchmark at {now:.3f} ms (median); the machine was probably busy during part of the run")
            for k in ("original", "compressed"):
                if latency[k][runtime]["warning"]:
                    ctx.note(f"benchmark: {k} on {runtime}: {latency[k][runtime]['warning']}")
            per_layer = ctx.state.setdefault("per_layer", {"original": {}, "compressed": {}})
            for k, artifact in data.items():
                per_layer[k][runtime] = _top_ops(artifact, runtime=runtime, threads=threads)
    ctx.state["latency"] = latency
    ok = [rt for rt in runtimes if latency["original"][rt]["median_ms"] and latency["compressed"][rt]["median_ms"]]
    rec.details = {rt: round(latency["original"][rt]["median_ms"] / latency["compressed"][rt]["median_ms"], 3)
                   for rt in ok}
    rec.changes = [f"{rt}: {latency['original'][rt]['median_ms']:.3f} -> {latency['compressed'][rt]['median_ms']:.3f}"
                   f" ms ({rec.details[rt]}x)" for rt in ok]


def _mean(samples: list) -> Optional[float]:
    return float(np.mean(samples)) if samples else None
