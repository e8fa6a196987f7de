"""``low-rank-dense``: a Dense layer (n -> m) becomes Dense(n -> r, no bias) then Dense(r -> m).

The second layer keeps the name, bias and activation. Initialization: truncated SVD of the kernel
(:func:`edgecnn.rewriting.factorize.dense_factors`), the singular values split evenly between the two.
The rank is ``rank`` when given, else the smallest keeping ``energy`` of the squared singular values,
else ``round(ratio * min(n, m))``.

Example:
    >>> import tf_keras
    >>> inp = tf_keras.Input((64,))
    >>> dense = tf_keras.layers.Dense(32, name="d")
    >>> from edgecnn.graph import ModelGraph
    >>> g = ModelGraph(tf_keras.Model(inp, dense(inp)))
    >>> rank_of(dense, Options()), LOW_RANK_DENSE.gain(dense, g, Options(rank=30))
    (16, 'no parameter gain (rank 30 keeps 2880 of 2048 weights)')
    >>> rank_of(dense, Options(rank=33))
    Traceback (most recent call last):
    ...
    edgecnn.errors.EdgecnnError: low-rank-dense rank of 'd': Expected 1 to 32 (min of its 64x32 kernel). Received: 33
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from edgecnn.errors import EdgecnnError
from edgecnn.rewriting.base import Options, Plan, Rewrite, activation_of, first_call, node_of
from edgecnn.rewriting.factorize import dense_factors, rank_for_energy, singular_values


def rank_of(layer: Any, options: Options) -> int:
    """The rank for ``layer`` under ``options``."""
    n, m = (int(d) for d in layer.kernel.shape)
    if options.rank is not None:
        if not 1 <= options.rank <= min(n, m):
            raise EdgecnnError(f"low-rank-dense rank of '{layer.name}': Expected 1 to {min(n, m)} (min of its {n}x{m} "
                               f"kernel). Received: {options.rank}")
        return int(options.rank)
    if options.energy is not None:
        return rank_for_energy(singular_values(layer.get_weights()[0]), options.energy)
    return max(1, int(round(options.ratio * min(n, m))))


def _matches(layer: Any, graph: Any) -> Optional[str]:
    kind = type(layer).__name__
    return None if kind == "Dense" else f"not a Dense ({kind})"


def _gain(layer: Any, graph: Any, options: Options) -> Optional[str]:
    n, m = (int(d) for d in layer.kernel.shape)
    r = rank_of(layer, options)
    if r * (n + m) >= n * m:
        return f"no parameter gain (rank {r} keeps {r * (n + m)} of {n * m} weights)"
    return None


def _plan(layer: Any, graph: Any, options: Options) -> Plan:
    import tf_keras

    r = rank_of(layer, options)
    weights = layer.get_weights()
    first, second, error = dense_factors(weights[0], rank=r)
    config = layer.get_config()
    svd = options.init == "svd"

    def build(call: Any, state: dict) -> Any:
        low, new = first_call(state, "low", lambda: tf_keras.layers.Dense(
            r, use_bias=False, name=call.unique(f"{layer.name}_low")))
        dense, _ = first_call(state, "dense", lambda: tf_keras.layers.Dense(
            config["units"], activation=activation_of(layer), use_bias=config["use_bias"], name=layer.name))
        out = dense(low(call.inputs[0]))
        if new and svd:
            low.set_weights([first])
            dense.set_weights([second, *weights[1:]])
        return out

    def apply(state: dict, x: np.ndarray) -> np.ndarray:
        return state["dense"](state["low"](x)).numpy()

    node = node_of(graph, layer.name)
    return Plan(layer.name, "low-rank-dense", {layer.name: build}, error, (node.inputs[0], node.outputs[0]), apply)


LOW_RANK_DENSE = Rewrite(
    name="low-rank-dense",
    summary="Dense -> two Dense of rank r (truncated SVD init)",
    layer_type="Dense",
    matches=_matches,
    gain=_gain,
    plan=_plan,
)
