"""Tests for edgecnn.data: the digits, image-folder and .npz sources of --data."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from PIL import Image

from edgecnn.data import digits, load_data
from edgecnn.errors import DataError, EdgecnnError, ShapeMismatchError


# ------------------------------------------------------------------------------------------ digits


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3), (8, 8, 1), (5, 7, 3)])
def test_digits_shape_dtype_and_range(shape):
    ds = digits(input_shape=shape)
    assert ds.x.shape == (1797, *shape)
    assert ds.x.dtype == np.float32
    assert ds.y.dtype == np.int64 and ds.y.shape == (1797,)
    assert 0.0 <= ds.x.min() and ds.x.max() <= 1.0
    assert ds.x.max() > 0.99  # scaled by 1/16, not by 1/255
    assert ds.class_names == tuple(str(i) for i in range(10))
    assert ds.source == "digits"


def test_digits_native_size_is_the_sklearn_data_scaled():
    from sklearn.datasets import load_digits

    ds = digits(input_shape=(8, 8, 1))
    bunch = load_digits()
    np.testing.assert_allclose(ds.x[..., 0], bunch.images / 16.0, atol=1e-7)
    np.testing.assert_array_equal(ds.y, bunch.target)


def test_digits_three_channels_repeat_gray():
    gray = digits(input_shape=(28, 28, 1)).x
    rgb = digits(input_shape=(28, 28, 3)).x
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], gray[..., 0])


def test_digits_resize_is_bilinear_and_keeps_mass():
    small = digits(input_shape=(8, 8, 1)).x
    large = digits(input_shape=(32, 32, 1)).x
    # An upsampled image keeps its mean brightness (within interpolation error at the border).
    np.testing.assert_allclose(large.mean(axis=(1, 2, 3)), small.mean(axis=(1, 2, 3)), atol=0.03)
    # Bilinear makes intermediate values that nearest-neighbour upsampling of 17 levels cannot.
    levels = np.unique(np.round(large * 16, 6))
    assert len(levels) > 17


def test_digits_split_sizes_disjoint_stratified_and_covering():
    all_ = digits(input_shape=(8, 8, 1))
    train = digits(input_shape=(8, 8, 1), split="train")
    test = digits(input_shape=(8, 8, 1), split="test")
    assert (len(train), len(test)) == (1437, 360)
    # train and test partition the full set: as multisets of (image, label) rows they add up to it,
    # so no row is in both and none is lost (this holds even if two digits had identical pixels).
    rows = lambda d: Counter(r.tobytes() + bytes([label]) for r, label in zip(d.x, d.y))  # noqa: E731
    assert rows(train) + rows(test) == rows(all_)
    # Stratified: each class has 20% of its samples in test (rounding allowed).
    full_counts = np.bincount(all_.y, minlength=10)
    test_counts = np.bincount(test.y, minlength=10)
    assert np.all(np.abs(test_counts - 0.2 * full_counts) <= 1.0)


def test_digits_split_is_deterministic_and_seeded():
    a = digits(input_shape=(8, 8, 1), split="test")
    b = digits(input_shape=(8, 8, 1), split="test")
    c = digits(input_shape=(8, 8, 1), split="test", seed=1)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.x, c.x)


def test_digits_test_fraction():
    assert len(digits(input_shape=(8, 8, 1), split="test", test_fraction=0.5)) == 899
    with pytest.raises(DataError, match="test_fraction"):
        digits(input_shape=(8, 8, 1), test_fraction=1.5)


@pytest.mark.parametrize("channels", [2, 4])
def test_digits_rejects_other_channel_counts(channels):
    with pytest.raises(ShapeMismatchError, match=f"1 or 3 channels. Received: {channels} channels"):
        digits(input_shape=(28, 28, channels))


def test_load_data_digits_matches_digits():
    via_spec = load_data("digits", input_shape=(16, 16, 1), split="train")
    direct = digits(input_shape=(16, 16, 1), split="train")
    np.testing.assert_array_equal(via_spec.x, direct.x)
    np.testing.assert_array_equal(via_spec.y, direct.y)


def test_limit_takes_a_seeded_shuffle():
    full = load_data("digits", input_shape=(8, 8, 1))
    a = load_data("digits", input_shape=(8, 8, 1), limit=50)
    b = load_data("digits", input_shape=(8, 8, 1), limit=50)
    c = load_data("digits", input_shape=(8, 8, 1), limit=50, seed=3)
    assert len(a) == 50
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(a.y, c.y)
    assert not np.array_equal(a.y, full.y[:50])  # shuffled, not the first 50 rows
    assert len(np.unique(a.y)) > 5  # a shuffle mixes classes
    assert len(load_data("digits", input_shape=(8, 8, 1), limit=10_000)) == 1797


@pytest.mark.parametrize("limit", [0, -1, 2.5, True])
def test_limit_must_be_a_positive_integer(limit):
    with pytest.raises(DataError, match="positive integer"):
        load_data("digits", input_shape=(8, 8, 1), limit=limit)


@pytest.mark.parametrize("shape", [(28, 28), (0, 28, 1), (28, None, 1), "28x28"])
def test_invalid_input_shape(shape):
    with pytest.raises(ShapeMismatchError, match=r"Expected input_shape as \(H, W, C\)"):
        load_data("digits", input_shape=shape)


def test_invalid_split():
    with pytest.raises(DataError, match=r"one of \('all', 'train', 'test'\). Received: split='val'"):
        load_data("digits", input_shape=(8, 8, 1), split="val")


# ------------------------------------------------------------------------------------ image folder


def _make_folder(root, *, sizes=((20, 30), (50, 40)), per_class=3, mode="RGB", suffixes=(".png", ".jpg")):
    """Two classes, ``cat`` bright and ``dog`` dark, images of different sizes and formats."""
    for name, value in (("cat", 220), ("dog", 30)):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            width, height = sizes[i % len(sizes)]
            image = Image.new(mode, (width, height), value if mode == "L" else (value, value, value))
            image.save(folder / f"{i}{suffixes[i % len(suffixes)]}")
    return root


@pytest.mark.parametrize("channels", [1, 3])
def test_folder_labels_sizes_and_scaling(tmp_path, channels):
    root = _make_folder(tmp_path / "images")
    (root / "cat" / "notes.txt").write_text("not an image")
    ds = load_data(str(root), input_shape=(16, 12, channels))
    assert ds.x.shape == (6, 16, 12, channels)
    assert ds.x.dtype == np.float32
    assert ds.class_names == ("cat", "dog")
    np.testing.assert_array_equal(ds.y, [0, 0, 0, 1, 1, 1])
    assert ds.source == f"folder:{root}"
    # Uniform images stay uniform after resizing; JPEG may move values by a few levels.
    np.testing.assert_allclose(ds.x[ds.y == 0], 220 / 255, atol=3 / 255)
    np.testing.assert_allclose(ds.x[ds.y == 1], 30 / 255, atol=3 / 255)


def test_folder_source_prefix_round_trips(tmp_path):
    root = _make_folder(tmp_path / "images", per_class=1)
    ds = load_data(str(root), input_shape=(8, 8, 3))
    again = load_data(ds.source, input_shape=(8, 8, 3))
    np.testing.assert_array_equal(ds.x, again.x)


def test_folder_gray_images_to_rgb_model(tmp_path):
    root = _make_folder(tmp_path / "images", mode="L", suffixes=(".bmp",), per_class=2)
    ds = load_data(str(root), input_shape=(10, 10, 3))
    assert ds.x.shape == (4, 10, 10, 3)
    np.testing.assert_allclose(ds.x[0], 220 / 255, atol=1e-6)


def test_folder_split_is_stratified(tmp_path):
    root = _make_folder(tmp_path / "images", per_class=10)
    train = load_data(str(root), input_shape=(8, 8, 1), split="train")
    test = load_data(str(root), input_shape=(8, 8, 1), split="test")
    assert (len(train), len(test)) == (16, 4)
    np.testing.assert_array_equal(np.bincount(test.y), [2, 2])


def test_flat_folder_is_unlabelled(tmp_path):
    for i in range(3):
        Image.new("RGB", (9 + i, 7), (10, 20, 30)).save(tmp_path / f"img{i}.png")
    ds = load_data(str(tmp_path), input_shape=(7, 9, 3))
    assert ds.x.shape == (3, 7, 9, 3)
    assert ds.y is None and ds.class_names is None
    np.testing.assert_allclose(ds.x[0, 0, 0], np.array([10, 20, 30]) / 255, atol=1e-6)


def test_empty_folder(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="no image files PIL can read") as info:
        load_data(str(tmp_path), input_shape=(8, 8, 1))
    assert "\n" not in str(info.value)


def test_folder_mixing_classes_and_loose_images(tmp_path):
    root = _make_folder(tmp_path / "images", per_class=1)
    Image.new("L", (4, 4)).save(root / "loose.png")
    with pytest.raises(DataError, match="both class subfolders and 1 loose image"):
        load_data(str(root), input_shape=(8, 8, 1))


def test_folder_corrupt_image_names_the_file(tmp_path):
    root = _make_folder(tmp_path / "images", per_class=1)
    (root / "dog" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"Expected a readable image. Received: .*broken\.png"):
        load_data(str(root), input_shape=(8, 8, 1))


def test_folder_rejects_other_channel_counts(tmp_path):
    root = _make_folder(tmp_path / "images", per_class=1)
    with pytest.raises(ShapeMismatchError, match="Received: 4 channels"):
        load_data(str(root), input_shape=(8, 8, 4))


# --------------------------------------------------------------------------------------------- npz


def test_npz_uint8_is_scaled(tmp_path):
    x = np.arange(4 * 6 * 6 * 3, dtype=np.int64).reshape(4, 6, 6, 3) % 256
    path = tmp_path / "d.npz"
    np.savez(path, x=x.astype(np.uint8), y=np.array([0, 1, 2, 1]), class_names=np.array(["a", "b", "c"]))
    ds = load_data(str(path), input_shape=(6, 6, 3))
    assert ds.x.dtype == np.float32
    np.testing.assert_allclose(ds.x, x / 255.0, atol=1e-7)
    np.testing.assert_array_equal(ds.y, [0, 1, 2, 1])
    assert ds.y.dtype == np.int64
    assert ds.class_names == ("a", "b", "c")
    assert ds.source == f"npz:{path}"


def test_npz_float_is_kept_exactly(tmp_path):
    x = np.random.default_rng(0).normal(size=(3, 5, 5, 1)).astype(np.float64)
    path = tmp_path / "d.npz"
    np.savez(path, x=x)
    ds = load_data(str(path), input_shape=(5, 5, 1))
    np.testing.assert_array_equal(ds.x, x.astype(np.float32))
    assert ds.y is None and ds.class_names is None


def test_npz_three_dims_for_one_channel(tmp_path):
    path = tmp_path / "gray.npz"
    np.savez(path, x=np.full((2, 28, 28), 255, dtype=np.uint8), y=np.array([[0, 1], [1, 0]]))
    ds = load_data(str(path), input_shape=(28, 28, 1))
    assert ds.x.shape == (2, 28, 28, 1)
    np.testing.assert_allclose(ds.x, 1.0)
    np.testing.assert_array_equal(ds.y, [1, 0])  # one-hot labels become indices


def test_npz_shape_mismatch_names_both_shapes(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((5, 10, 10, 3), dtype=np.uint8))
    with pytest.raises(ShapeMismatchError) as info:
        load_data(str(path), input_shape=(28, 28, 1))
    message = str(info.value)
    assert message.startswith("data shape (5, 10, 10, 3) does not match the model input (28, 28, 1): ")
    assert "never resized" in message and "\n" not in message


def test_npz_three_dims_for_rgb_model_is_a_mismatch(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((2, 8, 8), dtype=np.float32))
    with pytest.raises(ShapeMismatchError, match=r"\(2, 8, 8\) does not match the model input \(8, 8, 3\)"):
        load_data(str(path), input_shape=(8, 8, 3))


def test_npz_without_x(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, images=np.zeros((2, 8, 8, 1)))
    with pytest.raises(DataError, match=r"array named 'x'.*Received: .* with arrays \['images'\]"):
        load_data(str(path), input_shape=(8, 8, 1))


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"x": np.zeros((2, 4, 4, 1), np.int32)}, "dtype int32"),
        ({"x": np.full((2, 4, 4, 1), np.nan, np.float32)}, "NaN or inf"),
        ({"x": np.zeros((2, 4, 4, 1), np.float32), "y": np.array([0, 1, 2])}, r"shape \(3,\)"),
        ({"x": np.zeros((2, 4, 4, 1), np.float32), "y": np.array([0, -1])}, "non-negative"),
        ({"x": np.zeros((2, 4, 4, 1), np.float32), "y": np.array([0, 2]), "class_names": np.array(["a", "b"])},
         "2 class_names and label 2"),
    ],
)
def test_npz_invalid_contents(tmp_path, arrays, match):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=match):
        load_data(str(path), input_shape=(4, 4, 1))


def test_npz_corrupt_file(tmp_path):
    path = tmp_path / "d.npz"
    path.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match=r"Expected a readable .npz file"):
        load_data(str(path), input_shape=(4, 4, 1))


# ------------------------------------------------------------------------------------- bad sources


@pytest.mark.parametrize("spec", ["mnist", "missing/folder", "missing.npz"])
def test_unknown_or_missing_source(spec):
    with pytest.raises(DataError) as info:
        load_data(spec, input_shape=(28, 28, 1))
    message = str(info.value)
    assert message.startswith("Expected 'digits', an image folder or a .npz file. Received: ")
    assert repr(spec) in message and "no such file or folder" in message
    assert "\n" not in message


def test_existing_file_of_another_kind(tmp_path):
    path = tmp_path / "model.h5"
    path.write_bytes(b"x")
    with pytest.raises(DataError, match="not a folder and not a .npz file"):
        load_data(str(path), input_shape=(28, 28, 1))


def test_every_error_is_an_edgecnn_error():
    assert issubclass(DataError, EdgecnnError) and issubclass(ShapeMismatchError, EdgecnnError)
    with pytest.raises(EdgecnnError):
        load_data(123, input_shape=(28, 28, 1))
