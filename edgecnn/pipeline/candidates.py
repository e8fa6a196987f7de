"""The plan's candidates: what changes the recipe allows on a model, and how a chosen one is applied.

A candidate is one change to the model (a Dense head rewrite, one conv's separable rewrite, a global
channel-pruning ratio, keeping a first conv in float in an int8 model); :mod:`edgecnn.pipeline.planner` measures
and chooses them.

Example:
    >>> c = Candidate("prune:0.5", kind="prune", ratio=0.5)
    >>> c.as_dict()["id"], base_id("float-stage:32x32@prune:0.75")
    ('prune:0.5', 'float-stage:32x32')
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional

from edgecnn.graph import output_layer_names
from edgecnn.pipeline.recipe import TARGETS

SIZE_GAIN = 0.2
CONVS = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D")
FLOAT_KINDS = ("float-layer", "float-stage")


@dataclass
class Candidate:
    """One change the planner considered, with what it measured and what it decided."""

    id: str
    kind: str
    layer: Optional[str] = None
    layers: Optional[list] = None  # float-stage: every layer at the input resolution
    ratio: Optional[float] = None
    ratios: Optional[dict] = None  # prune-groups: {group: ratio} (edgecnn.pruning.schedule)
    removed: Optional[float] = None  # pruning: share of the model's MACs the candidate removes (measured)
    params: Optional[int] = None
    macs: Optional[int] = None
    base_ms: Optional[float] = None
    latency_ms: Optional[float] = None
    gain_ms: Optional[float] = None
    noise_ms: Optional[float] = None
    accuracy: Optional[float] = None
    accuracy_drop: Optional[float] = None
    probe_accuracy: Optional[float] = None  # after plan.probe_epochs of distillation (edgecnn.pipeline.probe)
    probe_drop: Optional[float] = None
    output_error: Optional[float] = None
    value: float = 0.0
    helps: bool = False  # judged worth it on its own measurement (before conflicts, budget and back-off)
    predicted_miss: bool = False  # its accuracy before (or after a short) fine-tuning predicts the budget cannot be met
    with_prune: Optional[str] = None  # precision candidates: the pruning candidate of the model they were timed on
    chosen: bool = False
    reason: str = ""
    error: Optional[str] = None

    def as_dict(self) -> dict:
        return asdict(self)


def _rewrite(kind: str, **options: Any) -> Callable[..., Any]:
    def apply(model: Any, cand: "Candidate", *, bn_data: Any = None) -> Any:
        from edgecnn.rewriting import rewrite

        layers = [cand.layer] if cand.layer else None
        return rewrite(model, to=kind, layers=layers, select="all", progress=False, bn_data=bn_data,
                       **options).model

    return apply


def _prune(model: Any, cand: "Candidate", *, importance: str = "l1", round_to: int = 8, bn_data: Any = None) -> Any:
    from edgecnn.pruning import prune_channels

    ratios = dict(cand.ratios) if cand.ratios else float(cand.ratio)
    return prune_channels(model, ratios=ratios, importance=importance, round_to=round_to, bn_data=bn_data)


def enumerate_candidates(model: Any, recipe: dict) -> list[Candidate]:
    """The candidates the recipe allows on this model (without measuring them)."""
    from edgecnn.analysis import analyze

    stats = analyze(model)
    out: list[Candidate] = []
    kinds = recipe["rewrite"]["kinds"] if recipe["rewrite"]["enabled"] else []
    output_layers = output_layer_names(model)

    head = _flatten_dense(model) if "gap-head" in kinds else None
    if head is not None:
        out.append(Candidate("gap-head", kind="gap-head", layer=head))
    for row in stats.layers:
        layer = model.get_layer(row.name) if _has_layer(model, row.name) else None
        if layer is None:
            continue
        cls = type(layer).__name__
        if cls == "Dense" and "low-rank-dense" in kinds and row.params >= recipe["rewrite"]["min_dense_params"] \
                and row.name not in output_layers:
            out.append(Candidate(f"low-rank-dense:{row.name}", kind="low-rank-dense", layer=row.name))
        if cls == "Conv2D" and max(layer.kernel_size) > 1 and int(layer.input.shape[-1]) >= 4:
            for kind in ("separable", "bottleneck"):
                if kind in kinds:
                    out.append(Candidate(f"{kind}:{row.name}", kind=kind, layer=row.name))
    if recipe["prune"]["enabled"] and recipe["prune"]["method"] == "channels":
        for r in recipe["prune"]["ratios"]:
            out.append(Candidate(f"prune:{r:g}", kind="prune", ratio=float(r)))
    limit = int(recipe["plan"]["max_candidates"])
    if len(out) > limit:
        # Keep the heaviest convs: they are where latency can move.
        macs = {row.name: row.macs for row in stats.layers}
        convs = sorted((c for c in out if c.kind in ("separable", "bottleneck")), key=lambda c: -macs.get(c.layer, 0))
        keep = {c.id for c in out if c.kind not in ("separable", "bottleneck")}
        keep |= {c.id for c in convs[: max(0, limit - len(keep))]}
        out = [c for c in out if c.id in keep]
    return out


def group_candidates(model: Any, recipe: dict, *, x_val: Any, y_val: Any, bn_data: Any,
                     progress: Callable[[str, int, int], None] = lambda text, done, total: None
                     ) -> tuple[list[Candidate], dict]:
    """Per-group pruning candidates (``prune.per_group``, needs labelled data): one per MAC level of
    :func:`edgecnn.pruning.schedule.group_schedule`, id ``prune-groups:LEVEL``; and the schedule for the report."""
    cfg = recipe["prune"]
    if not (cfg["enabled"] and cfg["method"] == "channels" and cfg["per_group"]) or x_val is None or y_val is None:
        return [], {}
    from edgecnn.pruning.schedule import group_schedule

    s = group_schedule(model, x_val=x_val, y_val=y_val, ratio=float(cfg["group_ratio"]),
                       levels=[float(v) for v in cfg["group_levels"]], importance=cfg["importance"],
                       round_to=int(cfg["round_to"]), bn_data=bn_data, progress=progress)
    out = [Candidate(f"prune-groups:{lv['level']:g}", kind="prune", ratio=float(lv["level"]), ratios=lv["ratios"])
           for lv in s.levels]
    return out, {"baseline": s.baseline, "total_macs": s.total_macs, "groups": s.rows, "levels": s.levels}


def precision_candidates(model: Any, recipe: dict) -> list[Candidate]:
    """Int8 targets whose runtime keeps chosen ops in float (``per_op_precision``: LiteRT): keep the first convs (fewer than 4 input channels), or every op at the input
    resolution, in float. On a busy 2-core host an int8 op at 32x32 cost about 75 us whatever its channel
    count (a 3x3 conv with 8 channels: 81 us int8, 39 us float), so once pruning had thinned the first stage,
    float was faster there. Measured like every candidate; these change no weights, so they need no data."""
    target = TARGETS[recipe["target"]]
    if not (target.row.per_op_precision and target.quantize == "int8" and recipe["quantize"]["float_first_convs"]):
        return []
    out = []
    size = tuple(model.inputs[0].shape[1:3])
    stage = []
    for layer in model.layers:  # the first stage: layers that read tensors at the input's resolution
        inputs = layer.input if isinstance(layer.input, list) else [layer.input]
        if type(layer).__name__ == "InputLayer" or any(len(t.shape) != 4 or tuple(t.shape[1:3]) != size
                                                        for t in inputs):
            continue
        stage.append(layer.name)
        if type(layer).__name__ in CONVS and int(layer.input.shape[-1]) < 4:
            out.append(Candidate(f"float:{layer.name}", kind="float-layer", layer=layer.name))
    convs = [n for n in stage if type(model.get_layer(n)).__name__ in CONVS]
    if len(convs) > 1:
        out.append(Candidate(f"float-stage:{size[0]}x{size[1]}", kind="float-stage", layers=stage))
    return out


def _has_layer(model: Any, name: str) -> bool:
    return any(layer.name == name for layer in model.layers)


def _flatten_dense(model: Any) -> Optional[str]:
    """The Dense layer fed by a Flatten (the head gap-head rewrites), or None."""
    from edgecnn.graph import ModelGraph

    g = ModelGraph(model)
    for n in g.nodes:
        if type(n.layer).__name__ == "Flatten":
            for c in g.consumers(n.layer.name):
                if _has_layer(model, c) and type(model.get_layer(c)).__name__ == "Dense":
                    return c
    return None


def apply(model: Any, cand: Candidate, recipe: dict, *, bn_data: Any = None) -> Any:
    """The model with one candidate change applied (weights initialized from the model's, not fine-tuned;
    BatchNorm statistics after the change re-estimated on ``bn_data``, training inputs, when given)."""
    if cand.kind in FLOAT_KINDS:  # the Keras model does not change; only its int8 conversion does
        return model
    if cand.kind == "prune":
        return _prune(model, cand, importance=recipe["prune"]["importance"], round_to=recipe["prune"]["round_to"],
                      bn_data=bn_data)
    options: dict = {}
    if cand.kind == "low-rank-dense":
        options["energy"] = float(recipe["rewrite"]["dense_energy"])
    return _rewrite(cand.kind, **options)(model, cand, bn_data=bn_data)


def apply_all(model: Any, chosen: list[Candidate], recipe: dict, *, bn_data: Any = None) -> tuple[Any, list[str]]:
    """Apply chosen candidates in a fixed order: head rewrites, conv rewrites, then pruning."""
    order = {"gap-head": 0, "low-rank-dense": 1, "separable": 2, "bottleneck": 2, "prune": 3}
    changes = []
    for cand in sorted(chosen, key=lambda c: (order.get(c.kind, 9), c.id)):
        if cand.kind in FLOAT_KINDS:
            continue
        model = apply(model, cand, recipe, bn_data=bn_data)
        changes.append(cand.id)
    return model, changes


def float_layers(cands: list[Candidate]) -> list[str]:
    """The layer names the chosen float candidates keep in float."""
    out: list[str] = []
    for c in cands:
        if c.kind in FLOAT_KINDS:
            out += c.layers or [c.layer]
    return list(dict.fromkeys(out))


def base_id(cid: str) -> str:
    """A candidate id without the ``@prune:R`` that only says what a precision change was measured on.

    Example:
        >>> base_id("float-stage:32x32@prune:0.75"), base_id("prune:0.75")
        ('float-stage:32x32', 'prune:0.75')
    """
    return cid.split("@")[0]
