"""Per-group pruning ratios: which channel groups to cut, chosen by accuracy lost per MAC saved.

One global ratio cuts every group alike: in a MobileNetV2 the narrow projections and the residual stream they
feed (24-32 channels, tied across the Adds) lose as large a share as the wide expansions (144-960 channels)
that hold most of the MACs. In the spirit of NetAdapt (Yang et al. 2018) and AMC (He et al. 2018),
:func:`group_schedule` measures, for every group, what pruning it alone costs (top-1 on held-out data, the
BatchNorm statistics after the cut re-estimated on training inputs) and what it saves (MACs, counted on the
pruned model), then adds groups cheapest first (fewest accuracy points per MAC saved) until a level of the
model's MACs is removed. Each level becomes one plan candidate, converted and timed on the target like every
other; the saving in MACs only orders the groups, the milliseconds are measured. The groups inside an inverted
residual (expansion -> depthwise -> projection input) are one group each and the residual stream is another,
so the structure is respected by construction (:mod:`edgecnn.pruning.groups`); squeeze-excite gates are cut
with the channels they scale.

Example:
    >>> import numpy as np, tf_keras
    >>> inp = tf_keras.Input((8, 8, 1))
    >>> x = tf_keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="wide")(inp)
    >>> x = tf_keras.layers.Conv2D(8, 1, activation="relu", name="narrow")(x)
    >>> x = tf_keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="last")(x)
    >>> model = tf_keras.Model(inp, tf_keras.layers.Dense(2, name="head")(
    ...     tf_keras.layers.GlobalAveragePooling2D()(x)))
    >>> rng = np.random.default_rng(0)
    >>> x_val, y_val = rng.random((32, 8, 8, 1), dtype=np.float32), rng.integers(0, 2, 32)
    >>> s = group_schedule(model, x_val=x_val, y_val=y_val, ratio=0.5, levels=(0.2,))
    >>> sorted(r["group"] for r in s.rows), [lv["level"] for lv in s.levels]  # 'narrow' (8 channels) stays whole
    (['last', 'wide'], [0.2])
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np

__all__ = ["Schedule", "group_schedule"]


@dataclass
class Schedule:
    """What :func:`group_schedule` measured and the ratios it proposes.

    Attributes:
        rows: per group ``{"group", "channels", "channels_after", "saved_macs", "accuracy", "drop"}`` (drop in
            points against ``baseline``), cheapest first.
        levels: per level ``{"level", "ratios": {group: ratio}, "saved_share", "predicted_drop"}``: the groups
            added until ``level`` of the MACs is saved (``saved_share`` and ``predicted_drop``: the sums of their
            single savings and drops, estimates: the plan measures the candidate itself).
        baseline: top-1 of the unpruned model on the held-out inputs.
        total_macs: the unpruned model's MACs.
    """

    rows: list = field(default_factory=list)
    levels: list = field(default_factory=list)
    baseline: Optional[float] = None
    total_macs: int = 0


def group_schedule(model: Any, *, x_val: np.ndarray, y_val: np.ndarray, ratio: float = 0.5,
                   levels: Sequence[float] = (0.2, 0.35, 0.5), importance: str = "l1", round_to: int = 8,
                   bn_data: Optional[np.ndarray] = None, min_share: float = 0.005,
                   progress: Callable[[str, int, int], None] = lambda text, done, total: None) -> Schedule:
    """Measure every group pruned alone at ``ratio`` and propose per-group ratios for each MAC ``level``.

    Args:
        model: the working model (flat tf_keras).
        x_val, y_val: held-out labelled inputs (nothing trained on them).
        ratio: the fraction of a chosen group's channels removed.
        levels: fractions of the model's MACs to remove; a level no set of groups reaches is left out.
        importance, round_to: as for :func:`edgecnn.pruning.channels.prune_channels`.
        bn_data: training inputs to re-estimate BatchNorm statistics on after each cut.
        min_share: groups whose cut saves less than this share of the MACs are not measured.

    Returns:
        :class:`Schedule`.
    """
    from edgecnn.analysis import analyze
    from edgecnn.data.checks import top1_accuracy
    from edgecnn.pruning.channels import apply_selection, check_ratio, select
    from edgecnn.pruning.groups import ChannelGraph
    from edgecnn.runtimes.keras import keras_outputs

    check_ratio(ratio, "per-group ratio")
    stats = analyze(model)
    total = stats.total_macs
    cg = ChannelGraph(model)
    base = top1_accuracy(keras_outputs(model, x_val)[0], y_val)
    macs = {r.name: r.macs for r in stats.layers}
    groups = cg.groups()
    rows = []
    for k, g in enumerate(groups):
        progress(f"group {g.name}", k, len(groups))
        sel = {gid: v for gid, v in select(cg, ratios={g.name: float(ratio)}, importance=importance,
                                           round_to=round_to).items() if gid == g.id}
        if not sel:
            continue  # too small to cut at this rounding
        # a cheap upper bound first: the layers the group touches hold at most this many MACs
        touched = sum(macs.get(n, 0) for n in set(g.producers + g.consumers + g.passes))
        if total and touched / total < min_share:
            continue
        variant = apply_selection(model, sel, cg=cg, bn_data=bn_data)
        saved = total - analyze(variant).total_macs
        acc = top1_accuracy(keras_outputs(variant, x_val)[0], y_val)
        rows.append({"group": g.name, "channels": g.channels, "channels_after": int(len(sel[g.id])),
                     "saved_macs": int(saved), "accuracy": acc, "drop": round(100 * (base - acc), 2)})
    progress("groups measured", len(groups), len(groups))
    # cheapest first: accuracy points lost per share of the MACs saved (a small floor so that free cuts are
    # ordered by what they save)
    rows.sort(key=lambda r: (max(r["drop"], 0.0) + 0.1) / max(r["saved_macs"] / max(total, 1), 1e-9))
    out = []
    for level in sorted(levels):
        ratios, saved, drop = {}, 0, 0.0
        for r in rows:
            if total and saved / total >= level:
                break
            ratios[r["group"]] = float(ratio)
            saved += r["saved_macs"]
            drop += max(r["drop"], 0.0)
        if not ratios or not total or saved / total < level:
            continue
        if out and out[-1]["ratios"] == ratios:
            continue
        out.append({"level": float(level), "ratios": ratios, "saved_share": round(saved / total, 4),
                    "predicted_drop": round(drop, 2)})
    return Schedule(rows=rows, levels=out, baseline=base, total_macs=int(total))
