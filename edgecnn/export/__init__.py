"""Export a working model to TFLite and ONNX, validate every artifact on its real runtime, record it.

One table, :data:`FORMATS`, drives option checks, conversion and validation. Each artifact is written to a
temporary name, run on its runtime (LiteRT for .tflite, ONNX Runtime for .onnx) against the Keras model,
and renamed only when it validates; ``OUTDIR/export.json`` lists every artifact with its numbers.

Example:
    >>> sorted(FORMATS), FORMATS["tflite"].runtime, FORMATS["onnx"].suffix
    (['onnx', 'tflite'], 'litert', '.onnx')
    >>> parse_formats("all")
    ['tflite', 'onnx']
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from edgecnn.errors import EdgecnnError, ValidationError
from edgecnn.files import prepare_outdir, write_atomic
from edgecnn.quantize import QuantMode, SyntheticCalibrationWarning, synthetic_calibration, warn_synthetic


def _tflite(model: Any, *, mode: QuantMode, calibration: Any, io: str, opset: int) -> bytes:
    from edgecnn.export.tflite import to_tflite

    return to_tflite(model, mode=mode, calibration=calibration, io=io)


def _onnx(model: Any, *, mode: QuantMode, calibration: Any, io: str, opset: int) -> bytes:
    from edgecnn.export.onnx import quantize_onnx, to_onnx

    return quantize_onnx(to_onnx(model, opset=opset), mode=mode, calibration=calibration)


@dataclass(frozen=True)
class ExportFormat:
    """One export target: file suffix, the runtime that validates it, its converter, what it supports."""

    name: str
    suffix: str
    runtime: str
    convert: Callable[..., bytes]
    io_types: tuple[str, ...]


FORMATS: dict[str, ExportFormat] = {
    "tflite": ExportFormat("tflite", ".tflite", "litert", _tflite, ("float", "int8", "uint8")),
    "onnx": ExportFormat("onnx", ".onnx", "onnxruntime", _onnx, ("float",)),
}


def parse_formats(value: str | list[str] | tuple[str, ...]) -> list[str]:
    """``"all"``, ``"tflite,onnx"`` or a list -> validated format names."""
    names = list(FORMATS) if value == "all" else (value.split(",") if isinstance(value, str) else list(value))
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise EdgecnnError(
            f"unknown export format {', '.join(unknown) or repr(value)}: Expected tflite, onnx or all. "
            f"Received: {value!r}"
        )
    return names


@dataclass
class Artifact:
    """One exported file and what its runtime showed."""

    path: str
    format: str
    quantization: str
    size_bytes: int
    sha256: str
    io: str
    validation: dict


@dataclass
class ExportReport:
    """What :func:`export` wrote."""

    outdir: str
    artifacts: list[Artifact] = field(default_factory=list)
    calibration: dict | None = None
    warnings: list[str] = field(default_factory=list)
    budget: dict | None = None
    data: dict | None = None

    def as_dict(self) -> dict:
        return {
            "outdir": self.outdir,
            "data": self.data,
            "calibration": self.calibration,
            "budget": self.budget,
            "warnings": self.warnings,
            "artifacts": [asdict(a) for a in self.artifacts],
        }


def _quiet(quiet: bool) -> Any:
    import contextlib

    from edgecnn._tf import muted

    return muted() if quiet else contextlib.nullcontext()


def _input_shape(model: Any) -> tuple[int, ...]:
    shape = tuple(model.inputs[0].shape)[1:]
    if any(d is None for d in shape):
        raise EdgecnnError(f"export needs a fixed input shape: Expected H,W,C. Received: {shape}; pass --input-shape")
    return tuple(int(d) for d in shape)


def _input_is_float(model: Any) -> bool:
    dtype = model.inputs[0].dtype
    return "float" in str(getattr(dtype, "name", dtype))


def _heldout(model: Any, data: Any, *, seed: int, eval_on_train: bool) -> Any:
    """The one held-out split of ``data`` (:func:`edgecnn.data.split_data`): calibration draws from its train
    split, validation and accuracy from its test split only."""
    if data is None:
        return None
    from edgecnn.data import split_data

    return split_data(data, input_shape=_input_shape(model), seed=seed, eval_on_train=eval_on_train)


def export(
    model: Any,
    *,
    outdir: str | Path,
    formats: Any = "tflite",
    quantize: str | QuantMode = "none",
    data: Any = None,
    io: str = "float",
    calibration_samples: int = 200,
    validation_samples: Optional[int] = None,
    opset: int = 17,
    seed: int = 0,
    name: str | None = None,
    ort_format: bool = False,
    quiet: bool = True,
    labels: list[str] | None = None,
    input_mean: list[float] | None = None,
    input_std: list[float] | None = None,
    description: str = "",
    version: str = "1",
    command: str = "",
    max_accuracy_drop: float | None = None,
    prebuilt: dict[str, bytes] | None = None,
    float_layers: Sequence[str] = (),
    min_agreement: Optional[float] = None,
    min_snr_db: Optional[float] = None,
    eval_on_train: bool = False,
    synthesized: Optional[tuple[np.ndarray, str]] = None,
) -> ExportReport:
    """Export ``model`` to each format, validate on the real runtime, write ``OUTDIR/export.json``.

    Args:
        model: a working model (from :func:`edgecnn.load`) or a graph-only SavedModel.
        outdir: folder for the artifacts (created; a file there is an error).
        formats: ``"tflite"``, ``"onnx"``, ``"all"`` or a list.
        quantize: ``none``, ``fp16``, ``dynamic``, ``int8`` or ``int16x8``.
        data: ``--data`` spec, a :class:`edgecnn.data.Dataset`, ``(x, y)``, a ``tf.data.Dataset``, a
            :class:`edgecnn.data.HeldOut`, or None (synthetic inputs in [0, 1)). It is split once: full-integer
            modes calibrate on the train split, every artifact is validated on the held-out test split.
        io: ``float``, or ``int8``/``uint8`` integer input/output tensors (TFLite int8 only).
        calibration_samples: representative samples for full-integer modes.
        validation_samples: at most this many test samples compare each artifact with the Keras model
            (None: all of them; their ids are in ``report.data``).
        opset: ONNX opset.
        ort_format: also convert each ONNX artifact to ONNX Runtime Mobile's .ort format (validated too).
        quiet: silence the converters' native prints on stdout/stderr.
        labels: class names (default: the data's class names); written to labels.txt and packed in the .tflite.
        input_mean, input_std: the normalization from raw pixels (0..255) to the model input; default
            mean 0, std 255 (the [0, 1] scaling edgecnn's data sources use).
        description, version: TFLite metadata fields; command: how it was produced, for MODEL_CARD.md.
        max_accuracy_drop: accuracy budget in points for TFLite int8 (needs labelled data): when plain int8
            misses it, the ops with the largest quantization error stay in float, fewest first
            (:func:`edgecnn.export.budget.int8_within_budget`); the outcome is in ``report.budget``.
        float_layers: Keras layer names kept in float in a TFLite int8 export (layers measured faster in
            float on the target); see :func:`edgecnn.export.budget.int8_with_float_layers`.
        prebuilt: artifacts already converted elsewhere (e.g. by quantization-aware training), by format
            name; they are validated against ``model`` and bundled like the others.
        min_agreement, min_snr_db: override the mode's validation floors
            (:data:`edgecnn.export.validate.TOLERANCES`).
        eval_on_train: data too small to hold out a test split is validated on its training samples
            (``report.data`` says so) instead of refused.
        synthesized: without ``data``, ``(inputs, description)`` synthesized from the model
            (:mod:`edgecnn.datafree`): full-integer modes calibrate on them and every artifact is validated on
            them instead of on uniform noise; reports say that this agreement was not measured on real data.

    Returns:
        ExportReport; its artifacts are also listed in ``OUTDIR/export.json`` (paths relative to OUTDIR).

    Raises:
        EdgecnnError on bad options; ValidationError when any artifact misses its mode's tolerance (every
        failure named in one message; then nothing is written).
    """
    names = parse_formats(formats)
    mode = QuantMode.parse(quantize)
    _check_counts(calibration_samples=calibration_samples, validation_samples=validation_samples, opset=opset)
    for n in names:
        if io not in FORMATS[n].io_types:
            raise EdgecnnError(
                f"--io {io} is not available for {n}: Expected one of {', '.join(FORMATS[n].io_types)}. Received: {io}"
            )
    if io != "float" and not _input_is_float(model):
        raise EdgecnnError(
            f"--io {io} quantizes a float input: Expected a model with a float input. "
            f"Received: input dtype {model.inputs[0].dtype}"
        )
    if max_accuracy_drop is not None and mode is not QuantMode.INT8:
        raise EdgecnnError(
            f"--max-accuracy-drop applies to int8: Expected --quantize int8. Received: --quantize {mode.value}"
        )
    from edgecnn.export.validate import TOLERANCES, check_finite_weights

    tolerance = TOLERANCES[mode.value].with_overrides(min_agreement=min_agreement, min_snr_db=min_snr_db)
    if calibration_samples is None or isinstance(calibration_samples, bool) or int(calibration_samples) < 1:
        raise EdgecnnError(f"calibration samples: Expected an integer >= 1. Received: {calibration_samples!r}")
    shape = _input_shape(model)
    if hasattr(model, "layers"):
        check_finite_weights(model)
    heldout = _heldout(model, data, seed=seed, eval_on_train=eval_on_train)
    calib_set, val_set = (heldout.train, heldout.test) if heldout is not None else (None, None)
    source = heldout.source if heldout is not None else "none"
    outdir = Path(outdir)
    created = not outdir.exists()
    report = ExportReport(outdir=str(outdir))
    calibration = None
    if mode.needs_calibration:
        if calib_set is not None:
            calibration = calib_set.x[:calibration_samples]
            report.calibration = {"source": source, "split": "train", "samples": int(len(calibration)),
                                  "synthetic": False}
        elif synthesized is not None:
            calibration = np.asarray(synthesized[0], np.float32)[:calibration_samples]
            report.calibration = {"source": synthesized[1], "samples": int(len(calibration)), "synthetic": True}
            report.warnings.append(f"calibrated on inputs {synthesized[1]}: accuracy is not measured on real data")
        else:
            calibration = synthetic_calibration(shape, samples=calibration_samples, seed=seed)
            report.calibration = {"source": "synthetic uniform [0, 1)", "samples": calibration_samples,
                                  "synthetic": True}
            report.warnings.append("calibrated on synthetic random inputs: accuracy is unverified")
            with warnings.catch_warnings():
                warnings.simplefilter("always", SyntheticCalibrationWarning)
                warn_synthetic(mode)
    if val_set is not None:
        x_val = val_set.x[:validation_samples]
        y_val = None if val_set.y is None else val_set.y[:validation_samples]
        report.data = {**heldout.describe(), "validated_samples": int(len(x_val)),
                       "validated_ids": list((val_set.ids or ())[:len(x_val)])}
    elif synthesized is not None:
        x_val, y_val = np.asarray(synthesized[0], np.float32)[:validation_samples], None
        report.data = {"source": synthesized[1], "validated_samples": int(len(x_val)),
                       "note": "no --data: artifacts were validated against Keras on inputs synthesized from the model; "
                               "their agreement is a proxy, not measured on real data"}
    else:
        x_val, y_val = synthetic_calibration(shape, samples=min(validation_samples or 256, 256), seed=seed + 1), None
        report.data = {"source": "synthetic uniform [0, 1)", "validated_samples": int(len(x_val)),
                       "note": "no --data: artifacts were validated against Keras on random inputs, which shows "
                               "that they compute the same function, not how accurate they are"}
    from edgecnn.export.validate import compare, keras_outputs

    if max_accuracy_drop is not None and y_val is None:
        raise EdgecnnError(
            "--max-accuracy-drop needs labelled data: Expected --data with labels (digits, a class folder, "
            f"or a .npz with y). Received: {source}"
        )
    reference = keras_outputs(model, x_val)
    stem = name or getattr(model, "name", "model")
    channels = shape[-1]
    mean = list(input_mean) if input_mean is not None else [0.0] * channels
    std = list(input_std) if input_std is not None else [255.0] * channels
    if labels is None and val_set is not None and val_set.class_names:
        labels = list(val_set.class_names)
    _check_label_range(y_val, reference, source)
    if labels is not None and reference[0].ndim == 2 and len(labels) != reference[0].shape[1]:
        raise EdgecnnError(
            f"labels do not fit the model output: Expected {reference[0].shape[1]} labels. Received: {len(labels)}"
        )
    problems: list[str] = []
    staged: list[tuple[Path, str, bytes, Any]] = []  # written only when every artifact validated
    for fmt_name in names:
        fmt = FORMATS[fmt_name]
        if prebuilt and fmt_name in prebuilt:
            data_bytes = prebuilt[fmt_name]
        elif fmt_name == "tflite" and max_accuracy_drop is not None:
            from edgecnn.export.budget import int8_within_budget

            with _quiet(quiet):
                result = int8_within_budget(model, calibration=calibration, x_val=x_val, y_val=y_val,
                                            max_accuracy_drop=max_accuracy_drop, io=io, float_layers=float_layers)
            data_bytes = result.tflite
            report.budget = {k: v for k, v in asdict(result).items() if k != "tflite"}
            if not result.met:
                report.warnings.append(result.message)
        elif fmt_name == "tflite" and float_layers and mode is QuantMode.INT8:
            from edgecnn.export.budget import int8_with_float_layers

            with _quiet(quiet):
                data_bytes = int8_with_float_layers(model, layers=float_layers, calibration=calibration, io=io)
        else:
            with _quiet(quiet):
                data_bytes = fmt.convert(model, mode=mode, calibration=calibration, io=io, opset=opset)
        if fmt_name == "tflite":
            from edgecnn.export.metadata import attach_metadata

            data_bytes = attach_metadata(
                data_bytes, name=stem, description=description or f"{stem} exported by edgecnn ({mode.value})",
                version=version, input_mean=mean, input_std=std, labels=labels,
            )
        prepare_outdir(outdir)
        final = outdir / f"{stem}_{mode.value}{'' if io == 'float' else '_io' + io}{fmt.suffix}"
        validation = _validate(fmt, data_bytes, final, x_val, y_val, reference, tolerance=tolerance,
                               compare=compare, inputs=report.data["source"])
        if not validation.passed:
            problems.append(f"{final.name}: {'; '.join(validation.problems)}")
            continue
        staged.append((final, fmt_name, data_bytes, validation))
        if fmt_name == "onnx" and ort_format:
            with _quiet(quiet):
                ort_bytes = _ort_bytes(data_bytes, final.name)
            ort_path = final.with_suffix(".ort")
            ort_val = _validate(ORT_FORMAT, ort_bytes, ort_path, x_val, y_val, reference, tolerance=tolerance,
                                compare=compare, inputs=report.data["source"])
            if not ort_val.passed:
                problems.append(f"{ort_path.name}: {'; '.join(ort_val.problems)}")
                continue
            staged.append((ort_path, "ort", ort_bytes, ort_val))
    if problems:
        if created and outdir.is_dir() and not any(outdir.iterdir()):
            outdir.rmdir()
        raise ValidationError(f"export did not validate ({tolerance.mode} tolerance): " + " | ".join(problems))
    for final, fmt_name, data_bytes, validation in staged:
        report.artifacts.append(_artifact(final, fmt_name, mode, io, data_bytes, validation))
    _write_all(outdir, [(final, data_bytes) for final, _, data_bytes, _ in staged],
               lambda: (_write_manifest(outdir, report), _write_bundle(
                   outdir, report, stem=stem, shape=shape, mean=mean, std=std, labels=labels,
                   source=str(getattr(model, "name", stem)), command=command)))
    return report


def _write_all(outdir: Path, pending: list[tuple[Path, bytes]], then: Callable[[], Any]) -> None:
    """Write the artifacts, then export.json and the bundle; if any write fails (a full disk), remove the
    files this call created, so no artifact is left without its export.json."""
    names = ("export.json", "labels.txt", "MODEL_CARD.md")
    new = [p for p, _ in pending if not p.exists()] + [outdir / n for n in names if not (outdir / n).exists()]
    try:
        for path, data in pending:
            write_atomic(path, data)
        then()
    except BaseException:
        for path in new:
            path.unlink(missing_ok=True)
        raise


def _check_counts(*, calibration_samples: Any, validation_samples: Any, opset: Any) -> None:
    from edgecnn.checks import check_number, check_optional

    check_number(calibration_samples, rule="count", name="calibration_samples (--calibration-samples)")
    check_optional(validation_samples, rule="count", name="validation_samples")
    check_number(opset, rule="opset", name="opset (--opset)")


def _check_label_range(y: Any, reference: list, source: str) -> None:
    """Labels the model's classes cannot produce would make every accuracy 0 and every budget pass."""
    if y is None or not len(y) or reference[0].ndim != 2 or reference[0].shape[1] < 2:
        return
    classes = int(reference[0].shape[1])
    low, high = int(np.min(y)), int(np.max(y))
    if low < 0 or high >= classes:
        from edgecnn.errors import DataError

        raise DataError(f"labels of {source} do not fit the model output: Expected class indices in "
                        f"[0, {classes - 1}]. Received: values in [{low}, {high}]")


ORT_FORMAT = ExportFormat("ort", ".ort", "onnxruntime", _onnx, ("float",))


def _artifact(path: Path, fmt: str, mode: QuantMode, io: str, data: bytes, validation: Any) -> Artifact:
    return Artifact(path=str(path), format=fmt, quantization=mode.value, size_bytes=len(data),
                    sha256=hashlib.sha256(data).hexdigest(), io=io, validation=validation.as_dict())


def _ort_bytes(onnx_bytes: bytes, name: str) -> bytes:
    from edgecnn.export.onnx import to_ort_format

    with tempfile.TemporaryDirectory(prefix="edgecnn-ort-") as tmp:
        onnx_path = Path(tmp) / name
        onnx_path.write_bytes(onnx_bytes)
        out = Path(tmp) / "ort"
        out.mkdir()
        return to_ort_format(onnx_path, out).read_bytes()


def _validate(fmt: ExportFormat, data: bytes, final: Path, x: np.ndarray, y: Any, reference: list, *,
              tolerance: Any, compare: Callable[..., Any], inputs: str = "") -> Any:
    """Write ``data`` to a temporary file beside ``final``, run it on its runtime, compare, delete the temp."""
    from edgecnn.runtimes import RUNTIMES

    from edgecnn.errors import OutputError
    from edgecnn.files import os_error_message

    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=fmt.suffix,
                                   dir=final.parent if final.parent.is_dir() else None)
    except OSError as exc:
        raise OutputError(os_error_message(exc, final)) from exc
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        except OSError as exc:  # a full disk: name the artifact, in one line
            raise OutputError(os_error_message(exc, final)) from exc
        try:
            session = RUNTIMES[fmt.runtime].load(tmp, threads=1)
            got = session.run(x)
        except EdgecnnError as exc:
            from edgecnn.export.validate import Validation

            return Validation(runtime=fmt.runtime, passed=False, problems=(f"does not run on {fmt.runtime}: {exc}",))
        validation = compare(reference, got, labels=y, tolerance=tolerance)
    finally:
        os.unlink(tmp)
    validation.runtime, validation.inputs = fmt.runtime, inputs
    return validation


def _write_bundle(outdir: Path, report: ExportReport, *, stem: str, shape: tuple, mean: list, std: list,
                  labels: list[str] | None, source: str, command: str) -> None:
    """labels.txt (when labels are known) and MODEL_CARD.md over every artifact listed in export.json."""
    from edgecnn.export.bundle import write_labels, write_model_card

    if labels:
        write_labels(outdir, labels)
    artifacts = [{**a, "path": Path(a["path"]).name} for a in report.as_dict()["artifacts"]]
    accuracies = [a["validation"].get("reference_accuracy") for a in artifacts]
    accuracy = next((a for a in accuracies if a is not None), None)
    write_model_card(outdir, name=stem, artifacts=artifacts, input_shape=shape, input_mean=mean, input_std=std,
                     labels=labels, accuracy=accuracy, source=source, command=command or "edgecnn.export(...)")


def _write_manifest(outdir: Path, report: ExportReport) -> None:
    """Merge this run's artifacts into OUTDIR/export.json (by path), atomically."""
    path = outdir / "export.json"
    previous: list[dict] = []
    if path.is_file():
        try:
            previous = json.loads(path.read_text()).get("artifacts", [])
        except (ValueError, AttributeError):
            previous = []
    from edgecnn.files import strict_json

    mine = [{**a, "path": Path(a["path"]).name} for a in report.as_dict()["artifacts"]]  # relative to OUTDIR
    current = {a["path"] for a in mine}
    merged = [a for a in previous if isinstance(a, dict) and isinstance(a.get("path"), str)
              and a["path"] not in current and "/" not in a["path"] and a["path"] not in ("", ".", "..")
              and (outdir / a["path"]).is_file()]
    doc = report.as_dict()
    doc["outdir"] = "."
    doc["artifacts"] = merged + mine
    write_atomic(path, strict_json(doc) + "\n")
