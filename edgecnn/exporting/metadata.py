"""TFLite model metadata in the standard format that Android's MetadataExtractor and the TFLite Support library read.

The metadata is a ``ModelMetadata`` flatbuffer (file identifier ``M001``, tflite-support's
``metadata_schema.fbs``) stored as one more model buffer named by ``Metadata(name="TFLITE_METADATA")``;
associated files (``labels.txt``) are a zip (stored, not deflated) appended to the model flatbuffer, with
offsets counted from the start of the ``.tflite`` file. The model itself is repacked unchanged otherwise, so
it loads and computes exactly as before.

The writer uses the ``flatbuffers`` builder directly (the tflite-support package pins protobuf<4); table
slots follow the field order of ``metadata_schema.fbs``, whose tables only ever grow at the end.

Example:
    >>> buf = build_metadata(name="digits", description="8x8 digits", version="1", input_shape=(1, 8, 8, 1),
    ...                      input_dtype="float32", input_mean=[0.0], input_std=[255.0], labels=["0", "1"],
    ...                      output_count=1)
    >>> bytes(buf[4:8])
    b'M001'
    >>> meta = parse_metadata(buf)
    >>> meta["name"], meta["min_parser_version"], meta["inputs"][0]["color_space"]
    ('digits', '1.0.0', 'GRAYSCALE')
    >>> meta["inputs"][0]["mean"], meta["inputs"][0]["std"], meta["inputs"][0]["max"]
    ([0.0], [255.0], [1.0])
    >>> meta["outputs"][0]["associated_files"][0]["name"], meta["outputs"][0]["associated_files"][0]["type"]
    ('labels.txt', 'TENSOR_AXIS_LABELS')
"""
from __future__ import annotations

import io
import math
import zipfile
from typing import Any, Sequence

import flatbuffers
import numpy as np
from flatbuffers.table import Table

from edgecnn.errors import EdgecnnError, InputFileError, UnsupportedModelError

METADATA_NAME = "TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"
MODEL_IDENTIFIER = b"TFL3"
LABELS_FILE = "labels.txt"
# Every field written here exists since metadata schema 1.0.0; a parser of that version understands it all.
MIN_PARSER_VERSION = "1.0.0"

# Field slots (the n-th field of each table in metadata_schema.fbs; a union takes two: type, then value).
_MODEL = {"name": 0, "description": 1, "version": 2, "subgraph_metadata": 3, "author": 4, "license": 5,
          "associated_files": 6, "min_parser_version": 7}
_SUBGRAPH = {"name": 0, "description": 1, "input_tensor_metadata": 2, "output_tensor_metadata": 3,
             "associated_files": 4}
_TENSOR = {"name": 0, "description": 1, "dimension_names": 2, "content": 3, "process_units": 4, "stats": 5,
           "associated_files": 6}
_CONTENT = {"properties_type": 0, "properties": 1, "range": 2}
_IMAGE = {"color_space": 0, "default_size": 1}
_PROCESS_UNIT = {"options_type": 0, "options": 1}
_NORMALIZATION = {"mean": 0, "std": 1}
_STATS = {"max": 0, "min": 1}
_FILE = {"name": 0, "description": 1, "type": 2, "locale": 3}

# Union members and enums, in schema order.
_CONTENT_PROPERTIES = ["NONE", "FeatureProperties", "ImageProperties", "BoundingBoxProperties"]
_PROCESS_UNIT_OPTIONS = ["NONE", "NormalizationOptions", "ScoreCalibrationOptions", "ScoreThresholdingOptions",
                         "BertTokenizerOptions", "SentencePieceTokenizerOptions", "RegexTokenizerOptions"]
_COLOR_SPACES = ["UNKNOWN", "RGB", "GRAYSCALE"]
_FILE_TYPES = ["UNKNOWN", "DESCRIPTIONS", "TENSOR_AXIS_LABELS", "TENSOR_VALUE_LABELS",
               "TENSOR_AXIS_SCORE_CALIBRATION", "VOCABULARY"]

# Value range of an integer input tensor (what the app feeds after quantizing).
_INT_RANGES = {"uint8": (0.0, 255.0), "int8": (-128.0, 127.0)}


# ---------------------------------------------------------------------------------------------- writing


def _floats(b: flatbuffers.Builder, values: Sequence[float]) -> int:
    return b.CreateNumpyVector(np.asarray(values, dtype="<f4"))


def _offsets(b: flatbuffers.Builder, offsets: Sequence[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def _table(b: flatbuffers.Builder, nfields: int, *, refs: dict[int, int] | None = None,
           bytes_: dict[int, int] | None = None) -> int:
    """A table with offset fields ``refs`` and unsigned-byte fields ``bytes_`` (slot -> value)."""
    b.StartObject(nfields)
    for slot, off in (refs or {}).items():
        b.PrependUOffsetTRelativeSlot(slot, off, 0)
    for slot, value in (bytes_ or {}).items():
        b.PrependUint8Slot(slot, value, 0)
    return b.EndObject()


def _union(b: flatbuffers.Builder, fields: dict[str, int], slot: str, members: list[str], member: str,
           value: int) -> int:
    """A table whose only field is the union ``slot``: ``value`` of type ``member`` (type slot, then value slot)."""
    return _table(b, len(fields), refs={fields[slot]: value}, bytes_={fields[slot] - 1: members.index(member)})


def _content(b: flatbuffers.Builder, color: str | None) -> int:
    """Content: ImageProperties(color_space) for an image, else empty FeatureProperties."""
    if color is None:
        return _union(b, _CONTENT, "properties", _CONTENT_PROPERTIES, "FeatureProperties", _table(b, 0))
    image = _table(b, len(_IMAGE), bytes_={_IMAGE["color_space"]: _COLOR_SPACES.index(color)})
    return _union(b, _CONTENT, "properties", _CONTENT_PROPERTIES, "ImageProperties", image)


def _input_stats(dtype: str, mean: list[float], std: list[float]) -> tuple[list[float], list[float]]:
    """Range of the input tensor: integer limits, or pixels 0..255 normalized by (x - mean) / std."""
    if dtype in _INT_RANGES:
        low, high = _INT_RANGES[dtype]
        return [low], [high]
    return [(0.0 - m) / s for m, s in zip(mean, std)], [(255.0 - m) / s for m, s in zip(mean, std)]


def _color_space(shape: Sequence[int]) -> str | None:
    """RGB for [N,]H,W,3, GRAYSCALE for [N,]H,W,1, None (not an image) otherwise."""
    return {3: "RGB", 1: "GRAYSCALE"}.get(int(shape[-1])) if len(shape) in (3, 4) else None


def _check_normalization(mean: list[float], std: list[float], channels: int) -> None:
    received = f"Received: input_mean={mean}, input_std={std}"
    if not (len(mean) == len(std) and len(mean) in (1, channels)):
        raise EdgecnnError(f"input normalization: Expected input_mean and input_std of equal length, "
                           f"1 or {channels} (channels). {received}")
    if not all(math.isfinite(v) for v in [*mean, *std]) or any(s == 0 for s in std):
        raise EdgecnnError(f"input normalization: Expected finite values and a nonzero std. {received}")


def build_metadata(*, name: str, description: str, version: str, input_shape: Sequence[int], input_dtype: str,
                   input_mean: Sequence[float], input_std: Sequence[float], labels: Sequence[str] | None,
                   output_count: int = 1, author: str = "edgecnn") -> bytearray:
    """The ``ModelMetadata`` flatbuffer (identifier ``M001``) for a one-input image model.

    Args:
        name, description, version, author: shown by metadata readers and used by Android codegen.
        input_shape: the input tensor shape, e.g. ``(1, 224, 224, 3)``; 3 channels -> RGB, 1 -> GRAYSCALE.
        input_dtype: ``float32``, ``uint8`` or ``int8`` (sets the input stats).
        input_mean, input_std: normalization ``(pixel - mean) / std`` of pixels 0..255, one value or one per channel.
        labels: class names of the single output (its ``labels.txt`` association), or None.
        output_count: number of output tensors (each gets one TensorMetadata).
    """
    mean, std = [float(v) for v in input_mean], [float(v) for v in input_std]
    _check_normalization(mean, std, int(input_shape[-1]) if len(input_shape) else 1)
    if labels is not None and output_count != 1:
        raise EdgecnnError(f"labels: Expected a model with one output to label. Received: {output_count} outputs")
    b = flatbuffers.Builder(1024)

    color = _color_space(input_shape)
    norm = _table(b, len(_NORMALIZATION), refs={_NORMALIZATION["mean"]: _floats(b, mean),
                                                _NORMALIZATION["std"]: _floats(b, std)})
    unit = _union(b, _PROCESS_UNIT, "options", _PROCESS_UNIT_OPTIONS, "NormalizationOptions", norm)
    low, high = _input_stats(input_dtype, mean, std)
    shape = "x".join(str(int(d)) for d in input_shape)
    input_md = _table(b, len(_TENSOR), refs={
        _TENSOR["name"]: b.CreateString("image" if color else "input"),
        _TENSOR["description"]: b.CreateString(
            f"Input {'image' if color else 'tensor'} {shape} {input_dtype}; feed (pixel - mean) / std."),
        _TENSOR["content"]: _content(b, color),
        _TENSOR["process_units"]: _offsets(b, [unit]),
        _TENSOR["stats"]: _table(b, len(_STATS), refs={_STATS["max"]: _floats(b, high),
                                                       _STATS["min"]: _floats(b, low)}),
    })

    outputs = []
    for i in range(output_count):
        name_i, text = ((f"output_{i}", f"Output {i}.") if labels is None else
                        ("probability", f"Scores of the {len(labels)} labels in {LABELS_FILE}, in order."))
        refs = {_TENSOR["name"]: b.CreateString(name_i), _TENSOR["description"]: b.CreateString(text),
                _TENSOR["content"]: _content(b, None)}
        if labels is not None:
            labels_md = _table(b, len(_FILE), refs={
                _FILE["name"]: b.CreateString(LABELS_FILE),
                _FILE["description"]: b.CreateString("Labels of the output classes, one per line."),
            }, bytes_={_FILE["type"]: _FILE_TYPES.index("TENSOR_AXIS_LABELS")})
            refs[_TENSOR["associated_files"]] = _offsets(b, [labels_md])
        outputs.append(_table(b, len(_TENSOR), refs=refs))

    subgraph = _table(b, len(_SUBGRAPH), refs={_SUBGRAPH["input_tensor_metadata"]: _offsets(b, [input_md]),
                                               _SUBGRAPH["output_tensor_metadata"]: _offsets(b, outputs)})
    root = _table(b, len(_MODEL), refs={
        _MODEL["name"]: b.CreateString(name),
        _MODEL["description"]: b.CreateString(description),
        _MODEL["version"]: b.CreateString(version),
        _MODEL["subgraph_metadata"]: _offsets(b, [subgraph]),
        _MODEL["author"]: b.CreateString(author),
        _MODEL["min_parser_version"]: b.CreateString(MIN_PARSER_VERSION),
    })
    b.Finish(root, file_identifier=METADATA_IDENTIFIER)
    return b.Output()


# ---------------------------------------------------------------------------------------------- reading


def _at(t: Table, slot: int) -> int:
    """Absolute position of field ``slot`` of ``t``, 0 when absent."""
    off = t.Offset(4 + 2 * slot)
    return off + t.Pos if off else 0


def _string(t: Table, slot: int) -> str | None:
    return t.String(_at(t, slot)).decode("utf-8") if _at(t, slot) else None


def _byte(t: Table, slot: int) -> int:
    return int(t.Get(flatbuffers.number_types.Uint8Flags, _at(t, slot))) if _at(t, slot) else 0


def _sub(t: Table, slot: int) -> Table | None:
    return Table(t.Bytes, t.Indirect(_at(t, slot))) if _at(t, slot) else None


def _vector(t: Table, slot: int) -> tuple[int, int]:
    """(position of the first element, length) of a vector field; (0, 0) when absent."""
    pos = _at(t, slot)
    return (pos + 4 + t.Get(flatbuffers.number_types.UOffsetTFlags, pos), t.VectorLen(pos - t.Pos)) if pos else (0, 0)


def _tables(t: Table | None, slot: int) -> list[Table]:
    start, n = _vector(t, slot) if t is not None else (0, 0)
    return [Table(t.Bytes, t.Indirect(start + 4 * i)) for i in range(n)]


def _float_list(t: Table, slot: int) -> list[float] | None:
    start, n = _vector(t, slot)
    return [float(v) for v in np.frombuffer(t.Bytes, "<f4", n, start)] if start else None


def _name(names: list[str], index: int) -> str:
    return names[index] if index < len(names) else f"UNKNOWN({index})"


def _read_tensor(t: Table) -> dict:
    out: dict[str, Any] = {"name": _string(t, _TENSOR["name"]), "description": _string(t, _TENSOR["description"]),
                           "content": None, "color_space": None, "mean": None, "std": None, "min": None, "max": None}
    content = _sub(t, _TENSOR["content"])
    if content is not None:
        out["content"] = _name(_CONTENT_PROPERTIES, _byte(content, _CONTENT["properties_type"]))
        props = _sub(content, _CONTENT["properties"])
        if out["content"] == "ImageProperties" and props is not None:
            out["color_space"] = _name(_COLOR_SPACES, _byte(props, _IMAGE["color_space"]))
    for unit in _tables(t, _TENSOR["process_units"]):
        options = _sub(unit, _PROCESS_UNIT["options"])
        if options and _name(_PROCESS_UNIT_OPTIONS, _byte(unit, _PROCESS_UNIT["options_type"])) == "NormalizationOptions":
            out["mean"] = _float_list(options, _NORMALIZATION["mean"])
            out["std"] = _float_list(options, _NORMALIZATION["std"])
    stats = _sub(t, _TENSOR["stats"])
    if stats is not None:
        out["min"], out["max"] = _float_list(stats, _STATS["min"]), _float_list(stats, _STATS["max"])
    out["associated_files"] = _read_files(t, _TENSOR["associated_files"])
    return out


def _read_files(t: Table, slot: int) -> list[dict]:
    return [{"name": _string(f, _FILE["name"]), "description": _string(f, _FILE["description"]),
             "type": _name(_FILE_TYPES, _byte(f, _FILE["type"])), "locale": _string(f, _FILE["locale"])}
            for f in _tables(t, slot)]


def parse_metadata(buf: bytes | bytearray) -> dict:
    """A ``ModelMetadata`` flatbuffer -> dict (model fields; ``inputs``/``outputs`` of the first subgraph)."""
    buf = bytes(buf)
    if len(buf) < 8 or buf[4:8] != METADATA_IDENTIFIER:
        raise InputFileError(
            f"TFLite metadata buffer: Expected file identifier {METADATA_IDENTIFIER.decode()}. "
            f"Received: {buf[4:8]!r}"
        )
    root = Table(buf, flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0))
    first = (_tables(root, _MODEL["subgraph_metadata"]) or [None])[0]
    return {
        "name": _string(root, _MODEL["name"]),
        "description": _string(root, _MODEL["description"]),
        "version": _string(root, _MODEL["version"]),
        "author": _string(root, _MODEL["author"]),
        "license": _string(root, _MODEL["license"]),
        "min_parser_version": _string(root, _MODEL["min_parser_version"]),
        "associated_files": _read_files(root, _MODEL["associated_files"]),
        "inputs": [_read_tensor(t) for t in _tables(first, _SUBGRAPH["input_tensor_metadata"])],
        "outputs": [_read_tensor(t) for t in _tables(first, _SUBGRAPH["output_tensor_metadata"])],
    }


# ---------------------------------------------------------------------------------------------- the model


def _schema():
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def _model(tflite: bytes) -> Any:
    fb = _schema()
    if not isinstance(tflite, (bytes, bytearray)) or len(tflite) < 8 or bytes(tflite[4:8]) != MODEL_IDENTIFIER:
        head = bytes(tflite[4:8]) if isinstance(tflite, (bytes, bytearray)) else type(tflite).__name__
        raise InputFileError(f"TFLite model: Expected flatbuffer bytes with identifier TFL3. Received: {head!r}")
    return fb.Model.GetRootAs(bytes(tflite), 0)


def _tensor_info(model: Any, index: int) -> tuple[list[int], str]:
    fb = _schema()
    names = {v: k.lower() for k, v in vars(fb.TensorType).items() if not k.startswith("_")}
    tensor = model.Subgraphs(0).Tensors(index)
    return [int(d) for d in tensor.ShapeAsNumpy()], names.get(tensor.Type(), str(tensor.Type()))


class _AlignedBuffer:
    """A model Buffer packed with its data on a 16-byte boundary (``force_align: 16`` in the TFLite schema)."""

    def __init__(self, buffer: Any):
        self.buffer = buffer

    def Pack(self, builder: flatbuffers.Builder) -> int:  # noqa: N802 (the object API's name)
        fb, data = _schema(), self.buffer.data
        off = None
        if data is not None:
            raw = np.asarray(data, dtype=np.uint8).tobytes()
            builder.StartVector(1, len(raw), 16)
            builder.head -= len(raw)
            builder.Bytes[builder.head:builder.head + len(raw)] = raw
            off = builder.EndVector()
        fb.BufferStart(builder)
        if off is not None:
            fb.BufferAddData(builder, off)
        fb.BufferAddOffset(builder, self.buffer.offset)
        fb.BufferAddSize(builder, self.buffer.size)
        return fb.BufferEnd(builder)


def _with_metadata_buffer(tflite: bytes, metadata: bytes) -> bytes:
    """Repack the model with ``metadata`` as the TFLITE_METADATA buffer (replacing an existing one)."""
    fb = _schema()
    model = fb.ModelT.InitFromObj(_model(tflite))
    if any(b.offset > 1 for b in model.buffers or []):
        raise UnsupportedModelError(
            "TFLite metadata: Expected a model whose weights are inside the flatbuffer. "
            "Received: buffers stored after it (offset/size), as written for models over 2 GB"
        )
    new = fb.BufferT()
    new.data = np.frombuffer(metadata, dtype=np.uint8)
    model.metadata = model.metadata or []
    model.buffers = model.buffers or []
    existing = [m for m in model.metadata if m.name.decode() == METADATA_NAME]
    if existing:
        model.buffers[existing[0].buffer] = new
    else:
        model.buffers.append(new)
        entry = fb.MetadataT()
        entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
        model.metadata.append(entry)
    model.buffers = [_AlignedBuffer(b) for b in model.buffers]
    builder = flatbuffers.Builder(len(tflite) + len(metadata) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=MODEL_IDENTIFIER)
    return bytes(builder.Output())


def _append_zip(model: bytes, files: dict[str, bytes]) -> bytes:
    """Append ``files`` as a stored zip whose offsets count from the start of ``model`` (what readers seek)."""
    out = io.BytesIO(model)
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, mode="a", compression=zipfile.ZIP_STORED) as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # reproducible bytes
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return out.getvalue()


def _check_labels(labels: Sequence[str], classes: int) -> None:
    bad = [l for l in labels if not isinstance(l, str) or not l.strip() or "\n" in l or "\r" in l]
    if bad:
        raise EdgecnnError(f"labels: Expected non-empty strings without line breaks. Received: {bad[:3]!r}")
    if len(labels) != classes:
        raise EdgecnnError(
            f"labels: Expected one label per output class ({classes}). Received: {len(labels)} labels"
        )


def attach_metadata(tflite: bytes, *, name: str, description: str, version: str, input_mean: list[float],
                    input_std: list[float], labels: list[str] | None, author: str = "edgecnn") -> bytes:
    """``tflite`` with standard TFLite metadata and, when ``labels`` is given, ``labels.txt`` packed inside.

    Any metadata and associated files already in ``tflite`` are replaced; tensors, operators and weights are
    kept as they are. The input shape and type come from the model; ``input_mean``/``input_std`` describe the
    app's preprocessing ``(pixel - mean) / std`` of 0..255 pixels, one value or one per channel.

    Returns:
        the new model bytes (the metadata flatbuffer as a model buffer, then the zip of associated files).

    Raises:
        InputFileError: ``tflite`` is not a TFLite flatbuffer.
        EdgecnnError: bad normalization, labels that do not match the output, or a model that is not one input.
    """
    model = _model(tflite)
    graph = model.Subgraphs(0)
    if graph.InputsLength() != 1:
        raise UnsupportedModelError(
            f"TFLite metadata: Expected a model with one input. Received: {graph.InputsLength()} inputs"
        )
    shape, dtype = _tensor_info(model, int(graph.Inputs(0)))
    if labels is not None:
        labels = list(labels)
        if graph.OutputsLength() == 1:  # build_metadata refuses labels for several outputs
            _check_labels(labels, _tensor_info(model, int(graph.Outputs(0)))[0][-1])
    meta = build_metadata(name=name, description=description, version=version, input_shape=shape,
                          input_dtype=dtype, input_mean=input_mean, input_std=input_std, labels=labels,
                          output_count=graph.OutputsLength(), author=author)
    out = _with_metadata_buffer(tflite, bytes(meta))
    if labels is not None:
        out = _append_zip(out, {LABELS_FILE: ("\n".join(labels) + "\n").encode("utf-8")})
    return out


def read_metadata(tflite: bytes) -> dict:
    """The TFLite metadata of a model as a dict, with each input's and output's ``shape`` and ``dtype`` added.

    Raises:
        InputFileError: not a TFLite model, or no ``TFLITE_METADATA`` in it.
    """
    model = _model(tflite)
    entries = {model.Metadata(i).Name().decode(): model.Metadata(i).Buffer() for i in range(model.MetadataLength())}
    if METADATA_NAME not in entries:
        raise InputFileError(f"TFLite metadata: Expected a {METADATA_NAME} entry. Received: metadata entries {list(entries)}")
    meta = parse_metadata(model.Buffers(entries[METADATA_NAME]).DataAsNumpy().tobytes())
    graph = model.Subgraphs(0)
    for key, count, index in (("inputs", graph.InputsLength(), graph.Inputs),
                              ("outputs", graph.OutputsLength(), graph.Outputs)):
        for i, tensor in enumerate(meta[key][:count]):
            tensor["shape"], tensor["dtype"] = _tensor_info(model, int(index(i)))
    meta["packed_files"] = sorted(associated_files(tflite))
    return meta


def associated_files(tflite: bytes) -> dict[str, bytes]:
    """Files packed in the zip appended to a ``.tflite`` (``{}`` when there is none)."""
    try:
        with zipfile.ZipFile(io.BytesIO(bytes(tflite))) as zf:
            return {info.filename: zf.read(info) for info in zf.infolist()}
    except (zipfile.BadZipFile, OSError, EOFError):
        return {}
