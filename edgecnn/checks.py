"""One rule per kind of number, shared by the command line, recipes and the Python API.

``--epochs -5``, a recipe's ``finetune.epochs = -5`` and ``compress(..., epochs=-5)`` meet the same rule and
the same message, before any model is loaded. Booleans are not numbers here, and NaN or infinity never pass.

Example:
    >>> check_number(3, rule="epochs", name="--epochs")
    3
    >>> check_number(-5, rule="epochs", name="--epochs")
    Traceback (most recent call last):
    ...
    edgecnn.errors.EdgecnnError: --epochs: Expected an integer >= 0. Received: -5
    >>> check_number(float("nan"), rule="percent", name="--max-regression")
    Traceback (most recent call last):
    ...
    edgecnn.errors.EdgecnnError: --max-regression: Expected a finite number >= 0. Received: nan
    >>> check_numbers([0.25, 1.5], rule="ratio", name="prune.ratios")
    Traceback (most recent call last):
    ...
    edgecnn.errors.EdgecnnError: prune.ratios: Expected a number in (0, 1). Received: 1.5
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from edgecnn.errors import EdgecnnError


@dataclass(frozen=True)
class Rule:
    """An integer or a finite number within bounds; ``low_open``/``high_open`` exclude the bound itself."""

    integer: bool
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a finite number" if self.low is None or self.high is None \
            else "a number"
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"{kind} in {left}{_fmt(self.low)}, {_fmt(self.high)}{right}"
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {_fmt(self.low)}"
        if self.high is not None:
            return f"{kind} {'<' if self.high_open else '<='} {_fmt(self.high)}"
        return kind

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return False
        return True


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


RULES: dict[str, Rule] = {
    "epochs": Rule(True, 0),
    "count": Rule(True, 1),  # runs, samples, batch size, threads, candidates, rank
    "non_negative_int": Rule(True, 0),  # warmup, patience, back-offs, parameter thresholds
    "seed": Rule(True, 0, 2**32 - 1),
    "opset": Rule(True, 7, 18),  # what tf2onnx 1.17 converts to
    "ratio": Rule(False, 0, 1, low_open=True, high_open=True),  # pruning ratios
    "fraction": Rule(False, 0, 1),  # alpha
    "energy": Rule(False, 0, 1, low_open=True),  # singular value energy, bottleneck ratio
    "sparsity": Rule(False, 0, 1, high_open=True),
    "positive": Rule(False, 0, low_open=True),  # seconds, learning rate, temperature
    "non_negative": Rule(False, 0),  # latency budget, min gain
    "percent": Rule(False, 0),  # --max-regression
    "points": Rule(False, 0, 100),  # accuracy budgets
}


def check_number(value: Any, *, rule: str, name: str) -> Any:
    """Return ``value`` if it satisfies ``RULES[rule]``, else raise one line naming ``name``.

    Raises:
        EdgecnnError: the value is of the wrong type, not finite, or out of range.
    """
    spec = RULES[rule]
    if not spec.accepts(value):
        raise EdgecnnError(f"{name}: Expected {spec.describe()}. Received: {value!r}")
    return value


def check_optional(value: Any, *, rule: str, name: str) -> Any:
    """:func:`check_number`, letting ``None`` (not given) through."""
    return None if value is None else check_number(value, rule=rule, name=name)


def check_numbers(values: Iterable[Any], *, rule: str, name: str, allow_empty: bool = True) -> list:
    """Every element of a list satisfies the rule (and the list is not empty unless ``allow_empty``)."""
    values = list(values)
    if not values and not allow_empty:
        raise EdgecnnError(f"{name}: Expected at least one value. Received: []")
    for v in values:
        check_number(v, rule=rule, name=name)
    return values
