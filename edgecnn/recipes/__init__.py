"""Recipe presets shipped with edgecnn (TOML files beside this module); see :mod:`edgecnn.pipeline.recipe`."""
from __future__ import annotations

from pathlib import Path

PRESETS_DIR = Path(__file__).resolve().parent


def preset_names() -> list[str]:
    """Names of the shipped presets.

    Example:
        >>> preset_names()
        ['gpu', 'mobile', 'tiny']
    """
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))
