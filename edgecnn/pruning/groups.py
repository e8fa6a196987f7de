"""Channel dependency groups: which channel slices of which layers must be cut together.

Every tensor's last axis belongs to a *channel space*. The :class:`ChannelGraph` walks the model's layer
calls in order and asks each layer's handler (:data:`~edgecnn.pruning.handlers.CHANNEL_HANDLERS`) how its
outputs relate to its inputs:

- a Conv2D / SeparableConv2D / Dense output starts a new **root** space (its filters or units);
- BatchNormalization, activations, pooling, DepthwiseConv2D (multiplier 1) ... keep the **same** space;
- Add / Multiply / ... merge all their inputs into one space (a residual block with its 1x1 shortcut conv
  is one group; a root merged with a derived space follows the derived mapping, e.g. an SE gate over a
  Concatenate's output);
- Concatenate, Flatten and a depthwise multiplier ``m`` **derive** a space whose indices map back to
  their inputs' spaces (offsets; ``h*w*C + c`` rows; ``c*m + j``);
- model outputs and layers that must keep their channels **block** a space (and, through a derived
  space, every root it comes from).

A :class:`PruningGroup` is a root space that is not blocked: cutting channel ``c`` of it removes filter
``c`` of every producer, the matching BatchNormalization and depthwise parameters, and the matching input
rows of every consumer, wherever derived spaces put them.

Example:
    >>> import tf_keras
    >>> inp = tf_keras.Input((8, 8, 3))
    >>> a = tf_keras.layers.Conv2D(8, 3, padding="same", name="a")(inp)
    >>> b = tf_keras.layers.Conv2D(8, 1, name="b")(a)
    >>> x = tf_keras.layers.Add(name="add")([a, b])
    >>> c = tf_keras.layers.Conv2D(4, 1, name="c")(x)
    >>> y = tf_keras.layers.Flatten(name="flat")(tf_keras.layers.Concatenate(name="cat")([x, c]))
    >>> out = tf_keras.layers.Dense(2, name="head")(y)
    >>> [(g.name, g.channels, g.producers, g.consumers) for g in channel_groups(tf_keras.Model(inp, out))]
    [('a', 8, ['a', 'b'], ['b', 'c', 'head']), ('c', 4, ['c'], ['head'])]
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from edgecnn.graph import ModelGraph, model_inputs, model_outputs
from edgecnn.pruning.handlers import handler_for


@dataclass
class PruningGroup:
    """A set of channel slices that are cut together.

    Attributes:
        id: the root space's id (key of a selection passed to :func:`edgecnn.pruning.channels.apply_selection`).
        name: the first producer's layer name (used for reports and per-layer ratios).
        channels: number of channels in the space.
        producers: layers whose output channels (filters/units) form the space.
        consumers: layers whose input channels (or Dense rows after Flatten) are cut with it.
        passes: layers the space flows through whose per-channel weights are cut (BN, depthwise).
    """

    id: int
    name: str
    channels: int
    producers: list[str] = field(default_factory=list)
    consumers: list[str] = field(default_factory=list)
    passes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"name": self.name, "channels": self.channels, "producers": list(self.producers),
                "consumers": list(self.consumers), "passes": list(self.passes)}


@dataclass
class _Space:
    width: int
    derived: Optional[tuple] = None  # ("concat", [ids]) | ("flatten", id, positions) | ("repeat", id, m)
    producers: list = field(default_factory=list)
    consumers: list = field(default_factory=list)
    passes: list = field(default_factory=list)
    blocked: Optional[str] = None
    tensors: list = field(default_factory=list)  # (layer name, output index) of tensors in the space


class ChannelGraph:
    """Channel spaces of every tensor of a flat tf_keras model (see the module docstring).

    Args:
        model: a flat functional model (the working model).

    Raises:
        UnsupportedLayerError: a layer type without a handler.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self._parent: list[int] = []
        self._spaces: list[_Space] = []
        self._of: dict[int, int] = {}
        self._calls: dict[str, int] = {}
        self.graph = ModelGraph(model)
        for n in self.graph.nodes:
            self._calls[n.layer.name] = self._calls.get(n.layer.name, 0) + 1
        for t in model_inputs(model):
            self.blocked_root(t, "model input")
        for node in self.graph.nodes:
            handler = handler_for(node.layer)
            self._current = node
            handler.trace(node, self)
            for i, t in enumerate(node.outputs):
                if id(t) not in self._of:  # a handler that forgot an output: keep it safe
                    self.blocked_root(t, f"output of '{node.layer.name}'")
                self._spaces[self.find(self._of[id(t)])].tensors.append((node.layer.name, i))
            if handler.kind == "pass" and handler.cut is not None:
                sid = self.space_of(node.inputs[0])
                self._spaces[sid].passes.append(node.layer.name)
        for t in model_outputs(model):
            self.block(t, "model output")

    # ------------------------------------------------------------------------ handler-facing operations
    def shared(self, layer: Any) -> bool:
        """True when ``layer`` is called more than once (its weights serve every call)."""
        return self._calls.get(layer.name, 0) > 1

    def _new(self, tensor: Any, space: _Space) -> int:
        sid = len(self._spaces)
        self._spaces.append(space)
        self._parent.append(sid)
        self._of[id(tensor)] = sid
        return sid

    def produce(self, tensor: Any, layer_name: str) -> None:
        """``tensor``'s channels are new, made by ``layer_name``'s filters."""
        self._new(tensor, _Space(int(tensor.shape[-1]), producers=[layer_name]))

    def consume(self, tensor: Any, layer_name: str) -> None:
        """``layer_name`` reads ``tensor``'s channels as input rows."""
        sid = self.space_of(tensor)
        for root in self.roots_of(sid):
            if layer_name not in self._spaces[root].consumers:
                self._spaces[root].consumers.append(layer_name)

    def blocked_root(self, tensor: Any, why: str) -> None:
        """``tensor`` gets a new space that must keep all its channels."""
        self._new(tensor, _Space(int(tensor.shape[-1]), blocked=why))

    def derive(self, tensor: Any, spec: tuple) -> None:
        """``tensor``'s channels map onto other spaces: concat, flatten or repeat (see module docstring)."""
        if spec[0] == "concat":
            spec = ("concat", [self.space_of(t) for t in spec[1]])
        else:
            spec = (spec[0], self.space_of(spec[1]), spec[2])
        self._new(tensor, _Space(int(tensor.shape[-1]), derived=spec))

    def same(self, tensor: Any, other: Any) -> None:
        """``tensor`` has the same channels as ``other`` (``other`` is known already)."""
        b = self.space_of(other)
        if id(tensor) not in self._of:
            self._of[id(tensor)] = b
            return
        self._union(self.space_of(tensor), b)

    def block(self, tensor: Any, why: str) -> None:
        """Every channel of ``tensor`` must stay (and of every root it derives from)."""
        for root in self.roots_of(self.space_of(tensor)):
            self._spaces[root].blocked = self._spaces[root].blocked or why

    # --------------------------------------------------------------------------------------- queries
    def find(self, sid: int) -> int:
        while self._parent[sid] != sid:
            self._parent[sid] = self._parent[self._parent[sid]]
            sid = self._parent[sid]
        return sid

    def space_of(self, tensor: Any) -> int:
        return self.find(self._of[id(tensor)])

    def roots_of(self, sid: int) -> list[int]:
        """The root spaces a (possibly derived) space is made of."""
        sid = self.find(sid)
        d = self._spaces[sid].derived
        if d is None:
            return [sid]
        parts = d[1] if d[0] == "concat" else [d[1]]
        out: list[int] = []
        for p in parts:
            out.extend(r for r in self.roots_of(p) if r not in out)
        return out

    def _union(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a == b:
            return
        sa, sb = self._spaces[a], self._spaces[b]
        assert sa.width == sb.width, (sa.width, sb.width)
        root, der = (a, b) if sb.derived is not None else (b, a)
        if ((sa.derived is None) != (sb.derived is None) and not (sa.blocked or sb.blocked)
                and root not in self.roots_of(der)):
            # a root tied to a derived space (an SE gate multiplied into a Concatenate's output): the root's
            # producers follow the derived mapping; the merged space stays derived
            if sb.derived is not None:
                a, b, sa, sb = b, a, sb, sa
            sb.derived = None
        elif sa.derived is not None or sb.derived is not None:  # two derived spaces tied: keep all
            for s in (a, b):
                for root in self.roots_of(s):
                    self._spaces[root].blocked = self._spaces[root].blocked or "derived channels tied by a merge"
            sa.derived = None
            sa.blocked = sa.blocked or "derived channels tied by a merge"
        self._parent[b] = a
        sa.producers += [p for p in sb.producers if p not in sa.producers]
        sa.consumers += [c for c in sb.consumers if c not in sa.consumers]
        sa.passes += sb.passes
        sa.tensors += sb.tensors
        sa.blocked = sa.blocked or sb.blocked

    def groups(self) -> list[PruningGroup]:
        """Prunable root spaces, in the order of their first producer."""
        out = []
        for sid in sorted({self.find(i) for i in range(len(self._spaces))}):
            s = self._spaces[sid]
            if s.derived is None and s.blocked is None and s.producers:
                out.append(PruningGroup(id=sid, name=s.producers[0], channels=s.width, producers=list(s.producers),
                                        consumers=list(s.consumers), passes=list(s.passes)))
        return out

    def tensors(self, sid: int) -> list[tuple[str, int]]:
        """(layer name, output index) of the tensors in space ``sid``."""
        return list(self._spaces[self.find(sid)].tensors)

    def keep_indices(self, selection: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
        """Kept channel indices of every space, given the kept indices of some root spaces."""
        memo: dict[int, np.ndarray] = {}

        def keep(sid: int) -> np.ndarray:
            sid = self.find(sid)
            if sid in memo:
                return memo[sid]
            s = self._spaces[sid]
            d = s.derived
            if d is None:
                k = np.asarray(selection.get(sid, np.arange(s.width)), dtype=np.int64)
            elif d[0] == "concat":
                parts, offset = [], 0
                for p in d[1]:
                    parts.append(keep(p) + offset)
                    offset += self._spaces[self.find(p)].width
                k = np.concatenate(parts)
            elif d[0] == "flatten":
                width = self._spaces[self.find(d[1])].width
                k = (np.arange(d[2])[:, None] * width + keep(d[1])[None, :]).reshape(-1)
            else:  # repeat: depthwise multiplier m
                k = (keep(d[1])[:, None] * d[2] + np.arange(d[2])[None, :]).reshape(-1)
            memo[sid] = k
            return k

        return {sid: keep(sid) for sid in range(len(self._spaces))}

    def keep_of(self, tensor: Any, keep: dict[int, np.ndarray]) -> np.ndarray:
        return keep[self.space_of(tensor)]

    def width_of(self, tensor: Any) -> int:
        return self._spaces[self.space_of(tensor)].width


def channel_groups(model: Any) -> list[PruningGroup]:
    """The prunable channel groups of a flat tf_keras model.

    Args:
        model: the working model (:func:`edgecnn.load`).

    Returns:
        One :class:`PruningGroup` per independently prunable channel space (model outputs excluded).

    Raises:
        UnsupportedLayerError: a layer type without a handler in ``CHANNEL_HANDLERS``.
    """
    return ChannelGraph(model).groups()
