"""Export to TFLite and ONNX, validated on LiteRT and ONNX Runtime; export.json; refusals."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import edgecnn
from edgecnn.errors import DataError, EdgecnnError, InputFileError
from edgecnn.exporting import FORMATS, export
from edgecnn.exporting.validate import TOLERANCES, compare, validate_artifact
from edgecnn.runtimes.keras import keras_outputs
from edgecnn.exporting.quantize import QuantMode, SyntheticCalibrationWarning

from conftest import MODELS, small_cnn

FIELDS = {"path", "format", "quantization", "size_bytes", "sha256", "validation"}


@pytest.fixture(scope="module")
def working(keras3):
    return edgecnn.load(small_cnn(keras3))


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("quantize", ["none", "fp16", "dynamic", "int8"])
def test_every_mode_exports_to_both_formats_and_validates(working, tmp_path, quantize):
    with pytest.warns(SyntheticCalibrationWarning) if quantize == "int8" else _nothing():
        report = export(working, outdir=tmp_path, formats="all", quantize=quantize)
    assert [a.format for a in report.artifacts] == ["tflite", "onnx"]
    manifest = json.loads((tmp_path / "export.json").read_text())
    assert len(manifest["artifacts"]) == 2
    for a in manifest["artifacts"]:
        assert FIELDS <= set(a) and (tmp_path / a["path"]).stat().st_size == a["size_bytes"] and "/" not in a["path"]
        v = a["validation"]
        assert v["passed"] and v["samples"] > 0 and v["top1_agreement"] is not None
        if quantize == "none":
            assert v["max_rel_diff"] <= 1e-4
    if quantize == "int8":
        assert manifest["calibration"]["synthetic"] is True
    assert _no_temp_files(tmp_path)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_int8_io_int8(working, tmp_path):
    report = export(working, outdir=tmp_path, formats="tflite", quantize="int8", io="int8")
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=report.artifacts[0].path)
    assert interp.get_input_details()[0]["dtype"] == np.int8
    assert interp.get_output_details()[0]["dtype"] == np.int8
    assert report.artifacts[0].validation["top1_agreement"] >= 0.8


def test_a_float_artifact_that_does_not_match_is_an_error(working, keras3, tmp_path):
    other = edgecnn.load(small_cnn(keras3, name="other"))
    other.set_weights([w * 1.5 for w in other.get_weights()])
    wrong = FORMATS["tflite"].convert(other, mode=QuantMode.NONE,
                                      calibration=None, io="float", opset=17)
    x = np.random.default_rng(0).random((8, 16, 16, 3), dtype=np.float32)
    v = validate_artifact(FORMATS["tflite"], wrong, tmp_path / "m.tflite", x, None, keras_outputs(working, x),
                          tolerance=TOLERANCES["none"])
    assert not v.passed and "max relative difference" in v.problems[0]
    assert list(tmp_path.iterdir()) == []


def test_compare_collects_shape_problems():
    v = compare([np.zeros((2, 3)), np.zeros((2, 4))], [np.zeros((2, 3))], exact=True)
    assert not v.passed and len(v.problems) >= 1


@pytest.mark.parametrize(
    "kwargs, error, fragment",
    [
        ({"formats": "coreml"}, EdgecnnError, "unknown export format"),
        ({"quantize": "int4"}, EdgecnnError, "unknown quantization"),
        ({"quantize": "fp16", "io": "int8"}, EdgecnnError, "needs full-integer"),
        ({"formats": "onnx", "quantize": "int8", "io": "int8"}, EdgecnnError, "not available for onnx"),
    ],
)
def test_bad_options(working, tmp_path, kwargs, error, fragment):
    with pytest.raises(error, match=fragment):
        export(working, outdir=tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists() or _no_temp_files(tmp_path / "out")


def test_outdir_that_is_a_file(working, tmp_path):
    (tmp_path / "taken").write_text("x")
    with pytest.raises(InputFileError, match="is a file"):
        export(working, outdir=tmp_path / "taken")


def test_int8_io_on_integer_input_model_is_refused(keras3, tmp_path):
    inp = keras3.Input((8, 8, 1), dtype="int32")
    x = keras3.layers.Rescaling(1 / 255)(inp)
    model = keras3.Model(inp, keras3.layers.Conv2D(2, 3)(x))
    with pytest.raises(EdgecnnError, match="float input"):
        export(edgecnn.load(model), outdir=tmp_path, quantize="int8", io="int8")


def test_corrupt_calibration_file(working, tmp_path):
    bad = tmp_path / "calib.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError):
        export(working, outdir=tmp_path / "out", quantize="int8", data=str(bad))
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.tflite"))


def test_trained_mnist_cnn_int8_acceptance(tmp_path):
    """int8 TFLite <= 0.27x the fp32 size, <= 0.5 points accuracy loss; ONNX int8 likewise (held-out digits)."""
    working = edgecnn.load(MODELS / "mnist_cnn.h5")
    fp32 = export(working, outdir=tmp_path, formats="all", quantize="none", data="digits")
    int8 = export(working, outdir=tmp_path, formats="all", quantize="int8", data="digits")
    sizes = {(a.format, a.quantization): a for a in fp32.artifacts + int8.artifacts}
    assert sizes["tflite", "int8"].size_bytes <= 0.27 * sizes["tflite", "none"].size_bytes
    for fmt in ("tflite", "onnx"):
        v32, v8 = sizes[fmt, "none"].validation, sizes[fmt, "int8"].validation
        assert v32["max_rel_diff"] <= 1e-4 and v32["samples"] == 360
        assert v8["accuracy"] >= v32["reference_accuracy"] - 0.005, (fmt, v8)
    manifest = json.loads((tmp_path / "export.json").read_text())
    assert len(manifest["artifacts"]) == 4


def test_cli_export_and_one_line_errors(tmp_path, capsys):
    from edgecnn.cli import main

    with pytest.raises(SystemExit) as info:
        main(["export", str(MODELS / "mnist_cnn.h5"), "-o", str(tmp_path / "o"), "--quantize", "dynamic",
              "--format", "all"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "mnist_cnn_dynamic.tflite" in out.replace("\n", "").replace(" ", "") or "tflite" in out
    for args, fragment in (
        (["--format", "coreml"], "unknown export format"),
        (["--quantize", "int4"], "'int4' is not one of 'none', 'fp16'"),  # a choice: --help lists them
        (["--quantize", "dynamic", "--io", "int8"], "needs full-integer"),
    ):
        with pytest.raises(SystemExit) as info:
            main(["export", str(MODELS / "mnist_cnn.h5"), "-o", str(tmp_path / "bad"), *args])
        err = capsys.readouterr().err
        assert info.value.code == 2 and err.count("\n") == 1 and fragment in err
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as info:
        main(["export", str(MODELS / "mnist_cnn.h5"), "-o", str(tmp_path / "file")])
    assert info.value.code == 2 and "is a file" in capsys.readouterr().err


def test_bundle_metadata_labels_and_model_card(tmp_path):
    from edgecnn.exporting.metadata import associated_files, read_metadata

    working = edgecnn.load(MODELS / "mnist_cnn.h5")
    report = export(working, outdir=tmp_path, formats="tflite", quantize="int8", data="digits", name="mnist_cnn")
    blob = Path(report.artifacts[0].path).read_bytes()
    meta = read_metadata(blob)
    assert meta["name"] == "mnist_cnn"
    assert associated_files(blob)["labels.txt"].decode().split() == [str(i) for i in range(10)]
    assert (tmp_path / "labels.txt").read_text().split() == [str(i) for i in range(10)]
    card = (tmp_path / "MODEL_CARD.md").read_text()
    assert "mnist_cnn_int8.tflite" in card
    assert report.artifacts[0].validation["accuracy"] >= 0.95


def test_accuracy_budget_is_recorded(tmp_path):
    working = edgecnn.load(MODELS / "mnist_cnn.h5")
    report = export(working, outdir=tmp_path, formats="tflite", quantize="int8", data="digits", max_accuracy_drop=1.0)
    b = json.loads((tmp_path / "export.json").read_text())["budget"]
    assert b["met"] is True and b["keras_accuracy"] - b["final_accuracy"] <= 0.01
    assert report.artifacts[0].validation["accuracy"] == pytest.approx(b["final_accuracy"], abs=1e-9)
    with pytest.raises(EdgecnnError, match="needs labelled data"):
        export(working, outdir=tmp_path / "x", quantize="int8", max_accuracy_drop=1.0)
    with pytest.raises(EdgecnnError, match="applies to int8"):
        export(working, outdir=tmp_path / "y", quantize="fp16", data="digits", max_accuracy_drop=1.0)


def test_cli_quantize_qat(tmp_path, capsys):
    from edgecnn.cli import main

    with pytest.raises(SystemExit) as info:
        main(["quantize", str(MODELS / "mnist_cnn.h5"), "--qat", "--data", "digits", "--epochs", "1",
              "-o", str(tmp_path)])
    assert info.value.code == 0
    manifest = json.loads((tmp_path / "export.json").read_text())
    (artifact,) = manifest["artifacts"]
    assert artifact["path"].endswith("mnist_cnn_qat_int8.tflite") and artifact["quantization"] == "int8"
    assert artifact["validation"]["accuracy"] >= 0.95
    assert "QAT: float" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["quantize", str(MODELS / "mnist_cnn.h5"), "--data", "digits", "-o", str(tmp_path / "n")])
    assert info.value.code == 2 and "Expected --qat" in capsys.readouterr().err
