"""distill(): soft targets from logits, labels optional, early stopping, pruning callbacks, strategies."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgecnn.distill import _teacher_targets, distill, make_strategy
from edgecnn.errors import DataError, EdgecnnError, ShapeMismatchError, UnsupportedModelError
from edgecnn.surgery import rebuild

ROOT = Path(__file__).resolve().parents[1]


def mlp(tf_keras, *, softmax=True, classes=3, seed=0):
    inp = tf_keras.Input((6,), name="x")
    h = tf_keras.layers.Dense(24, activation="relu", name="h")(inp)
    out = tf_keras.layers.Dense(classes, activation="softmax" if softmax else None, name="out")(h)
    model = tf_keras.Model(inp, out)
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.8, w.shape).astype("float32") for w in model.get_weights()])
    return model


def data(n=192, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 6)).astype("float32")


def disagreement(a, b, x):
    return float(np.mean(np.argmax(a(x).numpy(), 1) != np.argmax(b(x).numpy(), 1)))


def test_teacher_targets_are_the_logits_behind_the_softmax(tf_keras):
    probs = mlp(tf_keras, softmax=True)
    logits = mlp(tf_keras, softmax=False)
    logits.set_weights(probs.get_weights())
    x = data(40)
    from_probs = _teacher_targets(probs, [x], [True], 16)[0]
    np.testing.assert_allclose(from_probs, logits(x).numpy(), rtol=1e-5, atol=1e-5)


def test_labelled_distillation_pulls_the_student_to_the_teacher_and_is_deterministic(tf_keras):
    teacher = mlp(tf_keras)
    x = data(256)
    y = np.argmax(teacher(x).numpy(), 1)
    x_test = data(200, seed=1)

    def student():
        s = rebuild(teacher)
        rng = np.random.default_rng(3)
        s.set_weights([w + rng.normal(0, 0.6, w.shape).astype("float32") for w in s.get_weights()])
        return s

    results = []
    for _ in range(2):
        s = student()
        before = disagreement(s, teacher, x_test)
        results.append(distill(s, teacher, x=x, y=y, epochs=6, batch_size=32, learning_rate=1e-2,
                               seed=7, progress=False))
    r = results[1]
    assert r.model is s
    assert sorted(r.history) == ["loss", "val_accuracy", "val_loss"]
    assert len(r.history["loss"]) == r.epochs_run <= 6
    assert r.best_epoch == int(np.argmin(r.history["val_loss"]))
    assert r.teacher_val_accuracy == 1.0  # labels are the teacher's own predictions
    assert r.val_accuracy is not None and r.val_accuracy > 0.8
    assert disagreement(s, teacher, x_test) < before / 2
    assert results[0].history == r.history  # same seed, same run
    assert not any(np.shares_memory(a, b) for a, b in zip(s.get_weights(), teacher.get_weights()))


def test_early_stopping_restores_the_best_epoch(tf_keras):
    teacher = mlp(tf_keras)
    s = rebuild(teacher)  # already the teacher: a large learning rate makes it worse, epoch after epoch
    seen = []

    class Record(tf_keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(self.model.get_weights())

    r = distill(s, teacher, x=data(128), epochs=8, batch_size=16, learning_rate=0.5, patience=2,
                progress=False, callbacks=[Record()])
    best = int(np.argmin(r.history["val_loss"]))
    assert r.best_epoch == best
    assert r.epochs_run == len(seen) == min(8, best + 3)
    for got, want in zip(s.get_weights(), seen[best]):
        np.testing.assert_array_equal(got, want)


def test_pruned_student_keeps_its_wrappers_and_callbacks_reach_fit(tf_keras):
    import tensorflow_model_optimization as tfmot

    teacher = mlp(tf_keras)
    sched = tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0, frequency=1)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(rebuild(teacher), pruning_schedule=sched)
    r = distill(pruned, teacher, x=data(128), epochs=2, batch_size=16, progress=False,
                callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    assert r.model is pruned and r.epochs_run == 2 and r.best_epoch == 1
    kernel = tfmot.sparsity.keras.strip_pruning(pruned).get_layer("h").get_weights()[0]
    assert abs(float(np.mean(kernel == 0)) - 0.5) < 0.02


@pytest.mark.parametrize("options, error, text", [
    (dict(alpha=1.5), EdgecnnError, "alpha"),
    (dict(temperature=0), EdgecnnError, "temperature"),
    (dict(epochs=0), EdgecnnError, "epochs"),
    (dict(batch_size=500), DataError, "batch_size=500"),
    (dict(y=np.full(64, 7)), DataError, "class indices"),
    (dict(x=np.zeros((64, 5), "float32")), ShapeMismatchError, "Expected shape"),
    (dict(strategy="ring"), EdgecnnError, "unknown strategy"),
])
def test_bad_options_raise_one_line_errors(tf_keras, options, error, text):
    teacher = mlp(tf_keras)
    kwargs = dict(x=data(64), epochs=1, batch_size=16, progress=False)
    kwargs.update(options)
    with pytest.raises(error, match=text) as info:
        distill(rebuild(teacher), teacher, **kwargs)
    assert "\n" not in str(info.value)


def test_student_must_not_share_variables_or_change_shape(tf_keras):
    teacher = mlp(tf_keras)
    with pytest.raises(UnsupportedModelError, match="shares variables"):
        distill(teacher, teacher, x=data(64), epochs=1, progress=False)
    with pytest.raises(ShapeMismatchError, match="outputs"):
        distill(mlp(tf_keras, classes=4), teacher, x=data(64), epochs=1, progress=False)


def test_default_strategy_is_the_current_one():
    import tensorflow as tf

    assert make_strategy(None) is tf.distribute.get_strategy()


MIRRORED = textwrap.dedent("""
    import json, sys
    import numpy as np
    from edgecnn._tf import import_tensorflow  # sets TF's environment first
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import_tensorflow()
    import tf_keras
    from edgecnn.distill import distill, make_strategy
    from edgecnn.surgery import rebuild
    inp = tf_keras.Input((6,))
    out = tf_keras.layers.Dense(3, activation="softmax")(tf_keras.layers.Dense(16, activation="relu")(inp))
    teacher = tf_keras.Model(inp, out)
    student = rebuild(teacher)
    student.set_weights([w * 0.5 for w in student.get_weights()])
    before = [w.copy() for w in student.get_weights()]
    x = np.random.default_rng(0).normal(size=(128, 6)).astype("float32")
    y = np.argmax(teacher(x).numpy(), 1)
    r = distill(student, teacher, x=x, y=y, epochs=1, batch_size=32, strategy="mirrored", progress=False)
    print(json.dumps({"replicas": make_strategy("mirrored").num_replicas_in_sync, "epochs": r.epochs_run,
                      "keys": sorted(r.history), "same_object": r.model is student,
                      "changed": any(not np.allclose(a, b) for a, b in zip(before, student.get_weights()))}))
""")


def test_mirrored_strategy_over_two_logical_cpus():
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", MIRRORED], capture_output=True, text=True, env=env, timeout=300,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"replicas": 2, "epochs": 1, "keys": ["loss", "val_accuracy", "val_loss"],
                      "same_object": True, "changed": True}


def test_keep_initial_keeps_a_student_that_fine_tuning_only_makes_worse(tf_keras):
    """A student that already matches its teacher: fine-tuning at a huge learning rate only hurts, so with
    keep_initial the weights before fine-tuning are kept (best_epoch -1); without it an epoch's are."""
    import numpy as np

    from edgecnn.distill import distill
    from edgecnn.surgery import rebuild

    tf_keras.utils.set_random_seed(0)
    inp = tf_keras.Input((6,))
    teacher = tf_keras.Model(inp, tf_keras.layers.Dense(3, activation="softmax")(tf_keras.layers.Dense(8, activation="relu")(inp)))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 6)).astype("float32")
    student = rebuild(teacher)
    before = [w.copy() for w in student.get_weights()]
    r = distill(student, teacher, x=x, epochs=2, learning_rate=0.9, patience=1, progress=False, keep_initial=True)
    assert r.best_epoch == -1 and all(np.array_equal(a, b) for a, b in zip(before, r.model.get_weights()))
    other = distill(rebuild(teacher), teacher, x=x, epochs=2, learning_rate=0.9, patience=1, progress=False)
    assert other.best_epoch >= 0
