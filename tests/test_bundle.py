"""labels.txt and MODEL_CARD.md for phone apps."""
from __future__ import annotations

import pytest

from edgecnn.errors import EdgecnnError, InputFileError
from edgecnn.exporting.bundle import write_labels, write_model_card


def artifact(path, *, quantization, io="float", size=123456, accuracy=None, problems=(), passed=True):
    return {
        "path": str(path), "format": "tflite", "quantization": quantization, "size_bytes": size,
        "sha256": "0123456789abcdef" * 4, "io": io,
        "validation": {"max_abs_diff": 0.0123, "mean_abs_diff": 0.00045, "max_rel_diff": 0.5,
                       "top1_agreement": 0.994, "accuracy": accuracy, "reference_accuracy": 0.91,
                       "runtime": "litert", "samples": 500, "passed": passed, "problems": list(problems)},
    }


def card_kwargs(**over):
    kwargs = {"name": "pets", "artifacts": [], "input_shape": (32, 32, 3), "input_mean": [127.5, 127.5, 127.5],
              "input_std": [64.0, 64.0, 64.0], "labels": ["cat", "dog"], "accuracy": None,
              "source": "models/pets.h5", "command": "edgecnn export models/pets.h5 --quantize int8"}
    return {**kwargs, **over}


def test_labels_one_per_line_and_replaced_atomically(tmp_path):
    out = tmp_path / "bundle"
    path = write_labels(out, ["cat", "dog", "große Katze"])
    assert path == out / "labels.txt"
    assert path.read_bytes() == "cat\ndog\ngroße Katze\n".encode()
    write_labels(out, ["a", "b"])
    assert path.read_text().splitlines() == ["a", "b"]
    assert sorted(p.name for p in out.iterdir()) == ["labels.txt"]  # no temporary file left behind


@pytest.mark.parametrize("labels, expected", [
    ([], "Expected at least one label"),
    (["cat", "two\nlines"], "Expected non-empty strings without line breaks"),
    (["cat", "  "], "Expected non-empty strings without line breaks"),
])
def test_bad_labels(tmp_path, labels, expected):
    with pytest.raises(EdgecnnError, match=expected):
        write_labels(tmp_path, labels)
    assert not (tmp_path / "labels.txt").exists()


def test_outdir_that_is_a_file(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(InputFileError, match="Expected a folder"):
        write_labels(target, ["a"])
    with pytest.raises(InputFileError, match="Expected a folder"):
        write_model_card(target, **card_kwargs())


def test_model_card_lists_every_number(tmp_path):
    arts = [artifact(tmp_path / "pets_none.tflite", quantization="none", size=2 * 1024 * 1024, accuracy=0.91),
            artifact(tmp_path / "pets_int8_iouint8.tflite", quantization="int8", io="uint8", size=40960,
                     accuracy=0.905, problems=["top-1 | agreement 99.4% below 99.5%"], passed=False)]
    path = write_model_card(tmp_path, **card_kwargs(artifacts=arts, accuracy=0.91))
    text = path.read_text()
    assert path.name == "MODEL_CARD.md" and text.startswith("# pets\n")
    for expected in [
        "`models/pets.h5`", "`[1, 32, 32, 3]`", "RGB image", "or uint8 for the integer-I/O artifacts",
        "mean = [127.5, 127.5, 127.5] and std = [64, 64, 64]", "q = round(x / scale) + zero_point",
        "2 classes", "`cat`, `dog`", "- source model: 91.00%", "- `pets_int8_iouint8.tflite`: 90.50%",
        "| `pets_none.tflite` | tflite | none | float | 2.00 MiB (2097152 B) | `" + "0123456789abcdef" * 4 + "` |",
        "| `pets_int8_iouint8.tflite` | tflite | int8 | uint8 | 40.0 KiB (40960 B) |",
        "| litert | 500 | 0.0123 | 0.00045 | 0.5 | 99.40% | 90.50% | 91.00% | no |",
        "- `pets_int8_iouint8.tflite`: top-1 | agreement 99.4% below 99.5%",
        "```\nedgecnn export models/pets.h5 --quantize int8\n```",
    ]:
        assert expected in text, expected
    assert str(tmp_path) not in text  # file names only, not this machine's paths
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MODEL_CARD.md"]


def test_model_card_without_accuracy_labels_or_integer_io(tmp_path):
    arts = [artifact(tmp_path / "gray_fp16.tflite", quantization="fp16")]
    text = write_model_card(tmp_path, **card_kwargs(artifacts=arts, input_shape=(28, 28, 1), input_mean=[0.0],
                                                    input_std=[255.0], labels=None)).read_text()
    assert "Not measured: no labeled data was given." in text
    assert "grayscale image, shape `[1, 28, 28, 1]`" in text and "integer-I/O" not in text
    assert "no labels were given" in text
    assert "| n/a | 91.00% | yes |" in text  # artifact accuracy unknown, reference known
