"""--val: held-out data the model has not seen as the test side of compress, and the note when it is missing.

The model is trained the way users train (Keras 3 ``model.fit``) on a small ``.npz`` of real digits, then
handed to compress with that same ``.npz``: its held-out split is memorized (100%), which the report says;
with a ``--val`` of unseen digits every accuracy is measured there instead.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgecnn.cli import main
from edgecnn.data import Dataset, split_data, val_note
from edgecnn.errors import DataError, ShapeMismatchError
from edgecnn.pipeline import compress
from edgecnn.pipeline.recipe import dumps, load_recipe

SHAPE = (8, 8, 1)
TRAIN, UNSEEN = slice(0, 300), slice(300, 500)
# Nothing to choose (no rewrite, no pruning, float target) and small timing budgets: a run of a few seconds.
QUICK = {"plan.seconds": 0.5, "plan.latency_runs": 10, "bench.seconds": 0.3, "bench.runs": 10,
         "datafree.samples": 32, "datafree.steps": 5, "rewrite.enabled": False, "prune.enabled": False,
         "target": "litert-fp32"}


def _run(capsys, *args):
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def _digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    rows = np.random.default_rng(0).permutation(len(bunch.target))
    return (bunch.images[rows] / 16.0).astype(np.float32)[..., None], bunch.target[rows].astype(np.int64)


@pytest.fixture(scope="module")
def memorized(tmp_path_factory, keras3):
    """A small CNN fit (Keras 3) to 100% on 300 digits saved as train.npz; 200 other digits as val.npz."""
    folder = tmp_path_factory.mktemp("memorized")
    x, y = _digits()
    np.savez(folder / "train.npz", x=x[TRAIN], y=y[TRAIN])
    np.savez(folder / "val.npz", x=x[UNSEEN], y=y[UNSEEN])
    keras3.utils.set_random_seed(0)
    L = keras3.layers
    model = keras3.Sequential([keras3.Input(SHAPE), L.Conv2D(16, 3, padding="same", activation="relu"),
                               L.Conv2D(16, 3, padding="same", activation="relu"), L.Flatten(),
                               L.Dense(10, activation="softmax")], name="memorizer")
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x[TRAIN], y[TRAIN], epochs=40, batch_size=32, verbose=0)
    path = folder / "memorizer.keras"
    model.save(path)

    def accuracy(rows):
        return float(np.mean(np.argmax(model.predict(x[rows], verbose=0), -1) == y[rows]))

    assert accuracy(TRAIN) == 1.0, "the fixture model did not memorize its training data"
    recipe = folder / "quick.toml"
    recipe.write_text(dumps(load_recipe("mobile", overrides=QUICK)))
    return {"dir": folder, "model": path, "train": folder / "train.npz", "val": folder / "val.npz",
            "recipe": recipe, "val_accuracy": accuracy(UNSEEN), "x": x, "y": y}


def _arrays(n=40, seed=0):
    x = np.random.default_rng(seed).random((n, *SHAPE), dtype=np.float32)
    return x, np.arange(n) % 4


# ------------------------------------------------------------------------------------------ split_data


def test_val_is_the_test_side_and_all_of_data_trains(memorized):
    h = split_data(str(memorized["train"]), val=str(memorized["val"]), input_shape=SHAPE)
    x, y = memorized["x"], memorized["y"]
    assert len(h.train) == 300 and len(h.test) == 200
    np.testing.assert_array_equal(h.train.x, x[TRAIN])
    np.testing.assert_array_equal(h.test.x, x[UNSEEN])
    np.testing.assert_array_equal(h.test.y, y[UNSEEN])
    assert h.from_val and h.val_overlap == 0 and h.source == f"npz:{memorized['train']}"
    d = h.describe()
    assert d["test_from"] == "val" and d["test_source"] == f"npz:{memorized['val']}"
    assert d["source"] == f"npz:{memorized['train']}" and d["test_fraction"] is None and not d["stratified"]
    assert d["test_ids"] == [str(i) for i in range(200)] and d["train_ids"] == [str(i) for i in range(300)]
    assert d["val_overlap"] == 0 and d["train_samples"] == 300 and d["test_samples"] == 200
    # without --val the split records where its test side came from too
    plain = split_data(str(memorized["train"]), input_shape=SHAPE).describe()
    assert plain["test_from"] == "split" and plain["test_source"] == plain["source"] and "val_overlap" not in plain


def test_val_in_memory_forms(memorized):
    x, y = _arrays()
    vx, vy = _arrays(12, seed=1)
    for val in ((vx, vy), Dataset(x=vx, y=vy, class_names=None, source="mine")):
        h = split_data((x, y), val=val, input_shape=SHAPE)
        assert len(h.train) == 40 and len(h.test) == 12 and h.describe()["test_ids"][:2] == ["0", "1"]
    unlabelled = split_data(x, val=vx, input_shape=SHAPE)
    assert not unlabelled.labelled and len(unlabelled.test) == 12


def test_partial_overlap_is_counted_and_noted(tmp_path, memorized):
    x, y = memorized["x"], memorized["y"]
    rows = np.r_[0:5, 300:320]  # 5 training digits among 20 unseen ones
    np.savez(tmp_path / "mixed.npz", x=x[rows], y=y[rows])
    h = split_data(str(memorized["train"]), val=str(tmp_path / "mixed.npz"), input_shape=SHAPE)
    assert h.val_overlap == 5 and h.describe()["val_overlap"] == 5
    assert val_note(h).startswith("5 of 25 --val samples are also in --data")


@pytest.mark.parametrize("case", ["same path", "same path by prefix", "all overlap", "shape", "unlabelled val",
                                  "labelled val", "eval_on_train", "heldout"])
def test_val_that_cannot_be_a_test_side_is_refused(tmp_path, memorized, case):
    x, y = memorized["x"], memorized["y"]
    train = str(memorized["train"])
    np.savez(tmp_path / "copy.npz", x=x[50:80], y=y[50:80])
    np.savez(tmp_path / "big.npz", x=np.zeros((4, 10, 10, 1), np.float32), y=np.zeros(4, np.int64))
    np.savez(tmp_path / "nolabels.npz", x=x[UNSEEN])
    error, match, data, val, kw = {
        "same path": (DataError, "Expected another source than --data", train, train, {}),
        "same path by prefix": (DataError, "is --data", train, "npz:" + train, {}),
        "all overlap": (DataError, "all 30 --val samples of npz:.* are also in --data", train,
                        str(tmp_path / "copy.npz"), {}),
        "shape": (ShapeMismatchError, r"data shape \(4, 10, 10, 1\) does not match the model input \(8, 8, 1\)",
                  train, str(tmp_path / "big.npz"), {}),
        "unlabelled val": (DataError, "--data is labelled, --val is not", train, str(tmp_path / "nolabels.npz"), {}),
        "labelled val": (DataError, "--val is labelled, --data is not", str(tmp_path / "nolabels.npz"),
                         str(memorized["val"]), {}),
        "eval_on_train": (DataError, "--eval-on-train .* Expected one of them", train, str(memorized["val"]),
                          {"eval_on_train": True}),
        "heldout": (DataError, "a HeldOut already holds its test side",
                    split_data(train, input_shape=SHAPE), str(memorized["val"]), {}),
    }[case]
    with pytest.raises(error, match=match):
        split_data(data, val=val, input_shape=SHAPE, **kw)


def _folder(root: Path, classes, per_class=3) -> Path:
    from PIL import Image

    rng = np.random.default_rng(len(str(root)))
    for name in classes:
        (root / name).mkdir(parents=True)
        for k in range(per_class):
            Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8), mode="L").save(root / name / f"{k}.png")
    return root


def test_folders_must_have_the_same_classes(tmp_path):
    data = _folder(tmp_path / "train", ["cat", "dog"])
    h = split_data(str(data), val=str(_folder(tmp_path / "val", ["cat", "dog"])), input_shape=SHAPE)
    assert h.class_names == ("cat", "dog") and h.describe()["test_ids"][0] == "cat/0.png"
    with pytest.raises(DataError, match=r"Expected 2 classes \(cat, dog\). Received: 2 classes \(cat, fox\)"):
        split_data(str(data), val=str(_folder(tmp_path / "other", ["cat", "fox"])), input_shape=SHAPE)


# ------------------------------------------------------------------------------------------ the CLI


def test_cli_refuses_a_bad_val_with_one_line_and_exit_2(tmp_path, capsys, memorized):
    x, y = memorized["x"], memorized["y"]
    np.savez(tmp_path / "nolabels.npz", x=x[UNSEEN])
    np.savez(tmp_path / "big.npz", x=np.zeros((4, 10, 10, 1), np.float32), y=np.zeros(4, np.int64))
    np.savez(tmp_path / "labels12.npz", x=x[UNSEEN], y=np.full(200, 12))
    m, train, val = memorized["model"], memorized["train"], memorized["val"]
    cases = [
        (["--val", val], "Expected --data with it"),
        (["--data", train, "--val", train], "Expected another source than --data"),
        (["--data", train, "--val", val, "--eval-on-train"], "Expected one of them"),
        (["--data", train, "--val", tmp_path / "big.npz"], "does not match the model input (8, 8, 1)"),
        (["--data", train, "--val", tmp_path / "nolabels.npz"], "--data is labelled, --val is not"),
        (["--data", train, "--val", tmp_path / "labels12.npz"], "do not fit the model output"),
        (["--data", _folder(tmp_path / "a", ["cat", "dog"]), "--val", _folder(tmp_path / "b", ["cat", "fox"])],
         "--val's classes must be --data's"),
    ]
    for i, (args, message) in enumerate(cases):
        code, out, err = _run(capsys, "compress", m, "-o", tmp_path / f"o{i}", "--recipe", memorized["recipe"], *args)
        assert code == 2, (args, err)
        assert err.count("\n") == 1 and message in err, err
        assert not (tmp_path / f"o{i}").exists() or not list((tmp_path / f"o{i}").iterdir())


# ------------------------------------------------------------------------------------------ compress


def test_memorized_split_gets_a_note_and_val_measures_on_unseen_samples(tmp_path, capsys, memorized):
    code, out, err = _run(capsys, "compress", memorized["model"], "-o", tmp_path / "own", "--data", memorized["train"],
                          "--recipe", memorized["recipe"], "--quiet")
    assert code == 0, err
    report = json.loads((tmp_path / "own" / "report.json").read_text())
    assert report["original"]["accuracy"] == 1.0 and report["data"]["memorized_suspect"] is True
    assert report["data"]["test_from"] == "split" and report["data"]["test_samples"] == 60
    note = ("the original model scores 100.00% on the 60 held-out samples of --data: it was probably trained on "
            "them, so accuracy drops are judged against memorized answers")
    assert any(n.startswith(note) and n.endswith("pass --val with samples it has not seen") for n in report["notes"])
    assert "note: " + note in " ".join(out.split())  # the terminal says so too

    with_val = compress(str(memorized["model"]), outdir=tmp_path / "val", data=str(memorized["train"]),
                        val=str(memorized["val"]), recipe=str(memorized["recipe"]), quiet=True).report
    data = with_val["data"]
    assert data["memorized_suspect"] is False and not any("probably trained" in n for n in with_val["notes"])
    assert data["test_from"] == "val" and data["test_source"] == f"npz:{memorized['val']}"
    assert data["train_samples"] == 300 and data["test_samples"] == 200 and data["val_overlap"] == 0
    # every accuracy is the unseen digits': the original's is what Keras 3 measures on val.npz
    assert abs(with_val["original"]["accuracy"] - memorized["val_accuracy"]) <= 1 / 200
    assert with_val["original"]["accuracy"] < 1.0
    assert with_val["artifacts"][0]["validation"]["samples"] == 200


def test_resume_with_another_val_starts_afresh(tmp_path, memorized):
    x, y = memorized["x"], memorized["y"]
    rows = np.r_[0:4, 300:400]
    np.savez(tmp_path / "other.npz", x=x[rows], y=y[rows])
    run = {"outdir": tmp_path / "run", "data": str(memorized["train"]), "recipe": str(memorized["recipe"]),
           "quiet": True}

    def interrupt(stage, status):
        if stage == "rewrite":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        compress(str(memorized["model"]), val=str(memorized["val"]), on_stage=interrupt, **run)
    assert json.loads((tmp_path / "run" / ".edgecnn" / "state.json").read_text())["finished"] == ["analyze", "plan"]
    seen = []
    report = compress(str(memorized["model"]), val=str(tmp_path / "other.npz"), resume=True,
                      on_stage=lambda s, st: seen.append(s) if st == "start" else None, **run).report
    assert seen[0] == "analyze" and any("different input, recipe, data" in n for n in report["notes"])
    assert report["data"]["test_source"] == f"npz:{tmp_path / 'other.npz'}" and report["data"]["val_overlap"] == 4
    assert "4 of 104 --val samples are also in --data" in " ".join(report["notes"])


def test_checkpoint_key_names_the_val():
    from edgecnn.pipeline import _data_key

    x, y = _arrays()
    assert _data_key("a.npz", None, val="v.npz") != _data_key("a.npz", None, val="w.npz") != _data_key("a.npz", None)
    keys = set()
    for val in (_arrays(8, seed=1), _arrays(8, seed=2), None):
        keys.add(_data_key((x, y), split_data((x, y), val=val, input_shape=SHAPE), val=val))
    assert len(keys) == 3
