"""Pillow is the oracle: with border ``keep`` the engine must reproduce
``Image.filter`` byte for byte, for Pillow's ten built-in kernels and for any
``ImageFilter.Kernel``, in every mode Pillow filters.

Orientation: Pillow applies its kernel upside down (row 0 weighs the row
below the pixel), so convfilter's ``Kernel(M)`` is Pillow's
``ImageFilter.Kernel(size, np.flipud(M).ravel().tolist(), scale, offset)``.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import zlib
from pathlib import Path

import numpy as np
import PIL
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFilter

from convfilter.engine import filter_array
from convfilter.pipeline import filter_image
from convfilter.kernels import PRESETS, Kernel

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_images"

PILLOW_PRESETS = sorted(key for key, preset in PRESETS.items() if preset.pillow_name)
MODES = ["L", "LA", "RGB", "RGBA", "CMYK", "I;16", "I"]
PHOTOS = ["coffee.png", "chelsea.png", "rocket.jpg"]
GENERATED = ["hard-edges", "noise", "checkerboard", "extremes"]
CARDS = {"edges.png": "L", "gradients.png": "RGB", "transparent.png": "RGBA", "gray16.png": "I;16"}

#: Array layout of each mode: dtype and number of channels (0 for H x W).
LAYOUT = {
    "L": (np.uint8, 0),
    "LA": (np.uint8, 2),
    "RGB": (np.uint8, 3),
    "RGBA": (np.uint8, 4),
    "CMYK": (np.uint8, 4),
    "I;16": (np.dtype("<u2"), 0),
    "I": (np.dtype("<i4"), 0),
}

#: Values that make rounding and clamping bite, per dtype.
EXTREMES = {
    np.dtype(np.uint8): [0, 1, 127, 128, 254, 255],
    np.dtype("<u2"): [0, 1, 2, 32767, 32768, 65533, 65534, 65535],
    np.dtype("<i4"): [-(2**31), -(2**31) + 1, -65536, -1, 0, 1, 255, 65535, 2**24 + 1, 2**30, 2**31 - 1],
}

PROPERTY = settings(max_examples=40, deadline=None)


def to_image(array: np.ndarray, mode: str) -> Image.Image:
    """An image of ``mode`` holding exactly ``array`` (checked)."""
    dtype, _ = LAYOUT[mode]
    array = np.ascontiguousarray(array, dtype=dtype)
    image = Image.frombytes(mode, (array.shape[1], array.shape[0]), array.tobytes())
    assert np.array_equal(np.asarray(image), array), f"round trip through mode {mode} failed"
    return image


#: Pillow 13 rewrote I;16 filtering (a 16-bit kernel path); convfilter matches it.
PILLOW_13 = int(PIL.__version__.split(".")[0]) >= 13


def ours(image: Image.Image, kernel: Kernel) -> np.ndarray:
    """convfilter's result for a Pillow image, filtered as Pillow filters it: every band, edges kept."""
    return np.asarray(filter_image(image, kernel, border="keep", alpha="filter"))


def pillow_filter(image: Image.Image, image_filter) -> np.ndarray:
    if image.mode == "I;16" and not PILLOW_13:
        pytest.skip(f"Pillow {PIL.__version__} filters I;16 with its older code; parity is with Pillow 13+")
    try:
        return np.asarray(image.filter(image_filter))
    except ValueError as exc:  # e.g. "image has wrong mode" in older Pillow
        pytest.skip(f"Pillow {PIL.__version__} cannot filter mode {image.mode}: {exc}")


def spread(planes: list[np.ndarray], mode: str) -> np.ndarray:
    """Build a ``mode`` array from uint8 planes, using the full value range."""
    dtype, channels = LAYOUT[mode]
    p = [plane.astype(np.int64) for plane in planes]
    if mode == "I;16":
        return (p[0] << 8 | p[1]).astype(dtype)  # 0 .. 65535
    if mode == "I":
        return ((p[0] - 128) << 23 | p[1] << 8 | p[2]).astype(dtype)  # about +-2**30
    if channels == 0:
        return p[0].astype(dtype)
    return np.stack([p[c % len(p)] for c in range(channels)], axis=-1).astype(dtype)


@functools.lru_cache(maxsize=None)
def photo_planes(name: str, crop: bool = True) -> tuple[np.ndarray, ...]:
    """R, G, B and inverted luminance of a sample photo (a 96 x 72 crop)."""
    with Image.open(SAMPLE_DIR / name) as image:
        rgb = np.asarray(image.convert("RGB"))
    if crop:
        y0, x0 = rgb.shape[0] // 2 - 36, rgb.shape[1] // 2 - 48
        rgb = rgb[y0 : y0 + 72, x0 : x0 + 96]
    luminance = rgb.mean(axis=2).astype(np.uint8)
    planes = (rgb[..., 0].copy(), rgb[..., 1].copy(), rgb[..., 2].copy(), 255 - luminance)
    for plane in planes:
        plane.setflags(write=False)  # cached: nothing may change it
    return planes


def generated_array(kind: str, mode: str) -> np.ndarray:
    """A read-only test image of ``kind`` in ``mode``'s array layout."""
    array = _generated_array(kind, mode)
    array.setflags(write=False)  # cached, and the engine must accept read-only input
    return array


@functools.lru_cache(maxsize=None)
def _generated_array(kind: str, mode: str) -> np.ndarray:
    dtype, channels = LAYOUT[mode]
    shape = (37, 41) + ((channels,) if channels else ())
    rng = np.random.default_rng(zlib.crc32(f"{kind}/{mode}".encode()))
    info = np.iinfo(dtype)
    low, high = int(info.min), int(info.max)
    if kind == "noise":
        return rng.integers(low, high, shape, endpoint=True).astype(dtype)
    if kind == "extremes":
        return rng.choice(np.array(EXTREMES[np.dtype(dtype)], dtype=np.int64), shape).astype(dtype)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    if kind == "checkerboard":
        plane = (x + y) % 2 == 1
    else:  # hard-edges: a disc, a bar and a one-pixel line, high on low
        plane = ((y - 18) ** 2 + (x - 12) ** 2 <= 64) | ((x >= 26) & (x < 31)) | (y == 3)
    value = np.where(plane, high, low)
    if channels:
        # Every channel different: the pattern, its inverse, then shifted copies.
        layers = [value, np.where(plane, low, high)] + [np.roll(value, c, axis=1) for c in range(2, channels)]
        value = np.stack(layers[:channels], axis=-1)
    return value.astype(dtype)


def check_preset(array: np.ndarray, mode: str, key: str) -> None:
    preset = PRESETS[key]
    image = to_image(array, mode)
    expected = pillow_filter(image, getattr(ImageFilter, preset.pillow_name))
    got = ours(image, preset.kernel())
    assert got.dtype == expected.dtype
    assert got.shape == expected.shape
    if not np.array_equal(got, expected):
        wrong = np.argwhere(got != expected)
        first = tuple(wrong[0])
        pytest.fail(
            f"{len(wrong)} values differ from Pillow in mode {mode}; first at {first}: "
            f"convfilter {got[first]}, Pillow {expected[first]}"
        )


# ---------------------------------------------------------------------------
# The preset table against Pillow's own
# ---------------------------------------------------------------------------


def test_all_pillow_builtin_kernels_are_presets():
    builtins = {
        name
        for name, obj in vars(ImageFilter).items()
        if inspect.isclass(obj)
        and issubclass(obj, ImageFilter.BuiltinFilter)
        and obj is not ImageFilter.BuiltinFilter
        and hasattr(obj, "filterargs")
    }
    assert len(builtins) == 10
    assert {PRESETS[key].pillow_name for key in PILLOW_PRESETS} == builtins


@pytest.mark.parametrize("key", PILLOW_PRESETS)
def test_preset_is_pillow_kernel_flipped_vertically(key):
    preset = PRESETS[key]
    size, scale, offset, weights = getattr(ImageFilter, preset.pillow_name).filterargs
    width, height = size
    pillow_matrix = np.array(weights, dtype=float).reshape(height, width)
    kernel = preset.kernel()
    np.testing.assert_array_equal(kernel.matrix, np.flipud(pillow_matrix))
    assert kernel.scale == scale
    assert kernel.offset == offset
    assert kernel.pillow_name == preset.pillow_name


# ---------------------------------------------------------------------------
# The ten presets in every mode
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", PILLOW_PRESETS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("photo", PHOTOS)
def test_preset_matches_pillow_on_photos(photo, mode, key):
    check_preset(spread(list(photo_planes(photo)), mode), mode, key)


@pytest.mark.parametrize("key", PILLOW_PRESETS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", GENERATED)
def test_preset_matches_pillow_on_generated_images(kind, mode, key):
    check_preset(generated_array(kind, mode), mode, key)


@pytest.mark.parametrize("key", PILLOW_PRESETS)
@pytest.mark.parametrize("card", sorted(CARDS))
def test_preset_matches_pillow_on_test_cards(card, key, sample_dir):
    with Image.open(sample_dir / "cards" / card) as image:
        assert image.mode == CARDS[card]
        array = np.asarray(image)
    check_preset(array, CARDS[card], key)


@pytest.mark.parametrize("key", ["sharpen", "smooth_more", "emboss"])
@pytest.mark.parametrize("photo", PHOTOS)
def test_preset_matches_pillow_on_whole_photos(photo, key):
    # Full size: the engine works in strips of rows, and these span several.
    planes = photo_planes(photo, crop=False)
    check_preset(np.stack(planes, axis=-1), "RGBA", key)


@pytest.mark.parametrize("key", PILLOW_PRESETS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [(1, 1), (2, 2), (4, 3), (2, 7), (7, 4), (3, 3), (5, 5)], ids=str)
def test_small_images_like_pillow(size, mode, key):
    height, width = size
    array = generated_array("noise", mode)[:height, :width]
    check_preset(array, mode, key)
    kh, kw = PRESETS[key].kernel().shape
    if height < kh or width < kw:
        # Pillow returns an image smaller than the kernel unchanged.
        np.testing.assert_array_equal(ours(to_image(array, mode), PRESETS[key].kernel()), array)


# ---------------------------------------------------------------------------
# Any ImageFilter.Kernel
# ---------------------------------------------------------------------------

scales = st.one_of(
    st.integers(1, 300).map(float),
    st.integers(-50, -1).map(float),
    st.floats(0.05, 500.0),
    st.floats(-500.0, -0.05),
)


@st.composite
def kernel_cases(draw, side: int):
    integer_weights = draw(st.booleans())
    if integer_weights:
        weights = st.integers(-30, 30).map(float)
    else:
        weights = st.floats(-10.0, 10.0, allow_subnormal=False)
    matrix = np.array(draw(st.lists(weights, min_size=side * side, max_size=side * side)))
    matrix = matrix.reshape(side, side)
    scale = draw(scales)
    offset = draw(st.one_of(st.sampled_from([0.0, 0.5, 128.0, 255.0, -0.5]), st.floats(-1000.0, 1000.0)))
    seed = draw(st.integers(0, 2**32 - 1))
    return matrix, scale, offset, seed


@pytest.mark.parametrize("side", [3, 5])
@pytest.mark.parametrize("mode", MODES)
def test_any_kernel_matches_pillow(mode, side):
    dtype, channels = LAYOUT[mode]
    info = np.iinfo(dtype)

    @PROPERTY
    @given(kernel_cases(side))
    def check(case):
        matrix, scale, offset, seed = case
        rng = np.random.default_rng(seed)
        shape = (9, 11) + ((channels,) if channels else ())
        if rng.random() < 0.5:
            array = rng.integers(int(info.min), int(info.max), shape, endpoint=True)
        else:
            array = rng.choice(np.array(EXTREMES[np.dtype(dtype)], dtype=np.int64), shape)
        image = to_image(array, mode)
        pillow_kernel = ImageFilter.Kernel((side, side), np.flipud(matrix).ravel().tolist(), scale, offset)
        expected = pillow_filter(image, pillow_kernel)
        got = ours(image, Kernel(matrix, scale=scale, offset=offset))
        np.testing.assert_array_equal(got, expected)

    check()


@pytest.mark.parametrize("mode", ["L", "RGB", "I;16"])
@pytest.mark.parametrize(
    "column, row",
    [([0.3, 0.4, 0.3], [0.25, 0.5, 0.25]), ([0.1, 0.2, 0.4, 0.2, 0.1], [0.1, 0.2, 0.4, 0.2, 0.1])],
    ids=["3x3", "5x5"],
)
def test_separable_fractional_kernels_match_pillow_at_any_size(mode, column, row):
    # A kernel of rank one is cheaper as two 1-D passes, which round
    # differently from Pillow's float32 sums (up to a few samples in a
    # thousand of this photograph differ by 1); auto keeps Pillow's order
    # for these shapes on an image large enough for the passes to save
    # real time.
    dtype, channels = LAYOUT[mode]
    photo = Image.open(SAMPLE_DIR / "coffee.png").convert("RGB")
    array = np.tile(np.asarray(photo), (3, 4, 1))  # 2400 x 1200
    if not channels:
        array = array[..., 1]
    if np.dtype(dtype).itemsize == 2:
        array = array.astype(np.uint16) * 257
    image = to_image(array, mode)
    matrix = np.outer(column, row)
    expected = pillow_filter(image, ImageFilter.Kernel(matrix.shape, np.flipud(matrix).ravel().tolist(), 1.0))
    np.testing.assert_array_equal(ours(image, Kernel(matrix)), expected)


@pytest.mark.parametrize("mode", ["L", "RGB", "I;16"])
def test_nested_box_kernels_match_pillow(mode):
    # 5x5 rings (outer ring a, inner ring b, centre c): the engine sums
    # these as nested boxes, whose partial sums can come close to its
    # integer type's limit; images of extreme values make that bite.
    dtype, channels = LAYOUT[mode]

    @PROPERTY
    @given(
        rings=st.tuples(st.integers(-12, 12), st.integers(-12, 12), st.integers(-60, 60)),
        scale=st.sampled_from([1, 2, 7, 16, 100]),
        offset=st.sampled_from([0.0, 0.5, 128.0]),
        seed=st.integers(0, 2**32 - 1),
    )
    def check(rings, scale, offset, seed):
        a, b, c = rings
        matrix = np.full((5, 5), a, float)
        matrix[1:4, 1:4] = b
        matrix[2, 2] = c
        rng = np.random.default_rng(seed)
        shape = (9, 11) + ((channels,) if channels else ())
        array = rng.choice(np.array(EXTREMES[np.dtype(dtype)], dtype=np.int64), shape)
        image = to_image(array, mode)
        pillow_kernel = ImageFilter.Kernel((5, 5), np.flipud(matrix).ravel().tolist(), scale, offset)
        np.testing.assert_array_equal(ours(image, Kernel(matrix, scale=scale, offset=offset)),
                                      pillow_filter(image, pillow_kernel))  # fmt: skip

    check()


def test_pillow_orientation_by_hand():
    # A kernel whose only weight is in the top row: convfilter reads the pixel
    # above, so an impulse at (3, 3) lights (4, 3). Pillow needs the row at the bottom.
    array = np.zeros((7, 7), np.uint8)
    array[3, 3] = 200
    matrix = np.array([[0, 1, 0], [0, 0, 0], [0, 0, 0]], dtype=float)
    got = filter_array(array, Kernel(matrix), border="keep")
    assert got[4, 3] == 200 and got.sum() == 200
    flipped = ImageFilter.Kernel((3, 3), np.flipud(matrix).ravel().tolist(), 1, 0)
    np.testing.assert_array_equal(np.asarray(Image.fromarray(array).filter(flipped)), got)
    as_written = ImageFilter.Kernel((3, 3), matrix.ravel().tolist(), 1, 0)
    assert not np.array_equal(np.asarray(Image.fromarray(array).filter(as_written)), got)


# ---------------------------------------------------------------------------
# The cards are what make_cards.py draws
# ---------------------------------------------------------------------------


def test_cards_are_current(tmp_path):
    spec = importlib.util.spec_from_file_location("make_cards", SAMPLE_DIR / "make_cards.py")
    make_cards = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_cards)
    assert make_cards.main(["make_cards.py", str(tmp_path)]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(make_cards.CARDS)
    assert {p.name for p in (SAMPLE_DIR / "cards").iterdir()} >= set(names)
    for name in names:
        with Image.open(tmp_path / name) as fresh, Image.open(SAMPLE_DIR / "cards" / name) as stored:
            assert (fresh.mode, fresh.size) == (stored.mode, stored.size)
            np.testing.assert_array_equal(np.asarray(fresh), np.asarray(stored))
        assert (tmp_path / name).stat().st_size < 100_000
