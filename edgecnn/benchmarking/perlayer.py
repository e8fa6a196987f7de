"""Per-op latency: the top ops by time on LiteRT and on ONNX Runtime.

- ONNX Runtime: its own profiler (``SessionOptions.enable_profiling``); the JSON trace's ``Node`` events
  (``*_kernel_time``) are summed per node and divided by the runs.
- LiteRT: ai-edge-litert 2.3's Python interpreter exposes no op profiler (no ``BenchmarkProfilingData``
  hook, and the C++ ``benchmark_model`` binary is not in the wheel), so ops are timed by prefixes: the
  flatbuffer is cut after op 1, 2, ..., N (outputs moved to that op's outputs), every prefix is timed
  interleaved on the same interpreter settings (XNNPACK), and an op's time is the rise of the median from
  the previous prefix (clipped at 0; the first op carries the invoke overhead). XNNPACK fuses ops inside a
  delegate partition, so this measures what each op adds to the whole, as the runtime runs it.

Example:
    >>> import tf_keras
    >>> from edgecnn.exporting.convert import convert
    >>> inp = tf_keras.Input((16, 16, 3))
    >>> x = tf_keras.layers.Conv2D(8, 3, name="c1")(inp)
    >>> m = tf_keras.Model(inp, tf_keras.layers.Conv2D(4, 3, name="c2")(x))
    >>> ops = top_ops(convert(m, runtime="onnxruntime"), runtime="onnxruntime", runs=5)
    >>> sorted({o["type"] for o in ops} & {"Conv"}), abs(sum(o["share"] for o in ops) - 1) < 1e-6
    (['Conv'], True)
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Optional

import numpy as np

from edgecnn.errors import EdgecnnError


def top_ops(artifact: bytes, *, runtime: str, threads: int = 1, runs: int = 30, top: int = 10,
            max_cuts: Optional[int] = None, budget_s: Optional[float] = None) -> list[dict]:
    """The ``top`` ops by time: ``[{"name", "type", "ms", "share"}]``, ``ms`` per inference, ``share`` of all ops.

    LiteRT's prefix timing costs one interpreter per cut: ``max_cuts`` bounds the prefixes timed; a
    model with more ops is cut at that many evenly spaced ops, and each entry is then a run of consecutive ops
    (``"name": "first .. last"``, ``"ops"``: how many, ``"type"``: their types). ``budget_s``: seconds for
    timing all prefixes together (at least 5 rounds each, at most ``runs``).

    Raises:
        EdgecnnError: a runtime without op profiling.
    """
    if runtime not in PROFILERS:
        raise EdgecnnError(f"per-op profiling: Expected runtime {' or '.join(PROFILERS)}. Received: {runtime!r}")
    ops = PROFILERS[runtime](artifact, threads=threads, runs=runs, max_cuts=max_cuts, budget_s=budget_s)
    total = sum(o["ms"] for o in ops) or 1.0
    for o in ops:
        o["share"] = o["ms"] / total
    return sorted(ops, key=lambda o: -o["ms"])[:top]


def _ort_ops(artifact: bytes, *, threads: int, runs: int, max_cuts: Optional[int] = None,
             budget_s: Optional[float] = None) -> list[dict]:
    """ONNX Runtime's own profiler times every node in one session: ``max_cuts`` and ``budget_s`` (bounds of the
    LiteRT prefix timing) do not apply."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(tmp, "ort")
        session = ort.InferenceSession(artifact, options, providers=["CPUExecutionProvider"])
        inp = session.get_inputs()[0]
        shape = [1 if not isinstance(s, int) else s for s in inp.shape]
        x = np.random.default_rng(0).random(shape, dtype=np.float32)
        for _ in range(runs):
            session.run(None, {inp.name: x})
        trace = session.end_profiling()
        with open(trace) as f:
            events = json.load(f)
    per_node: dict[str, dict] = {}
    for e in events:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time"):
            continue
        name = e["name"][: -len("_kernel_time")]
        node = per_node.setdefault(name, {"name": name, "type": e.get("args", {}).get("op_name", "?"), "us": 0.0})
        node["us"] += float(e.get("dur", 0))
    return [{"name": n["name"], "type": n["type"], "ms": n["us"] / 1e3 / runs} for n in per_node.values()]


def cuts(n_ops: int, max_cuts: Optional[int]) -> list[int]:
    """The op counts after which the model is cut: every op, or ``max_cuts`` evenly spaced ones (the last op
    always).

    >>> cuts(5, None), cuts(10, 4)
    ([1, 2, 3, 4, 5], [1, 4, 7, 10])
    """
    if max_cuts is None or n_ops <= max_cuts:
        return list(range(1, n_ops + 1))
    return sorted({int(round(v)) for v in np.linspace(1, n_ops, max(2, max_cuts))})


def _litert_ops(artifact: bytes, *, threads: int, runs: int, max_cuts: Optional[int] = None,
                budget_s: Optional[float] = None) -> list[dict]:
    from ai_edge_litert.tools import flatbuffer_utils

    from edgecnn.benchmarking.core import time_artifacts

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(artifact))
    graph = model.subgraphs[0]
    ops = list(graph.operators or [])
    names = _op_names(model)
    labels = []
    for k, op in enumerate(ops, start=1):
        tensor = graph.tensors[op.outputs[0]]
        label = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
        labels.append((label.split(";")[0], names[k - 1]))
    points = cuts(len(ops), max_cuts)
    prefixes = {str(k): _prefix(model, k, flatbuffer_utils) for k in points}
    timed = time_artifacts(prefixes, runtime="litert", threads=threads, runs=runs, warmup=3,
                           min_runs=runs if budget_s is None else min(runs, 5), budget_s=budget_s)
    bad = [r for r in timed.values() if r.status != "ok"]
    if bad:
        raise EdgecnnError(f"per-op profiling: prefix {bad[0].model} {bad[0].status}: {bad[0].reason}")
    medians = {int(k): r.median_ms for k, r in timed.items()}
    out, previous, start = [], 0.0, 1
    for k in points:
        ms = max(0.0, medians[k] - previous)
        if k == start:
            out.append({"name": labels[k - 1][0], "type": labels[k - 1][1], "ms": ms})
        else:
            types = list(dict.fromkeys(t for _, t in labels[start - 1:k]))
            out.append({"name": f"{labels[start - 1][0]} .. {labels[k - 1][0]}", "type": "/".join(types),
                        "ops": k - start + 1, "ms": ms})
        previous, start = max(previous, medians[k]), k + 1
    return out


def _prefix(model: Any, k: int, flatbuffer_utils: Any) -> bytes:
    """The model cut after its ``k``-th op of subgraph 0 (outputs: that op's outputs)."""
    graph = model.subgraphs[0]
    ops, outputs, sigs = graph.operators, graph.outputs, model.signatureDefs
    try:
        graph.operators = ops[:k]
        graph.outputs = list(ops[k - 1].outputs)
        model.signatureDefs = []
        return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    finally:
        graph.operators, graph.outputs, model.signatureDefs = ops, outputs, sigs


def _op_names(model: Any) -> list[str]:
    from ai_edge_litert import schema_py_generated as schema

    codes = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    out = []
    for op in model.subgraphs[0].operators or []:
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        out.append(codes.get(builtin, str(builtin)) if builtin != schema.BuiltinOperator.CUSTOM
                   else (code.customCode or b"CUSTOM").decode())
    return out


# Runtime name -> its per-op profiler (a runtime without one has no row here).
PROFILERS = {"onnxruntime": _ort_ops, "litert": _litert_ops}
