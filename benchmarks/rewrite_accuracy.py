"""Issue 3 accuracy acceptance: rewrite trained models, recover by distillation, compare held-out accuracy.

On the bundled digits (train split for distillation, the disjoint test split of 360 images for accuracy):

- ``separable`` on models/mnist_cnn.h5 (the MNIST tutorial CNN) and models/minimodel_w8.h5 (the book's
  residual MiniModel, the shipped narrow width-8 variant): the rewritten layers' MACs must drop >= 5x and
  the held-out accuracy after distillation may lose <= 1.0 point;
- ``gap-head`` on the notebook CNN (``models.zoo.cifar_cnn``, Flatten -> Dense(1024) head, 703,594 params),
  trained here on digits at 32x32x3 (no trained file ships): <= 1.0 point loss with >= 3x fewer params.

Each row also shows the accuracy right after the rewrite (before fine-tuning) with the SVD initialization
and with fresh random initializers of the same architecture. Writes docs/rewrite_accuracy.md.

    python benchmarks/rewrite_accuracy.py [--epochs 20]      # ~10-15 minutes on 2 shared cores
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"  # training: see edgecnn/_tf.py
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def train_cifar_cnn(epochs: int, seed: int = 0):
    """The notebook CNN trained on digits 32x32x3 (Adam 1e-3, batch 32, full batches, seeded)."""
    import tensorflow as tf
    import tf_keras

    from edgecnn.data import load_data
    from models.zoo import cifar_cnn

    tf_keras.utils.set_random_seed(seed)
    model = cifar_cnn(keras_module=tf_keras)
    train = load_data("digits", input_shape=(32, 32, 3), split="train", seed=seed)
    model.compile(optimizer=tf_keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    ds = (tf.data.Dataset.from_tensor_slices((train.x, train.y)).shuffle(len(train.x), seed=seed)
          .batch(32, drop_remainder=True))
    model.fit(ds, epochs=epochs, verbose=0)
    return model


def run(name: str, model, *, to: str, epochs: int, seed: int) -> dict:
    from edgecnn.rewriting import rewrite

    start = time.perf_counter()
    fresh = rewrite(model, to=to, data="digits", init="random", seed=seed)
    result = rewrite(model, to=to, data="digits", epochs=epochs, seed=seed, progress=False)
    init_only = rewrite(model, to=to, data="digits", seed=seed)
    rows = result.rewritten
    macs = (sum(r.macs_before for r in rows), sum(r.macs_after for r in rows))
    return {
        "model": name, "rewrite": to, "layers": ", ".join(r.name for r in rows),
        "macs": macs, "params": (model.count_params(), result.model.count_params()),
        "weight_error": max(r.weight_error for r in rows if r.weight_error is not None),
        "output_error": (max(r.output_error for r in init_only.rewritten), max(r.output_error for r in fresh.rewritten)),
        "before": result.accuracy_before, "svd_init": init_only.accuracy_after, "random_init": fresh.accuracy_after,
        "after": result.accuracy_after, "epochs": result.distill.epochs_run, "best": result.distill.best_epoch,
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20, help="distillation epochs (early stopping, patience 3)")
    parser.add_argument("--cifar-epochs", type=int, default=20, help="training epochs of the notebook CNN")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "docs" / "rewrite_accuracy.md"))
    args = parser.parse_args()

    from edgecnn._tf import import_tensorflow

    import_tensorflow()
    import edgecnn
    from edgecnn.files import write_atomic

    rows = []
    for name, file in (("MNIST tutorial CNN", "mnist_cnn.h5"), ("MiniModel w8 (residual)", "minimodel_w8.h5")):
        rows.append(run(f"{name}, models/{file}", edgecnn.load(ROOT / "models" / file), to="separable",
                        epochs=args.epochs, seed=args.seed))
        print(rows[-1], flush=True)
    t = time.perf_counter()
    cifar = train_cifar_cnn(args.cifar_epochs, args.seed)
    train_s = time.perf_counter() - t
    rows.append(run(f"notebook CNN (zoo.cifar_cnn, trained here {args.cifar_epochs} epochs, {train_s:.0f} s)", cifar,
                    to="gap-head", epochs=args.epochs, seed=args.seed))
    print(rows[-1], flush=True)

    def pct(v):
        return "-" if v is None else f"{100 * v:.2f}%"

    lines = [
        "# Rewrite + distillation: held-out accuracy on the bundled digits",
        "",
        f"`python benchmarks/rewrite_accuracy.py --epochs {args.epochs} --cifar-epochs {args.cifar_epochs} "
        f"--seed {args.seed}`: distillation from the original model (T=4, alpha=0.5 with the labels, Adam 1e-3, "
        "batch 32, early stopping on a 10% validation split of the train set, patience 3, best weights), "
        "accuracy on the disjoint test split (360 images). Host CPU, 2 shared cores.",
        "",
        "| model | rewrite | layers | their MACs before -> after | model params | weight err (max) | "
        "output err SVD / random init | accuracy original | right after rewrite: SVD init / random init | "
        "after distillation | loss (points) | epochs (best) | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    checks = []
    for r in rows:
        drop = 100 * (r["before"] - r["after"])
        mac_cut = r["macs"][0] / r["macs"][1]
        param_cut = r["params"][0] / r["params"][1]
        lines.append(
            f"| {r['model']} | {r['rewrite']} | {r['layers']} | {r['macs'][0]:,} -> {r['macs'][1]:,} ({mac_cut:.1f}x) | "
            f"{r['params'][0]:,} -> {r['params'][1]:,} ({param_cut:.1f}x) | {r['weight_error']:.3f} | "
            f"{r['output_error'][0]:.3f} / {r['output_error'][1]:.3f} | {pct(r['before'])} | "
            f"{pct(r['svd_init'])} / {pct(r['random_init'])} | {pct(r['after'])} | {drop:+.2f} | "
            f"{r['epochs']} ({r['best']}) | {r['seconds']:.0f} |")
        if r["rewrite"] == "separable":
            checks.append((f"{r['model']}: separable MACs cut >= 5x ({mac_cut:.1f}x)", mac_cut >= 5))
        else:
            checks.append((f"{r['model']}: gap-head params cut >= 3x ({param_cut:.1f}x)", param_cut >= 3))
        checks.append((f"{r['model']}: loss <= 1.0 point ({drop:+.2f})", drop <= 1.0))
        checks.append((f"{r['model']}: SVD init closer than random init (output error, accuracy)",
                       r["output_error"][0] < r["output_error"][1] and r["svd_init"] >= r["random_init"]))
    lines += ["", "Acceptance:", ""] + [f"- {'met' if ok else 'NOT MET'}: {text}" for text, ok in checks] + [""]
    write_atomic(Path(args.out), "\n".join(lines))
    print("\n".join(lines[-len(checks) - 1:]))
    print(f"wrote {args.out}")
    sys.exit(0 if all(ok for _, ok in checks) else 1)


if __name__ == "__main__":
    main()
