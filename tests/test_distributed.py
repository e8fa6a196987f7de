"""--strategy multiworker: two real worker processes on 127.0.0.1 running the real CLI, and its refusals.

Measured here (2 cores): two workers fine-tuning a model without Dropout or BatchNorm end with the weights of a
one-process run to within 1e-7 (same global batch, same seed: each worker computes half of every batch and
the gradients are averaged); with Dropout (the shipped MNIST CNN) the masks are drawn per worker, so the two
runs agree in accuracy only (within about a point after one epoch).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecnn.distribute import parse_tf_config
from edgecnn.errors import EdgecnnError
from tests.conftest import MODELS

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 240


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def env(tf_config=None, tmpdir=None) -> dict:
    out = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    out["PYTHONPATH"] = str(ROOT)
    if tf_config is not None:
        out["TF_CONFIG"] = tf_config if isinstance(tf_config, str) else json.dumps(tf_config)
    if tmpdir is not None:
        out["TMPDIR"] = str(tmpdir)
    return out


def cli(args) -> list[str]:
    return [sys.executable, "-m", "edgecnn.cli", *map(str, args)]


def two_workers(args, tmp: Path) -> list[subprocess.CompletedProcess]:
    """Run the command as worker 0 (the chief) and worker 1; each gets its own TMPDIR under ``tmp``. ``{i}`` in an
    argument is the worker's index: each names its own output, so that what a worker writes can be observed
    (on a cluster every worker runs the same command line)."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    procs = []
    for i in range(2):
        (tmp / f"tmp{i}").mkdir()
        config = {"cluster": cluster, "task": {"type": "worker", "index": i}}
        procs.append(subprocess.Popen(cli([str(a).replace("{i}", str(i)) for a in args]), env=env(config, tmp / f"tmp{i}"), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, cwd=ROOT))
    done = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=TIMEOUT)
            done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return done


@pytest.fixture(scope="module")
def plain_cnn(tmp_path_factory, keras3) -> Path:
    """A small Keras 3 CNN without Dropout or BatchNorm, trained on digits the ordinary way."""
    from sklearn.datasets import load_digits

    keras = keras3
    d = load_digits()
    x = np.repeat(np.repeat(d.images, 2, 1), 2, 2)[..., None].astype("float32") / 16.0
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                          keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.MaxPooling2D(),
                          keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.Flatten(),
                          keras.layers.Dense(10, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy")
    m.fit(x, d.target, epochs=3, batch_size=32, verbose=0)
    path = tmp_path_factory.mktemp("plain") / "plain_cnn.keras"
    m.save(path)
    return path


@pytest.mark.slow
def test_two_workers_fine_tune_what_one_process_does_and_only_the_chief_writes(plain_cnn, tmp_path):
    import edgecnn

    common = ["rewrite", plain_cnn, "--to", "separable", "--data", "digits", "--epochs", "1", "--seed", "3",
              "--max-accuracy-drop", "100", "--json"]
    single = tmp_path / "single.keras"
    one = subprocess.run(cli([*common, "-o", single]), env=env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert one.returncode == 0, one.stderr
    for i in range(2):
        (tmp_path / f"out{i}").mkdir()
    outdir = tmp_path / "out0"
    chief, other = two_workers([*common, "--strategy", "multiworker", "-o", tmp_path / "out{i}" / "model.keras"],
                               tmp_path)
    assert chief.returncode == 0, chief.stderr
    assert other.returncode == 0, other.stderr
    assert sorted(p.name for p in outdir.iterdir()) == ["model.keras"]  # the chief's, nothing else
    assert list((tmp_path / "out1").iterdir()) == []  # worker 1 wrote nothing where it was told to write
    assert list((tmp_path / "tmp1").iterdir()) == []  # the worker's private folder is gone
    reports = [json.loads(p.stdout) for p in (one, chief, other)]
    assert reports[1]["output"] == str(outdir / "model.keras") and "worker" not in reports[1]
    assert reports[2]["output"] is None and reports[2]["worker"].startswith("worker 1 of 2 (not the chief)")
    assert reports[1]["distill"]["epochs_run"] == reports[0]["distill"]["epochs_run"] == 1
    # the same accuracy, and the same weights to float rounding (gradients of two half batches averaged)
    assert abs(reports[1]["accuracy_after"] - reports[0]["accuracy_after"]) <= 0.003
    assert reports[1]["accuracy_after"] == reports[2]["accuracy_after"]
    a, b = edgecnn.load(single), edgecnn.load(outdir / "model.keras")
    diffs = [float(np.max(np.abs(x - y))) for x, y in zip(a.get_weights(), b.get_weights())]
    assert len(diffs) == len(a.get_weights()) > 0 and max(diffs) < 1e-5, diffs


@pytest.mark.slow
def test_two_worker_compress_writes_outdir_on_the_chief_only(tmp_path):
    recipe = tmp_path / "fixed.toml"
    recipe.write_text('max_accuracy_drop = 100.0\n[finetune]\nepochs = 1\n[plan]\nfixed = ["prune:0.5"]\n'
                      '[bench]\nruns = 5\nseconds = 0.5\n')
    outdir = tmp_path / "out0"
    chief, other = two_workers(["compress", MODELS / "mnist_cnn.h5", "--data", "digits", "--recipe", recipe,
                                "--strategy", "multiworker", "-o", tmp_path / "out{i}", "--quiet"], tmp_path)
    assert chief.returncode == 0, chief.stderr
    assert other.returncode == 0, other.stderr
    assert other.stdout.strip().splitlines() == ["worker 1 of 2 (not the chief): fine-tuned with the cluster; the "
                                                 "chief writes the outputs"]
    names = sorted(p.name for p in outdir.iterdir())
    assert "report.json" in names and "mnist_cnn_int8.tflite" in names
    assert not [n for n in names if n.startswith(".")]  # no lock file, no checkpoint left by the chief
    assert not (tmp_path / "out1").exists()  # worker 1 did not even create its OUTDIR
    assert list((tmp_path / "tmp1").iterdir()) == []
    report = json.loads((outdir / "report.json").read_text())
    assert report["recipe"]["finetune"]["strategy"] == "multiworker" and report["recipe"]["plan"]["max_backoff"] == 0
    finetune = next(s for s in report["stages"] if s["name"] == "finetune")
    assert finetune["details"]["epochs_run"] == 1 and finetune["details"]["val_accuracy"] > 0.9
    assert any("multiworker (2 workers)" in n for n in report["notes"])


def one_line_exit_2(proc: subprocess.CompletedProcess, text: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("edgecnn: error:") and text in lines[0], lines


@pytest.mark.parametrize("verb", [
    ["rewrite", MODELS / "mnist_cnn.h5", "--to", "separable", "--data", "digits", "--epochs", "1", "-o", "OUT.keras"],
    ["prune", MODELS / "mnist_cnn.h5", "--method", "channels", "--data", "digits", "--epochs", "1", "-o", "OUT.keras"],
])
@pytest.mark.parametrize("tf_config, text", [
    (None, "needs TF_CONFIG"),
    ("{not json", "not JSON"),
    ({"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 1}}, "lists 1 worker task"),
    ({"cluster": {"ps": ["127.0.0.1:1"]}, "task": {"type": "ps", "index": 0}}, "job(s) 'ps'"),
])
def test_multiworker_without_a_valid_tf_config_is_one_line_exit_2(tmp_path, verb, tf_config, text):
    args = [str(tmp_path / a) if a == "OUT.keras" else a for a in verb]
    proc = subprocess.run(cli([*args, "--strategy", "multiworker"]), env=env(tf_config), capture_output=True,
                          text=True, timeout=120)
    one_line_exit_2(proc, text)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("extra, text", [
    ([], "fine-tunes a fixed plan"),
    (["--resume"], "--resume with --strategy multiworker"),
])
def test_multiworker_compress_refuses_what_workers_cannot_agree_on(tmp_path, extra, text):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[plan]\nfixed = ["prune:0.5"]\n' if extra else "seed = 0\n")
    config = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}
    proc = subprocess.run(cli(["compress", MODELS / "mnist_cnn.h5", "--data", "digits", "--recipe", recipe,
                               "--strategy", "multiworker", "-o", tmp_path / "out", *extra]),
                          env=env(config), capture_output=True, text=True, timeout=120)
    one_line_exit_2(proc, text)
    assert not (tmp_path / "out").exists()


def test_magnitude_pruning_is_not_distributed(tmp_path):
    proc = subprocess.run(cli(["prune", MODELS / "mnist_cnn.h5", "--method", "magnitude", "--strategy", "mirrored",
                               "--data", "digits", "--epochs", "1", "-o", tmp_path / "p.keras"]),
                          env=env(), capture_output=True, text=True, timeout=120)
    one_line_exit_2(proc, "Expected --method channels")


@pytest.mark.parametrize("config, chief", [
    ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}, True),
    ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}, False),
    ({"cluster": {"chief": ["c:3"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}, False),
    ({"cluster": {"chief": ["c:3"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}, True),
])
def test_the_chief_is_tensorflows(config, chief):
    assert parse_tf_config(json.dumps(config)).is_chief is chief


@pytest.mark.parametrize("config", [
    "[]", '{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}',
    '{"cluster": {"worker": ["nohost"]}, "task": {"type": "worker", "index": 0}}',
    '{"cluster": {"worker": ["a:1"]}, "task": {"type": "evaluator", "index": 0}}',
    '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": true}}',
])
def test_malformed_tf_config_is_refused(config):
    with pytest.raises(EdgecnnError, match="TF_CONFIG"):
        parse_tf_config(config)


@pytest.mark.parametrize("toml, text", [
    ('[finetune]\nstrategy = "multiworker"\n', "fine-tunes a fixed plan"),  # the recipe key, not the flag
    ('[finetune]\nstrategy = "ring"\n', "'finetune.strategy' (--strategy): Expected one of default, mirrored, multiworker"),
])
def test_the_recipe_key_sets_the_strategy(tmp_path, toml, text):
    recipe = tmp_path / "r.toml"
    recipe.write_text(toml)
    proc = subprocess.run(cli(["compress", MODELS / "mnist_cnn.h5", "--data", "digits", "--recipe", recipe,
                               "-o", tmp_path / "out"]), env=env(), capture_output=True, text=True, timeout=120)
    one_line_exit_2(proc, text)


LATE = """
from edgecnn._tf import import_tensorflow
from edgecnn import distribute
import_tensorflow()  # TensorFlow initialized (its first op ran) before the strategy
try:
    distribute.start("multiworker")
except Exception as exc:
    print(type(exc).__name__, exc)
"""


def test_multiworker_after_tensorflow_initialized_says_how_to_fix_it():
    config = {"cluster": {"worker": [f"127.0.0.1:{free_ports(1)[0]}"]}, "task": {"type": "worker", "index": 0}}
    proc = subprocess.run([sys.executable, "-c", LATE], env=env(config), capture_output=True, text=True, timeout=120)
    assert proc.stdout.startswith("EdgecnnError cannot create the multiworker strategy:"), proc.stdout + proc.stderr
    assert "Collective ops must be configured at program startup" in proc.stdout
    assert "call edgecnn.distribute.start('multiworker') first" in proc.stdout
