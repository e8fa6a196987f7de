"""The runner's check after every compress stage fails on a context a broken stage would leave."""
from __future__ import annotations

import hashlib
from types import SimpleNamespace

import pytest

from edgecnn.pipeline.invariants import StageInvariantError, check_stage


def _model(tf_keras, classes):
    inp = tf_keras.Input((8, 8, 1))
    x = tf_keras.layers.GlobalAveragePooling2D()(tf_keras.layers.Conv2D(4, 3)(inp))
    return tf_keras.Model(inp, tf_keras.layers.Dense(classes)(x))


def _ctx(tmp_path, original, model, artifacts=()):
    return SimpleNamespace(original=original, model=model, state={"export": {"artifacts": list(artifacts)}},
                           outdir=tmp_path, candidates=[])


def test_a_consistent_context_passes(tmp_path, tf_keras):
    staged = tmp_path / ".edgecnn" / "staging"
    staged.mkdir(parents=True)
    (staged / "m.tflite").write_bytes(b"abc")
    art = {"path": str(staged / "m.tflite"), "size_bytes": 3, "sha256": hashlib.sha256(b"abc").hexdigest()}
    original = _model(tf_keras, 10)
    check_stage(_ctx(tmp_path, original, _model(tf_keras, 10), [art]), "quantize")
    check_stage(_ctx(tmp_path, original, None), "analyze")  # before rewrite the original is the working model


def test_a_changed_output_shape_is_caught(tmp_path, tf_keras):
    with pytest.raises(StageInvariantError, match="after stage 'prune': the model's outputs changed"):
        check_stage(_ctx(tmp_path, _model(tf_keras, 10), _model(tf_keras, 5)), "prune")


def test_a_tampered_or_misplaced_artifact_is_caught(tmp_path, tf_keras):
    staged = tmp_path / ".edgecnn" / "staging"
    staged.mkdir(parents=True)
    (staged / "m.tflite").write_bytes(b"abd")
    art = {"path": str(staged / "m.tflite"), "size_bytes": 3, "sha256": hashlib.sha256(b"abc").hexdigest()}
    outside = {"path": str(tmp_path / "x.tflite"), "size_bytes": 3, "sha256": art["sha256"]}
    original = _model(tf_keras, 10)
    with pytest.raises(StageInvariantError, match="does not have the size and hash recorded"):
        check_stage(_ctx(tmp_path, original, None, [art]), "validate")
    with pytest.raises(StageInvariantError, match="not staged under .edgecnn"):
        check_stage(_ctx(tmp_path, original, None, [outside]), "validate")


def test_the_command_line_reports_an_invariant_failure_as_a_bug(tmp_path, monkeypatch, capsys):
    """A stage that breaks the context makes compress exit 3 (a bug), never 0 or 1."""
    from edgecnn import cli
    from edgecnn.pipeline import STAGES

    def broken(ctx, rec):
        ctx.original = None

    monkeypatch.setattr("edgecnn.pipeline.STAGES", [("analyze", broken), *STAGES[1:]])
    from conftest import MODELS

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["compress", str(MODELS / "mnist_cnn.h5"), "-o", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 3 and "after stage 'analyze'" in err, err
