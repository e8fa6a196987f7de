"""The FORMATS table: one row per export format, carrying everything :func:`edgecnn.exporting.export` needs.

A row says how its artifact is built (``build``, by default the plain converter ``convert``), what is done to
the bytes afterwards (``finish``: TFLite metadata), which companion artifacts derive from it (``companions``:
ONNX Runtime Mobile's ``.ort`` from an ``.onnx``), which runtime validates it, and the validation
:class:`~edgecnn.exporting.validate.Tolerance` of each quantization mode. No caller tests a format by name.

Example:
    >>> sorted(FORMATS), FORMATS["tflite"].runtime, FORMATS["onnx"].suffix, FORMATS["onnx"].companions
    (['onnx', 'tflite'], 'litert', '.onnx', ('ort',))
    >>> FORMATS["tflite"].filename("m", QuantMode.INT8, "int8"), COMPANIONS["ort"].suffix
    ('m_int8_ioint8.tflite', '.ort')
    >>> FORMATS["onnx"].tolerance(QuantMode.FP16).min_agreement
    0.98
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from edgecnn.exporting.quantize import QuantMode


@dataclass(frozen=True)
class Request:
    """What a row's ``build`` gets: the model, the mode and the data chosen for this export."""

    model: Any
    mode: QuantMode
    calibration: Optional[np.ndarray]
    io: str = "float"
    opset: int = 17
    max_accuracy_drop: Optional[float] = None
    float_layers: Sequence[str] = ()
    x_val: Optional[np.ndarray] = None
    y_val: Optional[np.ndarray] = None


@dataclass(frozen=True)
class Built:
    """A built artifact: its bytes, and what an accuracy-budget search found (``budget``, or None)."""

    data: bytes
    budget: Optional[dict] = None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Metadata:
    """What ``finish`` may pack into an artifact (TFLite metadata): name, normalization, labels."""

    name: str
    description: str
    version: str
    mean: list[float]
    std: list[float]
    labels: Optional[list[str]] = None


@dataclass(frozen=True)
class ExportFormat:
    """One export format.

    Attributes:
        name, suffix: the format's name (``--formats``) and file suffix.
        runtime: the row of :data:`edgecnn.runtimes.RUNTIMES` that runs and validates it.
        convert: ``convert(model, *, mode, calibration, io, opset) -> bytes``, the plain converter.
        io_types: the input/output tensor types it can have (``--io``).
        build: ``build(row, request) -> Built`` when the format does more than convert (an accuracy budget,
            layers kept in float: only a ``build`` reads those fields of the request); None: :attr:`convert`
            alone.
        finish: ``finish(data, metadata) -> bytes`` after building (None: the bytes as built).
        companions: names of :data:`COMPANIONS` rows derived from this artifact when asked for.
        derive: for a companion row, ``derive(parent_bytes, parent_name) -> bytes``.
    """

    name: str
    suffix: str
    runtime: str
    convert: Callable[..., bytes]
    io_types: tuple[str, ...]
    build: Optional[Callable[["ExportFormat", Request], Built]] = None
    finish: Optional[Callable[[bytes, Metadata], bytes]] = None
    companions: tuple[str, ...] = ()
    derive: Optional[Callable[[bytes, str], bytes]] = None
    tolerances: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def make(self, request: Request) -> Built:
        """Build this format's artifact for ``request``."""
        if self.build is not None:
            return self.build(self, request)
        return Built(self.convert(request.model, mode=request.mode, calibration=request.calibration,
                                  io=request.io, opset=request.opset))

    def tolerance(self, mode: QuantMode) -> Any:
        """The validation floors an artifact of this format in ``mode`` must reach (a row may override the
        defaults of :data:`edgecnn.exporting.validate.TOLERANCES` in ``tolerances``)."""
        from edgecnn.exporting.validate import TOLERANCES

        return self.tolerances.get(mode.value, TOLERANCES[mode.value])

    def filename(self, stem: str, mode: QuantMode, io: str) -> str:
        """``{stem}_{mode}[_io{io}]{suffix}``."""
        return f"{stem}_{mode.value}{'' if io == 'float' else '_io' + io}{self.suffix}"


def _tflite(model: Any, *, mode: QuantMode, calibration: Any, io: str, opset: int) -> bytes:
    from edgecnn.exporting.tflite import to_tflite

    return to_tflite(model, mode=mode, calibration=calibration, io=io)


def _onnx(model: Any, *, mode: QuantMode, calibration: Any, io: str, opset: int) -> bytes:
    from edgecnn.exporting.onnx import quantize_onnx, to_onnx

    return quantize_onnx(to_onnx(model, opset=opset), mode=mode, calibration=calibration)


def _build_tflite(row: ExportFormat, r: Request) -> Built:
    """Plain conversion, or int8 within an accuracy budget, or int8 with named layers kept in float."""
    if r.max_accuracy_drop is not None:
        from dataclasses import asdict

        from edgecnn.exporting.budget import int8_within_budget

        result = int8_within_budget(r.model, calibration=r.calibration, x_val=r.x_val, y_val=r.y_val,
                                    max_accuracy_drop=r.max_accuracy_drop, io=r.io, float_layers=r.float_layers)
        budget = {k: v for k, v in asdict(result).items() if k != "tflite"}
        return Built(result.tflite, budget=budget, warnings=() if result.met else (result.message,))
    if r.float_layers and r.mode is QuantMode.INT8:
        from edgecnn.exporting.budget import int8_with_float_layers

        return Built(int8_with_float_layers(r.model, layers=r.float_layers, calibration=r.calibration, io=r.io))
    return Built(row.convert(r.model, mode=r.mode, calibration=r.calibration, io=r.io, opset=r.opset))


def _tflite_metadata(data: bytes, meta: Metadata) -> bytes:
    from edgecnn.exporting.metadata import attach_metadata

    return attach_metadata(data, name=meta.name, description=meta.description, version=meta.version,
                           input_mean=meta.mean, input_std=meta.std, labels=meta.labels)


def _ort_bytes(onnx_bytes: bytes, name: str) -> bytes:
    """ONNX Runtime Mobile's .ort flatbuffer of an .onnx artifact (converted in a private temporary folder)."""
    from edgecnn.exporting.onnx import to_ort_format

    with tempfile.TemporaryDirectory(prefix="edgecnn-ort-") as tmp:
        onnx_path = Path(tmp) / name
        onnx_path.write_bytes(onnx_bytes)
        out = Path(tmp) / "ort"
        out.mkdir()
        return to_ort_format(onnx_path, out).read_bytes()


FORMATS: dict[str, ExportFormat] = {
    "tflite": ExportFormat("tflite", ".tflite", "litert", _tflite, ("float", "int8", "uint8"),
                           build=_build_tflite, finish=_tflite_metadata),
    "onnx": ExportFormat("onnx", ".onnx", "onnxruntime", _onnx, ("float",), companions=("ort",)),
}

COMPANIONS: dict[str, ExportFormat] = {
    "ort": ExportFormat("ort", ".ort", "onnxruntime", _onnx, ("float",), derive=_ort_bytes),
}
