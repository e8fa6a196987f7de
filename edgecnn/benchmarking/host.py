"""Host facts for a benchmark: the CPU's name, and the process's resident-memory high-water mark (Linux).

Example:
    >>> before = hwm_reset()
    >>> block = bytearray(64 * 1024 * 1024); block[::4096] = b"x" * len(block[::4096])
    >>> hwm_rise(before) >= 60, isinstance(cpu_name(), str)
    (True, True)
"""
from __future__ import annotations

import platform
from typing import Optional


def hwm_reset() -> float:
    """Reset the resident-memory high-water mark (Linux); returns the current RSS in MB."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return _status_mb("VmRSS")


def hwm_rise(before_mb: float) -> Optional[float]:
    peak = _status_mb("VmHWM")
    return None if peak != peak else max(0.0, peak - before_mb)  # NaN when /proc is absent


def _status_mb(key: str) -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
