"""edgecnn rewrite: the table, the saved model, and bad input (one line, exit 2, input unchanged, no output)."""
from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest

from edgecnn.cli import main
from tests.conftest import MODELS


@pytest.fixture()
def mnist(tmp_path):
    path = tmp_path / "mnist_cnn.h5"
    shutil.copy(MODELS / "mnist_cnn.h5", path)
    return path


def fingerprint(path):
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def run(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def test_rewrite_writes_a_model_and_prints_the_table(mnist, tmp_path, capsys):
    import edgecnn

    out = tmp_path / "sep.keras"
    code, stdout, _ = run(["rewrite", str(mnist), "--to", "separable", "-o", str(out)], capsys)
    assert code in (0, None)
    assert "conv2" in stdout and "7.9x" in stdout and "accuracy was neither recovered" in stdout.replace("\n", " ")
    loaded = edgecnn.load(out)
    assert [type(l).__name__ for l in loaded.layers][3:5] == ["DepthwiseConv2D", "Conv2D"]


@pytest.mark.parametrize("args, text", [
    (["--to", "separable", "--layers", "nothing*"], "matches no layer"),
    (["--to", "bottleneck", "--ratio", "0"], "ratio"),
    (["--to", "bottleneck", "--ratio", "1.5"], "ratio"),
    (["--to", "low-rank-dense", "--layers", "dense1", "--rank", "300"], "Expected 1 to 256"),
    (["--to", "separable", "--data", "BAD_NPZ"], "does not match the model input"),
    (["--to", "separable", "--strategy", "ring", "--data", "digits", "--epochs", "1"], "'ring' is not one of 'default'"),
])
def test_bad_input_is_one_line_exit_2_and_leaves_files_alone(mnist, tmp_path, capsys, args, text):
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((8, 32, 32, 3), np.float32))
    args = [str(bad) if a == "BAD_NPZ" else a for a in args]
    before = fingerprint(mnist)
    out = tmp_path / "out.keras"
    code, stdout, stderr = run(["rewrite", str(mnist), *args, "-o", str(out)], capsys)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgecnn: error:") and text in lines[0]
    assert fingerprint(mnist) == before
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz", "mnist_cnn.h5"]


def test_output_must_be_a_model_path(mnist, tmp_path, capsys):
    code, _, stderr = run(["rewrite", str(mnist), "--to", "separable", "-o", str(tmp_path / "x.txt")], capsys)
    assert code == 2 and "Expected a .h5 or .keras path" in stderr
