"""The files a phone app needs beside the model: ``labels.txt`` and a short ``MODEL_CARD.md``.

Both are written to a temporary name in the output folder and renamed when complete, so a reader never
sees half a file.

Example:
    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> out = tmp.name
    >>> write_labels(out, ["cat", "dog"]).read_text()
    'cat\\ndog\\n'
    >>> card = write_model_card(out, name="pets", artifacts=[], input_shape=(32, 32, 3), input_mean=[127.5],
    ...                         input_std=[127.5], labels=["cat", "dog"], accuracy=0.91, source="pets.h5",
    ...                         command="edgecnn export pets.h5")
    >>> card.name, "x = (pixel - mean) / std" in card.read_text()
    ('MODEL_CARD.md', True)
    >>> tmp.cleanup()
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from edgecnn.errors import EdgecnnError
from edgecnn.files import prepare_outdir, write_atomic

LABELS_NAME = "labels.txt"
CARD_NAME = "MODEL_CARD.md"


def _check_labels(labels: Sequence[str]) -> list[str]:
    labels = list(labels)
    if not labels:
        raise EdgecnnError("labels: Expected at least one label. Received: an empty list")
    bad = [l for l in labels if not isinstance(l, str) or not l.strip() or "\n" in l or "\r" in l]
    if bad:
        raise EdgecnnError(f"labels: Expected non-empty strings without line breaks. Received: {bad[:3]!r}")
    return labels


def write_labels(outdir: str | os.PathLike, labels: Sequence[str]) -> Path:
    """Write ``OUTDIR/labels.txt``: one label per line in output order, UTF-8, ending with a newline.

    Raises:
        EdgecnnError: no labels, or a label that is empty or has a line break.
        InputFileError: ``outdir`` is a file.
    """
    labels = _check_labels(labels)
    return write_atomic(prepare_outdir(outdir) / LABELS_NAME, "\n".join(labels) + "\n")


def _num(value: Any, fmt: str = ".4g") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return format(value, fmt) if isinstance(value, (int, float)) else str(value)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _size(n: Any) -> str:
    if not isinstance(n, (int, float)) or isinstance(n, bool):
        return "n/a"
    human = f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.2f} MiB"
    return f"{human} ({int(n)} B)"


def _artifact_rows(artifacts: list[dict]) -> list[str]:
    rows = ["| file | format | quantization | I/O | size | sha256 |", "| --- | --- | --- | --- | --- | --- |"]
    for a in artifacts:
        rows.append(
            f"| `{_cell(Path(str(a.get('path', '?'))).name)}` | {_cell(a.get('format', 'n/a'))} "
            f"| {_cell(a.get('quantization', 'n/a'))} | {_cell(a.get('io', 'n/a'))} "
            f"| {_size(a.get('size_bytes'))} | `{_cell(a.get('sha256', 'n/a'))}` |"
        )
    return rows


def _validation_rows(artifacts: list[dict]) -> list[str]:
    rows = ["| file | runtime | samples | max abs diff | mean abs diff | max rel diff | top-1 agreement "
            "| accuracy | reference accuracy | passed |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    problems = []
    for a in artifacts:
        v = a.get("validation") or {}
        name = Path(str(a.get("path", "?"))).name
        rows.append(
            f"| `{_cell(name)}` | {_cell(v.get('runtime', 'n/a'))} | {_num(v.get('samples'))} "
            f"| {_num(v.get('max_abs_diff'))} | {_num(v.get('mean_abs_diff'))} | {_num(v.get('max_rel_diff'))} "
            f"| {_pct(v.get('top1_agreement'))} | {_pct(v.get('accuracy'))} | {_pct(v.get('reference_accuracy'))} "
            f"| {_num(v.get('passed'))} |"
        )
        problems += [f"- `{name}`: {' '.join(str(p).split())}" for p in v.get("problems") or []]
    return rows + ([""] + ["Problems found:"] + problems if problems else [])


def write_model_card(outdir: str | os.PathLike, *, name: str, artifacts: list[dict], input_shape: Sequence[int],
                     input_mean: Sequence[float], input_std: Sequence[float], labels: Sequence[str] | None,
                     accuracy: float | None, source: str, command: str) -> Path:
    """Write ``OUTDIR/MODEL_CARD.md``: inputs, outputs, preprocessing, each artifact's numbers, provenance.

    Args:
        name: model name (the title).
        artifacts: ``export.json`` artifact dicts (path, format, quantization, size_bytes, sha256, io, validation).
        input_shape: model input shape without the batch axis, e.g. ``(224, 224, 3)`` (a leading batch is shown as is).
        input_mean, input_std: the app's normalization ``(pixel - mean) / std`` of 0..255 pixels.
        labels: class names in output order, or None.
        accuracy: accuracy of the source model on the labeled data, or None when not measured.
        source: where the model came from (a path); command: the command line that produced the bundle.

    Raises:
        InputFileError: ``outdir`` is a file.
    """
    shape = [int(d) for d in input_shape]
    full = shape if len(shape) == 4 else [1, *shape]
    image = len(full) == 4
    channels = full[-1]
    kind = {3: "RGB image", 1: "grayscale image"}.get(channels, f"{channels}-channel tensor") if image else "tensor"
    int_io = sorted({str(a.get("io")) for a in artifacts if a.get("io") not in (None, "float")})
    mean = ", ".join(_num(float(m)) for m in input_mean)
    std = ", ".join(_num(float(s)) for s in input_std)
    lines = [
        f"# {name}",
        "",
        f"Made for on-device inference by edgecnn from `{_cell(source)}`.",
        "",
        "## Input",
        "",
        f"One {kind}, shape `{full}`" + (" (batch, height, width, channels)" if image else "") + ", float32"
        + (f" (or {', '.join(int_io)} for the integer-I/O artifacts)" if int_io else "") + ".",
        "",
        "## Preprocessing",
        "",
        (f"Resize to {full[2]}x{full[1]} (width x height), take pixel values 0..255 per channel, then "
         if image else "Take the raw values, then ")
        + f"`x = (pixel - mean) / std` with mean = [{mean}] and std = [{std}] (one value applies to every channel).",
    ]
    if int_io:
        lines += ["", "For an integer-I/O artifact, quantize `x` with the input tensor's scale and zero point, "
                  "`q = round(x / scale) + zero_point`, and dequantize the output, `y = scale * (q - zero_point)`."]
    lines += ["", "## Output", ""]
    if labels:
        shown = ", ".join(f"`{_cell(l)}`" for l in list(labels)[:20]) + (" ..." if len(labels) > 20 else "")
        lines += [f"One score per class, {len(labels)} classes in the order of `{LABELS_NAME}` (also packed in "
                  f"each .tflite's metadata); the top-1 class is the argmax. Classes: {shown}."]
    else:
        lines += ["The model's output tensor(s), unchanged; no labels were given."]
    lines += ["", "## Accuracy", ""]
    measured = [a for a in artifacts if (a.get("validation") or {}).get("accuracy") is not None]
    if accuracy is None and not measured:
        lines.append("Not measured: no labeled data was given. The artifacts were compared with the source model only.")
    else:
        lines.append(f"- source model: {_pct(accuracy)}" if accuracy is not None else "- source model: not measured")
        lines += [f"- `{_cell(Path(str(a.get('path'))).name)}`: {_pct(a['validation']['accuracy'])}" for a in measured]
    lines += ["", "## Artifacts", "", *_artifact_rows(artifacts), "", "## Validation", "",
              "Each artifact was run on its runtime and compared with the source model on the same inputs.", "",
              *_validation_rows(artifacts), "", "## How it was produced", "", "```", command, "```", ""]
    return write_atomic(prepare_outdir(outdir) / CARD_NAME, "\n".join(lines))
