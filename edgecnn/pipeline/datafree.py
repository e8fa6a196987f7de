"""The compress stages' data-free path (no ``--data``, LiteRT target): what ``plan``, ``rewrite`` and ``quantize``
do instead of calibrating on uniform noise.

plan: infer the input range, synthesize inputs from the model (cached in ``OUTDIR/.edgecnn/datafree/``, so a
resumed run does not redo it), equalize the working model (float check in
:func:`edgecnn.datafree.equalize.equalize`), convert the precision candidates
(:mod:`edgecnn.datafree.precision`), time them interleaved with the plain conversion on the target, judge them
by agreement with the float model on the synthesized inputs, choose. Structural candidates are listed, not
measured: without data nothing would apply them (``plan.apply_without_data = true`` runs the usual plan
instead). rewrite: the working model is the equalized one. quantize: the chosen artifact is validated on the
synthesized inputs, and every report says that its agreement was not measured on real data.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from edgecnn.pipeline import planner
from edgecnn.pipeline.context import Context, StageRecord

PROXY = "not measured on real data"


def active(ctx: Context) -> bool:
    """Whether this run takes the data-free path (its precision candidates need a runtime whose converter keeps
    chosen ops in float: the row's ``per_op_precision``)."""
    r = ctx.recipe
    return (ctx.train is None and bool(r["datafree"]["enabled"]) and ctx.target.row.per_op_precision
            and not r["plan"]["apply_without_data"])


def _dir(ctx: Context) -> Path:
    return ctx.outdir / ".edgecnn" / "datafree"


def synthesized(ctx: Context, *, progress: Callable[[str, int, int], None] = lambda t, d, n: None) -> tuple[Any, Any]:
    """(input range, synthesized inputs) for this run: from the checkpoint when it holds them for this key."""
    from edgecnn.datafree.inputrange import InputRange, infer_input_range

    cfg = ctx.recipe["datafree"]
    d = _dir(ctx)
    meta_path, x_path = d / "synthesized.json", d / "synthesized.npy"
    if meta_path.is_file() and x_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("key") == ctx.key:
                return InputRange(**meta["input_range"]), np.load(x_path)
        except (OSError, ValueError, TypeError, KeyError):
            pass
    from edgecnn.datafree.synthesize import synthesize
    from edgecnn.files import write_atomic

    rng = infer_input_range(ctx.original, override=cfg["input_range"] or None, source=ctx.source)
    budget = synthesis_plan(ctx)
    s = synthesize(ctx.original, samples=budget.samples, steps=budget.steps, batch_size=budget.batch_size,
                   input_range=rng.as_tuple(), seed=ctx.seed, progress=progress)
    d.mkdir(parents=True, exist_ok=True)
    import io

    buf = io.BytesIO()
    np.save(buf, s.x)
    write_atomic(x_path, buf.getvalue())
    described = {**s.describe(), "budget": budget.describe()}
    write_atomic(meta_path, json.dumps({"key": ctx.key, "input_range": rng.describe(), "synthesis": described}))
    ctx.state.setdefault("datafree", {})["synthesis"] = described
    if s.outputs is not None:
        ctx.cache["datafree_reference"] = s.outputs  # the original's outputs on these inputs
    if budget.cut:
        ctx.note(f"data-free synthesis: {budget.cut} (datafree.max_synthesis_seconds; "
                 f"datafree.synthesis_memory_mb sets the batch: {budget.batch_size})")
    return rng, s.x


def synthesis_plan(ctx: Context) -> Any:
    """How many inputs to synthesize, how many steps, in what batches: the recipe's ``samples`` and ``steps``
    cut to fit ``datafree.max_synthesis_seconds`` (estimated, deterministic: :mod:`edgecnn.datafree.cost`) and
    batches that fit ``datafree.synthesis_memory_mb``."""
    from edgecnn.analysis import analyze
    from edgecnn.datafree.cost import activation_mb, plan_synthesis

    cfg = ctx.recipe["datafree"]
    return plan_synthesis(samples=int(cfg["samples"]), steps=int(cfg["steps"]), batch_size=128,
                          gmacs=analyze(ctx.original).total_macs / 1e9, activation_mb=activation_mb(ctx.original),
                          max_seconds=float(cfg["max_synthesis_seconds"]), memory_mb=float(cfg["synthesis_memory_mb"]))


def _reference(ctx: Context, x: np.ndarray) -> list:
    """The original's float outputs on the synthesized inputs (a list, one array per output), computed once."""
    if "datafree_reference" not in ctx.cache:
        from edgecnn.runtimes.keras import keras_outputs

        ctx.cache["datafree_reference"] = keras_outputs(ctx.original, x)
    return ctx.cache["datafree_reference"]


def _equalized(ctx: Context, x: np.ndarray) -> tuple[Any, dict]:
    """(the equalized working model, what equalization did); made once per process (the plan's is the rewrite
    stage's), again after a resume."""
    if "datafree_equalized" in ctx.cache:
        return ctx.cache["datafree_equalized"]
    if not ctx.recipe["datafree"]["equalize"]:
        from edgecnn.surgery import rebuild

        return rebuild(ctx.original), {"applied": False, "why": "disabled by the recipe (datafree.equalize)"}
    from edgecnn.datafree.equalize import equalize

    e = equalize(ctx.original, x=x, reference=_reference(ctx, x))
    ctx.cache["datafree_equalized"] = (e.model, {"applied": bool(e.pairs), **e.describe()})
    return ctx.cache["datafree_equalized"]


def plan(ctx: Context, rec: StageRecord, *, progress: Callable[[str, int, int], None]) -> None:
    """The data-free plan (see the module docstring)."""
    from edgecnn.datafree.precision import build_candidates, choose
    from edgecnn.runtimes.profiles import profile_threads

    recipe, cfg = ctx.recipe, ctx.recipe["datafree"]
    started = time.perf_counter()
    structural = planner.enumerate_candidates(ctx.original, recipe)
    for c in structural:
        c.reason = ("not measured without --data: a weight-initialized change loses accuracy that only fine-tuning "
                    "recovers (plan.apply_without_data = true measures and applies it anyway)")
    phases: list[dict] = []
    rng, x = synthesized(ctx, progress=progress)
    _phase(phases, "synthesis", started)
    state = ctx.state.setdefault("datafree", {})
    state["input_range"] = rng.describe()
    if "synthesis" not in state:
        meta = json.loads((_dir(ctx) / "synthesized.json").read_text())
        state["synthesis"] = meta["synthesis"]
    model, eq = _equalized(ctx, x)
    _phase(phases, "equalization", started)
    state["equalization"] = eq
    fixed = [planner.base_id(f) for f in recipe["plan"]["fixed"] if f.startswith("precision:")]
    kinds = [k for k in cfg["candidates"] if not fixed or f"precision:{k}" in fixed]
    floor, min_snr = float(cfg["min_agreement"]), float(cfg["min_snr_db"])
    stop = planner.deadline(recipe, started)
    plain_bytes = None
    if not fixed:  # the plain conversion first (timing needs it): what is left of plan.max_seconds is known
        from edgecnn.pipeline.artifacts import base_artifact

        plain_bytes = len(base_artifact(ctx))
        _phase(phases, "plain conversion", started)
        if stop is not None:
            stop -= float(recipe["plan"]["seconds"])  # and the timing's own budget
    cands, details = build_candidates(ctx.original, equalized=model, x=x, input_range=rng.as_tuple(), kinds=kinds,
                                      floor=floor, min_snr_db=min_snr, max_float_ops=int(cfg["max_float_ops"]),
                                      bias_correction=bool(cfg["bias_correction"]),
                                      calibration_samples=int(recipe["quantize"]["calibration_samples"]),
                                      compare_steps=bool(cfg["compare_steps"]), max_bytes=plain_bytes,
                                      batchnorm_sigmas=float(cfg["batchnorm_sigmas"]),
                                      deadline=stop,
                                      deadline_what=planner.budget_name(recipe),
                                      progress=progress, reference=_reference(ctx, x)[0])
    _phase(phases, "candidates", started)
    state["details"] = details
    summary: dict = {"base_ms": None}
    if not fixed:
        with profile_threads(recipe["runtime_profile"]) as threads:
            summary = _time(ctx, cands, threads=threads)
        _phase(phases, "timing", started)
        cands.append(_plain(ctx, x, summary))
    state["phases"] = phases
    best = choose(cands, floor=floor, min_snr_db=min_snr, min_gain=float(recipe["plan"]["min_gain"]),
                  max_bytes=summary.get("plain_bytes"), max_bytes_what=f"the plain {ctx.target.quantize} conversion",
                  prefer_mode=ctx.target.quantize)
    if best is not None and fixed:
        best.reason = "fixed by the recipe (plan.fixed)"
    _steps_kept(state, best, details)
    rows = [planner.Candidate(c.id, kind="precision", params=None, base_ms=c.base_ms, latency_ms=c.latency_ms,
                              gain_ms=(None if c.latency_ms is None or c.base_ms is None else c.base_ms - c.latency_ms),
                              noise_ms=c.noise_ms, output_error=c.snr_db, chosen=c.chosen, reason=c.reason,
                              error=c.error) for c in cands]
    state["candidates"] = [c.as_dict() for c in cands]
    state["floor"], state["min_snr_db"] = floor, min_snr
    if best is not None:
        d = _dir(ctx)
        d.mkdir(parents=True, exist_ok=True)
        from edgecnn.files import write_atomic

        write_atomic(d / "chosen.tflite", best.data)
        state["chosen"] = {"id": best.id, "mode": best.mode, "agreement": best.agreement, "snr_db": best.snr_db,
                           "size_bytes": best.size_bytes, "samples": int(len(x))}
        _explain(ctx, best, summary, cands)
    ctx.state["plan"] = {"candidates": [c.as_dict() for c in structural + rows], "measured": not fixed,
                         "datafree": True, **summary}
    rec.changes = [f"chose {best.id}" if best is not None else "no precision candidate could be built"]
    rec.details = {"input_range": rng.describe(), "synthesized": int(len(x)), "equalized_pairs": len(eq.get("pairs", [])),
                   "candidates": {c.id: {"agreement": c.agreement, "snr_db": c.snr_db, "size_bytes": c.size_bytes,
                                         "latency_ms": c.latency_ms} for c in cands}, **summary}


def _steps_kept(state: dict, best: Any, details: dict) -> None:
    """When the chosen int8 artifact was built from the original because equalization and bias correction
    lowered its SNR on held-out synthesized inputs (edgecnn.datafree.precision, ``compare_steps``), the working
    model is the original too: the report then says equalization was not applied, and why."""
    if best is None or best.mode != "int8":
        return
    eq = state.get("equalization") or {}
    if best.id == PLAIN_ID:
        if eq.get("applied"):
            state["equalization"] = {**eq, "applied": False, "why": f"{PLAIN_ID} (the original, converted) shipped"}
        return
    kind = "int8-per-tensor" if best.id.endswith("per-tensor") else "int8"
    steps = (details.get("steps") or {}).get(kind)
    if steps and steps["kept"] == "neither" and eq.get("applied"):
        snr = steps.get("snr_db") or {}
        said = ", ".join(f"{label} {value:.1f} dB" for label, value in snr.items())
        state["equalization"] = {**eq, "applied": False,
                                 "why": f"{best.id} was built without it: SNR {said}, on {steps['held_out_inputs']} "
                                        "synthesized inputs held out from calibration"}


def _phase(phases: list, name: str, started: float) -> None:
    """Record when a plan phase ended (seconds since the plan started) and the process's peak RSS so far."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
    phases.append({"phase": name, "at_s": round(time.perf_counter() - started, 1), "peak_rss_mb": round(peak)})


def _time(ctx: Context, cands: list, *, threads: int) -> dict:
    """Each candidate against the plain conversion (the target's quantization, what the converter alone gives),
    pair by pair, interleaved on the target runtime."""
    from edgecnn.pipeline.artifacts import base_artifact
    from edgecnn.rewriting.select import measure_rewrites

    recipe = ctx.recipe
    base = base_artifact(ctx)
    built = {c.id: c.data for c in cands if c.data}
    deltas = measure_rewrites(base, built, runtime=ctx.target.runtime, threads=threads,
                              runs=int(recipe["plan"]["latency_runs"]), warmup=3,
                              budget_s=float(recipe["plan"]["seconds"]) / max(1, len(built)))
    by = {d.name: d for d in deltas}
    for c in cands:
        d = by.get(c.id)
        if d is not None:
            c.base_ms, c.latency_ms, c.noise_ms = d.base_ms, d.rewritten_ms, d.spread_ms
    return {"base_ms": float(np.median([d.base_ms for d in deltas])) if deltas else None,
            "plain_bytes": len(base), "plain": f"{ctx.target.quantize} conversion of the original (converter alone)"}


PLAIN_ID = "precision:plain"


def _plain(ctx: Context, x: np.ndarray, summary: dict) -> Any:
    """The plain conversion itself as a candidate (already built and timed: it is what the others were timed
    against), scored on the synthesized inputs like them: when no candidate is both as fast and no larger (an
    untrained DenseNet121: its bias-corrected int8 was 1.5% larger, dynamic range 11% slower), the plain
    conversion ships, said so, rather than a file that is slower or larger than what the converter alone gives."""
    from edgecnn.datafree.precision import Precision, proxy
    from edgecnn.datafree.slim import slim_names
    from edgecnn.pipeline.artifacts import base_artifact

    base = slim_names(base_artifact(ctx), model_name=getattr(ctx.original, "name", ""))  # as every candidate
    p = Precision(PLAIN_ID, mode=ctx.target.quantize, data=base, size_bytes=len(base), latency_ms=summary["base_ms"],
                  base_ms=summary["base_ms"], noise_ms=0.0,
                  description=f"the converter's own {ctx.target.quantize} conversion of the original, names shortened")
    p.agreement, p.snr_db = proxy(base, x, _reference(ctx, x)[0])
    return p


def _explain(ctx: Context, best: Any, summary: dict, cands: list) -> None:
    """Notes for the report: the proxy, the floor that decided, and why a file less faithful, larger or slower than
    plain conversion ships."""
    from edgecnn.datafree.precision import SNR_TIE_DB

    n = ctx.state["datafree"]["chosen"]["samples"]
    agreement = "-" if best.agreement is None else f"{best.agreement:.3f}"
    ctx.note(f"data-free: chose {best.id} ({best.description}): agreement {agreement}, SNR {best.snr_db:.1f} dB on "
             f"{n} synthesized inputs ({best.reason}); {PROXY}")
    dyn = next((c for c in cands if c.id == "precision:dynamic" and c.size_bytes and c.error is None), None)
    if dyn is not None and dyn is not best and best.snr_db < dyn.snr_db - SNR_TIE_DB:
        speed = (f"; {dyn.latency_ms / best.latency_ms:.2f}x the speed of dynamic range"
                 if best.latency_ms and dyn.latency_ms else "")
        other = "-" if dyn.agreement is None else f"{dyn.agreement:.3f}"
        ctx.note(f"{best.id} is less faithful than dynamic-range on the synthesized inputs (SNR {best.snr_db:.1f} vs "
                 f"{dyn.snr_db:.1f} dB, agreement {agreement} vs {other}{speed}); "
                 'plan.fixed = ["precision:dynamic"] in a recipe ships dynamic range instead')
    plain = summary.get("plain_bytes")
    if plain is not None and best.size_bytes > plain:
        ctx.note(f"{best.id} is larger than plain {ctx.target.quantize} conversion ({best.size_bytes:,} vs {plain:,} "
                 f"bytes before metadata): no candidate of at most that size meets both floors")
    if best.latency_ms is not None and best.base_ms is not None and \
            best.latency_ms - best.base_ms > max(best.noise_ms or 0.0, float(ctx.recipe["plan"]["min_gain"]) * best.base_ms):
        faster = [f"{c['id']} ({c['reason']})" for c in ctx.state["datafree"]["candidates"]
                  if c["latency_ms"] is not None and c["latency_ms"] < best.latency_ms and not c["chosen"]]
        ctx.note(f"{best.id} is slower than plain {ctx.target.quantize} conversion ({best.latency_ms:.3f} vs "
                 f"{best.base_ms:.3f} ms) because "
                 + ("the faster candidates were not chosen: " + "; ".join(faster) if faster else
                    "no candidate that meets both floors is as fast"))


def working_model(ctx: Context) -> Optional[Any]:
    """The equalized working model the chosen artifact was converted from (None when equalization was off)."""
    state = ctx.state.get("datafree") or {}
    if not (state.get("equalization") or {}).get("applied"):
        return None
    _, x = synthesized(ctx)
    return _equalized(ctx, x)[0]


def export_options(ctx: Context) -> Optional[dict]:
    """Keyword arguments of :func:`edgecnn.exporting.export` for the chosen data-free artifact, or None."""
    state = ctx.state.get("datafree") or {}
    chosen = state.get("chosen")
    if not chosen:
        return None
    from edgecnn.datafree.inputrange import InputRange

    rng, x = synthesized(ctx)
    mean, std = InputRange(**state["input_range"]).normalization()
    channels = int(x.shape[-1])
    synth = state.get("synthesis", {})
    return {"quantize": chosen["mode"], "prebuilt": {"tflite": (_dir(ctx) / "chosen.tflite").read_bytes()},
            "synthesized": (x, f"synthesized from the model ({synth.get('method', 'model statistics')}, "
                               f"{len(x)} inputs in [{rng.low:g}, {rng.high:g}])"),
            "input_mean": [mean] * channels, "input_std": [std] * channels}


def rewrite(ctx: Context, rec: StageRecord) -> None:
    """The data-free rewrite stage: the working model is the equalized original (same function)."""
    from edgecnn.surgery import rebuild

    model = working_model(ctx)
    ctx.model = model if model is not None else rebuild(ctx.original)
    eq = (ctx.state.get("datafree") or {}).get("equalization") or {}
    if model is None:
        rec.status = "skipped"
        rec.details["why"] = eq.get("why", "no layer pair to equalize")
        return
    pairs = eq.get("pairs", [])
    rec.changes = [f"equalized {len(pairs)} layer pair(s); float outputs within {eq.get('max_rel_diff', 0.0):.1e} "
                   "of the original's (relative)"]
    rec.details = {"pairs": [p["pair"] for p in pairs], "max_rel_diff": eq.get("max_rel_diff")}


def validated(ctx: Context, report: Any) -> None:
    """After export on the synthesized inputs: say what the agreement is a proxy for."""
    for a in report.artifacts:
        v = a.validation or {}
        if v.get("top1_agreement") is not None:
            ctx.note(f"{Path(a.path).name}: agreement {v['top1_agreement']:.3f} with the Keras model on "
                     f"{v.get('samples')} synthesized inputs; {PROXY}")
    ctx.note("no --data: only data-free steps ran (calibration and validation on inputs synthesized from the model)")
