"""Architecture rewrites initialized from the trained weights, optionally recovered by distillation.

``rewrite(model, to="separable")`` replaces every selected layer by a cheaper block (REWRITES table:
``separable``, ``bottleneck``, ``gap-head``, ``low-rank-dense``), initializes it from the layer's weights
by SVD, reports per layer the MACs/params before and after, the weight reconstruction error and the
relative output error on sample data, and, given data and epochs, fine-tunes the result against the
original by knowledge distillation (:func:`edgecnn.distill.distill`). ``select="measured"`` keeps only
the rewrites that make the whole model faster on the target runtime by more than the noise
(:func:`edgecnn.rewriting.select.measure_rewrites`). All structure changes go through
:func:`edgecnn.surgery.rebuild`: the input model is never modified and shares no variable with the result.

Example:
    >>> import tf_keras
    >>> inp = tf_keras.Input((16, 16, 3), name="img")
    >>> x = tf_keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="stem")(inp)
    >>> x = tf_keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="conv")(x)
    >>> out = tf_keras.layers.Dense(10, activation="softmax", name="head")(tf_keras.layers.Flatten(name="flat")(x))
    >>> model = tf_keras.Model(inp, out)
    >>> r = rewrite(model, to="separable")
    >>> [(row.name, row.kept, row.reason) for row in r.layers]
    [('stem', False, 'fewer than 4 input channels'), ('conv', True, '')]
    >>> [l.name for l in r.model.layers]
    ['img', 'stem', 'conv_dw', 'conv', 'flat', 'head']
    >>> r.layers[1].macs_before // r.layers[1].macs_after
    7
    >>> r.model.output_shape == model.output_shape, r.accuracy_after
    (True, None)
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from edgecnn.errors import DataError, EdgecnnError
from edgecnn.data import EVAL_ON_TRAIN_NOTE, budget_outcome
from edgecnn.rewriting.base import LayerRewrite, Options, Plan, Rewrite, RewriteResult
from edgecnn.rewriting.bottleneck import BOTTLENECK
from edgecnn.rewriting.gap_head import GAP_HEAD
from edgecnn.rewriting.low_rank_dense import LOW_RANK_DENSE
from edgecnn.rewriting.select import LatencyDelta, match_names, measure_rewrites
from edgecnn.rewriting.separable import SEPARABLE

__all__ = ["REWRITES", "LatencyDelta", "LayerRewrite", "Rewrite", "RewriteResult", "build", "measure_rewrites",
           "plan_rewrites", "rewrite"]

REWRITES: dict[str, Rewrite] = {r.name: r for r in (SEPARABLE, BOTTLENECK, GAP_HEAD, LOW_RANK_DENSE)}
SELECTS = ("auto", "all", "measured")
POOLINGS = ("avg", "max")
INITS = ("svd", "random")
SAMPLES = 32  # inputs for the per-layer output error
REWRITE_HINT = ("try fewer layers (--select measured, --layers/--exclude), a larger --ratio or --rank, "
                "more --epochs, or --to bottleneck")
NO_DATA_NOTE = ("no data given: accuracy was neither recovered (no fine-tuning) nor measured; the rewritten "
                "layers hold their initialization only, and output errors are on random inputs in [0, 1)")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _options(to: Any, select: Any, depth_multiplier: Any, ratio: Any, rank: Any, energy: Any, pooling: Any,
             epochs: Any, init: Any) -> Options:
    def bad(what: str, expected: str, value: Any) -> EdgecnnError:
        return EdgecnnError(f"rewrite {what}: Expected {expected}. Received: {value!r}")

    if to not in REWRITES:
        raise bad("kind", "one of " + ", ".join(REWRITES), to)
    if select not in SELECTS:
        raise bad("select", "one of " + ", ".join(SELECTS), select)
    if pooling not in POOLINGS:
        raise bad("pooling", "one of " + ", ".join(POOLINGS), pooling)
    if init not in INITS:
        raise bad("init", "one of " + ", ".join(INITS), init)
    if not _number(ratio) or not 0 < ratio <= 1:
        raise bad("ratio", "a number in (0, 1]", ratio)
    if not isinstance(depth_multiplier, int) or isinstance(depth_multiplier, bool) or depth_multiplier < 1:
        raise bad("depth multiplier", "an integer >= 1", depth_multiplier)
    if rank is not None and (not isinstance(rank, int) or isinstance(rank, bool) or rank < 1):
        raise bad("rank", "an integer >= 1", rank)
    if energy is not None and (not _number(energy) or not 0 < energy <= 1):
        raise bad("energy", "a number in (0, 1]", energy)
    if rank is not None and energy is not None:
        raise bad("rank/energy", "one of rank or energy", f"rank={rank}, energy={energy}")
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
        raise bad("epochs", "an integer >= 0", epochs)
    return Options(depth_multiplier=depth_multiplier, ratio=float(ratio), rank=rank,
                   energy=None if energy is None else float(energy), pooling=pooling, init=init)


def _working(model: Any) -> Any:
    import tf_keras

    if isinstance(model, tf_keras.Model) and (getattr(model, "_is_graph_network", False)):
        return model
    from edgecnn.io import load

    return load(model)


def plan_rewrites(model: Any, *, to: str, layers: Optional[Sequence[str]] = None,
                  exclude: Optional[Sequence[str]] = None, select: str = "auto",
                  options: Options = Options()) -> tuple[list[Plan], list[LayerRewrite]]:
    """The plans for the layers ``to`` rewrites in ``model``, and one report row per candidate.

    Layers of another type are listed only when a ``layers`` glob names them. ``select="all"`` rewrites
    every layer that can be rewritten; otherwise the rewrite's gain rule may skip it (with a reason).
    """
    from edgecnn.graph import ModelGraph

    rw = REWRITES[to]
    graph = ModelGraph(model)
    names = list(dict.fromkeys(n.layer.name for n in graph.nodes))
    wanted = set(match_names(names, layers, None))
    kept = set(match_names(names, layers, exclude))
    plans, rows = [], []
    for name in names:
        layer = model.get_layer(name)
        if name not in wanted:
            continue
        why = rw.matches(layer, graph)
        if why is None and name not in kept:
            why = "excluded"
        if why is None and select != "all":
            why = rw.gain(layer, graph, options)
        if why is not None:
            if layers is not None or type(layer).__name__ == rw.layer_type:
                rows.append(LayerRewrite(name, to, reason=why))
            continue
        plans.append(rw.plan(layer, graph, options))
        rows.append(LayerRewrite(name, to, kept=True))
    return plans, rows


def build(model: Any, plans: Sequence[Plan], *, bn_data: Optional[np.ndarray] = None) -> tuple[Any, list[dict]]:
    """``model`` with ``plans`` applied (through :func:`edgecnn.surgery.rebuild`, which re-estimates the
    BatchNorm statistics downstream of a rewrite on ``bn_data``) and each plan's new layers."""
    from edgecnn.surgery import rebuild

    states: list[dict] = [{} for _ in plans]
    table = {src: (fn, state) for plan, state in zip(plans, states) for src, fn in plan.builders.items()}

    def replace(call: Any) -> Any:
        entry = table.get(call.layer.name)
        return None if entry is None else entry[0](call, entry[1])

    return rebuild(model, replace=replace, bn_data=bn_data), states


def _samples(model: Any, x: Optional[np.ndarray], seed: int) -> list[np.ndarray]:
    if x is not None:
        return [x[:SAMPLES]]
    rng = np.random.default_rng(seed)
    return [rng.random((SAMPLES // 2, *(int(d) for d in t.shape[1:])), dtype=np.float32) for t in model.inputs]


def _fill_stats(model: Any, new: Any, plans: Sequence[Plan], states: Sequence[dict], rows: list[LayerRewrite],
                x: Optional[np.ndarray], seed: int, init_svd: bool) -> None:
    import tf_keras

    from edgecnn.analysis import analyze

    old_stats = {s.name: s for s in analyze(model).layers}
    new_stats = {s.name: s for s in analyze(new).layers}
    by_name = {r.name: r for r in rows}
    for row in rows:
        if row.name in old_stats:
            row.macs_before, row.params_before = old_stats[row.name].macs, old_stats[row.name].params
    if not plans:
        return
    probes = [t for p in plans for t in p.probe]
    inputs = _samples(model, x, seed)
    values = tf_keras.Model(model.inputs, probes)([*inputs] if len(inputs) > 1 else inputs[0], training=False)
    for i, (plan, state) in enumerate(zip(plans, states)):
        row = by_name[plan.name]
        old = [old_stats[src] for src in plan.builders if src in old_stats]
        new_rows = [new_stats[layer.name] for layer in state.values() if layer.name in new_stats]
        row.macs_before, row.params_before = sum(s.macs for s in old), sum(s.params for s in old)
        row.macs_after, row.params_after = sum(s.macs for s in new_rows), sum(s.params for s in new_rows)
        row.weight_error = plan.weight_error if init_svd else None
        before = np.asarray(values[2 * i + 1], np.float64)
        after = plan.apply(state, np.asarray(values[2 * i]))
        norm = float(np.linalg.norm(before))
        row.output_error = float(np.linalg.norm(after - before)) / norm if norm > 0 else float(np.linalg.norm(after))


def _data(data: Any, model: Any, seed: int, eval_on_train: bool) -> tuple[Any, Any, Any]:
    """(train, held-out test, HeldOut) for any data source (:func:`edgecnn.data.split_data`)."""
    from edgecnn.data import split_data

    if len(model.inputs) != 1:
        raise DataError(f"rewrite data: Expected a model with one input. Received: {len(model.inputs)} inputs")
    shape = tuple(model.inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise DataError(f"rewrite data: Expected a model input of fixed size. Received: {shape}")
    heldout = split_data(data, input_shape=tuple(int(d) for d in shape), seed=seed, eval_on_train=eval_on_train)
    return heldout.train, heldout.test, heldout


def _accuracy(model: Any, ds: Any) -> Optional[float]:
    if ds is None or ds.y is None or len(ds.x) == 0:
        return None
    out = model.outputs[0].shape
    if len(model.outputs) != 1 or len(out) != 2 or (out[-1] or 0) < 2:
        return None
    from edgecnn.data.checks import check_labelled, top1_accuracy
    from edgecnn.runtimes.keras import keras_outputs

    x, y = check_labelled(model, ds.x, ds.y, what="rewrite data")
    return top1_accuracy(keras_outputs(model, x)[0], y)


def rewrite(model: Any, *, to: str, layers: Optional[Sequence[str]] = None, exclude: Optional[Sequence[str]] = None,
            select: str = "auto", depth_multiplier: int = 1, ratio: float = 0.5, rank: Optional[int] = None,
            energy: Optional[float] = None, pooling: str = "avg", data: Any = None, epochs: int = 0,
            batch_size: int = 32, seed: int = 0, strategy: Any = None, runtime: str = "litert",
            quantize: str = "none", threads: int = 1, progress: bool = True, init: str = "svd", runs: int = 30,
            learning_rate: float = 1e-3, bn_data: Any = None, max_accuracy_drop: Optional[float] = None,
            eval_on_train: bool = False) -> RewriteResult:
    """Rewrite the selected layers of ``model`` into cheaper blocks initialized from its weights.

    Args:
        model: a working model (tf_keras), a live Keras 3 model or a model file (loaded with
            :func:`edgecnn.load`). Never modified.
        to: ``separable``, ``bottleneck``, ``gap-head`` or ``low-rank-dense``.
        layers: name globs of the layers to consider (default: all); a glob matching nothing is an error.
        exclude: name globs to leave alone.
        select: ``auto`` (skip layers that cannot gain: 1x1 convs, depthwise, < 4 input channels, no MAC or
            parameter gain), ``all`` (every layer that can be rewritten) or ``measured`` (``auto``, then keep
            only rewrites that make the model faster on ``runtime`` by more than the measured spread).
        depth_multiplier: separable depth multiplier ``m`` (rank-``m`` initialization).
        ratio: bottleneck width as a fraction of the input channels, in (0, 1] (and the default
            low-rank-dense rank as a fraction of ``min(n, m)``).
        rank: bottleneck width / low-rank-dense rank (1 to what the layer allows).
        energy: instead of ``rank``: keep this fraction of the squared singular values, in (0, 1].
        pooling: gap-head pooling, ``avg`` or ``max``.
        data: a ``--data`` spec (``digits``, folder, ``.npz``; its train split fine-tunes, its test split
            measures accuracy), a :class:`edgecnn.data.Dataset` or ``(x, y)`` (split 80/20 here); also the
            samples of the output error. None: random inputs, and no accuracy.
        epochs: distillation epochs (0: initialization only).
        batch_size, seed, strategy, progress, learning_rate: see :func:`edgecnn.distill.distill`.
        runtime, quantize, threads, runs: the latency measurement of ``select="measured"``.
        init: ``svd`` (from the trained weights) or ``random`` (fresh initializers, for comparison).
        bn_data: training inputs to re-estimate the BatchNorm statistics after the rewrite on, when ``data`` is
            None (with ``data``, its train split is used).
        max_accuracy_drop: points of held-out accuracy the rewritten model may lose (labelled data);
            ``result.budget`` says whether it was met.
        eval_on_train: measure on the training data when the data is too small to hold out a test split.

    Returns:
        A :class:`RewriteResult`.

    Raises:
        EdgecnnError: an invalid option, a pattern matching no layer, a rank the layer cannot take.
        DataError / ShapeMismatchError: data that does not fit the model.
    """
    options = _options(to, select, depth_multiplier, ratio, rank, energy, pooling, epochs, init)
    from edgecnn.distill import STRATEGIES

    if (isinstance(strategy, str) and strategy not in STRATEGIES) or (strategy is not None and isinstance(strategy, bool)):
        raise EdgecnnError(f"unknown strategy {strategy!r}: Expected one of {', '.join(STRATEGIES)}. "
                           f"Received: {strategy!r}")
    if isinstance(layers, str):
        layers = [layers]
    if isinstance(exclude, str):
        exclude = [exclude]
    model = _working(model)
    train, test, heldout = _data(data, model, seed, eval_on_train) if data is not None else (None, None, None)
    given, bn_info = model, None
    if train is not None:
        bn_data = train.x
        from edgecnn.training import repair_stale_batchnorm, stale_note

        model, bn_info = repair_stale_batchnorm(model, train)
    plans, rows = plan_rewrites(model, to=to, layers=layers, exclude=exclude, select=select, options=options)
    notes = []
    if select == "measured" and plans:
        variants = {p.name: build(model, [p])[0] for p in plans}
        calibration = train.x[:64] if train is not None and quantize == "int8" else None
        deltas = {d.name: d for d in measure_rewrites(model, variants, runtime=runtime, quantize=quantize,
                                                      threads=threads, runs=runs, calibration=calibration)}
        for row in rows:
            d = deltas.get(row.name)
            if d is None:
                continue
            row.latency_delta_ms, row.latency_spread_ms = d.delta_ms, d.spread_ms
            if not d.faster:
                row.kept = False
                row.reason = f"not faster than the noise ({d.delta_ms:+.3f} ms, spread {d.spread_ms:.3f} ms)"
        plans = [p for p in plans if deltas[p.name].faster]
        notes.append(f"latency measured on {runtime} ({quantize}, {threads} thread(s), {runs} runs each, host CPU)")
    if init == "random":  # fresh initializers, the same ones for the same seed
        import tf_keras

        tf_keras.utils.set_random_seed(int(seed))
    new, states = build(model, plans, bn_data=bn_data)
    _fill_stats(model, new, plans, states, rows, train.x if train is not None else None, seed, init == "svd")
    if not plans:
        notes.append(f"no layer was rewritten to {to}")
    result = RewriteResult(model=new, layers=rows, notes=notes)
    if data is None:
        notes.append(NO_DATA_NOTE)
        return result
    result.accuracy_before_as_given, result.original_batchnorm = _accuracy(given, test), bn_info
    if bn_info and bn_info["stale"]:
        notes.append(stale_note(bn_info) + f" (held-out: {100 * result.accuracy_before_as_given:.2f}% as given)")
    result.accuracy_before = _accuracy(model, test)
    if plans and bn_data is not None:
        notes.append("BatchNormalization statistics after each rewrite re-estimated on the training split")
    if epochs > 0 and plans:
        from edgecnn.distill import distill

        result.distill = distill(new, model, x=train.x, y=train.y, epochs=epochs, batch_size=batch_size,
                                 learning_rate=learning_rate, seed=seed, strategy=strategy, progress=progress)
    elif plans:
        notes.append("epochs=0: accuracy was not recovered (no fine-tuning)")
    result.accuracy_after = _accuracy(new, test)
    result.data = heldout.describe()
    if heldout.on_training_data:
        notes.append(EVAL_ON_TRAIN_NOTE)
    if max_accuracy_drop is not None:
        result.budget = budget_outcome(result.accuracy_before, result.accuracy_after,
                                       max_drop=max_accuracy_drop, hint=REWRITE_HINT)
    if result.accuracy_before is None:
        notes.append("the data has no labels (or the model is not a classifier): accuracy was not measured")
    return result
