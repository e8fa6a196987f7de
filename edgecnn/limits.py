"""Caps on what an untrusted input may make edgecnn read or allocate, each raisable by an environment variable.

A 1 MB ``.keras`` can unpack to a 1 GiB config, a model can declare a 100,000 x 100,000 input, a ``.npz`` can
hold a label of 10**12 (``bincount`` would ask for 8 TiB) and a small PNG can decode to gigapixels. Each of
these is checked before the expensive step, and refused with one line that names the cap and the variable
that raises it:

=====================  ==============================  ==============================================
cap                    variable                        default
=====================  ==============================  ==============================================
``config_bytes``       ``EDGECNN_MAX_CONFIG_BYTES``    64 MiB of JSON/TOML text (uncompressed)
``config_depth``       ``EDGECNN_MAX_CONFIG_DEPTH``    100 nested ``[``/``{`` levels
``probe_elements``     ``EDGECNN_MAX_PROBE_ELEMENTS``  2**26 elements in one sample's input or activation
``image_pixels``       ``EDGECNN_MAX_IMAGE_PIXELS``    2**26 pixels in one decoded image
``label``              ``EDGECNN_MAX_LABEL``           1,000,000 (largest class index in ``--data`` labels)
=====================  ==============================  ==============================================

Example:
    >>> cap("config_depth")
    100
    >>> json_depth(b'{"a": [[1, "[[[["]]}')
    3
    >>> parse_json(b'[' * 101 + b']' * 101, where="x.keras config.json")
    Traceback (most recent call last):
    ...
    edgecnn.errors.LimitError: x.keras config.json: nesting depth 101 is over edgecnn's cap: Expected at most 100. Received: 101; if the input is legitimate, raise the cap with EDGECNN_MAX_CONFIG_DEPTH=200
"""
from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Iterator

from edgecnn.errors import InputFileError, LimitError


@dataclass(frozen=True)
class Cap:
    """One cap: the environment variable that sets it, its default and what it counts."""

    variable: str
    default: int
    what: str


CAPS: dict[str, Cap] = {
    "config_bytes": Cap("EDGECNN_MAX_CONFIG_BYTES", 64 * 2**20, "bytes"),
    "config_depth": Cap("EDGECNN_MAX_CONFIG_DEPTH", 100, "nesting depth"),
    "probe_elements": Cap("EDGECNN_MAX_PROBE_ELEMENTS", 2**26, "elements"),
    "image_pixels": Cap("EDGECNN_MAX_IMAGE_PIXELS", 2**26, "pixels"),
    "label": Cap("EDGECNN_MAX_LABEL", 1_000_000, "label"),
}


def cap(name: str) -> int:
    """The current value of a cap: its environment variable if set, else the default.

    Raises:
        LimitError: the variable is set to something other than a positive integer.
    """
    spec = CAPS[name]
    raw = os.environ.get(spec.variable)
    if raw is None or raw.strip() == "":
        return spec.default
    try:
        value = int(raw.strip().replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise LimitError(f"{spec.variable} sets a cap: Expected a positive integer. Received: {raw!r}")
    return value


def over(name: str, value: int, *, where: str, what: str | None = None) -> LimitError:
    """The one-line error for ``value`` over cap ``name`` (the caller raises it)."""
    spec = CAPS[name]
    limit = cap(name)
    what = what or spec.what
    return LimitError(
        f"{where}: {what} {value:,} is over edgecnn's cap: Expected at most {limit:,}. Received: {value:,}; if the "
        f"input is legitimate, raise the cap with {spec.variable}={max(2 * limit, int(value))}"
    )


def check(name: str, value: int, *, where: str, what: str | None = None) -> None:
    """Raise :class:`LimitError` when ``value`` is over cap ``name``.

    >>> check("label", 9, where="y")
    >>> check("label", 10**12, where="data.npz y", what="largest label")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    edgecnn.errors.LimitError: data.npz y: largest label 1,000,000,000,000 is over edgecnn's cap: ... EDGECNN_MAX_LABEL=...
    """
    if value > cap(name):
        raise over(name, value, where=where, what=what)


# A JSON string: quote, then runs of ordinary characters and escapes (unrolled, so matching is linear).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_CHUNK = 1 << 22


def json_depth(data: bytes) -> int:
    """The deepest nesting of ``[``/``{`` in JSON text, counted without parsing (brackets in strings ignored)."""
    import numpy as np

    text = _JSON_STRING.sub(b'""', data)
    deepest = level = 0
    for start in range(0, len(text), _CHUNK):
        chunk = np.frombuffer(text[start:start + _CHUNK], dtype=np.uint8)
        step = (chunk == ord("[")).astype(np.int32) + (chunk == ord("{"))
        step -= (chunk == ord("]")).astype(np.int32) + (chunk == ord("}"))
        if not step.size:
            continue
        levels = np.cumsum(step) + level
        deepest = max(deepest, int(levels.max()))
        level = int(levels[-1])
    return deepest


def parse_json(raw: bytes | str, *, where: str, what: str = "valid JSON") -> Any:
    """JSON text -> object, with the size and depth caps checked before parsing.

    Raises:
        LimitError: over ``config_bytes`` or ``config_depth``.
        InputFileError: not JSON (or not UTF-8).
    """
    data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else bytes(raw)
    check("config_bytes", len(data), where=where, what="size in bytes")
    check("config_depth", json_depth(data), where=where, what="nesting depth")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        reason = getattr(exc, "msg", None) or type(exc).__name__
        raise InputFileError(f"{where} is not {what}: Expected JSON text. Received: {reason}") from None


def read_zip_member(archive: Any, name: str, *, where: str) -> bytes:
    """A member of an open ``zipfile.ZipFile``, read no further than ``config_bytes`` (its header may lie)."""
    limit = cap("config_bytes")
    info = archive.getinfo(name)
    if info.file_size > limit:
        raise over("config_bytes", info.file_size, where=f"{where} {name}", what="uncompressed size in bytes")
    with archive.open(info) as member:
        data = member.read(limit + 1)
    if len(data) > limit:
        raise over("config_bytes", len(data), where=f"{where} {name}", what="uncompressed size in bytes (at least)")
    return data


def check_text_size(data: bytes, *, where: str) -> None:
    """Size cap for other text edgecnn parses (recipes, baselines, checkpoint state)."""
    check("config_bytes", len(data), where=where, what="size in bytes")


@contextlib.contextmanager
def open_image(path: Any) -> Iterator[Any]:
    """``PIL.Image.open`` with the ``image_pixels`` cap checked from the header, before anything is decoded.

    Raises:
        LimitError: the image declares more pixels than the cap (Pillow's decompression-bomb guard included).
    """
    from PIL import Image

    limit = cap("image_pixels")
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit  # Pillow itself refuses 2x this in open(); we refuse 1x below
    try:
        try:
            image = Image.open(path)
        except Image.DecompressionBombError:
            spec = CAPS["image_pixels"]
            raise LimitError(f"{path}: the image declares more than {2 * limit:,} pixels, over edgecnn's cap: "
                             f"Expected at most {limit:,}. Received: a larger image; if the input is legitimate, "
                             f"raise the cap with {spec.variable}={4 * limit}") from None
        with image:
            width, height = image.size
            check("image_pixels", int(width) * int(height), where=str(path), what=f"{width}x{height} image: pixels")
            yield image
    finally:
        Image.MAX_IMAGE_PIXELS = previous
