"""Tests for convfilter.blurs.

Oracles from outside the module: Pillow itself for 8-bit data (its
``BoxBlur``, ``GaussianBlur`` and ``UnsharpMask``, and its blur of an image
padded by ``numpy.pad`` for the other border modes); ``scipy.ndimage.
correlate1d``, one call per pass with the exact weights, for the other
dtypes; numbers worked out by hand for a few tiny cases.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from PIL import Image, ImageFilter

from convfilter import blurs
from convfilter.blurs import box_blur, box_reach, gaussian_blur, gaussian_box_radius, unsharp_mask
from convfilter.engine import FilterError
from convfilter.options import BorderMode
from oracles import SCIPY_MODES

#: Pillow's 8-bit modes the blurs take, and their bands.
BANDS = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "CMYK": 4}

RADII = [0, 0.5, 1, 2.7, 10, (0, 3), (2.5, 0.7)]

#: convfilter border mode -> numpy.pad mode.
NUMPY_PAD_MODES = {
    "nearest": "edge",
    "reflect": "symmetric",
    "mirror": "reflect",
    "wrap": "wrap",
    "constant": "constant",
}

#: Each blur: convfilter's function and Pillow's filter class.
BLURS = {"box": (box_blur, ImageFilter.BoxBlur), "gaussian": (gaussian_blur, ImageFilter.GaussianBlur)}

PROPERTY = settings(max_examples=40, deadline=None)


@pytest.fixture(scope="module")
def photo(sample_dir) -> np.ndarray:
    """A 64 x 48 crop of two photographs as four bands: a cat in RGB, a cup in grey."""
    cat = np.asarray(Image.open(sample_dir / "chelsea.png").convert("RGB"))[120:168, 200:264]
    cup = np.asarray(Image.open(sample_dir / "coffee.png").convert("L"))[150:198, 300:364]
    return np.dstack([cat, cup])


def bands(image: np.ndarray, mode: str) -> np.ndarray:
    """The first bands of ``image`` that ``mode`` has, H x W for one band."""
    count = BANDS[mode]
    return image[..., 0].copy() if count == 1 else image[..., :count].copy()


def pillow(array: np.ndarray, mode: str, image_filter) -> np.ndarray:
    """Pillow's result for ``array`` as an image of ``mode``, as an array of the same shape."""
    height, width = array.shape[:2]
    image = Image.frombytes(mode, (width, height), np.ascontiguousarray(array).tobytes())
    return np.asarray(image.filter(image_filter)).reshape(array.shape)


def mode_of(array: np.ndarray) -> str:
    return {2: "L", 3: {2: "LA", 3: "RGB", 4: "RGBA"}.get(array.shape[-1])}[array.ndim]


def exact_weights(radius: float, unit: float = 1.0) -> np.ndarray:
    """One box pass's weights, the two far taps first and last, times ``unit``."""
    half = math.floor(radius)
    weights = np.full(2 * half + 3, unit / (2 * radius + 1))
    weights[[0, -1]] = (radius - half) * unit / (2 * radius + 1)
    return weights


def scipy_blur(array, x_radii, y_radii, border, cval=0.0) -> np.ndarray:
    """The passes in float64 by scipy, never rounded."""
    values = np.asarray(array, dtype=np.float64)
    for axis, radii in ((1, x_radii), (0, y_radii)):
        for radius in radii:
            if radius:
                values = ndi.correlate1d(values, exact_weights(radius), axis=axis, mode=SCIPY_MODES[border], cval=cval)
    return values


def scipy_integer_blur(array, x_radii, y_radii, border, cval, dtype) -> np.ndarray:
    """The passes by scipy, each rounded half up and clipped to ``dtype``.

    Radii must be multiples of 1/256: the weights times 256 * (2r + 1) are then
    whole numbers, scipy's sums exact, and the rounding done on integers.
    """
    info = np.iinfo(dtype)
    values = np.asarray(array, dtype=np.int64)
    for axis, radii in ((1, x_radii), (0, y_radii)):
        for radius in radii:
            if not radius:
                continue
            assert float(radius * 256).is_integer()
            divisor = round((2 * radius + 1) * 256)
            weights = exact_weights(radius, unit=divisor)  # whole numbers
            sums = ndi.correlate1d(values.astype(np.float64), weights, axis=axis, mode=SCIPY_MODES[border], cval=cval)
            values = np.clip((2 * sums.astype(np.int64) + divisor) // (2 * divisor), info.min, info.max)
    return values.astype(dtype)


def as_pair(radius) -> tuple[float, float]:
    return tuple(radius) if isinstance(radius, tuple) else (radius, radius)


# -- 8-bit: Pillow's bytes ---------------------------------------------------


@pytest.mark.parametrize("mode", BANDS)
@pytest.mark.parametrize("radius", RADII)
@pytest.mark.parametrize("kind", BLURS)
def test_blurs_of_a_photograph_are_pillows(photo, kind, radius, mode):
    blur, pillow_filter = BLURS[kind]
    array = bands(photo, mode)
    assert_array_equal(blur(array, radius), pillow(array, mode, pillow_filter(radius)))


def hard_edges(name: str) -> np.ndarray:
    """A 24 x 32 picture of only 0 and 255 (or one of them)."""
    rows, cols = np.indices((24, 32))
    pictures = {
        "pixel checkerboard": (rows + cols) % 2,
        "4-pixel checkerboard": (rows // 4 + cols // 4) % 2,
        "random": np.random.default_rng(5).integers(0, 2, (24, 32)),
        "stripes": cols % 3 == 0,
        "all 255": np.ones((24, 32)),
        "all 0": np.zeros((24, 32)),
    }
    return (pictures[name] * 255).astype(np.uint8)


@pytest.mark.parametrize(
    "picture", ["pixel checkerboard", "4-pixel checkerboard", "random", "stripes", "all 255", "all 0"]
)
@pytest.mark.parametrize("radius", [0.5, 1, 1.375, 2.7, 5, 10, (3, 0.25)])
@pytest.mark.parametrize("kind", BLURS)
def test_blurs_of_hard_edges_are_pillows(kind, radius, picture):
    blur, pillow_filter = BLURS[kind]
    array = hard_edges(picture)
    assert_array_equal(blur(array, radius), pillow(array, "L", pillow_filter(radius)))


@pytest.mark.parametrize("shape", [(1, 1), (2, 7), (7, 2), (1, 9), (3, 2, 3)])
@pytest.mark.parametrize("radius", [10, (10, 0.5), 1000.5, 1e7])
@pytest.mark.parametrize("kind", BLURS)
def test_images_smaller_than_the_radius_are_pillows(rng, kind, radius, shape):
    """Windows wider than the image; from radius 2**23 Pillow's inner weight is 0."""
    blur, pillow_filter = BLURS[kind]
    array = rng.integers(0, 256, shape, dtype=np.uint8)
    assert_array_equal(blur(array, radius), pillow(array, mode_of(array), pillow_filter(radius)))


@pytest.mark.parametrize("radius", [3, 10, (1, 40.5)])
@pytest.mark.parametrize("kind", BLURS)
def test_wide_images_are_pillows(photo, kind, radius):
    """Rows of thousands of samples, where vertical passes keep running sums."""
    blur, pillow_filter = BLURS[kind]
    wide = np.ascontiguousarray(np.tile(photo[:, :, :3], (1, 30, 1))[:45])  # 45 x 1920 RGB
    assert_array_equal(blur(wide, radius), pillow(wide, "RGB", pillow_filter(radius)))


@pytest.mark.parametrize("strip_samples, wide_times", [(700, 4), (1300, 4), (5000, 4), (700, 1), (1300, 2)])
@pytest.mark.parametrize("radius", [1, 2, 2.7, 10])
def test_strips_and_chunks_of_every_size_are_pillows(photo, monkeypatch, strip_samples, wide_times, radius):
    """Small strips: horizontal strips of a few rows, vertical passes in chunks of
    a few rows whose running sums go on from chunk to chunk, a short last chunk,
    and a buffer of widened rows that fills up and starts again."""
    monkeypatch.setattr(blurs, "_STRIP_SAMPLES", strip_samples)
    monkeypatch.setattr(blurs, "_WIDE_TIMES", wide_times)
    rgb = np.ascontiguousarray(photo[:45, :, :3])
    for blur, pillow_filter in BLURS.values():
        assert_array_equal(blur(rgb, radius, threads=1), pillow(rgb, "RGB", pillow_filter(radius)))
    arguments = (radius, 150, 3)
    assert_array_equal(unsharp_mask(rgb, *arguments, threads=2), pillow(rgb, "RGB", ImageFilter.UnsharpMask(*arguments)))


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "CMYK"])
@pytest.mark.parametrize(
    "arguments",
    [(), (0, 150, 3), (2, 150, 3), (0.5, 500, 0), (1, 0, 3), (3, 150, 255), (2, 500, 0), (1.5, -80, 2),
     (10, 250, 10), (2, 2**30, 0)],
)  # fmt: skip
def test_unsharp_mask_is_pillows(photo, arguments, mode):
    """(radius, percent, threshold); in the last, diff * percent overflows Pillow's C int and wraps."""
    array = bands(photo, mode)
    assert_array_equal(unsharp_mask(array, *arguments), pillow(array, mode, ImageFilter.UnsharpMask(*arguments)))


@pytest.mark.parametrize("picture", ["pixel checkerboard", "random", "stripes"])
def test_unsharp_mask_of_hard_edges_is_pillows(picture):
    array = hard_edges(picture)
    for arguments in [(2, 500, 0), (0.7, 120, 255), (4, -300, 1)]:
        assert_array_equal(unsharp_mask(array, *arguments), pillow(array, "L", ImageFilter.UnsharpMask(*arguments)))


@pytest.mark.parametrize("border", ["reflect", "mirror", "wrap", "constant"])
@pytest.mark.parametrize("radius", [0.5, 2.7, 10, (2.5, 0.7)])
def test_box_blur_borders_are_pillows_blur_of_the_padded_image(photo, radius, border):
    """One pass each way: padding the image once pads every pass alike."""
    array = photo[..., :3]
    margin = 12
    fill = {"constant_values": 77} if border == "constant" else {}
    padded = np.pad(array, ((margin, margin), (margin, margin), (0, 0)), NUMPY_PAD_MODES[border], **fill)
    expected = pillow(padded, "RGB", ImageFilter.BoxBlur(radius))[margin:-margin, margin:-margin]
    assert_array_equal(box_blur(array, radius, border=border, cval=77), expected)


@pytest.mark.parametrize("border", ["reflect", "mirror", "wrap"])
@pytest.mark.parametrize("radius", [0.8, 2, (6, 1.5)])
def test_gaussian_blur_symmetric_borders_are_pillows_blur_of_the_padded_image(photo, radius, border):
    """A symmetric pass of a mirrored or periodic line is mirrored or periodic
    itself, so one padding wide enough for all three passes does."""
    array = photo[..., :3]
    margin = 3 * max(box_reach(gaussian_box_radius(r)) for r in as_pair(radius))
    padded = np.pad(array, ((margin, margin), (margin, margin), (0, 0)), NUMPY_PAD_MODES[border])
    expected = pillow(padded, "RGB", ImageFilter.GaussianBlur(radius))[margin:-margin, margin:-margin]
    assert_array_equal(gaussian_blur(array, radius, border=border), expected)


@pytest.mark.parametrize("dtype", [np.uint8, np.float64])
@pytest.mark.parametrize("kind", BLURS)
def test_keep_is_nearest(photo, kind, dtype):
    blur, _ = BLURS[kind]
    array = photo.astype(dtype)
    keep = blur(array, (2.7, 1), border="keep")
    assert_array_equal(keep, blur(array, (2.7, 1), border=BorderMode.NEAREST))
    assert not np.array_equal(keep, blur(array, (2.7, 1), border="constant"))


# -- box_reach and gaussian_box_radius ----------------------------------------


@pytest.mark.parametrize("radius", [0.25, 0.5, 1, 2, 2.5, 3.7, 9.5])
def test_box_reach_is_how_far_pillows_impulse_response_goes(radius):
    row = np.zeros((1, 61), np.uint8)
    row[0, 30] = 255
    lit = np.flatnonzero(pillow(row, "L", ImageFilter.BoxBlur((radius, 0)))[0])
    assert (lit.min(), lit.max()) == (30 - box_reach(radius), 30 + box_reach(radius))


def test_box_reach_counts_far_taps_too_light_for_an_impulse():
    """Radius 104: Pillow weighs the taps at distance 105 by 2**-24 units, too
    little for an impulse to show, but enough to tip some sums over a
    rounding boundary. Each row holds one inner sum from 0 to 255 * 209."""
    radius = 104
    assert box_reach(radius) == 105
    length = 2 * radius + 1
    sums = np.arange(255 * length + 1)[:, np.newaxis]
    dim = np.zeros((len(sums), length + 2), np.uint8)
    dim[:, 1:-1] = np.clip(sums - 255 * np.arange(length), 0, 255)
    bright = dim.copy()
    bright[:, [0, -1]] = 255  # the far taps of the middle sample
    middle = radius + 1
    dim_out, bright_out = (pillow(rows, "L", ImageFilter.BoxBlur((radius, 0)))[:, middle] for rows in (dim, bright))
    assert (dim_out != bright_out).any()
    assert_array_equal(box_blur(bright, (radius, 0))[:, middle], bright_out)


def test_box_reach_of_whole_radii():
    """Radius 5: the far taps weigh (2**24 - 11 * 1525201) // 2 = 2, not 0."""
    assert [box_reach(r) for r in (0, 1, 2, 3, 5)] == [0, 1, 2, 3, 6]


@pytest.mark.parametrize("sigma", [0.3, 1, 2, 2.5, 7.1, 30])
def test_pillows_gaussian_is_three_box_passes_of_gaussian_box_radius(photo, sigma):
    """Pillow's core blurs (``Image.im``), the only way to ask it for three box passes."""
    image = Image.fromarray(photo[..., :3])
    box = gaussian_box_radius(sigma)
    three_boxes = np.asarray(image._new(image.im.box_blur((box, box), 3)))
    assert_array_equal(np.asarray(image._new(image.im.gaussian_blur((sigma, sigma)))), three_boxes)


def test_gaussian_box_radius_by_hand():
    """sigma 2: variance 4/3, box length sqrt(17) = 4.12, whole part 1,
    fraction 3 * (2 - 4) / (6 * (4/3 - 4)) = 0.375."""
    assert gaussian_box_radius(2) == 1.375
    assert gaussian_box_radius(0) == 0.0


# -- Other dtypes and borders: scipy, one pass at a time ------------------------


@pytest.mark.parametrize("border", ["nearest", "reflect", "mirror", "wrap", "constant"])
@pytest.mark.parametrize("radius", [0.5, 1, 2.7, 10, 37.25, (0, 3), (2.5, 0.7)])
@pytest.mark.parametrize("kind", BLURS)
def test_float64_blurs_are_scipys_passes(rng, kind, radius, border):
    array = rng.normal(size=(13, 17, 2))
    x, y = as_pair(radius)
    if kind == "gaussian":
        x, y = gaussian_box_radius(x), gaussian_box_radius(y)
    passes = 1 if kind == "box" else 3
    expected = scipy_blur(array, [x] * passes, [y] * passes, border, cval=0.3)
    blur, _ = BLURS[kind]
    assert_allclose(blur(array, radius, border=border, cval=0.3), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("border", ["nearest", "reflect", "mirror", "wrap", "constant"])
@pytest.mark.parametrize("radius", [2.7, (10, 0.5)])
def test_float32_blurs_are_scipys_passes_in_float32(photo, radius, border):
    array = photo.astype(np.float32) / 255
    x, y = as_pair(radius)
    result = box_blur(array, radius, border=border, cval=0.5)
    assert result.dtype == np.float32
    assert_allclose(result, scipy_blur(array, [x], [y], border, cval=0.5), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.uint16, np.int32])
@pytest.mark.parametrize("border", ["nearest", "reflect", "mirror", "wrap", "constant"])
@pytest.mark.parametrize("radius", [1, 2.5, 0.75, (1.5, 3), (0, 4.25)])
def test_integer_box_blur_is_scipys_passes_rounded_half_up(photo, radius, border, dtype):
    """Radius 2.5 and 0.75 make many exact ties (x.5), which must round up."""
    if dtype == np.uint16:
        array = photo.astype(np.uint16) * 257
    else:
        array = photo.astype(np.int32) * 1_000_003 - 2**27
    x, y = as_pair(radius)
    expected = scipy_integer_blur(array, [x], [y], border, 1001, dtype)
    result = box_blur(array, radius, border=border, cval=1000.6)  # rounds to 1001
    assert result.dtype == dtype
    assert_array_equal(result, expected)


@pytest.mark.parametrize("dtype", [np.uint16, np.int32])
@pytest.mark.parametrize("border", ["nearest", "wrap", "constant"])
def test_integer_gaussian_blur_is_scipys_passes_rounded_half_up(photo, border, dtype):
    """sigma 2 gives box radius 1.375, a multiple of 1/256."""
    array = photo.astype(dtype) * 251
    expected = scipy_integer_blur(array, [1.375] * 3, [1.375] * 3, border, 0, dtype)
    assert_array_equal(gaussian_blur(array, 2, border=border), expected)


def test_integer_fill_is_a_sample_of_the_type(photo):
    """cval is rounded half up and clipped to the type, as padding is made of samples."""
    array = photo.astype(np.uint16)
    assert_array_equal(box_blur(array, 3, border="constant", cval=-40), box_blur(array, 3, border="constant", cval=0))
    assert_array_equal(box_blur(array, 3, border="constant", cval=2.5), box_blur(array, 3, border="constant", cval=3))
    small = photo[..., 0]
    assert_array_equal(box_blur(small, 3, border="constant", cval=300), box_blur(small, 3, border="constant", cval=255))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float64])
@pytest.mark.parametrize("kind", BLURS)
@pytest.mark.parametrize("radius", [0.5, 2, 5, (2.7, 0), (1, 3.5), 1 + 2**-23])
def test_valid_is_the_interior_every_border_agrees_on(photo, radius, kind, dtype):
    """``valid`` crops, per pass, the larger of box_reach(r) and ceil(r) on each
    side: box_reach(5) is 6 (Pillow's far weight is 2, see below), while
    box_reach(1 + 2**-23) is 1 (its far weight rounds to 0) and ceil is 2."""
    blur, _ = BLURS[kind]
    array = photo.astype(dtype)
    x, y = as_pair(radius)
    passes = 1 if kind == "box" else 3
    if kind == "gaussian":
        x, y = gaussian_box_radius(x), gaussian_box_radius(y)
    across, down = (passes * max(box_reach(r), math.ceil(r)) for r in (x, y))
    valid = blur(array, radius, border="valid")
    assert valid.shape == (48 - 2 * down, 64 - 2 * across, 4)
    assert valid.dtype == dtype
    for border in ["nearest", "reflect", "mirror", "wrap", "constant"]:
        whole = blur(array, radius, border=border, cval=99)
        interior = whole[down : 48 - down, across : 64 - across]
        if dtype == np.float64:
            assert_allclose(valid, interior, rtol=1e-13)
        else:
            assert_array_equal(valid, interior)


def test_valid_on_an_image_too_small_is_an_error():
    with pytest.raises(FilterError, match="leaves nothing"):
        box_blur(np.zeros((20, 5), np.uint8), 2.5, border="valid")
    assert box_blur(np.zeros((20, 7), np.uint8), 2.5, border="valid").shape == (14, 1)


# -- Unsharp mask on other dtypes ---------------------------------------------


def sharpened(original, blurred, percent, threshold, low=None, high=None):
    """The unsharp rule, one sample at a time in Python numbers."""
    out = []
    for value, blur in zip(original.ravel().tolist(), blurred.ravel().tolist()):
        diff = value - blur
        if abs(diff) <= threshold:
            out.append(value)
        elif isinstance(diff, int):
            change = abs(diff * percent) // 100 * (1 if diff * percent >= 0 else -1)  # truncated, as in C
            out.append(min(max(value + change, low), high))
        else:
            out.append(value + diff * percent / 100)
    return np.array(out).reshape(original.shape)


@pytest.mark.parametrize("dtype", [np.uint16, np.int32])
@pytest.mark.parametrize("percent, threshold", [(150, 3), (500, 0), (-70, 100), (333, 2**20)])
def test_integer_unsharp_mask_truncates_and_clips_to_the_type(photo, percent, threshold, dtype):
    """Radius 2, so box passes of radius 1.375."""
    info = np.iinfo(dtype)
    array = (photo[..., :2].astype(np.int64) * 257 - (2**23 if dtype == np.int32 else 0)).astype(dtype)
    array[10:20, 10:20] = info.max  # room to clip at both ends
    array[30:40, 10:20] = info.min
    blurred = scipy_integer_blur(array, [1.375] * 3, [1.375] * 3, "nearest", 0, dtype)
    expected = sharpened(array.astype(np.int64), blurred.astype(np.int64), percent, threshold, info.min, info.max)
    assert_array_equal(unsharp_mask(array, 2, percent, threshold), expected.astype(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("percent", [150, 500])
def test_float_unsharp_mask_neither_truncates_nor_clips(photo, percent, dtype):
    array = photo[..., :2].astype(dtype) / 255
    blurred = gaussian_blur(array, 2)
    assert_allclose(blurred, scipy_blur(array, [1.375] * 3, [1.375] * 3, "nearest"), rtol=1e-6)
    result = unsharp_mask(array, 2, percent, 0)
    assert result.dtype == dtype
    assert_allclose(result, sharpened(array.astype(np.float64), blurred.astype(np.float64), percent, 0), rtol=1e-6)
    assert result.min() < 0 and result.max() > 1


# -- Shapes, threads, progress, errors ---------------------------------------


def test_two_and_three_dimensional_single_bands_agree(photo):
    grey = photo[..., 3].copy()
    assert_array_equal(gaussian_blur(grey, 1.5), gaussian_blur(grey[..., np.newaxis], 1.5)[..., 0])
    assert gaussian_blur(grey, 1.5).shape == grey.shape


def test_byte_order_is_kept(photo):
    array = (photo.astype(np.uint16) * 200).astype(">u2")
    result = box_blur(array, 2)
    assert result.dtype == np.dtype(">u2")
    assert_array_equal(result, box_blur(array.astype("<u2"), 2))


def test_threads_and_progress_change_nothing_but_the_reports(photo):
    big = np.ascontiguousarray(np.tile(photo[..., :3], (25, 19, 1)))  # 1200 x 1216 RGB: enough for threads
    reports = []
    threaded = gaussian_blur(big, 2, threads=2, progress=lambda done, total: reports.append((done, total)))
    assert_array_equal(threaded, gaussian_blur(big, 2, threads=1))
    assert_array_equal(threaded, np.asarray(Image.fromarray(big).filter(ImageFilter.GaussianBlur(2))))
    done, totals = zip(*reports)
    assert list(done) == sorted(done) and len(set(totals)) == 1 and done[-1] == totals[0]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: box_blur(np.zeros((4, 4), np.int16), 1), "int16"),
        (lambda: box_blur(np.zeros((4, 4), bool), 1), "bool"),
        (lambda: box_blur(np.zeros(4, np.uint8), 1), "shape"),
        (lambda: box_blur(np.zeros((0, 4), np.uint8), 1), "empty"),
        (lambda: box_blur(np.zeros((4, 4), np.uint8), -1), ">= 0"),
        (lambda: box_blur(np.zeros((4, 4), np.uint8), float("nan")), "finite"),
        (lambda: gaussian_blur(np.zeros((4, 4), np.uint8), float("inf")), "finite"),
        (lambda: box_blur(np.zeros((4, 4), np.uint8), (1, 2, 3)), "pair"),
        (lambda: box_blur(np.zeros((4, 4), np.uint8), "2"), "number"),
        (lambda: box_blur(np.zeros((4, 4), np.uint8), 1, border="clamp"), "choose from"),
        (lambda: box_blur(np.zeros((4, 4), np.uint8), 1, border="constant", cval="x"), "cval"),
        (lambda: unsharp_mask(np.zeros((4, 4), np.uint8), 2, 150.0, 3), "percent"),
        (lambda: unsharp_mask(np.zeros((4, 4), np.uint8), 2, 150, 2**31), "threshold"),
        (lambda: unsharp_mask(np.zeros((4, 4), np.uint8), 2, True, 3), "percent"),
    ],
)
def test_bad_input_is_a_filter_error(call, message):
    with pytest.raises(FilterError, match=message):
        call()


def test_impulse_by_hand():
    """An impulse of 90 through one pass of radius 1 (thirds) and 0.5 (halves,
    the far taps a quarter)."""
    impulse = np.array([[0, 0, 90, 0, 0]])
    assert box_blur(impulse.astype(np.uint8), (1, 0)).tolist() == [[0, 30, 30, 30, 0]]
    assert box_blur(impulse.astype(np.float64), (0.5, 0)).tolist() == [[0, 22.5, 45, 22.5, 0]]
    assert box_blur(impulse.T.astype(np.uint16), (0, 0.5)).ravel().tolist() == [0, 23, 45, 23, 0]


# -- Properties ----------------------------------------------------------------

SAMPLE_LIMITS = {np.uint8: (0, 255), np.uint16: (0, 65535), np.int32: (-(2**31), 2**31 - 1)}


@PROPERTY
@given(
    dtype=st.sampled_from([np.uint8, np.uint16, np.int32, np.float64]),
    fraction=st.floats(0, 1),
    shape=st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(1, 3)),
    radius=st.tuples(st.floats(0, 30), st.floats(0, 30)),
    border=st.sampled_from(["nearest", "reflect", "mirror", "wrap", "keep", "constant"]),
    kind=st.sampled_from(list(BLURS)),
)
def test_a_constant_image_stays_constant(dtype, fraction, shape, radius, border, kind):
    """For every border; with ``constant`` when cval is that constant too."""
    if dtype == np.float64:
        value = fraction * 1e6 - 5e5
    else:
        low, high = SAMPLE_LIMITS[dtype]
        value = round(low + fraction * (high - low))
    array = np.full(shape, value, dtype)
    blur, _ = BLURS[kind]
    result = blur(array, radius, border=border, cval=value)
    if dtype == np.float64:
        assert_allclose(result, array, rtol=1e-12)
    else:
        assert_array_equal(result, array)


@PROPERTY
@given(
    seed=st.integers(0, 2**32 - 1),
    shape=st.tuples(st.integers(1, 12), st.integers(1, 12), st.sampled_from([1, 3, 4])),
    radius=st.tuples(st.floats(0, 20), st.floats(0, 20)),
    kind=st.sampled_from(list(BLURS)),
)
def test_random_small_images_are_pillows(seed, shape, radius, kind):
    array = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    if shape[2] == 1:
        array = array[..., 0]
    blur, pillow_filter = BLURS[kind]
    assert_array_equal(blur(array, radius), pillow(array, mode_of(array), pillow_filter(radius)))


@PROPERTY
@given(
    seed=st.integers(0, 2**32 - 1),
    shape=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    radius=st.floats(0, 8),
    percent=st.integers(-1000, 1000),
    threshold=st.integers(-5, 300),
)
def test_random_unsharp_masks_are_pillows(seed, shape, radius, percent, threshold):
    array = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    expected = pillow(array, "L", ImageFilter.UnsharpMask(radius, percent, threshold))
    assert_array_equal(unsharp_mask(array, radius, percent, threshold), expected)
