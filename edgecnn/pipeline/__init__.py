"""``compress()``: one trained Keras CNN in, validated and benchmarked edge artifacts out.

The stages (``edgecnn.pipeline.stages``) run in order over one Context; each finished stage is
checkpointed in ``OUTDIR/.edgecnn`` so ``resume=True`` continues an interrupted run. A recipe (TOML preset
or file, ``edgecnn.pipeline.recipe``) turns stages on and sets their options; keyword arguments override
it. If the final accuracy exceeds the budget, the least valuable change is undone and the run goes back to
the rewrite stage, at most ``plan.max_backoff`` times.

Example:
    >>> [name for name, _ in STAGES]
    ['analyze', 'plan', 'rewrite', 'prune', 'finetune', 'quantize', 'validate', 'benchmark']
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from edgecnn import signals
from edgecnn.errors import CheckpointError, InputFileError, ValidationError
from edgecnn.pipeline import stages as S
from edgecnn.pipeline import workers
from edgecnn.pipeline.context import CHECKPOINT_DIR, Checkpoint, Context, StageRecord, file_sha256
from edgecnn.pipeline.invariants import check_stage
from edgecnn.pipeline.recipe import TARGETS, dumps, load_recipe, recipe_hash

STAGES: list[tuple[str, Callable[..., None]]] = [
    ("analyze", S.analyze), ("plan", S.plan), ("rewrite", S.rewrite), ("prune", S.prune),
    ("finetune", S.finetune), ("quantize", S.quantize), ("validate", S.validate), ("benchmark", S.benchmark),
]
RETRY_FROM = "rewrite"
VALIDATION_HINT = ("no artifact met the target's validation floor after back-off: try a float target (--target "
                   "litert-fp16), quantization-aware training (edgecnn quantize --qat), or a lower --min-agreement")
COMPRESS_HINT = ("try more --epochs, a larger --max-accuracy-drop, smaller recipe prune.ratios or fewer rewrite.kinds "
                 "(edgecnn recipes mobile prints one to edit), or quantization-aware training (edgecnn quantize --qat)")
OUTPUT_NAMES = {"report.json", "report.html", "recipe.toml", "labels.txt", "MODEL_CARD.md", "export.json",
                CHECKPOINT_DIR}
OUTPUT_SUFFIXES = {".tflite", ".onnx", ".ort", ".h5"}


@dataclass
class CompressReport:
    """What compress produced: ``report`` is report.json's content; ``outdir`` holds every file."""

    outdir: Path
    report: dict

    @property
    def budget_met(self) -> Optional[bool]:
        return self.report["budget"].get("met")

    def as_dict(self) -> dict:
        return self.report


def _input_range(value: Any) -> Optional[list[float]]:
    """``--input-range`` as the recipe's list, checked before any heavy work (None: keep the recipe's)."""
    if value is None:
        return None
    from edgecnn.datafree.inputrange import parse_range

    return list(parse_range(value))


def _check_outdir(outdir: Path, *, force: bool) -> None:
    if outdir.exists() and not outdir.is_dir():
        raise InputFileError(f"output folder {outdir} is a file: Expected a folder. Received: a file")
    if not outdir.is_dir() or force:
        return
    unrelated = [p.name for p in outdir.iterdir()
                 if p.name not in OUTPUT_NAMES and p.suffix not in OUTPUT_SUFFIXES and not p.name.startswith(".")]
    if unrelated:
        raise InputFileError(f"output folder {outdir} holds files edgecnn did not write ({', '.join(sorted(unrelated)[:3])}"
                             f"): Expected an empty folder or an earlier compress output. Received: pass --force to "
                             "write there anyway")


def _repair(working: Any, heldout: Any) -> tuple[Any, Optional[dict]]:
    """The original to compress against: the user's model, or a copy with re-estimated BatchNorm statistics
    when the ones it came with are stale on the train split (:func:`edgecnn.training.repair_stale_batchnorm`)."""
    if heldout is None:
        return working, None
    from edgecnn.pipeline.stages import accuracy_on
    from edgecnn.training import repair_stale_batchnorm

    repaired, info = repair_stale_batchnorm(working, heldout.train)
    if info and info["stale"]:
        info["test_accuracy_as_given"] = accuracy_on(working, heldout.test)
    return repaired, info


def _by_spec(*sources: Any) -> bool:
    return all(s is None or isinstance(s, (str, Path)) for s in sources)


def _data_key(data: Any, heldout: Any, *, val: Any = None) -> str:
    """What identifies the data in the checkpoint key: the spec texts (``--data``, and ``--val`` when given), or a
    hash of the split's samples (with ``val``: all of data, then val).

    >>> _data_key("train.npz", None), _data_key("train.npz", None, val="val.npz")
    ('train.npz', 'train.npz+val=val.npz')
    """
    if _by_spec(data, val):
        return str(data) if val is None else f"{data}+val={val}"
    import hashlib

    import numpy as np

    h = hashlib.sha256(b"val" if val is not None else b"")
    for part in (heldout.train, heldout.test):
        h.update(np.ascontiguousarray(part.x).tobytes())
        if part.y is not None:
            h.update(np.ascontiguousarray(part.y).tobytes())
    return "arrays:" + h.hexdigest()[:16]


def _source(model: Any) -> tuple[str, str, str]:
    """(source text, name, input hash) of a path or a live model."""
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.exists():
            raise InputFileError(f"model not found: Expected a .h5 or .keras file, or a SavedModel folder. "
                                 f"Received: {path}")
        return str(path), path.stem if path.is_file() else path.name, file_sha256(path)
    import hashlib

    import numpy as np

    h = hashlib.sha256(model.to_json().encode())
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return f"<live model {model.name}>", model.name, h.hexdigest()


def compress(
    model: Any,
    *,
    outdir: Optional[str | Path] = None,
    data: Optional[str] = None,
    recipe: str = "mobile",
    target: Optional[str] = None,
    max_accuracy_drop: Optional[float] = None,
    latency_budget_ms: Optional[float] = None,
    runtime_profile: Optional[str] = None,
    epochs: Optional[int] = None,
    seed: Optional[int] = None,
    resume: bool = False,
    force: bool = False,
    quiet: bool = False,
    labels: Optional[list[str]] = None,
    input_shape: Any = None,
    custom_objects: Optional[str] = None,
    trust_model: bool = False,
    command: str = "",
    on_stage: Optional[Callable[[str, str], None]] = None,
    min_agreement: Optional[float] = None,
    min_snr_db: Optional[float] = None,
    eval_on_train: bool = False,
    input_range: Optional[Any] = None,
    strategy: Optional[str] = None,
    val: Optional[Any] = None,
) -> CompressReport:
    """Compress a trained Keras CNN for the target; write artifacts, report.json/html and recipe.toml.

    Args:
        model: a .h5/.keras file, a SavedModel folder, or a live Keras model.
        outdir: output folder (default ``<model name>_edgecnn`` next to the model file, or in the cwd).
        data: ``digits``, an image folder, a .npz, a Dataset, ``(x, y)``, a ``tf.data.Dataset`` or a
            :class:`edgecnn.data.HeldOut`; labelled data makes fine-tuning and accuracy real. It is split once
            (:func:`edgecnn.data.split_data`) and the same split goes to every stage: fine-tuning, calibration
            and BatchNorm re-estimation use its train split, every accuracy its held-out test split.
        val: held-out data the model has not seen, of any kind ``data`` takes (but a HeldOut): then all of
            ``data`` is the train side and the original's and the artifacts' accuracy and agreement (the budget)
            are measured on ``val`` (:func:`edgecnn.data.split_val`). Without it, a split of ``data`` that the
            original scores 99.5% or more on gets a report note: it was probably trained on it
            (:func:`edgecnn.data.memorized_note`).
        recipe: a preset (``mobile``, ``tiny``, ``gpu``) or a .toml path (e.g. an earlier OUTDIR/recipe.toml).
        target, max_accuracy_drop, latency_budget_ms, runtime_profile, epochs, seed: override the recipe.
        resume: continue from the last finished stage of an interrupted run with the same input and recipe.
        force: write into an OUTDIR that holds unrelated files.
        on_stage: called with (stage name, "start" | "done" | "skipped" | "failed") for progress display.
        min_agreement, min_snr_db: override the recipe's validation floors (``[validate]``).
        eval_on_train: data too small to hold out a test split is measured on its training samples (every
            report says so) instead of refused.
        input_range: ``"LO,HI"`` or ``(lo, hi)``, the model input's range for the data-free path (recipe
            ``datafree.input_range``); default: inferred from the model (:mod:`edgecnn.datafree.inputrange`).
        strategy: the fine-tuning's ``tf.distribute`` strategy (recipe ``finetune.strategy``): ``default``,
            ``mirrored`` or ``multiworker`` (a fixed plan; the chief writes OUTDIR, the other workers nothing:
            :mod:`edgecnn.pipeline.workers`). It is created here, before the model is loaded.

    Returns:
        CompressReport; ``report["budget"]["met"]`` is False when back-off could not meet the budget.

    Raises:
        EdgecnnError: bad input (model, data, recipe, outdir), one line.
    """
    overrides = {"target": target, "max_accuracy_drop": max_accuracy_drop, "latency_budget_ms": latency_budget_ms,
                 "runtime_profile": runtime_profile, "finetune.epochs": epochs, "seed": seed,
                 "validate.min_agreement": min_agreement, "validate.min_snr_db": min_snr_db,
                 "datafree.input_range": _input_range(input_range), "finetune.strategy": strategy}
    rec = load_recipe(recipe, overrides=overrides)  # every option type- and range-checked before heavy work
    from edgecnn.exporting.validate import TOLERANCES

    TOLERANCES[TARGETS[rec["target"]].quantize].with_overrides(**S.floors(rec))  # fail fast on bad floors
    workers.check(rec, data=data, resume=resume)
    from edgecnn.data.val import check_val

    check_val(data, val, eval_on_train=eval_on_train)  # --val without --data, with --eval-on-train, or as --data
    source, name, sha = _source(model)
    if outdir is None:
        base = Path(source).parent if isinstance(model, (str, Path)) else Path.cwd()
        outdir = base / f"{name}_edgecnn"
    outdir = Path(outdir)
    if isinstance(model, (str, Path)) and outdir.resolve() == Path(model).resolve():
        raise InputFileError(f"output folder is the input: Expected another folder. Received: {outdir}")
    _check_outdir(outdir, force=force)
    workers.start(rec)  # the strategy, before TensorFlow initializes (multiworker: waits for every worker)
    from edgecnn import distribute

    with distribute.output_dir(outdir) as out:  # a non-chief worker: a private folder, removed at the end
        return _guarded(model, rec=rec, source=source, name=name, sha=sha, outdir=out, data=data, resume=resume,
                        quiet=quiet, labels=labels, input_shape=input_shape, custom_objects=custom_objects,
                        trust_model=trust_model, command=command, on_stage=on_stage, eval_on_train=eval_on_train,
                        val=val)


def _guarded(model: Any, *, rec: dict, source: str, name: str, sha: str, outdir: Path, command: str,
             **run: Any) -> CompressReport:
    """The run in OUTDIR, locked; whatever a failed run created is removed (a checkpoint kept for --resume)."""
    from edgecnn.files import OutputGuard
    from edgecnn.lock import LOCK_NAME, OutdirLock

    guard = OutputGuard(outdir)
    guard.mkdir()
    lock = OutdirLock(outdir, command=command or f"edgecnn.compress({source})")
    try:
        lock.acquire()  # a second run on this OUTDIR stops here, at once, naming the first
    except BaseException:
        guard.remove_made_dirs()
        raise
    failed = True
    try:
        result = _run(model, rec=rec, source=source, name=name, sha=sha, outdir=outdir, command=command, **run)
        failed = False
        return result
    except BaseException as exc:
        from edgecnn.signals import interrupted

        if isinstance(exc, (KeyboardInterrupt, SystemExit)) or interrupted():  # Ctrl-C, even if a library hid it
            if (outdir / CHECKPOINT_DIR / Checkpoint.STATE).is_file():
                failed = False  # the checkpoint stays: --resume continues from the last finished stage
            else:
                guard.remove_new(keep=(LOCK_NAME,))
        elif isinstance(exc, CheckpointError):
            failed = False  # a checkpoint edgecnn cannot trust is left as it is; the message says how to start afresh
        else:  # every other failure, edgecnn's or not: remove what this run created
            Checkpoint(outdir, key="").clear()
            guard.remove_new(keep=(LOCK_NAME,))
        raise
    finally:
        lock.release()
        if failed:
            guard.remove_made_dirs()


def _run(model: Any, *, rec: dict, source: str, name: str, sha: str, outdir: Path, data: Optional[str], resume: bool,
         quiet: bool, labels: Optional[list[str]], input_shape: Any, custom_objects: Optional[str], trust_model: bool,
         command: str, on_stage: Optional[Callable[[str, str], None]], eval_on_train: bool = False,
         val: Any = None) -> CompressReport:
    """The stages over one context, in a locked OUTDIR that exists."""
    from edgecnn._version import __version__
    from edgecnn.analysis import check_labels_fit, fixed_input_shape
    from edgecnn.data import split_data, val_note
    from edgecnn.exporting.validate import check_finite_weights
    from edgecnn.io import load

    def checkpoint(data_key: str) -> tuple[str, Checkpoint, Optional[dict]]:
        key = "-".join([sha[:16], recipe_hash(rec), data_key, str(rec["seed"]), __version__])
        ck = Checkpoint(outdir, key=key)
        return key, ck, (ck.load() if resume else None)  # an untrusted checkpoint is refused here

    by_spec = _by_spec(data, val)
    if by_spec:  # checked before anything heavy runs
        key, ck, saved = checkpoint(_data_key(data, None, val=val))
    working = load(model, input_shape=input_shape, custom_objects=custom_objects, trust_model=trust_model)
    check_finite_weights(working)
    shape = fixed_input_shape(working)
    heldout = None
    if data is not None:
        heldout = split_data(data, input_shape=shape, seed=int(rec["seed"]), eval_on_train=eval_on_train, val=val)
        for part in (heldout.train, heldout.test):
            check_labels_fit(working, part.y, where=str(part.source))
        labels = labels or (list(heldout.class_names) if heldout.class_names else None)
    working, bn_info = _repair(working, heldout)
    if not by_spec:  # arrays: keyed on a hash of the split's samples
        key, ck, saved = checkpoint(_data_key(data, heldout, val=val))
    ctx = Context(source=source, name=name, outdir=outdir, recipe=rec, target=TARGETS[rec["target"]],
                  data_spec=None if data is None else (str(data) if isinstance(data, (str, Path)) else heldout.source),
                  key=key, quiet=quiet, original=working, heldout=heldout, labels=labels)
    ctx.state["command"] = command
    ctx.state["original_batchnorm"] = bn_info
    workers.note(ctx)
    if val_note(heldout):
        ctx.note(val_note(heldout))
    if bn_info and bn_info["stale"]:
        from edgecnn.training import stale_note

        ctx.note(stale_note(bn_info) + f" (held-out: {100 * bn_info['test_accuracy_as_given']:.2f}% as given)")
    if on_stage is not None:
        ctx.progress = lambda text, done, total, _stage=on_stage: _stage(ctx.current, f"progress {done}/{total} {text}")
    finished: list[str] = []
    attempt = 0
    if saved is not None:
        ctx.restore(saved["ctx"])
        finished, attempt = list(saved["finished"]), int(saved["attempt"])
        if ck.model_path is not None:  # verified: inside .edgecnn, with the sha256 recorded when it was written
            ctx.model = load(str(ck.model_path))
        ctx.note(f"resumed after stage '{finished[-1]}'" if finished else "resumed")
    else:
        if resume and (outdir / CHECKPOINT_DIR).exists():
            ctx.note("--resume: the checkpoint was made from a different input, recipe, data or seed; started afresh")
        ck.clear()
    backoffs: list[str] = list(ctx.state.get("backoffs", []))
    budget_failure: Optional[str] = ctx.state.get("budget_failure")
    names = [n for n, _ in STAGES]
    i = 0
    while i < len(STAGES):
        stage_name, fn = STAGES[i]
        if workers.stops_before(stage_name, names):  # a non-chief worker: the chief exports and reports
            return CompressReport(outdir=outdir, report=workers.report(ctx))
        if stage_name in finished:
            i += 1
            continue
        record = StageRecord(stage_name, attempt=attempt)
        ctx.current = stage_name
        if on_stage:
            on_stage(stage_name, "start")
        t0 = time.perf_counter()
        try:
            fn(ctx, record)
        except (ValidationError, S.BudgetExceeded) as exc:  # undo the least valuable change and go back
            missed_floor = isinstance(exc, ValidationError)  # an artifact missed its mode's validation floor
            if not missed_floor:
                record.seconds = time.perf_counter() - t0
                ctx.stages.append(record)
            allowed = int(rec["plan"]["max_backoff"])
            undone = S.back_off(ctx) if attempt < allowed else None
            if undone is None and allowed > 0:  # back-off spent: the plain conversion, once (max_backoff 0: off)
                undone = S.fall_back(ctx)
            if undone is not None:
                attempt += 1
                backoffs.append(f"attempt {attempt}: {exc}; {undone}")
                ctx.state["backoffs"] = backoffs
                finished = names[: names.index(RETRY_FROM)]
                ck.save({"finished": finished, "attempt": attempt, "ctx": ctx.as_state()}, model=None)
                if on_stage:
                    on_stage(stage_name, _backoff_status(exc, undone, attempt))
                i = names.index(RETRY_FROM)
                continue
            if missed_floor:
                raise ValidationError(f"{exc}; {VALIDATION_HINT}") from None
            budget_failure = (f"{exc}; no change left to undo" if attempt == 0 or not backoffs else
                              f"{exc} after {attempt} back-off(s)") + "; " + COMPRESS_HINT
            ctx.state["budget_failure"] = budget_failure
            record.status = "failed"
        check_stage(ctx, stage_name)
        record.seconds = round(time.perf_counter() - t0, 3)
        signals.check()  # a Ctrl-C that a library swallowed mid-stage: this stage is not checkpointed
        if record not in ctx.stages:
            ctx.stages.append(record)
        finished.append(stage_name)
        ck.save({"finished": finished, "attempt": attempt, "ctx": ctx.as_state()},
                model=ctx.model if stage_name in ("rewrite", "prune", "finetune") else None)
        if on_stage:
            on_stage(stage_name, record.status)
        i += 1
    return _finish(ctx, backoffs=backoffs, budget_failure=budget_failure)


def _backoff_status(exc: BaseException, undone: str, attempt: int) -> str:
    """The progress line of a back-off: ``failed: <why>; back-off N: undid <change>, again from rewrite``."""
    return f"failed: {exc}; back-off {attempt}: {undone}, again from {RETRY_FROM}"


def _finish(ctx: Context, *, backoffs: list[str], budget_failure: Optional[str]) -> CompressReport:
    """Move the staged artifacts into OUTDIR, save the compressed Keras model, write the reports."""
    import json

    from edgecnn.files import strict_json, write_atomic
    from edgecnn.io import save
    from edgecnn.pipeline import summary

    t0 = time.perf_counter()
    out = ctx.outdir
    artifacts = []
    for a in ctx.state["export"]["artifacts"]:  # paths inside .edgecnn/staging (checked on --resume)
        src = Path(a["path"])
        dst = out / src.name
        write_atomic(dst, src.read_bytes())  # copied, so the checkpoint stays whole until the run is done
        artifacts.append({**a, "path": str(dst)})
    staging = S.staging(ctx)
    for extra in ("labels.txt", "MODEL_CARD.md", "export.json"):
        if (staging / extra).is_file() and not (staging / extra).is_symlink():
            write_atomic(out / extra, (staging / extra).read_bytes())
    model_path = out / f"{ctx.name}.compressed.h5"
    save(ctx.model, model_path)
    original_acc = ctx.state["original"]["accuracy"]
    budget = {"max_accuracy_drop": float(ctx.recipe["max_accuracy_drop"]), "backoffs": backoffs,
              "met": None if original_acc is None else budget_failure is None, "why": budget_failure}
    chosen = [c["id"] for c in ctx.state.get("plan", {}).get("candidates", []) if c["chosen"]]
    ran = json.loads(json.dumps(ctx.recipe))
    ran["plan"]["fixed"] = chosen
    ctx.stages.append(StageRecord("report", seconds=0.0, changes=["report.json", "report.html", "recipe.toml"]))
    report = summary.build(ctx, artifacts=artifacts, model_path=str(model_path), budget=budget)
    report["recipe"] = ran
    ctx.stages[-1].seconds = round(time.perf_counter() - t0, 3)
    report["stages"][-1]["seconds"] = ctx.stages[-1].seconds
    write_atomic(out / "recipe.toml", "# edgecnn compress: the recipe as run; `edgecnn compress MODEL --recipe "
                 "THIS_FILE` reproduces the plan\n" + dumps(ran))
    write_atomic(out / "report.json", strict_json(report) + "\n")
    write_atomic(out / "report.html", summary.to_html(report))
    Checkpoint(out, key="").clear()
    return CompressReport(outdir=out, report=report)
