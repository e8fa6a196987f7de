"""Rich tables for ``edgecnn prune`` (per-layer rows, totals, sizes, accuracy, sensitivity)."""
from __future__ import annotations

from typing import Any, Optional


def _pct(x: Optional[float]) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def print_prune(result: Any, *, output: Any = None, console: Any = None) -> None:
    """Print a :class:`~edgecnn.pruning.PruneResult`."""
    from rich.console import Console

    from edgecnn.report.tables import new_table, print_table

    console = console or Console()
    if result.method == "channels":
        table = new_table("channel groups (pruned together)", [("group", "name"), ("layers", "text"),
                                                               ("channels\nbefore", "number"),
                                                               ("channels\nafter", "number")])
        for row in result.layers:
            producers = row["producers"]
            layers = ", ".join(producers[:4]) + (f" (+{len(producers) - 4})" if len(producers) > 4 else "")
            table.add_row(row["name"], layers, str(row["channels_before"]), str(row["channels_after"]))
    else:
        table = new_table(f"{result.method} sparsity per layer", [("layer", "name"), ("target", "number"),
                                                                   ("achieved", "number")])
        for row in result.layers:
            table.add_row(row["name"], f"{row['target']:.2f}", f"{row['sparsity']:.4f}")
    print_table(table, console=console)
    ratio = result.params_after / max(1, result.params_before)
    console.print(f"params: {result.params_before:,} -> {result.params_after:,} ({ratio:.3f}x); non-zero: "
                  f"{result.nonzero_before:,} -> {result.nonzero_after:,}")
    s = result.sizes
    if s:
        console.print(f"gzip size: .h5 {s['h5_dense_gzip']:,} -> {s['h5_pruned_gzip']:,} bytes "
                      f"({s['h5_pruned_gzip'] / s['h5_dense_gzip']:.3f}x); .tflite {s['tflite_dense_gzip']:,} -> "
                      f"{s['tflite_pruned_gzip']:,} bytes ({s['tflite_pruned_gzip'] / s['tflite_dense_gzip']:.3f}x) "
                      f"(uncompressed .tflite {s['tflite_dense']:,} -> {s['tflite_pruned']:,})")
    if result.accuracy_before is not None:
        console.print(f"accuracy: {_pct(result.accuracy_before)} -> {_pct(result.accuracy_after)} "
                      f"(fine-tuned {result.epochs_run} epochs)")
    for note in result.notes:
        console.print(f"note: {note}", markup=False)
    if output is not None:
        console.print(f"wrote {output}", markup=False)


def print_sensitivity(rows: list[dict], *, console: Any = None) -> None:
    """Print :func:`~edgecnn.pruning.sensitivity.sensitivity` rows: one line per group, one column per ratio."""
    from rich.console import Console

    from edgecnn.report.tables import new_table, print_table

    console = console or Console()
    ratios = sorted({r["ratio"] for r in rows})
    base = rows[0]["baseline"] if rows else None
    table = new_table(f"sensitivity: accuracy drop (points) per group, baseline {_pct(base)}",
                      [("group", "name"), ("channels", "number")]
                      + [(f"-{int(round(100 * r))}%", "number") for r in ratios])
    by_group: dict[str, dict] = {}
    for r in rows:
        by_group.setdefault(r["group"], {"channels": r["channels"]})[r["ratio"]] = r
    for name, cells in by_group.items():
        table.add_row(name, str(cells["channels"]),
                      *[f"{cells[r]['drop']:+.2f} ({cells[r]['channels_after']})" if r in cells else "-" for r in ratios])
    print_table(table, console=console)
