"""What edgecnn shows people: terminal tables that stay readable at 80 columns, and self-contained HTML reports.

- :mod:`edgecnn.report.tables`: ``new_table`` / ``print_table`` (numbers never wrapped, names never cut), the
  ``inspect`` and ``export`` tables, ``human`` counts;
- :mod:`edgecnn.report.bench`: the ``bench`` table; :mod:`edgecnn.report.prune`: the ``prune`` tables;
- :mod:`edgecnn.report.html`: report.html with plotly charts, plotly.js inlined once (``assets/``).

The compress report (report.json, its table and report.html) is assembled by :mod:`edgecnn.pipeline.summary`
from these pieces; the model card of an export by :mod:`edgecnn.exporting.bundle`.
"""
