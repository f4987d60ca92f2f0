"""Tests for convfilter.engine.

Oracles: numbers worked out by hand, ``scipy.ndimage.correlate`` /
``convolve`` for the padded border modes and ``numpy.pad`` for shifts.
Pillow parity lives in ``test_pillow_parity.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from PIL import Image

from convfilter.engine import (
    BORDER_MODES,
    METHODS,
    BorderMode,
    FilterError,
    correlate,
    filter_array,
)
from convfilter import engine
from convfilter.kernels import PRESETS, Kernel, KernelSpecError, as_kernel, parse_kernel
from oracles import SCIPY_MODES

#: convfilter border mode -> numpy.pad mode (an independent second oracle).
NUMPY_PAD_MODES = {
    "nearest": "edge",
    "reflect": "symmetric",
    "mirror": "reflect",
    "wrap": "wrap",
    "constant": "constant",
}

KERNEL_SHAPES = [(1, 1), (2, 2), (2, 5), (4, 3), (3, 3), (5, 5), (7, 2)]
DTYPES = [np.uint8, np.uint16, np.int32, np.float32, np.float64]
CVAL = 2.5

PROPERTY = settings(max_examples=60, deadline=None)


def scipy_correlate(array: np.ndarray, weights: np.ndarray, border: str, cval: float = CVAL):
    """scipy's correlation, channel by channel for H x W x C input."""
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 2:
        return ndi.correlate(array, weights, mode=SCIPY_MODES[border], cval=cval)
    return np.stack(
        [
            ndi.correlate(array[..., c], weights, mode=SCIPY_MODES[border], cval=cval)
            for c in range(array.shape[2])
        ],
        axis=-1,
    )


def interior(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The part of a same-size result where the kernel lies wholly inside the image."""
    h, w = shape
    ay, ax = h // 2, w // 2
    rows, cols = array.shape[:2]
    return array[ay : ay + rows - h + 1, ax : ax + cols - w + 1]


def naive_valid_correlation(image: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Textbook loops: out[i, j] = sum over u, v of weights[u, v] * image[i + u, j + v]."""
    h, w = weights.shape
    rows, cols = image.shape
    out = np.zeros((rows - h + 1, cols - w + 1))
    for i in range(rows - h + 1):
        for j in range(cols - w + 1):
            for u in range(h):
                for v in range(w):
                    out[i, j] += weights[u, v] * image[i + u, j + v]
    return out


def image_shape(ndim: int) -> tuple[int, ...]:
    return (11, 13) if ndim == 2 else (11, 13, 3)


# ---------------------------------------------------------------------------
# The worked example from the issue
# ---------------------------------------------------------------------------

WORKED_IMAGE = np.arange(25).reshape(5, 5)
WORKED_KERNEL = np.arange(9).reshape(3, 3)
# Worked by hand: the top-left output is 0*0 + 1*1 + 2*2 + 5*3 + 6*4 + 7*5
# + 10*6 + 11*7 + 12*8 = 312; one step right adds sum(kernel) = 36, one step
# down adds 5 * 36 = 180.
WORKED_RESULT = [[312, 348, 384], [492, 528, 564], [672, 708, 744]]


def test_worked_example_by_loops_matches_the_issue():
    # The oracle used below is itself checked against the issue's numbers.
    assert naive_valid_correlation(WORKED_IMAGE, WORKED_KERNEL).tolist() == WORKED_RESULT


def test_worked_example_correlate():
    out = correlate(WORKED_IMAGE.astype(np.float64), Kernel(WORKED_KERNEL), border="valid")
    assert out.dtype == np.float64
    assert out.tolist() == WORKED_RESULT


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int32, np.uint16])
def test_worked_example_filter_array(dtype):
    out = filter_array(WORKED_IMAGE.astype(dtype), Kernel(WORKED_KERNEL), border="valid")
    assert out.dtype == np.dtype(dtype)
    assert out.tolist() == WORKED_RESULT


def test_worked_example_keep_frames_the_valid_part():
    image = WORKED_IMAGE.astype(np.uint16)
    out = filter_array(image, Kernel(WORKED_KERNEL), border="keep")
    expected = image.copy()
    expected[1:4, 1:4] = WORKED_RESULT
    np.testing.assert_array_equal(out, expected)


# ---------------------------------------------------------------------------
# scipy.ndimage as the oracle for the padded border modes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("border", sorted(SCIPY_MODES))
@pytest.mark.parametrize("kshape", KERNEL_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("ndim", [2, 3])
def test_correlate_matches_scipy(border, kshape, ndim, rng):
    image = rng.normal(0, 50, image_shape(ndim))
    weights = rng.normal(0, 1, kshape)
    out = correlate(image, Kernel(weights), border=border, cval=CVAL)
    assert out.shape == image.shape and out.dtype == np.float64
    np.testing.assert_allclose(out, scipy_correlate(image, weights, border), rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("border", sorted(SCIPY_MODES))
def test_correlate_3d_matches_scipy_with_a_singleton_channel_kernel(border, rng):
    image = rng.normal(0, 50, (9, 8, 4))
    weights = rng.normal(0, 1, (3, 4))
    expected = ndi.correlate(image, weights[:, :, np.newaxis], mode=SCIPY_MODES[border], cval=CVAL)
    out = correlate(image, Kernel(weights), border=border, cval=CVAL)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("border", sorted(SCIPY_MODES))
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32])
def test_correlate_other_dtypes_match_scipy(border, dtype, rng):
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if info is None:
        image = rng.normal(0, 100, (10, 12)).astype(dtype)
    else:
        image = rng.integers(max(info.min, -(2**20)), min(info.max, 2**20), (10, 12), endpoint=True)
        image = image.astype(dtype)
    weights = rng.normal(0, 1, (3, 5))
    out = correlate(image, Kernel(weights), border=border, cval=CVAL)
    assert out.dtype == (np.float64 if dtype == np.int32 else np.float32)
    expected = scipy_correlate(image, weights, border)
    scale = np.abs(image).max() * np.abs(weights).sum()
    np.testing.assert_allclose(out, expected, rtol=0, atol=scale * 4e-6)


@pytest.mark.parametrize("border", sorted(SCIPY_MODES))
@pytest.mark.parametrize(
    ("ishape", "kshape"),
    [((2, 3), (5, 5)), ((1, 1), (3, 3)), ((1, 6), (3, 2)), ((4, 1), (2, 7)), ((2, 3, 2), (5, 5))],
    ids=str,
)
def test_image_smaller_than_kernel_matches_scipy(border, ishape, kshape, rng):
    image = rng.normal(0, 10, ishape)
    weights = rng.normal(0, 1, kshape)
    out = correlate(image, Kernel(weights), border=border, cval=CVAL)
    np.testing.assert_allclose(out, scipy_correlate(image, weights, border), rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("border", ["nearest", "reflect", "mirror", "wrap"])
def test_cval_only_matters_for_constant(border, rng):
    image = rng.normal(0, 10, (6, 7))
    kernel = Kernel(rng.normal(0, 1, (3, 3)))
    a = correlate(image, kernel, border=border, cval=0.0)
    b = correlate(image, kernel, border=border, cval=1000.0)
    np.testing.assert_array_equal(a, b)
    c = correlate(image, kernel, border="constant", cval=0.0)
    d = correlate(image, kernel, border="constant", cval=1000.0)
    assert not np.allclose(c, d)


@pytest.mark.parametrize("kshape", KERNEL_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("ndim", [2, 3])
def test_valid_is_the_interior_of_scipy(kshape, ndim, rng):
    image = rng.normal(0, 50, image_shape(ndim))
    weights = rng.normal(0, 1, kshape)
    out = correlate(image, Kernel(weights), border="valid")
    h, w = kshape
    assert out.shape == (image.shape[0] - h + 1, image.shape[1] - w + 1) + image.shape[2:]
    # The interior does not depend on the padding: check it against two modes.
    for mode in ("constant", "wrap"):
        expected = interior(scipy_correlate(image, weights, mode, cval=-7.0), kshape)
        np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-9)


def test_valid_matches_textbook_loops(rng):
    image = rng.normal(0, 5, (7, 9))
    weights = rng.normal(0, 1, (4, 3))
    out = correlate(image, Kernel(weights), border="valid")
    np.testing.assert_allclose(out, naive_valid_correlation(image, weights), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kshape", KERNEL_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("ndim", [2, 3])
def test_keep_interior_is_scipy_and_frame_is_the_input(kshape, ndim, rng):
    image = rng.normal(0, 50, image_shape(ndim))
    weights = rng.normal(0, 1, kshape)
    out = correlate(image, Kernel(weights), border="keep")
    h, w = kshape
    ay, ax = h // 2, w // 2
    expected = image.copy()
    expected[ay : ay + image.shape[0] - h + 1, ax : ax + image.shape[1] - w + 1] = interior(
        scipy_correlate(image, weights, "nearest"), kshape
    )
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("kshape", [(2, 2), (2, 5), (4, 3), (7, 2), (3, 3), (1, 4)], ids=str)
def test_keep_frame_widths_follow_the_anchor(kshape):
    h, w = kshape
    image = np.ones((12, 12), np.uint8)
    # All weights positive and summing to 2: every computed pixel becomes 2,
    # every kept pixel stays 1.
    out = filter_array(image, Kernel(np.full(kshape, 2.0 / (h * w))), border="keep")
    computed_rows = np.flatnonzero((out == 2).any(axis=1))
    computed_cols = np.flatnonzero((out == 2).any(axis=0))
    top, bottom = computed_rows[0], 11 - computed_rows[-1]
    left, right = computed_cols[0], 11 - computed_cols[-1]
    assert (top, bottom, left, right) == (h // 2, h - 1 - h // 2, w // 2, w - 1 - w // 2)
    assert set(np.unique(out).tolist()) <= {1, 2}
    assert (out[top : 12 - bottom, left : 12 - right] == 2).all()


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_keep_frame_is_whole_when_the_work_is_cut_into_rows_and_columns(method, rng):
    # 300 x 3000 with a 15x15 kernel: FFT tiles cut the image into pieces
    # across as well as down; each piece copies the frame beside it.
    image = rng.integers(0, 256, (300, 3000, 3)).astype(np.uint8)
    kernel = Kernel(rng.integers(-3, 4, (15, 15)).astype(float), scale=7)
    out = filter_array(image, kernel, border="keep", method=method, threads=2)
    inner = (slice(7, -7), slice(7, -7))
    frame = np.ones(image.shape[:2], bool)
    frame[inner] = False
    np.testing.assert_array_equal(out[frame], image[frame])
    expected = filter_array(image, kernel, border="valid", method=method, threads=1)
    np.testing.assert_array_equal(out[inner], expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ishape", [(2, 3), (4, 4), (1, 9), (9, 1), (3, 2, 3)], ids=str)
def test_keep_returns_image_smaller_than_kernel_unchanged(dtype, ishape, rng):
    image = rng.integers(0, 200, ishape).astype(dtype)
    kernel = Kernel(rng.normal(0, 1, (5, 5)), offset=17)
    out = filter_array(image, kernel, border="keep")
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, image)
    np.testing.assert_array_equal(correlate(image, kernel, border="keep"), image)


@pytest.mark.parametrize("ishape", [(2, 3), (4, 5), (5, 4), (1, 1)], ids=str)
def test_valid_with_image_smaller_than_kernel_raises(ishape):
    image = np.zeros(ishape, np.uint8)
    with pytest.raises(FilterError, match="valid") as info:
        filter_array(image, Kernel(np.ones((5, 5))), border="valid")
    assert isinstance(info.value, ValueError)
    with pytest.raises(FilterError, match="at least as large as the kernel"):
        correlate(image, Kernel(np.ones((5, 5))), border="valid")


@pytest.mark.parametrize("border", BORDER_MODES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_filter_array_float_is_correlate_plus_offset(border, dtype, rng):
    image = rng.normal(0, 50, (9, 10, 2)).astype(dtype)
    kernel = Kernel(rng.normal(0, 1, (3, 4)), scale=3.0, offset=-41.25)
    out = filter_array(image, kernel, border=border, cval=CVAL)
    expected = correlate(image, kernel, border=border, cval=CVAL) + kernel.offset
    if border == "keep":
        # The frame is the input, untouched by the offset.
        expected = image.copy()
        expected[1:-1, 2:-1] = interior(correlate(image, kernel, border="nearest") + kernel.offset, (3, 4))
    assert out.dtype == np.dtype(dtype)
    tolerance = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(out, expected, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("border", sorted(SCIPY_MODES))
@pytest.mark.parametrize("kshape", KERNEL_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_flipped_kernel_is_scipy_convolution(border, kshape, rng):
    image = rng.normal(0, 50, (10, 11))
    weights = rng.normal(0, 1, kshape)
    out = correlate(image, Kernel(weights).flipped(), border=border, cval=CVAL)
    # The anchor moves with its tap, so even kernels too are scipy's default placement.
    expected = ndi.convolve(image, weights, mode=SCIPY_MODES[border], cval=CVAL)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("kshape", [(4, 4), (2, 3), (5, 2)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("border", ["reflect", "constant", "wrap"])
def test_every_anchor_is_scipy_origin(border, kshape, rng):
    image = rng.normal(0, 50, (9, 10))
    weights = rng.normal(0, 1, kshape)
    h, w = kshape
    for ay in range(h):
        for ax in range(w):
            out = correlate(image, Kernel(weights, anchor=(ay, ax)), border=border, cval=CVAL)
            expected = ndi.correlate(image, weights, mode=SCIPY_MODES[border], cval=CVAL,
                                     origin=(ay - h // 2, ax - w // 2))  # fmt: skip
            np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-9)
            flipped = correlate(image, Kernel(weights, anchor=(ay, ax)).flipped(), border=border, cval=CVAL)
            # the named tap stays on the output pixel, as scipy's origin names the same tap in convolve
            expected = ndi.convolve(image, weights, mode=SCIPY_MODES[border], cval=CVAL,
                                    origin=(ay - h // 2, ax - w // 2))  # fmt: skip
            np.testing.assert_allclose(flipped, expected, rtol=1e-12, atol=1e-9)


def test_anchor_valid_crops_by_its_reach(rng):
    image = rng.normal(0, 50, (9, 10))
    weights = rng.normal(0, 1, (3, 4))
    out = correlate(image, Kernel(weights, anchor=(0, 3)), border="valid")
    full = ndi.correlate(image, weights, mode="nearest", origin=(-1, 1))
    assert out.shape == (7, 7)
    np.testing.assert_allclose(out, full[0:7, 3:10], rtol=1e-12, atol=1e-9)


def test_flipped_odd_kernel_is_scipy_convolution_with_default_origin(rng):
    image = rng.normal(0, 50, (8, 9))
    weights = rng.normal(0, 1, (3, 5))
    out = correlate(image, Kernel(weights).flipped(), border="reflect")
    np.testing.assert_allclose(out, ndi.convolve(image, weights, mode="reflect"), rtol=1e-12, atol=1e-9)
    # and is not the correlation, so the check above can fail
    assert not np.allclose(out, ndi.correlate(image, weights, mode="reflect"))


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------


def _elements(dtype) -> st.SearchStrategy:
    dtype = np.dtype(dtype)
    if dtype == np.int32:
        # Sums are float32 (Pillow's choice) and start at 0.5, so whole numbers
        # survive exactly up to 2**23; negatives clamp to 0 (Pillow's mode I).
        return st.integers(0, 2**23)
    if dtype.kind in "iu":
        return st.integers(0, int(np.iinfo(dtype).max))
    width = 32 if dtype == np.float32 else 64
    return st.floats(-(2.0**100), 2.0**100, allow_nan=False, allow_infinity=False, width=width)


@st.composite
def images(draw, dtypes=DTYPES, min_side=1, max_side=9):
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    rows = draw(st.integers(min_side, max_side))
    cols = draw(st.integers(min_side, max_side))
    channels = draw(st.sampled_from([(), (1,), (3,)]))
    return draw(hnp.arrays(dtype, (rows, cols) + channels, elements=_elements(dtype)))


kernel_shapes = st.tuples(st.integers(1, 5), st.integers(1, 5))


def _expected_crop(image: np.ndarray, kshape: tuple[int, int], border: str) -> np.ndarray:
    """Identity/valid: the interior; keep on a too-small image: the image."""
    if border == "valid":
        return interior(image, kshape)
    return image


@PROPERTY
@given(image=images(), kshape=kernel_shapes, border=st.sampled_from(BORDER_MODES))
def test_identity_kernel_returns_the_input(image, kshape, border):
    h, w = kshape
    if border == "valid" and (image.shape[0] < h or image.shape[1] < w):
        kshape = (1, 1)
        h = w = 1
    matrix = np.zeros(kshape)
    matrix[h // 2, w // 2] = 1
    out = filter_array(image, Kernel(matrix), border=border, cval=CVAL)
    assert out.dtype == image.dtype
    np.testing.assert_array_equal(out, _expected_crop(image, kshape, border))


@PROPERTY
@given(
    image=images(dtypes=[np.uint8, np.float64], min_side=3),
    dy=st.integers(-2, 2),
    dx=st.integers(-2, 2),
    border=st.sampled_from(BORDER_MODES),
)
def test_shifted_delta_shifts_the_image(image, dy, dx, border):
    # A delta dy rows below and dx columns right of the anchor of a 5x5
    # kernel makes out[i, j] = in[i + dy, j + dx].
    matrix = np.zeros((5, 5))
    matrix[2 + dy, 2 + dx] = 1
    cval = 7
    if border in ("valid", "keep") and (image.shape[0] < 5 or image.shape[1] < 5):
        image = np.pad(image, [(0, 5), (0, 5)] + [(0, 0)] * (image.ndim - 2), mode="wrap")
    out = filter_array(image, Kernel(matrix), border=border, cval=cval)
    rows, cols = image.shape[:2]
    if border == "wrap":
        expected = np.roll(image, (-dy, -dx), axis=(0, 1))
    elif border in SCIPY_MODES:
        pad = [(2, 2), (2, 2)] + [(0, 0)] * (image.ndim - 2)
        extra = {"constant_values": cval} if border == "constant" else {}
        padded = np.pad(image, pad, mode=NUMPY_PAD_MODES[border], **extra)
        expected = padded[2 + dy : 2 + dy + rows, 2 + dx : 2 + dx + cols]
    else:
        shifted = image[2 + dy : rows - 2 + dy, 2 + dx : cols - 2 + dx]
        if border == "valid":
            expected = shifted
        else:
            expected = image.copy()
            expected[2 : rows - 2, 2 : cols - 2] = shifted
    np.testing.assert_array_equal(out, expected)


@PROPERTY
@given(
    image=hnp.arrays(np.float64, st.tuples(st.integers(1, 8), st.integers(1, 8)), elements=st.floats(-100, 100)),
    a=hnp.arrays(np.float64, st.just((3, 2)), elements=st.floats(-10, 10)),
    b=hnp.arrays(np.float64, st.just((3, 2)), elements=st.floats(-10, 10)),
    border=st.sampled_from(sorted(SCIPY_MODES)),
)
def test_correlate_is_linear_in_the_kernel(image, a, b, border):
    together = correlate(image, Kernel(a + b), border=border, cval=CVAL)
    apart = correlate(image, Kernel(a), border=border, cval=CVAL) + correlate(
        image, Kernel(b), border=border, cval=CVAL
    )
    tolerance = 1e-9 * (1 + np.abs(image).max() * (np.abs(a).sum() + np.abs(b).sum()))
    np.testing.assert_allclose(together, apart, rtol=0, atol=tolerance)


@PROPERTY
@given(
    value=st.integers(0, 255),
    dtype=st.sampled_from(DTYPES),
    size=st.integers(1, 7),
    shape=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    border=st.sampled_from(BORDER_MODES),
)
def test_box_blur_keeps_a_constant_image(value, dtype, size, shape, border):
    if border == "valid":
        shape = (max(shape[0], size), max(shape[1], size))
    scale = 257 if dtype == np.uint16 else 1  # reach the top of uint16 too
    image = np.full(shape, value * scale, dtype)
    out = filter_array(image, parse_kernel(f"box:{size}"), border=border, cval=value * scale)
    assert out.dtype == np.dtype(dtype)
    if np.dtype(dtype).kind == "f":
        np.testing.assert_allclose(out, value * scale, rtol=1e-6)
    else:
        assert (out == value * scale).all()


@PROPERTY
@given(image=images(), kshape=kernel_shapes, border=st.sampled_from(BORDER_MODES))
def test_shape_and_dtype_are_kept(image, kshape, border):
    h, w = kshape
    kernel = Kernel(np.arange(1.0, h * w + 1).reshape(kshape), scale=h * w * 3)
    if border == "valid" and (image.shape[0] < h or image.shape[1] < w):
        with pytest.raises(FilterError):
            filter_array(image, kernel, border=border)
        return
    out = filter_array(image, kernel, border=border, cval=CVAL)
    assert out.dtype == image.dtype
    if border == "valid":
        assert out.shape == (image.shape[0] - h + 1, image.shape[1] - w + 1) + image.shape[2:]
    else:
        assert out.shape == image.shape


@PROPERTY
@given(
    weights=hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 5), st.integers(1, 5)),
        elements=st.integers(-20, 20).map(float),
    ),
    border=st.sampled_from(sorted(SCIPY_MODES) + ["keep"]),
)
def test_impulse_returns_the_kernel_rotated_180_degrees(weights, border):
    h, w = weights.shape
    ay, ax = h // 2, w // 2
    image = np.zeros((13, 13))
    py, px = 6, 6
    image[py, px] = 1.0
    out = correlate(image, Kernel(weights), border=border)
    # out[i, j] = sum weights[u, v] * image[i + u - ay, j + v - ax] is non-zero
    # only where i = py + ay - u, j = px + ax - v.
    patch = out[py + ay - h + 1 : py + ay + 1, px + ax - w + 1 : px + ax + 1]
    np.testing.assert_array_equal(patch, np.rot90(weights, 2))
    rest = out.copy()
    rest[py + ay - h + 1 : py + ay + 1, px + ax - w + 1 : px + ax + 1] = 0
    assert not rest.any()


def test_impulse_by_hand():
    image = np.zeros((4, 5), np.uint16)
    image[1, 2] = 10
    kernel = Kernel([[1, 2, 3], [4, 5, 6]])  # anchor (1, 1)
    out = filter_array(image, kernel, border="constant")
    # out[i, j] = sum k[u, v] * image[i + u - 1, j + v - 1]; image is 10 at (1, 2).
    expected = np.zeros((4, 5), np.uint16)
    expected[1, 1:4] = [60, 50, 40]  # u = 1: v = 2, 1, 0
    expected[2, 1:4] = [30, 20, 10]  # u = 0
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kshape", [(1, 1), (3, 3), (2, 4)], ids=str)
def test_zero_kernel_gives_the_offset(dtype, kshape, rng):
    # Every weight 0: every computed pixel is offset (7 + 0.5 truncated is 7).
    image = rng.integers(0, 200, (6, 7, 2)).astype(dtype)
    kernel = Kernel(np.zeros(kshape), offset=7)
    assert (filter_array(image, kernel, border="nearest") == 7).all()
    kept = filter_array(image, kernel, border="keep")
    expected = image.copy()
    h, w = kshape
    expected[h // 2 : h // 2 + 6 - h + 1, w // 2 : w // 2 + 7 - w + 1] = 7
    np.testing.assert_array_equal(kept, expected)


@pytest.mark.parametrize("border", BORDER_MODES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_input_is_left_alone_and_may_be_read_only(border, dtype, rng):
    image = rng.integers(0, 256, (9, 8, 3)).astype(dtype)
    image.setflags(write=False)
    before = image.copy()
    kernel = PRESETS["sharpen"].kernel()
    filter_array(image, kernel, border=border, abs=True)
    filter_array(image, kernel, border=border)
    correlate(image, kernel, border=border)
    np.testing.assert_array_equal(image, before)


@pytest.mark.parametrize(
    "view",
    [
        lambda a: a[::2, 1::3],
        lambda a: a[::-1, ::-1],
        lambda a: np.asfortranarray(a),
        lambda a: a.transpose(1, 0, 2),
        lambda a: a[..., 1],
    ],
    ids=["strided", "reversed", "fortran", "transposed", "one channel"],
)
def test_non_contiguous_input_gives_the_same_result(view, rng):
    image = view(rng.integers(0, 256, (30, 24, 3)).astype(np.uint8))
    kernel = PRESETS["smooth_more"].kernel()
    np.testing.assert_array_equal(
        filter_array(image, kernel, border="reflect"),
        filter_array(np.ascontiguousarray(image), kernel, border="reflect"),
    )


# ---------------------------------------------------------------------------
# Every method
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("border", BORDER_MODES)
@pytest.mark.parametrize("method", METHODS)
def test_every_method_matches_scipy_on_a_separable_kernel(method, border, rng):
    image = rng.normal(0, 50, (23, 19, 2))
    column, row = rng.normal(0, 1, 5), rng.normal(0, 1, 3)
    kernel = Kernel(np.outer(column, row), factors=(column, row))
    out = correlate(image, kernel, border=border, cval=CVAL, method=method)
    if border in SCIPY_MODES:
        expected = scipy_correlate(image, kernel.matrix, border)
    else:
        expected = interior(scipy_correlate(image, kernel.matrix, "nearest"), (5, 3))
        if border == "keep":
            framed = image.copy()
            framed[2:-2, 1:-1] = expected
            expected = framed
    assert out.shape == expected.shape
    # Loose enough for an FFT, tight enough to catch a misplaced tap.
    scale = np.abs(image).max() * np.abs(kernel.matrix).sum()
    np.testing.assert_allclose(out, expected, rtol=0, atol=scale * 1e-6)


@pytest.mark.parametrize("method", [m for m in METHODS if m != "separable"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_general_method_matches_scipy(method, dtype, rng):
    image = rng.normal(0, 50, (21, 26)).astype(dtype)
    weights = rng.normal(0, 1, (7, 4))
    out = correlate(image, Kernel(weights), border="reflect", method=method)
    expected = scipy_correlate(image, weights, "reflect")
    scale = np.abs(image).max() * np.abs(weights).sum()
    np.testing.assert_allclose(out, expected, rtol=0, atol=scale * 1e-5)


@pytest.mark.parametrize("method", [m for m in METHODS if m != "separable"])
@pytest.mark.parametrize("key", ["blur", "sharpen", "smooth_more", "contour"])
def test_every_general_method_agrees_on_presets_with_keep(method, key, rng):
    # The documented promise: every method gives the same bytes for presets
    # (Pillow parity itself is checked in test_pillow_parity.py).
    image = rng.integers(0, 256, (40, 37, 3)).astype(np.uint8)
    kernel = PRESETS[key].kernel()
    reference = filter_array(image, kernel, border="keep", method="direct")
    np.testing.assert_array_equal(filter_array(image, kernel, border="keep", method=method), reference)


# ---------------------------------------------------------------------------
# Rounding and dtype policy, by hand
# ---------------------------------------------------------------------------


def one_pixel(value, dtype, matrix=((1,),), scale=1.0, offset=0.0, absolute=False):
    image = np.array([[value]], dtype=dtype)
    kernel = Kernel(matrix, scale=scale, offset=offset)
    out = filter_array(image, kernel, border="nearest", abs=absolute)
    assert out.dtype == np.dtype(dtype) and out.shape == (1, 1)
    return out[0, 0].item()


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, 2), (1, 1), (5, 3), (0, 0), (254, 127), (255, 128)],
)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32])
def test_integer_rounding_is_half_up(value, expected, dtype):
    # kernel [[1]] scale 2: 3 -> 1.5 -> 2, 1 -> 0.5 -> 1, 5 -> 2.5 -> 3 (not
    # banker's 2), 255 -> 127.5 -> 128.
    assert one_pixel(value, dtype, scale=2) == expected


@pytest.mark.parametrize(
    ("value", "matrix", "offset", "expected"),
    [
        (200, ((2,),), 0, 255),
        (5, ((-1,),), 0, 0),
        (100, ((1,),), 155, 255),
        (100, ((1,),), 156, 255),
        (100, ((1,),), -100, 0),
        (100, ((1,),), -100.6, 0),
        (0, ((1,),), 254.4, 254),
        (0, ((1,),), 254.5, 255),
    ],
)
def test_uint8_clamps_to_0_255(value, matrix, offset, expected):
    assert one_pixel(value, np.uint8, matrix, offset=offset) == expected


@pytest.mark.parametrize(
    ("value", "matrix", "expected"),
    [(40000, ((2,),), 65535), (65535, ((1,),), 65535), (5, ((-1,),), 0), (300, ((2,),), 600)],
)
def test_uint16_clamps_to_0_65535(value, matrix, expected):
    assert one_pixel(value, np.uint16, matrix) == expected


@pytest.mark.parametrize(
    ("value", "matrix", "expected"),
    [
        (5, ((-1,),), 0),  # negatives become 0, as Pillow's mode I does
        (-7, ((1,),), 0),
        (300, ((2,),), 600),
        (2**30, ((4,),), 2**31 - 1),  # saturates at the top
        (70000, ((1,),), 70000),  # beyond uint16
    ],
)
def test_mode_i_negatives_become_zero_and_large_values_saturate(value, matrix, expected):
    image = np.full((1, 1), value, np.int32)
    assert engine.filter_mode_i(image, Kernel(np.array(matrix, float)), border="nearest")[0, 0] == expected


def test_int32_arrays_keep_their_full_range():
    assert one_pixel(-7, np.int32) == -7
    assert one_pixel(2**30, np.int32, ((4,),)) == 2**31 - 1
    assert one_pixel(-(2**30), np.int32, ((4,),)) == -(2**31)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("value", "matrix", "scale", "offset", "expected"),
    [
        (5.0, ((-1,),), 1, 0, -5.0),
        (3.0, ((1,),), 2, 0, 1.5),
        (200.0, ((2,),), 1, 0, 400.0),
        (1.0, ((1,),), 1, -3.5, -2.5),
        (0.25, ((1,),), 1, 70000, 70000.25),
    ],
)
def test_float_is_neither_rounded_nor_clamped(dtype, value, matrix, scale, offset, expected):
    assert one_pixel(value, dtype, matrix, scale=scale, offset=offset) == expected


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [(np.uint8, 2), (np.uint16, 2), (np.int32, 2), (np.float32, 1.5), (np.float64, 1.5)],
)
def test_absolute_takes_abs_before_rounding(dtype, expected):
    # -3 / 2 = -1.5: abs then round half up gives 2 (rounding first would give 1).
    assert one_pixel(3, dtype, ((-1,),), scale=2, absolute=True) == expected


@pytest.mark.parametrize(("dtype", "signed"), [(np.uint8, 0), (np.int32, -3), (np.float64, -3)])
def test_absolute_includes_the_offset(dtype, signed):
    # |4 * -1 + 1| = 3; without abs an unsigned result clamps to 0.
    assert one_pixel(4, dtype, ((-1,),), offset=1, absolute=True) == 3
    assert one_pixel(4, dtype, ((-1,),), offset=1, absolute=False) == signed


@pytest.mark.parametrize(
    ("dtype", "peak"), [(np.uint8, 255), (np.uint16, 400), (np.int32, 400), (np.float64, 400)]
)
def test_sobel_absolute_gives_equal_magnitudes_for_both_edge_signs(dtype, peak):
    row = np.array([0, 0, 0, 100, 100, 100, 0, 0, 0])
    image = np.tile(row, (5, 1)).astype(dtype)
    sobel_x = parse_kernel("sobel-x")
    # (1 + 2 + 1) * (right - left): +400 at columns 2 and 3, -400 at 5 and 6.
    magnitude = filter_array(image, sobel_x, border="nearest", abs=True)
    np.testing.assert_array_equal(magnitude, np.tile([0, 0, peak, peak, 0, peak, peak, 0, 0], (5, 1)))
    signed = filter_array(image, sobel_x, border="nearest")
    low = 0 if np.dtype(dtype).kind == "u" else -400
    np.testing.assert_array_equal(signed, np.tile([0, 0, peak, peak, 0, low, low, 0, 0], (5, 1)))


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype", [np.complex128, np.longdouble, object, "U3", "datetime64[s]", "timedelta64[s]"], ids=str
)
@pytest.mark.parametrize("function", [correlate, filter_array], ids=lambda f: f.__name__)
def test_unsupported_dtype_raises(dtype, function):
    if np.dtype(dtype) == np.float64:
        pytest.skip("long double is float64 here")
    with pytest.raises(FilterError, match="cannot filter .* arrays; give real numbers"):
        function(np.zeros((4, 4), dtype), Kernel([[1]]))


def test_unsupported_output_dtype_raises():
    with pytest.raises(FilterError, match="cannot filter complex64"):
        filter_array(np.zeros((4, 4), np.uint8), Kernel([[1]]), out_dtype=np.complex64)


@pytest.mark.parametrize("border", ["clamp", "", "grid-wrap", None])
@pytest.mark.parametrize("function", [correlate, filter_array], ids=lambda f: f.__name__)
def test_unknown_border_raises(border, function):
    with pytest.raises(FilterError, match="unknown border mode") as info:
        function(np.zeros((4, 4), np.uint8), Kernel([[1]]), border=border)
    for mode in BORDER_MODES:
        assert mode in str(info.value)


@pytest.mark.parametrize("border", list(BorderMode))
def test_border_mode_enum_members_are_accepted(border, rng):
    image = rng.integers(0, 255, (6, 6)).astype(np.uint8)
    kernel = parse_kernel("smooth")
    np.testing.assert_array_equal(
        filter_array(image, kernel, border=border), filter_array(image, kernel, border=border.value)
    )


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros(5, np.uint8), "H x W"),
        (np.zeros((2, 2, 2, 2), np.uint8), "H x W"),
        (np.zeros((0, 4), np.uint8), "empty"),
        (np.zeros((4, 4, 0), np.uint8), "empty"),
    ],
    ids=["1-D", "4-D", "no rows", "no channels"],
)
def test_bad_shapes_raise(array, match):
    with pytest.raises(FilterError, match=match):
        filter_array(array, Kernel([[1]]))


@pytest.mark.parametrize(
    "function",
    [correlate, filter_array],
    ids=lambda f: f.__name__,
)
def test_kernel_must_be_a_kernel(function):
    for kernel in (None, 5, {"a": 1}, b"blur"):
        with pytest.raises(KernelSpecError, match="a kernel is a Kernel, a spec string or a 2-D matrix"):
            function(np.zeros((3, 3), np.uint8), kernel)
    with pytest.raises(KernelSpecError, match="2-D"):
        function(np.zeros((3, 3), np.uint8), np.ones((2, 2, 2)))


def test_unknown_method_and_bad_threads_raise():
    image = np.zeros((3, 3), np.uint8)
    with pytest.raises(FilterError, match="unknown method"):
        filter_array(image, Kernel([[1]]), method="magic")
    with pytest.raises(FilterError, match="threads"):
        filter_array(image, Kernel([[1]]), threads=0)


# ---------------------------------------------------------------------------
# The generated float card (Pillow cannot filter mode F, so scipy is the oracle)
# ---------------------------------------------------------------------------


def test_float_card_is_filtered_unclamped(sample_dir):
    with Image.open(sample_dir / "cards" / "float32.tif") as image:
        assert image.mode == "F"
        array = np.asarray(image)
    kernel = parse_kernel("laplacian")
    out = filter_array(array, kernel, border="reflect")
    assert out.dtype == np.float32
    expected = ndi.correlate(array.astype(np.float64), kernel.matrix, mode="reflect")
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1.0)
    # The 1e6 block beside the -1000 block: far outside [0, 255] both ways.
    assert out.max() > 1e6 and out.min() < -1e6


# ---------------------------------------------------------------------------
# out=: into a given array, and in place
# ---------------------------------------------------------------------------


@pytest.fixture
def short_strips(monkeypatch):
    """Small images in many short strips on two threads, as large ones are."""
    from convfilter import methods

    monkeypatch.setattr(engine, "_THREAD_SECONDS", 0.0)

    monkeypatch.setattr(engine, "_KERNEL_THREAD_SECONDS", 0.0)
    monkeypatch.setattr(engine, "_STRIP_BYTES", 1)
    monkeypatch.setattr(methods, "FFT_CALL_ELEMENTS", 5000)


IN_PLACE_KERNELS = {
    "3x3 preset": "edge_enhance",
    "separable 9x9": "gaussian:2",
    "dense 7x5": np.arange(35.0).reshape(7, 5) % 7 - 3,  # reaches 3 rows up and down
    "tall 15x1": np.ones((15, 1)),  # taller than a strip of 8 rows
}


@pytest.mark.parametrize("border", ["nearest", "reflect", "mirror", "wrap", "constant"])
@pytest.mark.parametrize(("kernel", "method"), [
    (kernel, method) for kernel in IN_PLACE_KERNELS for method in ("direct", "separable", "fft")
    if method != "separable" or np.linalg.matrix_rank(as_kernel(IN_PLACE_KERNELS[kernel]).weights) == 1
])  # fmt: skip
def test_in_place_float64_is_scipy(kernel, method, border, rng, short_strips):
    weights = as_kernel(IN_PLACE_KERNELS[kernel]).weights
    array = rng.normal(0, 50, (83, 21, 3))
    expected = scipy_correlate(array, weights, border)
    got = filter_array(array, weights, border=border, cval=CVAL, method=method, threads=2, out=array)
    assert got is array
    np.testing.assert_allclose(array, expected, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.int32])
@pytest.mark.parametrize("border", ["nearest", "wrap", "keep", "constant"])
@pytest.mark.parametrize("kernel", list(IN_PLACE_KERNELS), ids=str)
def test_in_place_gives_the_bytes_of_a_new_array(kernel, border, dtype, rng, short_strips):
    spec = IN_PLACE_KERNELS[kernel]
    array = (rng.random((97, 31, 3)) * 250).astype(dtype)
    expected = filter_array(array, spec, border=border, cval=3, threads=1)
    got = filter_array(array, spec, border=border, cval=3, threads=2, out=array)
    assert got is array
    np.testing.assert_array_equal(array, expected)


def test_in_place_through_a_strided_view(rng, short_strips):
    """Pillow's RGB layout: 4 bytes a pixel, of which the engine fills 3."""
    rgbx = rng.integers(0, 256, (120, 50, 4), dtype=np.uint8)
    view = rgbx[..., :3]
    padding = rgbx[..., 3].copy()
    expected = filter_array(view.copy(), "sharpen", border="keep", threads=1)
    filter_array(view, "sharpen", border="keep", threads=2, out=view)
    np.testing.assert_array_equal(view, expected)
    np.testing.assert_array_equal(rgbx[..., 3], padding)  # untouched


def test_in_place_holds_a_few_rows_not_a_second_image(rng):
    import tracemalloc

    array = rng.integers(0, 256, (4000, 4000, 3), dtype=np.uint8)  # 48 MB
    filter_array(array, "edge_enhance", out=array)  # warm: scratch buffers, caches
    tracemalloc.start()
    try:
        filter_array(array, "edge_enhance", out=array, threads=2)
        in_place = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        filter_array(array, "edge_enhance", threads=2)
        new = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Both hold the engine's strip buffers (a few MB a thread); a new result holds the image once more.
    assert new - in_place > 0.95 * array.nbytes, (new, in_place)
    assert in_place < array.nbytes / 2, in_place


def test_out_is_filled_and_returned(rng):
    array = rng.integers(0, 256, (40, 30), dtype=np.uint8)
    out = np.full_like(array, 7)
    assert filter_array(array, "blur", out=out) is out
    np.testing.assert_array_equal(out, filter_array(array, "blur"))
    valid = np.empty((36, 26), np.uint8)  # blur is 5x5
    filter_array(array, "blur", border="valid", out=valid)
    np.testing.assert_array_equal(valid, filter_array(array, "blur", border="valid"))


@pytest.mark.parametrize("overlap", ["reversed rows", "shifted by a row", "one channel of many"])
def test_out_overlapping_the_input_otherwise_sees_the_input_as_it_was(overlap, rng, short_strips):
    base = rng.integers(0, 256, (64, 40, 3), dtype=np.uint8)
    if overlap == "reversed rows":
        array, out = base, base[::-1]
    elif overlap == "shifted by a row":
        array, out = base[1:], base[:-1]
    else:
        array, out = base[..., 0], base[..., 1]
    expected = filter_array(array.copy(), "emboss", threads=1)
    assert filter_array(array, "emboss", threads=2, out=out) is out
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(("out", "message"), [
    (np.zeros((10, 9), np.uint8), "shape"),
    (np.zeros((10, 10), np.uint16), "uint8 array of shape"),
    ([[0] * 10] * 10, "NumPy array"),
])  # fmt: skip
def test_an_out_that_cannot_hold_the_result_is_refused(out, message):
    with pytest.raises(FilterError, match=message):
        filter_array(np.zeros((10, 10), np.uint8), "blur", out=out)


def test_a_read_only_out_is_refused():
    out = np.zeros((10, 10), np.uint8)
    out.flags.writeable = False
    with pytest.raises(FilterError, match="read-only"):
        filter_array(np.zeros((10, 10), np.uint8), "blur", out=out)


def test_out_for_a_filter_that_is_not_a_kernel(rng):
    array = rng.integers(0, 256, (30, 20, 3), dtype=np.uint8)
    expected = ndi.median_filter(array, size=(3, 3, 1), mode="nearest")
    assert filter_array(array, "median:3", out=array) is array
    np.testing.assert_array_equal(array, expected)
