"""Data-free compression: what edgecnn does for a model that comes without data.

- :mod:`~edgecnn.datafree.inputrange`: the range the model's inputs live in (Rescaling / Normalization layer,
  TFLite metadata, the first BatchNorm's statistics, or an assumption the report names);
- :mod:`~edgecnn.datafree.synthesize`: calibration inputs optimized to reproduce the model's BatchNorm
  statistics and to be classified confidently (ZeroQ, DeepInversion);
- :mod:`~edgecnn.datafree.cost`: how many inputs and steps fit the synthesis time and memory budgets
  (deterministic, from the model's MACs and activations);
- :mod:`~edgecnn.datafree.equalize`: cross-layer equalization, checked numerically;
- :mod:`~edgecnn.datafree.bias`: bias correction for int8 kernels;
- :mod:`~edgecnn.datafree.calibrate`: int8 conversion with activation ranges by quantization error;
- :mod:`~edgecnn.datafree.precision`: candidates (int8 per-channel / per-tensor / with float ops, dynamic
  range, fp16) judged by agreement with the float model on the synthesized inputs;
- :mod:`~edgecnn.datafree.slim`: shorter tensor names in the .tflite.

``edgecnn compress MODEL`` without ``--data`` runs them (``edgecnn.pipeline.datafree``); recipe table
``[datafree]``.

Example:
    >>> from edgecnn.datafree import KINDS, parse_range
    >>> KINDS[:2], parse_range("-1,1")
    (('int8', 'int8-per-tensor'), (-1.0, 1.0))
"""
from __future__ import annotations

from edgecnn.datafree.inputrange import InputRange, infer_input_range, parse_range
from edgecnn.datafree.precision import KINDS, Precision, build_candidates, choose

__all__ = ["InputRange", "KINDS", "Precision", "build_candidates", "choose", "infer_input_range", "parse_range"]
