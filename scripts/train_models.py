"""Train the small reference models on the bundled digits and write them, with a README table, to models/.

Usage:
    python scripts/train_models.py                      # the five default models (~4-6 min on 2 cores)
    python scripts/train_models.py --all                # also the MiniModel variants (~+5 min)
    python scripts/train_models.py --only se_cnn        # one model; the other README rows are kept
    python scripts/train_models.py --out /tmp/zoo       # somewhere else
    python scripts/train_models.py --readme             # regenerate README.md from manifest.json only

Training is deterministic (``keras.utils.set_random_seed(0)`` before each model, TF op determinism,
Adam 1e-3, batch 32) on ``edgecnn.data.digits(split="train")``; the held-out accuracy is measured on
``split="test"`` by reloading the written file, never typed by hand. Files are saved uncompiled (no
optimizer state), written under a temporary name and renamed when complete, and must not exceed 2 MB.
Records live in ``<out>/manifest.json``; ``<out>/README.md`` is generated from it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# oneDNN's CPU kernels (on by default in TF 2.21) corrupt the heap ("free(): invalid next size",
# SIGSEGV) in the filter gradient of a stride-2 1x1 Conv2D with <= 8 input channels when the batch
# size is odd, e.g. the last batch of 1,437 samples; MiniModel at width 8 has exactly that shortcut.
# Pure-TF repro: tf.nn.conv2d(x[29, 32, 32, 8], w[1, 1, 8, 16], strides=2, padding="SAME") and
# GradientTape.gradient(..., w). Turning oneDNN off avoids the faulty kernel; it must happen
# before TensorFlow is imported.
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MAX_BYTES = 2 * 1024 * 1024
SEED = 0
BATCH_SIZE = 32
LEARNING_RATE = 1e-3
COMMAND = "python scripts/train_models.py"


@dataclass(frozen=True)
class TrainSpec:
    """One shipped file: which builder, with which arguments, for how long."""

    name: str
    file: str
    builder: str
    input_shape: tuple[int, int, int]
    epochs: int
    kwargs: dict = field(default_factory=dict)
    default: bool = True  # trained by a plain run; the others need --all or --only


SPECS: tuple[TrainSpec, ...] = (
    TrainSpec("mnist_cnn", "mnist_cnn.h5", "mnist_cnn", (28, 28, 1), epochs=25),
    TrainSpec("mnist_separable", "mnist_separable.keras", "mnist_separable", (28, 28, 1), epochs=30),
    TrainSpec("cifar_cnn_gmp", "cifar_cnn_gmp.keras", "cifar_cnn_gmp", (32, 32, 3), epochs=20),
    TrainSpec("minimodel_w8", "minimodel_w8.h5", "minimodel", (32, 32, 3), epochs=20, kwargs={"width": 8}),
    TrainSpec("minimodel_mobile_w8", "minimodel_mobile_w8.keras", "minimodel_mobile", (32, 32, 3),
              epochs=20, kwargs={"width": 8}, default=False),
    TrainSpec("minimodel_bottleneck_w8", "minimodel_bottleneck_w8.h5", "minimodel_bottleneck", (32, 32, 3),
              epochs=20, kwargs={"width": 8}, default=False),
    TrainSpec("se_cnn", "se_cnn.keras", "se_cnn", (32, 32, 3), epochs=30),
)

UNTRAINED = (
    ("cifar_cnn", "cifar_cnn()", "703,594 parameters: 2.8 MB of float32 weights"),
    ("minimodel", "minimodel(width=32)", "4,374,538 parameters: 17.5 MB; ~25 s per epoch, ~30 epochs to converge"),
    ("minimodel_mobile", "minimodel_mobile(width=32)", "577,866 parameters: 2.3 MB; the w=8 variant is shipped"),
    ("minimodel_bottleneck", "minimodel_bottleneck(width=32)", "2,453,498 parameters: 9.8 MB"),
)


def train_one(spec: TrainSpec, *, out: Path, epochs: int | None = None) -> dict:
    """Train ``spec``, write its file into ``out``, and return its manifest record."""
    import keras
    import numpy as np

    from edgecnn.data import digits
    from models.zoo import REFERENCE_MODELS

    epochs = spec.epochs if epochs is None else epochs
    builder = REFERENCE_MODELS[spec.builder]
    train = digits(input_shape=spec.input_shape, split="train")
    test = digits(input_shape=spec.input_shape, split="test")

    keras.utils.set_random_seed(SEED)
    model = builder(input_shape=spec.input_shape, **spec.kwargs)
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    history = model.fit(train.x, train.y, batch_size=BATCH_SIZE, epochs=epochs, shuffle=True, verbose=0)
    seconds = time.perf_counter() - start

    # An uncompiled copy: the file holds the weights and the architecture, no optimizer state.
    plain = builder(input_shape=spec.input_shape, **spec.kwargs)
    plain.set_weights(model.get_weights())
    final = out / spec.file
    tmp = out / f".{final.stem}.tmp-{os.getpid()}{final.suffix}"
    try:
        plain.save(tmp)
        size = tmp.stat().st_size
        if size > MAX_BYTES:
            raise SystemExit(f"error: {spec.file} would be {size:,} bytes; the limit is {MAX_BYTES:,} bytes")
        reloaded = keras.models.load_model(tmp, compile=False)
        predicted = np.argmax(reloaded.predict(test.x, batch_size=256, verbose=0), axis=1)
        accuracy = float(np.mean(predicted == test.y))
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)

    return {
        "name": spec.name,
        "file": spec.file,
        "builder": spec.builder,
        "kwargs": spec.kwargs,
        "input_shape": list(spec.input_shape),
        "keras_version": keras.__version__,
        "params": int(plain.count_params()),
        "bytes": int(size),
        "epochs": epochs,
        "batch_size": BATCH_SIZE,
        "train_accuracy_last_epoch": round(float(history.history["accuracy"][-1]), 4),
        "test_accuracy": round(accuracy, 4),
        "test_samples": int(len(test)),
        "train_seconds": round(seconds, 1),
    }


def write_readme(records: list[dict], *, out: Path) -> None:
    """Regenerate ``out/README.md`` from the manifest records."""
    rows = []
    for r in records:
        args = ", ".join(f"{k}={v!r}" for k, v in r["kwargs"].items())
        shape = tuple(r["input_shape"])
        rows.append(
            f"| `{r['file']}` | `{r['builder']}({args})` | {shape} | Keras {r['keras_version']} | "
            f"{r['params']:,} | {r['bytes'] / 1e6:.2f} MB | {r['epochs']} | "
            f"{100 * r['test_accuracy']:.2f}% | {r['train_seconds']:.0f} s | `{COMMAND} --only {r['name']}` |"
        )
    untrained = "\n".join(f"| `{name}` | `{call}` | {why} |" for name, call, why in UNTRAINED)
    text = f"""# Reference models

Definitions live in [`zoo.py`](zoo.py) (`REFERENCE_MODELS`: name -> builder; every builder takes
`keras_module=` and builds with Keras 3 or tf_keras). The files below are small trained instances,
written by `{COMMAND}` (generated table: do not edit by hand; the numbers come from
[`manifest.json`](manifest.json)).

Training: `edgecnn.data.digits(input_shape=..., split="train")` (1,437 of scikit-learn's 1,797 real
8x8 digits, bilinearly resized; gray repeated to 3 channels for 32x32x3 models), Adam {LEARNING_RATE:g},
batch {BATCH_SIZE}, `keras.utils.set_random_seed({SEED})`, TF op determinism, `TF_ENABLE_ONEDNN_OPTS=0` (oneDNN's
stride-2 1x1 conv filter gradient corrupts the heap at odd batch sizes; see the script). Held-out accuracy is measured
by the script on `split="test"` (360 images, stratified, disjoint from train) after reloading the
written file. Train time is wall time on the 2-core development host (CPU, no GPU), which was shared
with other jobs: expect up to 2x less on an idle machine. Training is deterministic: rerunning a row's
command on this stack writes the same weights and accuracy.

| file | builder | input | written by | params | size | epochs | held-out accuracy | train time | reproduce |
|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Load a file with `keras.models.load_model(path, compile=False)` (Keras 3). The files hold no
optimizer state. tf_keras cannot read files written by Keras 3 (see `/work/shared/STACK.md`); edgecnn's
loader translates them.

Reproduce: `{COMMAND}` trains the five default files ({", ".join(f"`{s.file}`" for s in SPECS if s.default)});
`{COMMAND} --all` also trains the MiniModel variants; `--only NAME` trains one and keeps the other
rows; `--out DIR` writes elsewhere.

## Shipped as definitions only

Every shipped file must stay within 2 MB, so these are not trained here:

| name | builder call | why untrained |
|---|---|---|
{untrained}
"""
    _atomic_write(out / "README.md", text)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _load_manifest(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return json.loads(path.read_text(encoding="utf-8"))["models"]


def main(argv: list[str] | None = None) -> int:
    names = [s.name for s in SPECS]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=names, metavar="NAME",
                        help=f"train only this model (repeatable); one of: {', '.join(names)}")
    parser.add_argument("--out", type=Path, default=ROOT / "models", help="output folder (default: models/)")
    parser.add_argument("--all", action="store_true", help="also train the optional MiniModel variants")
    parser.add_argument("--readme", action="store_true", help="only regenerate README.md from manifest.json")
    parser.add_argument("--epochs", type=int, default=None,
                        help="override every model's epochs (for quick checks; the README records it)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    manifest_path = args.out / "manifest.json"
    records = {r["name"]: r for r in _load_manifest(manifest_path)}
    if args.readme:
        write_readme([records[n] for n in names if n in records], out=args.out)
        return 0

    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    if args.only:
        chosen = [s for s in SPECS if s.name in args.only]
    else:
        chosen = [s for s in SPECS if s.default or args.all]
    total = time.perf_counter()
    for spec in chosen:
        record = train_one(spec, out=args.out, epochs=args.epochs)
        records[spec.name] = record
        print(f"{record['file']:<30} params={record['params']:>9,} size={record['bytes'] / 1e6:5.2f} MB "
              f"epochs={record['epochs']:>3} test_acc={record['test_accuracy']:.4f} "
              f"train={record['train_seconds']:6.1f} s", flush=True)
        ordered = [records[n] for n in names if n in records]
        _atomic_write(manifest_path, json.dumps({"models": ordered}, indent=2) + "\n")
        write_readme(ordered, out=args.out)
    print(f"total {time.perf_counter() - total:.1f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
