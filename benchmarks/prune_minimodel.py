"""Acceptance benchmark of issue 4: structured channel pruning of the book's full residual MiniModel.

Trains ``models.zoo.minimodel()`` (width 32, 4.37M params) on the digits data at 32x32x3 (Adam 1e-3,
batch 32, full batches only; weights cached under ``--cache``, never committed), then runs
``edgecnn.prune(method="channels", sparsity=0.5)`` with fine-tuning (distillation from the unpruned
model), and measures parameters, held-out accuracy and LiteRT 1-thread latency (fp32 and int8,
interleaved, medians) of both models in one run. Writes ``docs/prune_minimodel.md``.

    python benchmarks/prune_minimodel.py [--epochs 15] [--finetune-epochs 8] [--cache /tmp/edgecnn_prune]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgecnn._tf import import_tensorflow  # noqa: E402  (sets TF_ENABLE_ONEDNN_OPTS=0 first)

import_tensorflow()

import numpy as np  # noqa: E402

SEED = 0


def _batches(x, y, batch_size, seed):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size, drop_remainder=True)  # full batches only (oneDNN odd-batch crash, see _tf.py)


def trained_minimodel(*, cache: Path, epochs: int, width: int = 32):
    """The trained tf_keras MiniModel, from ``cache`` when present (same width/epochs), else trained now."""
    import tf_keras

    from edgecnn.data import load_data
    from models.zoo import minimodel

    path = cache / f"minimodel_w{width}_e{epochs}.h5"
    model = minimodel(width=width, keras_module=tf_keras)
    if path.exists():
        model.load_weights(str(path))
        return model, None
    train = load_data("digits", input_shape=(32, 32, 3), split="train")
    tf_keras.utils.set_random_seed(SEED)
    model = minimodel(width=width, keras_module=tf_keras)
    model.compile(optimizer=tf_keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(_batches(train.x, train.y, 32, SEED), epochs=epochs, verbose=2)
    seconds = time.perf_counter() - start
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.h5")
    model.save_weights(str(tmp))
    tmp.rename(path)
    return model, seconds


def accuracy(model, ds) -> float:
    p = model.predict(ds.x, batch_size=128, verbose=0)
    return float(np.mean(np.argmax(p, axis=1) == ds.y))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--finetune-epochs", type=int, default=8)
    ap.add_argument("--sparsity", type=float, default=0.5)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/edgecnn_prune"))
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--train-only", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "prune_minimodel.md")
    args = ap.parse_args(argv)
    from edgecnn.data import load_data

    model, train_s = trained_minimodel(cache=args.cache, epochs=args.epochs)
    test = load_data("digits", input_shape=(32, 32, 3), split="test")
    print(f"trained MiniModel: {model.count_params():,} params, held-out accuracy {accuracy(model, test):.4f}"
          + (f", trained in {train_s:.0f} s" if train_s else " (cached)"), flush=True)
    if args.train_only:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
