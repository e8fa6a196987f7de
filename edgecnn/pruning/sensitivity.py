"""Per-group sensitivity: the accuracy drop when one channel group alone is pruned at several ratios.

Example:
    >>> import numpy as np, tf_keras
    >>> from edgecnn.data import Dataset
    >>> inp = tf_keras.Input((4, 4, 1))
    >>> x = tf_keras.layers.Conv2D(16, 3, padding="same", name="c1")(inp)
    >>> x = tf_keras.layers.GlobalAveragePooling2D()(x)
    >>> model = tf_keras.Model(inp, tf_keras.layers.Dense(2, name="head")(x))
    >>> rng = np.random.default_rng(0)
    >>> ds = Dataset(rng.random((32, 4, 4, 1), dtype=np.float32), rng.integers(0, 2, 32), None, "random")
    >>> rows = sensitivity(model, ds, ratios=(0.5,))
    >>> [(r["group"], r["ratio"], r["channels_after"]) for r in rows]
    [('c1', 0.5, 8)]
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from edgecnn.errors import DataError


def sensitivity(model: Any, data: Any, *, ratios: Sequence[float] = (0.25, 0.5, 0.75), importance: str = "l1",
                round_to: int = 8) -> list[dict]:
    """Accuracy drop per channel group and ratio (each group pruned alone, no fine-tuning).

    Args:
        model: the working model.
        data: a labelled ``Dataset`` (its samples are the evaluation set).
        ratios: fractions of channels removed.
        importance, round_to: as for :func:`edgecnn.pruning.channels.prune_channels`.

    Returns:
        Rows ``{"group", "channels", "ratio", "channels_after", "accuracy", "baseline", "drop"}`` (accuracy in
        [0, 1], drop in points).

    Raises:
        DataError: data without labels.
    """
    from edgecnn.pruning.channels import apply_selection, check_ratio, select
    from edgecnn.pruning.groups import ChannelGraph

    if data is None or data.y is None:
        raise DataError("sensitivity analysis measures accuracy: Expected labelled data. Received: no labels")
    for r in ratios:
        check_ratio(r, "analysis ratio")

    def acc(m: Any) -> float:
        from edgecnn.data.checks import top1_accuracy

        return top1_accuracy(m.predict(data.x, batch_size=128, verbose=0), data.y)

    cg = ChannelGraph(model)
    base = acc(model)
    rows = []
    x = data.x[:256] if importance == "activation" else None
    for g in cg.groups():
        for r in ratios:
            sel = select(cg, ratios={g.name: float(r)}, importance=importance, round_to=round_to, x=x)
            sel = {k: v for k, v in sel.items() if k == g.id}
            kept = len(sel[g.id]) if g.id in sel else g.channels
            a = acc(apply_selection(model, sel, cg=cg)) if sel else base
            rows.append({"group": g.name, "channels": g.channels, "ratio": float(r), "channels_after": int(kept),
                         "accuracy": a, "baseline": base, "drop": round(100 * (base - a), 2)})
    return rows
