"""edgecnn prune: output file, tables, and bad input (one line on stderr, exit 2, nothing written, input intact)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from edgecnn.cli import main

from conftest import small_cnn


@pytest.fixture
def _cli(capsys):
    def run(*args):
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in args])
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=exit_info.value.code, stdout=out, stderr=err)

    return run


@pytest.fixture(scope="module")
def files(tmp_path_factory, tf_keras):
    d = tmp_path_factory.mktemp("prune_cli")
    small_cnn(tf_keras).save(d / "small.h5", save_format="h5")
    inp = tf_keras.Input((8, 8, 3))
    flat = tf_keras.Model(inp, tf_keras.layers.Dense(3)(tf_keras.layers.GlobalAveragePooling2D()(inp)))
    flat.save(d / "nothing.h5", save_format="h5")
    return d


@pytest.mark.parametrize("args, message", [
    (["--method", "channels", "--sparsity", "1.0"], r"Expected a fraction in [0, 1). Received: 1.0"),
    (["--method", "magnitude", "--sparsity", "-0.2"], r"Expected a fraction in [0, 1). Received: -0.2"),
    (["--method", "lottery"], "Invalid value for '--method': 'lottery' is not one of 'magnitude'"),
    (["--method", "channels", "--layer-sparsity", "conv"], "Expected GLOB=RATIO"),
    (["--method", "channels", "--epochs", "2"], "fine-tuning needs data"),
])
def test_bad_options(_cli, files, args, message):
    src = files / "small.h5"
    before, mtime = src.read_bytes(), src.stat().st_mtime_ns
    out = files / "out_bad.keras"
    r = _cli("prune", src, "-o", out, *args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgecnn: error:") and message in lines[0], r.stderr
    assert not out.exists() and not list(files.glob(".out_bad*"))
    assert src.read_bytes() == before and src.stat().st_mtime_ns == mtime


@pytest.mark.parametrize("method", ["channels", "magnitude"])
def test_nothing_prunable(_cli, files, method):
    src = files / "nothing.h5"
    before = src.read_bytes()
    out = files / f"nothing_{method}.keras"
    r = _cli("prune", src, "--method", method, "--sparsity", "0.5", "-o", out)
    assert r.returncode == 2 and "nothing to prune" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not out.exists() and src.read_bytes() == before


def test_channels_writes_a_smaller_model(_cli, files, tf_keras):
    import edgecnn

    src = files / "small.h5"
    out = files / "small_pruned.keras"
    r = _cli("prune", src, "--method", "channels", "--sparsity", "0.5", "--round-to", "4", "-o", out)
    assert r.returncode == 0, r.stderr
    assert "channel groups" in r.stdout and "params: 1,293 ->" in r.stdout
    pruned = edgecnn.load(out)
    assert pruned.get_layer("stem").filters == 4 and pruned.get_layer("sep").filters == 8
    assert pruned.output_shape == (None, 5)


def test_analyze_json_on_trained_mnist(_cli, tmp_path):
    import json

    from conftest import MODELS

    out = tmp_path / "mnist_channels.h5"
    r = _cli("prune", MODELS / "mnist_cnn.h5", "--method", "channels", "--sparsity", "0.5", "--data", "digits",
             "--analyze", "--json", "--max-accuracy-drop", "100", "-o", out)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert [row["name"] for row in report["layers"]] == ["conv1", "conv2", "dense1"]
    assert [row["channels_after"] for row in report["layers"]] == [16, 32, 128]
    assert report["params_after"] < 0.3 * report["params_before"]
    assert abs(report["accuracy_before"] - 0.975) < 1e-6 and 0 <= report["accuracy_after"] <= 1
    groups = {(row["group"], row["ratio"]) for row in report["sensitivity"]}
    assert groups == {(g, r) for g in ("conv1", "conv2", "dense1") for r in (0.25, 0.5, 0.75)}
    # sensitivity is measured on the train split; the held-out test split only judges the final model
    assert len({row["baseline"] for row in report["sensitivity"]}) == 1
    assert 0.9 < report["sensitivity"][0]["baseline"] <= 1.0
    assert out.exists()
