"""The nouns of the rewrite package: Options, Rewrite (one table row), Plan (one layer's rewrite), results.

A :class:`Rewrite` answers three questions about a layer: can it be rewritten at all (``matches``), is it
worth it under the default selection (``gain``), and how (``plan``: the factorized weights and a builder
that calls the new layers inside :func:`edgecnn.surgery.rebuild`). Builders keep their layers in a
per-rebuild ``state`` dict, so building the same plan into two models never shares a variable.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

import numpy as np


@dataclass(frozen=True)
class Options:
    """Rewrite options (see :func:`edgecnn.rewriting.rewrite`)."""

    depth_multiplier: int = 1
    ratio: float = 0.5
    rank: Optional[int] = None
    energy: Optional[float] = None
    pooling: str = "avg"
    init: str = "svd"


@dataclass
class Plan:
    """One selected layer's rewrite, ready to be built into a new model.

    Attributes:
        name: the selected layer's name.
        kind: the rewrite (``separable``, ...).
        builders: source layer name -> ``fn(call, state) -> new output tensor(s)`` for
            :func:`edgecnn.surgery.rebuild` (gap-head replaces the Flatten and the Dense).
        weight_error: ``||W - W'|| / ||W||`` of the initialization (None where no linear equivalent).
        probe: the OLD graph's (input, output) tensors of the rewritten block, for the output error.
        apply: ``fn(state, x) -> y``: the new block on the probe input's values (after building).
    """

    name: str
    kind: str
    builders: dict[str, Callable[[Any, dict], Any]]
    weight_error: Optional[float]
    probe: tuple[Any, Any]
    apply: Callable[[dict, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Rewrite:
    """One row of the REWRITES table.

    Attributes:
        name: the ``--to`` value.
        summary: one line for help texts.
        layer_type: the class name of the layers it rewrites (``Conv2D``, ``Dense``).
        matches: ``fn(layer, graph) -> None`` when the layer can be rewritten, else the reason why not.
        gain: ``fn(layer, graph, options) -> None`` when the default selection keeps it, else the reason.
        plan: ``fn(layer, graph, options) -> Plan``; raises EdgecnnError on options the layer cannot take.
    """

    name: str
    summary: str
    layer_type: str
    matches: Callable[[Any, Any], Optional[str]]
    gain: Callable[[Any, Any, Options], Optional[str]]
    plan: Callable[[Any, Any, Options], Plan]


@dataclass
class LayerRewrite:
    """One row of the rewrite report (a rewritten layer, or a candidate that was left alone)."""

    name: str
    kind: str
    macs_before: Optional[int] = None
    macs_after: Optional[int] = None
    params_before: Optional[int] = None
    params_after: Optional[int] = None
    weight_error: Optional[float] = None
    output_error: Optional[float] = None
    latency_delta_ms: Optional[float] = None
    latency_spread_ms: Optional[float] = None
    kept: bool = False
    reason: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class RewriteResult:
    """What :func:`edgecnn.rewriting.rewrite` produced.

    Attributes:
        model: the rewritten tf_keras model (fine-tuned when data and epochs were given).
        layers: one :class:`LayerRewrite` per candidate, rewritten (``kept``) or not (``reason``).
        distill: the :class:`edgecnn.distill.DistillResult`, or None without fine-tuning.
        accuracy_before, accuracy_after: top-1 accuracy of the original and the result on the held-out
            split of labelled data (None without labelled data).
        notes: plain sentences for the user (e.g. that accuracy was not recovered).
        data: the held-out split the accuracies were measured on (:meth:`edgecnn.data.HeldOut.describe`).
        budget: with ``max_accuracy_drop``: ``met``, ``drop_points`` and, when missed, ``why`` with what to try.
    """

    model: Any = field(repr=False)
    layers: list[LayerRewrite]
    distill: Any = None
    accuracy_before: Optional[float] = None
    accuracy_after: Optional[float] = None
    notes: list[str] = field(default_factory=list)
    data: Optional[dict] = None
    budget: Optional[dict] = None
    accuracy_before_as_given: Optional[float] = None
    original_batchnorm: Optional[dict] = None

    @property
    def rewritten(self) -> list[LayerRewrite]:
        """The rows that were rewritten."""
        return [r for r in self.layers if r.kept]

    def as_dict(self) -> dict:
        """JSON-ready summary (without the model)."""
        return {"layers": [r.as_dict() for r in self.layers],
                "distill": self.distill.as_dict() if self.distill is not None else None,
                "accuracy_before": self.accuracy_before, "accuracy_after": self.accuracy_after,
                "notes": list(self.notes), "data": self.data, "budget": self.budget,
                "accuracy_before_as_given": self.accuracy_before_as_given,
                "original_batchnorm": self.original_batchnorm}


def activation_of(layer: Any) -> Any:
    """The layer's activation as its config value (a name or a serialized object)."""
    return layer.get_config().get("activation", "linear")


def first_call(state: dict, key: str, make: Callable[[], Any]) -> tuple[Any, bool]:
    """The layer stored under ``key`` in ``state`` (made on first use) and whether it was just made."""
    if key in state:
        return state[key], False
    state[key] = make()
    return state[key], True


def node_of(graph: Any, name: str) -> Any:
    """The first call (NodeView) of layer ``name``."""
    return next(n for n in graph.nodes if n.layer.name == name)
