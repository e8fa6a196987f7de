"""Export a working model to TFLite and ONNX, validate every artifact on its real runtime, record it.

:func:`export` is a loop over the rows of :data:`edgecnn.exporting.formats.FORMATS`: each row builds its
artifact, finishes it (metadata), derives its companions (``.ort``), and is validated on the row's runtime
against the Keras model with the row's tolerance for the mode. Nothing is written unless every artifact
validates; then each is written to a temporary name and renamed, and ``OUTDIR/export.json`` lists them.

Example:
    >>> sorted(FORMATS), FORMATS["tflite"].runtime, FORMATS["onnx"].suffix
    (['onnx', 'tflite'], 'litert', '.onnx')
    >>> parse_formats("all")
    ['tflite', 'onnx']
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from edgecnn.errors import EdgecnnError, ValidationError
from edgecnn.exporting.formats import COMPANIONS, FORMATS, Built, ExportFormat, Metadata, Request
from edgecnn.exporting.quantize import QuantMode
from edgecnn.files import prepare_outdir

__all__ = ["Artifact", "ExportFormat", "ExportReport", "FORMATS", "export", "parse_formats"]


def parse_formats(value: str | list[str] | tuple[str, ...]) -> list[str]:
    """``"all"``, ``"tflite,onnx"`` or a list -> validated format names."""
    names = list(FORMATS) if value == "all" else (value.split(",") if isinstance(value, str) else list(value))
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise EdgecnnError(
            f"unknown export format {', '.join(unknown) or repr(value)}: Expected {', '.join(FORMATS)} or all. "
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
            (:func:`edgecnn.exporting.budget.int8_within_budget`); the outcome is in ``report.budget``.
        float_layers: Keras layer names kept in float in a TFLite int8 export (layers measured faster in
            float on the target); see :func:`edgecnn.exporting.budget.int8_with_float_layers`.
        prebuilt: artifacts already converted elsewhere (e.g. by quantization-aware training), by format
            name; they are validated against ``model`` and bundled like the others.
        min_agreement, min_snr_db: override the mode's validation floors
            (:data:`edgecnn.exporting.validate.TOLERANCES`).
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
    _check_options(model, names, mode=mode, io=io, max_accuracy_drop=max_accuracy_drop,
                   calibration_samples=calibration_samples, validation_samples=validation_samples, opset=opset)
    for n in names:  # overrides are checked before any conversion
        FORMATS[n].tolerance(mode).with_overrides(min_agreement=min_agreement, min_snr_db=min_snr_db)
    from edgecnn.exporting.samples import choose_samples
    from edgecnn.exporting.validate import check_finite_weights
    from edgecnn.runtimes.keras import keras_outputs

    shape = _input_shape(model)
    if hasattr(model, "layers"):
        check_finite_weights(model)
    samples = choose_samples(shape, mode=mode, heldout=_heldout(model, data, seed=seed, eval_on_train=eval_on_train),
                             synthesized=synthesized, seed=seed, calibration_samples=calibration_samples,
                             validation_samples=validation_samples)
    if max_accuracy_drop is not None and samples.y_val is None:
        raise EdgecnnError(
            "--max-accuracy-drop needs labelled data: Expected --data with labels (digits, a class folder, "
            f"or a .npz with y). Received: {samples.source}"
        )
    outdir = Path(outdir)
    created = not outdir.exists()
    report = ExportReport(outdir=str(outdir), calibration=samples.calibration_info, warnings=list(samples.warnings),
                          data=samples.data)
    reference = keras_outputs(model, samples.x_val)
    stem = name or getattr(model, "name", "model")
    channels = shape[-1]
    labels = labels if labels is not None else samples.class_names
    _check_label_range(samples.y_val, reference, samples.source)
    if labels is not None and reference[0].ndim == 2 and len(labels) != reference[0].shape[1]:
        raise EdgecnnError(
            f"labels do not fit the model output: Expected {reference[0].shape[1]} labels. Received: {len(labels)}"
        )
    meta = Metadata(name=stem, description=description or f"{stem} exported by edgecnn ({mode.value})",
                    version=version, mean=list(input_mean) if input_mean is not None else [0.0] * channels,
                    std=list(input_std) if input_std is not None else [255.0] * channels, labels=labels)
    request = Request(model=model, mode=mode, calibration=samples.calibration, io=io, opset=opset,
                      max_accuracy_drop=max_accuracy_drop, float_layers=tuple(float_layers),
                      x_val=samples.x_val, y_val=samples.y_val)
    wanted = {"ort": ort_format}
    problems: list[str] = []
    staged: list[tuple[Path, str, bytes, Any]] = []  # written only when every artifact validated
    for fmt in (FORMATS[n] for n in names):
        built = _build(fmt, request, prebuilt=prebuilt, quiet=quiet)
        if built.budget is not None:
            report.budget = built.budget
        report.warnings.extend(built.warnings)
        data_bytes = fmt.finish(built.data, meta) if fmt.finish is not None else built.data
        prepare_outdir(outdir)
        final = outdir / fmt.filename(stem, mode, io)
        rows = [(fmt, final, data_bytes)]
        for companion in (COMPANIONS[c] for c in fmt.companions if wanted.get(c)):
            with _quiet(quiet):
                rows.append((companion, final.with_suffix(companion.suffix), companion.derive(data_bytes, final.name)))
        for row, path, artifact in rows:
            validation = _check(row, artifact, path, samples, reference, mode=mode,
                                min_agreement=min_agreement, min_snr_db=min_snr_db)
            if not validation.passed:
                problems.append(f"{path.name}: {'; '.join(validation.problems)}")
                break
            staged.append((path, row.name, artifact, validation))
    if problems:
        if created and outdir.is_dir() and not any(outdir.iterdir()):
            outdir.rmdir()
        raise ValidationError(f"export did not validate ({mode.value} tolerance): " + " | ".join(problems))
    from edgecnn.exporting.manifest import write_outputs

    report.artifacts.extend(_artifact(path, row_name, mode, io, artifact, validation)
                            for path, row_name, artifact, validation in staged)
    write_outputs(outdir, [(path, artifact) for path, _, artifact, _ in staged], report, meta=meta, shape=shape,
                  source=str(getattr(model, "name", stem)), command=command)
    return report


def _build(fmt: ExportFormat, request: Request, *, prebuilt: Optional[dict[str, bytes]], quiet: bool) -> Built:
    """The row's artifact, or the one converted elsewhere (``prebuilt``, e.g. by quantization-aware training)."""
    if prebuilt and fmt.name in prebuilt:
        return Built(prebuilt[fmt.name])
    with _quiet(quiet):
        return fmt.make(request)


def _check(row: ExportFormat, artifact: bytes, path: Path, samples: Any, reference: list, *, mode: QuantMode,
           min_agreement: Optional[float], min_snr_db: Optional[float]) -> Any:
    from edgecnn.exporting.validate import validate_artifact

    tolerance = row.tolerance(mode).with_overrides(min_agreement=min_agreement, min_snr_db=min_snr_db)
    return validate_artifact(row, artifact, path, samples.x_val, samples.y_val, reference, tolerance=tolerance,
                             inputs=samples.data["source"])


def _check_options(model: Any, names: Sequence[str], *, mode: QuantMode, io: str, max_accuracy_drop: Any,
                   calibration_samples: Any, validation_samples: Any, opset: Any) -> None:
    """Every option checked before any conversion, with "Expected ... Received" messages."""
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


def _artifact(path: Path, fmt: str, mode: QuantMode, io: str, data: bytes, validation: Any) -> Artifact:
    return Artifact(path=str(path), format=fmt, quantization=mode.value, size_bytes=len(data),
                    sha256=hashlib.sha256(data).hexdigest(), io=io, validation=validation.as_dict())


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
