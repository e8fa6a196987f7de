"""What data-free int8 steps can gain on a model, over several synthesized sets (issue 14): plain int8 PTQ on the
synthesized inputs against each of edgecnn's steps, the variant edgecnn keeps, and int8 calibrated on REAL
training images (what no data-free method can beat by better calibration), all scored on the real held-out digits.

docs/data_free.md measures one synthesized set per model; its MobileNetV2 gains moved between -1.9 and +1.5 dB from
run to run. Here every draw is a new synthesized set (another seed) and every variant of a draw is calibrated on
that same set, so each gain is paired; the summary gives the median and the range over draws. Two diagnostics
say what the steps have to work with:

- *weight-range spread*: per layer, the largest over the smallest per-channel range of the BatchNorm-folded
  kernel (what cross-layer equalization evens out; the ImageNet MobileNetV2 of Nagel et al. 2019 has depthwise
  layers whose ranges differ by orders of magnitude, which is why per-tensor int8 collapsed there);
- *mean-shift share*: of the int8 model's error on the real digits, per activation tensor, the share that a
  per-channel constant explains (what bias correction can remove), from LiteRT with every tensor kept.

    python benchmarks/data_free_headroom.py [--models mobilenetv2,mini_xception] [--draws 3] [--write-only]

The models are data_free.py's, trained the same way and cached in the same folder (--cache).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import data_free as B  # noqa: E402  (imports TensorFlow muted)
import numpy as np  # noqa: E402

from edgecnn.datafree.bnranges import SIGMAS  # noqa: E402

SAMPLES, STEPS, CALIBRATION = 232, 100, 200  # 200 calibrate, 32 judge edgecnn's steps (datafree.int8.MIN_HOLD)
PLAIN, REAL = "plain int8 PTQ on the synthesized inputs", "int8 calibrated on 200 real training digits (mse ranges)"
VARIANTS = [PLAIN, "+ activation ranges by quantization error", "+ BatchNorm-statistics ranges (6 sigma)",
            "+ cross-layer equalization", "+ bias correction (the DFQ chain)",
            "edgecnn's kept variant (judged on 32 held-out synthesized inputs)",
            "edgecnn's kept variant with datafree.batchnorm_sigmas = 6", REAL]
KEPT, KEPT_BN = VARIANTS[5], VARIANTS[6]


def spreads(model) -> tuple[float, float, str]:
    """(median, largest, its layer) over conv layers of max / min per-channel range of the BatchNorm-folded kernel."""
    from edgecnn.datafree.bias import _bn_gain, _following_bn

    rows = []
    for layer in model.layers:
        cls = type(layer).__name__
        if cls not in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D"):
            continue
        k = layer.get_weights()[1 if cls == "SeparableConv2D" else 0]
        bn = _following_bn(model, layer.name)
        gain = _bn_gain(bn) if bn is not None else 1.0
        r = np.abs(k.reshape(-1, k.shape[2] * k.shape[3]) if cls == "DepthwiseConv2D" else k.reshape(-1, k.shape[-1]))
        r = r.max(axis=0) * gain
        r = r[r > 0]
        rows.append((float(r.max() / r.min()), layer.name))
    return float(np.median([s for s, _ in rows])), *max(rows)


def mean_shift_share(data: bytes, float_data: bytes, x: np.ndarray) -> float:
    """Median over activation tensors of (per-channel mean error)^2 / mean squared error, int8 against the same
    calibrated model run in float, on ``x``."""
    from ai_edge_litert.interpreter import Interpreter

    def dump(model: bytes) -> dict:
        it = Interpreter(model_content=model, experimental_preserve_all_tensors=True)
        it.allocate_tensors()
        idx, details = it.get_input_details()[0]["index"], it.get_tensor_details()
        seen: dict = {}
        for sample in x:
            it.set_tensor(idx, sample[None])
            it.invoke()
            for d in details:
                try:
                    v = it.get_tensor(d["index"])
                except ValueError:
                    continue
                if v.ndim != 4 or v.shape[0] != 1:
                    continue  # activations only (kernels have no batch of one)
                if v.dtype == np.int8 and d["quantization"][0]:
                    s, z = d["quantization"]
                    v = (v.astype(np.float32) - z) * s
                elif v.dtype != np.float32:
                    continue
                seen.setdefault(d["name"], []).append(v.reshape(-1, v.shape[-1]))
        return {k: np.concatenate(v) for k, v in seen.items()}

    f, q = dump(float_data), dump(data)
    shares = []
    for name, a in f.items():
        b = q.get(name)
        if b is None or b.shape != a.shape or name.startswith("serving_default"):
            continue
        e = b - a
        total = float(np.mean(e ** 2))
        if total > 0:
            shares.append(float(np.mean(e.mean(axis=0) ** 2)) / total)
    return float(np.median(shares))


def draw(name: str, model, seed: int, x_test, ref, x_real, log) -> dict:
    from edgecnn.datafree.bias import correct_bias, corrections
    from edgecnn.datafree.calibrate import Int8Builder
    from edgecnn.datafree.equalize import equalize
    from edgecnn.datafree.int8 import Calibrations, build_int8
    from edgecnn.datafree.synthesize import synthesize
    from edgecnn.runtimes.keras import keras_outputs

    lo, hi = B.MODELS[name]["range"]
    t0 = time.perf_counter()
    syn = synthesize(model, samples=SAMPLES, steps=STEPS, input_range=(lo, hi), seed=seed)
    x, cal = syn.x, syn.x[:CALIBRATION]
    log(f"  {name} draw {seed}: synthesized {len(x)} in {time.perf_counter() - t0:.0f} s")
    eq = equalize(model, x=cal).model
    builders = {("original", r): Int8Builder(model, x=cal, input_range=(lo, hi), ranges=r) for r in ("minmax", "mse")}
    builders["original", "bn"] = Int8Builder(model, x=cal, input_range=(lo, hi), batchnorm_sigmas=SIGMAS)
    builders["equalized", "bn"] = Int8Builder(eq, x=cal, input_range=(lo, hi), batchnorm_sigmas=SIGMAS)
    real = Int8Builder(model, x=x_real, input_range=(lo, hi), ranges="mse")
    reference = keras_outputs(model, x)[0]
    out: dict = {"seed": seed, "bn_loss": syn.bn_loss, "variants": {}}
    for per_channel in (True, False):
        w = "per-channel" if per_channel else "per-tensor"
        bias = corrections(eq, correct_bias(eq, x=cal, per_channel=per_channel, expected="batchnorm")[0])
        details: dict = {}
        kind = "int8" if per_channel else "int8-per-tensor"
        kept = build_int8(Calibrations(original=model, equalized=eq, x=cal, input_range=(lo, hi)), kind=kind, x=x,
                          reference=reference, calibration_samples=CALIBRATION, details=details)
        kept_bn = build_int8(Calibrations(original=model, equalized=eq, x=cal, input_range=(lo, hi),
                                          batchnorm_sigmas=SIGMAS), kind=kind, x=x, reference=reference,
                             calibration_samples=CALIBRATION, details={})
        plain = builders["original", "minmax"].build(per_channel=per_channel)
        files = dict(zip(VARIANTS, [plain, builders["original", "mse"].build(per_channel=per_channel),
                                    builders["original", "bn"].build(per_channel=per_channel),
                                    builders["equalized", "bn"].build(per_channel=per_channel),
                                    builders["equalized", "bn"].build(per_channel=per_channel, bias=bias),
                                    kept.data, kept_bn.data, real.build(per_channel=per_channel)]))
        for label, data in files.items():
            agree, snr = B.fidelity(data, x_test, ref)
            proxy = B.fidelity(data, x[CALIBRATION:], reference[CALIBRATION:])[1]
            out["variants"][f"{label} ({w})"] = {"agreement": agree, "snr": snr, "bytes": len(data), "proxy": proxy}
        out["variants"][f"{KEPT} ({w})"]["kept"] = kept.label
        out["variants"][f"{KEPT_BN} ({w})"]["kept"] = kept_bn.label
        if per_channel:
            out["mean_shift_share"] = mean_shift_share(plain, builders["original", "minmax"].calibrated, x_test[:30])
        log(f"  {name} draw {seed} {w}: " + ", ".join(f"{v['snr']:.1f}" for k, v in out["variants"].items()
                                                        if k.endswith(f"({w})")) + f" dB; kept {kept.label}")
    return out


def measure(name: str, draws: int, cache: Path, log) -> dict:
    import edgecnn

    path = B.model_file(name, cache, log)
    x_test, y_test = B.heldout(name)
    x_train, _ = B.heldout(name, "train")
    x_real = x_train[np.random.default_rng(0).permutation(len(x_train))[:CALIBRATION]]
    ref = B.keras_reference(path, x_test)
    model = edgecnn.load(str(path))
    med, top, layer = spreads(model)
    return {"name": name, "title": B.MODELS[name]["title"], "spread": {"median": med, "max": top, "layer": layer},
            "keras_accuracy": float(np.mean(ref.argmax(1) == y_test)),
            "draws": [draw(name, model, seed, x_test, ref, x_real, log) for seed in range(draws)]}


def summary(r: dict) -> list[str]:
    rows = ["| variant | SNR dB per draw (real digits) | agreement per draw | median gain over plain PTQ, dB "
            "(min, max) | proxy SNR dB per draw (32 held-out synthesized inputs) |", "|---|---|---|---|---|"]
    for w in ("per-channel", "per-tensor"):
        plain = [d["variants"][f"{PLAIN} ({w})"]["snr"] for d in r["draws"]]
        for label in VARIANTS:
            vs = [d["variants"][f"{label} ({w})"] for d in r["draws"]]
            gain = np.array([v["snr"] for v in vs]) - np.array(plain)
            kept = f" (kept: {', '.join(v['kept'] for v in vs)})" if "kept" in vs[0] else ""
            snrs = " / ".join("%.1f" % v["snr"] for v in vs)
            agrees = " / ".join("%.3f" % v["agreement"] for v in vs)
            rows.append(f"| {label} ({w}){kept} | {snrs} | {agrees} | "
                        + ("-" if label == PLAIN else f"{np.median(gain):+.1f} ({gain.min():+.1f}, {gain.max():+.1f})")
                        + " | " + " / ".join("%.1f" % v["proxy"] for v in vs) + " |")
    return rows


def findings(r: dict) -> list[str]:
    """Computed from the table: which variants beat plain PTQ on the real digits in every draw, and how well the
    proxy (SNR on held-out synthesized inputs, all compress can see) ranks the variants as the real digits do."""
    out = []
    for w in ("per-channel", "per-tensor"):
        plain = [d["variants"][f"{PLAIN} ({w})"]["snr"] for d in r["draws"]]
        always = [label for label in VARIANTS[1:-1]
                  if all(d["variants"][f"{label} ({w})"]["snr"] > p for d, p in zip(r["draws"], plain))]
        rho = []
        for d in r["draws"]:  # the variants compress could build (not the real-data ceiling, not the repeats)
            vs = [d["variants"][f"{label} ({w})"] for label in VARIANTS[:5]]
            real, proxy = np.argsort(np.argsort([v["snr"] for v in vs])), np.argsort(np.argsort([v["proxy"] for v in vs]))
            rho.append(float(np.corrcoef(real, proxy)[0, 1]))
        out.append(f"- {w}: better than plain int8 PTQ on the real digits in every draw: "
                   f"{'; '.join(always) if always else 'none'}. Rank correlation between the proxy's order of the first "
                   f"five variants and the real digits' order, per draw: {' / '.join('%+.2f' % v for v in rho)}.")
    return out


def write(results: list[dict], total: float, path: Path) -> None:
    lines = ["# What data-free int8 steps can gain (issue 14)", "",
             f"Written by `python benchmarks/data_free_headroom.py` (2 cores; whole run {total / 60:.1f} min). Each "
             f"draw synthesizes {SAMPLES} inputs ({STEPS} steps, seed = draw) from the model as compress does; every "
             f"variant of a draw is calibrated on the same first {CALIBRATION} of them, so gains over plain int8 PTQ "
             "are paired. *Plain int8 PTQ*: the converter's min/max ranges on those inputs. *edgecnn's kept "
             "variant*: compress's own int8 step (edgecnn.datafree.int8.build_int8): equalization + bias correction, "
             "equalization alone or neither, whichever has the highest output SNR on the 32 held-out synthesized "
             "inputs. *Calibrated on real training digits*: the same mse ranges on 200 real training images, the "
             "ceiling that better calibration inputs could reach. SNR and top-1 agreement with the Keras model on "
             "the 360 real held-out test digits (LiteRT). The rows from *activation ranges* to *bias correction* "
             "add one step each to the row above (BatchNorm-statistics ranges: edgecnn.datafree.bnranges, "
             "6 standard deviations, fixed in advance); *proxy*: the same SNR on the 32 synthesized inputs held out "
             "from calibration, the only evidence compress has without data.", ""]
    for r in results:
        s = r["spread"]
        shares = [d["mean_shift_share"] for d in r["draws"]]
        lines += [f"## {r['title']}", "",
                  f"Keras held-out accuracy {100 * r['keras_accuracy']:.2f}%. Weight-range spread of the "
                  f"BatchNorm-folded kernels (largest / smallest per-channel range): median {s['median']:.1f}x over "
                  f"layers, largest {s['max']:.1f}x ({s['layer']}). Mean-shift share of the plain per-channel int8 "
                  f"error on real digits (median over activation tensors): "
                  f"{' / '.join(f'{v:.3f}' for v in shares)} per draw.", ""] + summary(r) + [""] + findings(r) + [""]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="mobilenetv2,mini_xception")
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--cache", default="/tmp/edgecnn_datafree")
    ap.add_argument("--out", default=str(ROOT / "docs" / "data_free_headroom.md"))
    ap.add_argument("--write-only", action="store_true", help="rewrite the doc from the last run's numbers")
    args = ap.parse_args()
    t0 = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - t0:6.0f} s] {text}", flush=True)

    saved = Path(args.cache) / "data_free_headroom.json"
    if args.write_only:  # the tables again from the last run's numbers
        data = json.loads(saved.read_text())
        write(data["results"], data["seconds"], Path(args.out))
        return
    results = [measure(n, args.draws, Path(args.cache), log) for n in args.models.split(",")]
    seconds = time.perf_counter() - t0
    write(results, seconds, Path(args.out))
    saved.write_text(json.dumps({"results": results, "seconds": seconds}, indent=1, default=str))
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
