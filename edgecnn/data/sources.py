"""``--data`` sources: the bundled digits, an image folder, or a ``.npz`` file, matched to a model input.

Every later stage that needs samples (calibration for quantization, fine-tuning, accuracy checks,
benchmark inputs) asks :func:`load_data` for a :class:`Dataset` whose ``x`` already has the model's
``(H, W, C)`` input shape. Three sources are understood:

- ``"digits"``: scikit-learn's 1,797 real 8x8 handwritten digits, resized (bilinear) to ``(H, W)``.
  The only real image data available offline, so every script and test uses it, with one fixed
  stratified train/test split.
- an image folder: one subfolder per class (sorted names are the class names), or a flat folder of
  images (unlabelled). Images of any size and format PIL reads are converted and resized.
- a ``.npz`` file with ``x`` (and optionally ``y``, ``class_names``): the user's exact tensors, never
  resized; a shape that does not fit the model input is an error.

Example:
    >>> from edgecnn.data import load_data
    >>> ds = load_data("digits", input_shape=(28, 28, 1), split="test")
    >>> ds.x.shape, ds.x.dtype.name, ds.y.shape, ds.class_names[:3]
    ((360, 28, 28, 1), 'float32', (360,), ('0', '1', '2'))
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecnn.errors import DataError, ShapeMismatchError
from edgecnn.data.checks import check_labels
from edgecnn.data.dataset import TEST_FRACTION, Dataset, split_indices, take

__all__ = ["SPLITS", "digits", "load_data"]

SPLITS = ("all", "train", "test")
_SOURCES_HINT = "Expected 'digits', an image folder or a .npz file"


def load_data(
    spec: str,
    *,
    input_shape: tuple[int, int, int],
    split: str = "all",
    limit: int | None = None,
    seed: int = 0,
) -> Dataset:
    """Load a ``--data`` source and match it to a model input shape.

    Args:
        spec: ``"digits"``, a path to an image folder, or a path to a ``.npz`` file. The prefixes
            ``folder:`` and ``npz:`` (as written in :attr:`Dataset.source`) are also accepted.
        input_shape: the model input ``(H, W, C)`` without the batch axis.
        split: ``"all"``, ``"train"`` or ``"test"``. ``"train"``/``"test"`` take a fixed split with
            ``test_fraction=0.2`` and ``random_state=seed``, stratified when the source is labelled
            and every class has at least two samples.
        limit: if given, keep the first ``limit`` samples after a shuffle seeded with ``seed``.
        seed: seed of the split and of the ``limit`` shuffle.

    Returns:
        A :class:`Dataset` with ``x.shape[1:] == input_shape``.

    Raises:
        DataError: the source is missing, empty, unreadable or of an unknown kind, or an argument
            is invalid.
        ShapeMismatchError: the data cannot be matched to ``input_shape`` (e.g. a 5-channel model,
            or a ``.npz`` array of another shape).

    Example:
        >>> ds = load_data("digits", input_shape=(16, 16, 3), split="train", limit=100)
        >>> ds.x.shape, ds.source
        ((100, 16, 16, 3), 'digits')
        >>> load_data("nope.txt", input_shape=(28, 28, 1))
        Traceback (most recent call last):
        ...
        edgecnn.errors.DataError: Expected 'digits', an image folder or a .npz file. Received: 'nope.txt' (no such file or folder)
    """
    shape = _check_input_shape(input_shape)
    _check_split(split)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise DataError(f"Expected limit to be a positive integer or None. Received: limit={limit!r}")
    if not isinstance(spec, (str, os.PathLike)):
        raise DataError(f"{_SOURCES_HINT}. Received: {spec!r}")
    text = os.fspath(spec)

    if text.strip().lower() == "digits":
        ds = digits(input_shape=shape, split=split, seed=seed)
    else:
        kind, path = _classify(text)
        ds = _load_folder(path, shape) if kind == "folder" else _load_npz(path, shape)
        ds = _take(ds, _split_indices(ds.y, len(ds), split=split, seed=seed, test_fraction=TEST_FRACTION))
    if limit is not None and limit < len(ds):
        ds = _take(ds, np.random.default_rng(seed).permutation(len(ds))[:limit])
    return ds


def digits(
    *,
    input_shape: tuple[int, int, int],
    split: str = "all",
    seed: int = 0,
    test_fraction: float = 0.2,
) -> Dataset:
    """The 1,797 real 8x8 handwritten digits of scikit-learn, resized to a model input.

    Pixel values 0..16 are scaled to ``[0, 1]``, each image is resized to ``(H, W)`` with bilinear
    interpolation, and gray is repeated into 3 channels when ``C == 3``.

    Args:
        input_shape: the model input ``(H, W, C)``; ``C`` must be 1 or 3.
        split: ``"all"`` (file order), ``"train"`` or ``"test"``: a stratified split with
            ``random_state=seed``, rows kept in file order. The defaults give 1,437 train and 360
            test images, the same for every caller.
        seed: ``random_state`` of the split.
        test_fraction: fraction of the samples in the test split, in ``(0, 1)``.

    Returns:
        A labelled :class:`Dataset` with ``class_names == ("0", ..., "9")`` and ``source == "digits"``.

    Raises:
        ShapeMismatchError: ``input_shape`` is not ``(H, W, 1)`` or ``(H, W, 3)`` with positive sizes.
        DataError: ``split`` or ``test_fraction`` is invalid.

    Example:
        >>> digits(input_shape=(28, 28, 1)).x.shape
        (1797, 28, 28, 1)
        >>> train, test = (digits(input_shape=(8, 8, 3), split=s) for s in ("train", "test"))
        >>> len(train), len(test), float(test.x.max()) <= 1.0
        (1437, 360, True)
    """
    from sklearn.datasets import load_digits

    height, width, channels = _check_input_shape(input_shape)
    _check_split(split)
    if not 0.0 < float(test_fraction) < 1.0:
        raise DataError(f"Expected test_fraction in (0, 1). Received: test_fraction={test_fraction!r}")
    _check_channels(channels, source="digits")

    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 16.0  # (1797, 8, 8), values 0..16
    labels = bunch.target.astype(np.int64)
    index = _split_indices(labels, len(labels), split=split, seed=seed, test_fraction=test_fraction)
    images, labels = images[index], labels[index]
    ids = tuple(str(int(i)) for i in index)

    x = _resize_gray(images, height=height, width=width)[..., None]
    if channels == 3:
        x = np.repeat(x, 3, axis=-1)
    return Dataset(x=x, y=labels, class_names=tuple(str(i) for i in range(10)), source="digits", ids=ids)


# ----------------------------------------------------------------------------------------- helpers


def _check_input_shape(input_shape) -> tuple[int, int, int]:
    try:
        shape = tuple(input_shape)
        ok = len(shape) == 3 and all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in shape
        )
    except TypeError:
        ok = False
    if not ok:
        raise ShapeMismatchError(
            f"Expected input_shape as (H, W, C) with positive integers. Received: input_shape={input_shape!r}"
        )
    return tuple(int(d) for d in shape)  # type: ignore[return-value]


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"Expected split to be one of {SPLITS}. Received: split={split!r}")


def _check_channels(channels: int, *, source: str) -> None:
    if channels not in (1, 3):
        raise ShapeMismatchError(
            f"{source} images are gray or RGB: Expected a model input with 1 or 3 channels. "
            f"Received: {channels} channels"
        )


def _classify(text: str) -> tuple[str, Path]:
    """Decide whether ``text`` names an image folder or a ``.npz`` file."""
    forced = None
    for prefix in ("folder:", "npz:"):
        if text.startswith(prefix):
            forced, text = prefix[:-1], text[len(prefix):]
    path = Path(text).expanduser()
    if path.is_dir() and forced in (None, "folder"):
        return "folder", path
    if path.is_file() and (path.suffix.lower() == ".npz" or forced == "npz"):
        return "npz", path
    if not path.exists():
        reason = "no such file or folder"
    elif path.is_dir():
        reason = "a folder, but npz: was asked for"
    else:
        reason = "not a folder and not a .npz file"
    raise DataError(f"{_SOURCES_HINT}. Received: {text!r} ({reason})")


def _split_indices(y, n: int, *, split: str, seed: int, test_fraction: float) -> np.ndarray:
    """Row indices of ``split``, in ascending order: :func:`edgecnn.data.dataset.split_indices`'s protocol."""
    if split == "all":
        return np.arange(n)
    train, test, _ = split_indices(y, n, seed=seed, test_fraction=test_fraction)
    return train if split == "train" else test


def _take(ds: Dataset, index: np.ndarray) -> Dataset:
    return take(ds, index)


def _resize_gray(images: np.ndarray, *, height: int, width: int) -> np.ndarray:
    """Bilinear resize of ``(N, h, w)`` float images to ``(N, height, width)``, clipped to [0, 1]."""
    if images.shape[1:] == (height, width):
        return np.clip(images, 0.0, 1.0).astype(np.float32)
    from PIL import Image

    out = np.empty((len(images), height, width), dtype=np.float32)
    for i, image in enumerate(images):
        resized = Image.fromarray(image, mode="F").resize((width, height), Image.Resampling.BILINEAR)
        out[i] = np.asarray(resized, dtype=np.float32)
    return np.clip(out, 0.0, 1.0)


def _image_suffixes() -> frozenset[str]:
    from PIL import Image

    return frozenset(ext.lower() for ext in Image.registered_extensions())


def _list_images(folder: Path, suffixes: frozenset[str]) -> list[Path]:
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes
    )


def _load_folder(folder: Path, shape: tuple[int, int, int]) -> Dataset:
    """Class subfolders (labelled) or a flat folder of images (unlabelled)."""
    height, width, channels = shape
    _check_channels(channels, source="image folder")
    suffixes = _image_suffixes()
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = _list_images(folder, suffixes)
    per_class = [_list_images(c, suffixes) for c in classes]
    labelled = any(per_class)
    if labelled and loose:
        raise DataError(
            f"Expected either one subfolder of images per class or a flat folder of images. "
            f"Received: {str(folder)!r} with both class subfolders and {len(loose)} loose image(s)"
        )
    if not labelled and not loose:
        raise DataError(
            f"Expected an image folder with one subfolder of images per class. "
            f"Received: {str(folder)!r} with no image files PIL can read"
        )
    files = [f for group in per_class for f in group] if labelled else loose
    x = np.empty((len(files), height, width, channels), dtype=np.float32)
    for i, path in enumerate(files):
        x[i] = _read_image(path, height=height, width=width, channels=channels)
    ids = tuple(f.relative_to(folder).as_posix() for f in files)
    if not labelled:
        return Dataset(x=x, y=None, class_names=None, source=f"folder:{folder}", ids=ids)
    y = np.concatenate([np.full(len(group), k, dtype=np.int64) for k, group in enumerate(per_class)])
    names = tuple(c.name for c in classes)
    return Dataset(x=x, y=y, class_names=names, source=f"folder:{folder}", ids=ids)


def _read_image(path: Path, *, height: int, width: int, channels: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    from edgecnn.limits import open_image

    try:
        with open_image(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            image = image.resize((width, height), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.float32) / 255.0
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"Expected a readable image. Received: {str(path)!r} ({reason})") from None
    return array.reshape(height, width, channels)


def _load_npz(path: Path, shape: tuple[int, int, int]) -> Dataset:
    """The user's exact tensors: ``x`` must already match the model input (no resizing)."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"Expected a readable .npz file. Received: {str(path)!r} ({reason})") from None
    if "x" not in arrays:
        raise DataError(
            f"Expected a .npz file with an array named 'x' (and optionally 'y', 'class_names'). "
            f"Received: {str(path)!r} with arrays {sorted(arrays)}"
        )
    x = _npz_x(arrays["x"], shape, path)
    y = _npz_y(arrays.get("y"), len(x), path)
    names = _npz_class_names(arrays.get("class_names"), y, path)
    return Dataset(x=x, y=y, class_names=names, source=f"npz:{path}", ids=tuple(str(i) for i in range(len(x))))


def _npz_x(x: np.ndarray, shape: tuple[int, int, int], path: Path) -> np.ndarray:
    if x.ndim == 3 and shape[2] == 1:
        x = x[..., None]
    if x.ndim != 4 or tuple(x.shape[1:]) != shape or x.shape[0] == 0:
        expected = f"(N, {shape[0]}, {shape[1]}, {shape[2]})"
        if shape[2] == 1:
            expected += f" or (N, {shape[0]}, {shape[1]})"
        raise ShapeMismatchError(
            f"data shape {tuple(x.shape)} does not match the model input {shape}: "
            f"Expected x of shape {expected} with N >= 1 (npz arrays are never resized). "
            f"Received: {str(path)!r}"
        )
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(
            f"Expected x as uint8 (scaled by 1/255) or floating point (kept). "
            f"Received: dtype {x.dtype} in {str(path)!r}"
        )
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise DataError(f"Expected finite values in x. Received: NaN or inf in {str(path)!r}")
    return x


def _npz_y(y: np.ndarray | None, n: int, path: Path) -> np.ndarray | None:
    if y is None:
        return None
    return check_labels(y, n, where=repr(str(path)))


def _npz_class_names(names: np.ndarray | None, y: np.ndarray | None, path: Path) -> tuple[str, ...] | None:
    if names is None:
        return None
    names = tuple(str(n) for n in np.asarray(names).reshape(-1))
    if y is not None and len(y) and int(y.max()) >= len(names):
        raise DataError(
            f"Expected a class name for every label. Received: {len(names)} class_names and "
            f"label {int(y.max())} in {str(path)!r}"
        )
    return names
