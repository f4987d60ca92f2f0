"""The engine's methods (direct, separable, fft, auto) and threads.

The accuracy contract (docs/pillow-parity.md), each part proved here:

* Pillow's ten presets with border ``keep`` are byte-identical to Pillow in
  every method (so in whichever ``auto`` picks).
* Integer kernels on 8- and 16-bit images take an exact integer path; its
  results equal Pillow's float32 order (an oracle written out below) in
  every method, ties included.
* Otherwise integer results are within 1 of the exactly rounded result
  (float64 reference), float results within 1e-4 of a float64 reference,
  relative to the sums' scale ``sum(|weights|) * max(|image|)``.
* The cost model refuses absurd work and ``auto`` avoids it.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFilter

from convfilter import engine, methods
from convfilter.engine import (
    BORDER_MODES,
    MAX_SECONDS,
    FilterError,
    choose_method,
    correlate,
    estimate_seconds,
    filter_array,
)
from convfilter.kernels import PRESETS, Kernel, box_kernel, gaussian_kernel

PILLOW_PRESETS = sorted(key for key, preset in PRESETS.items() if preset.pillow_name)
PADDED = ["nearest", "reflect", "mirror", "wrap", "constant"]
NUMPY_PAD = {"nearest": "edge", "reflect": "symmetric", "mirror": "reflect", "wrap": "wrap"}
EXPLICIT = ["direct", "separable", "fft"]

PROPERTY = settings(max_examples=60, deadline=None)


# ---------------------------------------------------------------------------
# Oracles
# ---------------------------------------------------------------------------


def padded(array: np.ndarray, kernel: Kernel, border: str, cval: float) -> np.ndarray:
    """The image padded for ``border`` (unpadded for keep and valid), as float64."""
    if border in ("keep", "valid"):
        return array.astype(np.float64)
    h, w = kernel.shape
    ay, ax = kernel.anchor
    widths = [(ay, h - 1 - ay), (ax, w - 1 - ax)] + [(0, 0)] * (array.ndim - 2)
    if border == "constant":
        return np.pad(array.astype(np.float64), widths, mode="constant", constant_values=cval)
    return np.pad(array.astype(np.float64), widths, mode=NUMPY_PAD[border])


def pillow_order(array, kernel, border="nearest", cval=0.0, absolute=False):
    """Pillow's float32 arithmetic, written out: the bytes every method must give.

    Start at offset + 0.5 (offset alone with ``absolute``), add kernel rows
    from the bottom up, each summed left to right with weights
    float32(matrix) / float32(scale); then trunc(clamp(.)).
    """
    source = padded(array, kernel, border, cval).astype(np.float32)
    h, w = kernel.shape
    weights = kernel.matrix.astype(np.float32) / np.float32(kernel.scale)
    rows, cols = source.shape[0] - h + 1, source.shape[1] - w + 1
    offset = np.float32(kernel.offset)
    total = np.full((rows, cols) + source.shape[2:], offset if absolute else offset + np.float32(0.5),
                    np.float32)  # fmt: skip
    for r in range(h - 1, -1, -1):
        row = np.zeros_like(total)
        for c in range(w):
            row = row + source[r : r + rows, c : c + cols] * weights[r, c]
        total = total + row
    if absolute:
        total = np.abs(total) + np.float32(0.5)
    high = np.iinfo(array.dtype).max
    result = np.clip(total, 0, high).astype(array.dtype)
    return framed(array, result, kernel, border)


def exact_rounding(array, kernel, border="nearest", cval=0.0, absolute=False):
    """The exactly rounded result: floor(float64 sum + offset + 0.5), clipped to the type's range."""
    values = float64_result(array, kernel, border, cval, absolute)
    info = np.iinfo(array.dtype)
    rounded = np.clip(np.floor(values + 0.5), info.min, info.max).astype(array.dtype)
    if border == "keep":  # the frame holds the input itself, not rounded again
        rounded = np.where(frame_mask(array, kernel), array, rounded)
    return rounded


def frame_mask(array, kernel):
    """True on the pixels border ``keep`` leaves as they are."""
    mask = np.ones(array.shape, bool)
    h, w = kernel.shape
    ay, ax = kernel.anchor
    if array.shape[0] >= h and array.shape[1] >= w:
        mask[ay : array.shape[0] - (h - 1 - ay), ax : array.shape[1] - (w - 1 - ax)] = False
    return mask


def float64_result(array, kernel, border, cval, absolute):
    """sum + offset (its absolute value with ``absolute``) in float64; keep frames the input."""
    inner = "valid" if border == "keep" else border
    if border == "keep" and (array.shape[0] < kernel.shape[0] or array.shape[1] < kernel.shape[1]):
        return array.astype(np.float64)  # returned unchanged, as Pillow does
    values = correlate(array.astype(np.float64), kernel, border=inner, cval=cval,
                       method="direct") + kernel.offset  # fmt: skip
    if absolute:
        values = np.abs(values)
    return framed(array.astype(np.float64), values, kernel, border)


def framed(array, interior, kernel, border):
    if border != "keep":
        return interior
    ay, ax = kernel.anchor
    out = array.copy()
    out[ay : ay + interior.shape[0], ax : ax + interior.shape[1]] = interior
    return out


def methods_for(kernel: Kernel) -> list[str]:
    """The explicit methods that apply to ``kernel``."""
    separable = np.isfinite(estimate_seconds("separable", (8, 8), kernel))
    return [m for m in EXPLICIT if m != "separable" or separable]


def as_int(a: np.ndarray) -> np.ndarray:
    return a.astype(np.int64)


# ---------------------------------------------------------------------------
# Pillow's presets
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photo(sample_dir) -> np.ndarray:
    with Image.open(sample_dir / "coffee.png") as image:
        return np.asarray(image.convert("RGB"))


@pytest.mark.parametrize("method", EXPLICIT + ["auto"])
@pytest.mark.parametrize("name", PILLOW_PRESETS)
def test_pillow_presets_are_byte_identical_in_every_method(name, method, photo):
    kernel = PRESETS[name].kernel()
    if method not in methods_for(kernel) + ["auto"]:
        with pytest.raises(FilterError, match="not separable"):
            filter_array(photo, kernel, border="keep", method=method)
        return
    expected = np.asarray(Image.fromarray(photo).filter(getattr(ImageFilter, kernel.pillow_name)))
    got = filter_array(photo, kernel, border="keep", method=method)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("mode", ["L", "RGB"])
@pytest.mark.parametrize("name", PILLOW_PRESETS)
def test_pillow_presets_on_extreme_values_in_every_method(name, mode, rng):
    # Values 0/255 and their neighbours make clamping and ties bite.
    channels = () if mode == "L" else (3,)
    array = rng.choice(np.array([0, 1, 127, 128, 254, 255], np.uint8), (37, 41) + channels)
    kernel = PRESETS[name].kernel()
    expected = np.asarray(Image.fromarray(array, mode).filter(getattr(ImageFilter, kernel.pillow_name)))
    for method in methods_for(kernel) + ["auto"]:
        np.testing.assert_array_equal(filter_array(array, kernel, border="keep", method=method),
                                      expected, err_msg=method)  # fmt: skip


@pytest.mark.parametrize("shape", [(3000, 4000, 3), (600, 800), (64, 64, 4), (5, 5)])
@pytest.mark.parametrize("name", PILLOW_PRESETS)
def test_auto_keeps_pillow_presets_on_the_exact_integer_path(name, shape):
    # What auto picks for each preset is exact (proved by the tests above
    # for every method); this pins down that it is the cheap direct one.
    kernel = PRESETS[name].kernel()
    assert choose_method(shape, kernel, dtype=np.uint8) == "direct"


# ---------------------------------------------------------------------------
# The exact integer path
# ---------------------------------------------------------------------------


integer_kernels = st.builds(
    lambda matrix, scale, offset: Kernel(matrix, scale=scale, offset=offset),
    st.integers(1, 5).flatmap(
        lambda h: st.integers(1, 5).flatmap(
            lambda w: st.lists(
                st.lists(st.integers(-12, 12), min_size=w, max_size=w), min_size=h, max_size=h
            )
        )
    ),
    st.sampled_from([1, 2, 3, 6, 7, 13, 16, 100, -4, -6]),
    st.sampled_from([0.0, 128.0, 255.0, -10.0, 0.25, 3.0]),
)


@PROPERTY
@given(
    kernel=integer_kernels,
    dtype=st.sampled_from([np.uint8, np.uint16]),
    border=st.sampled_from(BORDER_MODES),
    absolute=st.booleans(),
    cval=st.sampled_from([0.0, 7.0]),
    seed=st.integers(0, 2**32 - 1),
    extremes=st.booleans(),
)
def test_integer_kernels_give_pillows_float32_bytes_in_every_method(
    kernel, dtype, border, absolute, cval, seed, extremes
):
    rng = np.random.default_rng(seed)
    high = np.iinfo(dtype).max
    shape = (int(rng.integers(5, 24)), int(rng.integers(5, 24))) + ((3,) if seed % 2 else ())
    if extremes:
        array = rng.choice(np.array([0, 1, high // 2, high - 1, high], dtype), shape)
    else:
        array = rng.integers(0, high, shape, endpoint=True).astype(dtype)
    expected = pillow_order(array, kernel, border, cval, absolute)
    offset = np.float32(kernel.offset)
    start = float(offset if absolute else np.float32(np.float64(offset) + 0.5))
    rule = engine._integer_rule(kernel, np.dtype(dtype), start=start, absolute=absolute,
                                cval=cval if border == "constant" else None)  # fmt: skip
    for method in methods_for(kernel):
        got = filter_array(array, kernel, border=border, cval=cval, abs=absolute,
                           method=method)  # fmt: skip
        if rule is not None or method == "direct":
            np.testing.assert_array_equal(got, expected, err_msg=method)
        else:  # a float path other than Pillow's order: within 1
            assert np.abs(as_int(got) - as_int(expected)).max() <= 1, method


def test_detail_ties_are_resolved_as_pillow_does(rng):
    # DETAIL divides by 6: v = (S + 3) / 6 is a whole number for one pixel
    # in six, where Pillow's float32 sum may fall just below it.
    kernel = PRESETS["detail"].kernel()
    array = rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)
    rule = engine._integer_rule(kernel, np.dtype(np.uint8), start=0.5, absolute=False, cval=None)
    assert rule is not None and rule.ties and not rule.exact
    sums = correlate(array.astype(np.float64), kernel.replace(scale=1.0), border="valid")
    ties = (sums + 3) % 6 == 0
    assert ties.mean() > 0.1
    float_result = pillow_order(array, kernel, "valid")
    # Some ties round down in float32: the fix-up is really needed.
    assert (float_result[ties] != np.floor((sums[ties] + 3) / 6).clip(0, 255)).any()
    for method in methods_for(kernel):
        got = filter_array(array, kernel, border="valid", method=method)
        np.testing.assert_array_equal(got, float_result, err_msg=method)


def test_integer_rule_refuses_what_it_cannot_prove():
    k = PRESETS["smooth_more"].kernel()
    # 8-bit: a bounded error, with ties to recompute.
    rule8 = engine._integer_rule(k, np.dtype(np.uint8), start=0.5, absolute=False, cval=None)
    assert rule8 is not None and rule8.ties and rule8.error < 0.5 / rule8.denominator
    # 16-bit values make float32's error too large for scale 100.
    assert engine._integer_rule(k, np.dtype(np.uint16), start=0.5, absolute=False, cval=None) is None
    # Power-of-two scales are exact in float32: no ties at all.
    sharpen = PRESETS["sharpen"].kernel()
    rule = engine._integer_rule(sharpen, np.dtype(np.uint8), start=0.5, absolute=False, cval=None)
    assert rule.exact and not rule.ties and rule.dtype == np.int16
    # Non-integer weights, int32 images and a fractional cval stay in float32.
    assert engine._integer_rule(gaussian_kernel(1.0), np.dtype(np.uint8), start=0.5,
                                absolute=False, cval=None) is None  # fmt: skip
    assert engine._integer_rule(sharpen, np.dtype(np.int32), start=0.5, absolute=False,
                                cval=None) is None  # fmt: skip
    assert engine._integer_rule(sharpen, np.dtype(np.uint8), start=0.5, absolute=False,
                                cval=2.5) is None  # fmt: skip


@pytest.mark.parametrize(("matrix", "scale", "offset", "clip"), [
    # smooth_more: 0 <= S <= 100 * 255, so (S + 50) // 100 <= 255.
    (PRESETS["smooth_more"].kernel().matrix, 100, 0, False),
    ([[1, 1], [1, 1]], 4, 0, False),  # (4 * 255 + 2) // 4 = 255
    ([[1, 1], [1, 1]], 3, 0, True),  # 4 * 255 / 3 = 340
    ([[1, 1], [1, 1]], 4, 1, True),  # 255 + 1 = 256
    ([[2, -1]], 1, 0, True),  # 0 - 255 < 0
])  # fmt: skip
def test_integer_rule_clamps_only_where_the_quotient_can_leave_the_range(matrix, scale, offset, clip):
    kernel = Kernel(np.array(matrix, float), scale=scale, offset=offset)
    start = float(np.float32(np.float64(np.float32(offset)) + 0.5))
    rule = engine._integer_rule(kernel, np.dtype(np.uint8), start=start, absolute=False, cval=None)
    assert rule.clip is clip


# ---------------------------------------------------------------------------
# Every method against direct, and against float64
# ---------------------------------------------------------------------------


def random_kernel(rng, kind: str, h: int, w: int) -> Kernel:
    if kind == "float":
        return Kernel(rng.normal(0, 1, (h, w)), offset=float(rng.choice([0.0, 10.0])))
    if kind == "separable":
        column, row = rng.normal(0, 1, h), rng.normal(0, 1, w)
        return Kernel(np.outer(column, row), factors=(column, row) if rng.random() < 0.5 else None)
    matrix = rng.integers(-9, 10, (h, w)).astype(float)
    return Kernel(matrix, scale=float(rng.choice([1, 3, 10])), offset=float(rng.choice([0, 64])))


def image(rng, dtype, shape) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.normal(0, 100, shape).astype(dtype)
    high = 100_000 if dtype == np.int32 else np.iinfo(dtype).max
    return rng.integers(0, high, shape, endpoint=True).astype(dtype)


def check_contract(got, array, kernel, border, cval, absolute):
    """Integer: within 1 of the exactly rounded result; float: 1e-4 of float64.

    Integer images sum in float32 as Pillow does (unless the exact integer
    path applies), whose error grows with the sums: beyond the 1 the bound
    allows float32's worst case, (taps + 4) * 2**-24 * scale. For 8-bit
    images and ordinary kernels that is well under 1.
    """
    scale = np.abs(kernel.weights).sum() * max(1.0, np.abs(array).max(), abs(cval))
    if array.dtype.kind in "iu":
        expected = exact_rounding(array, kernel, border, cval, absolute)
        slack = 1 + (kernel.matrix.size + 4) * 2.0**-24 * (scale + abs(kernel.offset))
        if array.dtype == np.uint8:
            assert slack < 2
        assert np.abs(as_int(got) - as_int(expected)).max(initial=0) <= slack
        return
    expected = float64_result(array, kernel, border, cval, absolute)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * scale + 1e-4 * abs(kernel.offset))


@PROPERTY
@given(
    seed=st.integers(0, 2**32 - 1),
    kind=st.sampled_from(["float", "separable", "integer"]),
    size=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    dtype=st.sampled_from([np.uint8, np.uint16, np.int32, np.float32, np.float64]),
    border=st.sampled_from(BORDER_MODES),
    absolute=st.booleans(),
    channels=st.sampled_from([0, 1, 3, 4]),
)
def test_every_method_keeps_the_accuracy_contract(seed, kind, size, dtype, border, absolute,
                                                   channels):  # fmt: skip
    rng = np.random.default_rng(seed)
    kernel = random_kernel(rng, kind, *size)
    shape = (int(rng.integers(9, 40)), int(rng.integers(9, 40))) + ((channels,) if channels else ())
    array = image(rng, dtype, shape)
    cval = 3.0
    direct = filter_array(array, kernel, border=border, cval=cval, abs=absolute, method="direct")
    for method in methods_for(kernel) + ["auto"]:
        got = filter_array(array, kernel, border=border, cval=cval, abs=absolute, method=method)
        assert got.shape == direct.shape and got.dtype == direct.dtype
        check_contract(got, array, kernel, border, cval, absolute)
        if array.dtype == np.uint8:
            assert np.abs(as_int(got) - as_int(direct)).max(initial=0) <= 1


@pytest.mark.parametrize("border", BORDER_MODES)
@pytest.mark.parametrize(
    "kernel",
    [gaussian_kernel(3.0), gaussian_kernel(0.8), box_kernel(4), PRESETS["sobel_x"].kernel(),
     Kernel(np.outer([1, 2, 3], [4, 5])), Kernel(np.ones((1, 7)), scale=7)],
    ids=lambda k: k.name + "x".join(map(str, k.shape)),
)  # fmt: skip
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_separable_kernels_in_every_method(kernel, border, dtype, rng):
    # Images wider and taller than a strip, so the matrix-product passes
    # (long factors) run over several strips and partial blocks.
    array = image(rng, dtype, (45, 70, 3))
    assert "separable" in methods_for(kernel)
    for method in EXPLICIT:
        got = filter_array(array, kernel, border=border, cval=5.0, method=method)
        check_contract(got, array, kernel, border, 5.0, False)


@pytest.mark.parametrize("size", [4, 5, 7, 8, 15, 16, 17, 31, 40])
def test_box_factors_summed_by_doubling_are_exact(size, rng):
    # Every length exercises a different set of binary digits. Where the
    # integer rule holds (Pillow's float32 provably recovered) the bytes
    # equal direct's; for larger boxes (scale size**2 too fine for float32's
    # error) both are within 1 of the exact rounding.
    kernel = box_kernel(size)
    array = image(rng, np.uint8, (50, 61, 3))
    exact = engine._integer_rule(kernel, np.dtype(np.uint8), start=0.5, absolute=False,
                                 cval=None) is not None  # fmt: skip
    assert exact == (size in (4, 5, 7, 8, 16))
    for border in BORDER_MODES:
        direct = filter_array(array, kernel, border=border, method="direct")
        got = filter_array(array, kernel, border=border, method="separable")
        if exact:
            np.testing.assert_array_equal(got, direct)
        else:
            check_contract(got, array, kernel, border, 0.0, False)
    floats = image(rng, np.float32, (50, 61))
    tall = Kernel(np.full((size, 1), 2.0))  # one factor a box of weight 2, the other a single tap
    got = filter_array(floats, tall, border="wrap", method="separable")
    check_contract(got, floats, tall, "wrap", 0.0, False)


@pytest.mark.parametrize("method", EXPLICIT)
@pytest.mark.parametrize("border", BORDER_MODES)
def test_correlate_by_every_method_matches_float64(method, border, rng):
    kernel = Kernel(np.outer(rng.normal(size=5), rng.normal(size=3)))
    array = rng.normal(0, 10, (40, 33, 2))
    expected = correlate(array, kernel, border=border, cval=1.5, method="direct")
    got = correlate(array, kernel, border=border, cval=1.5, method=method)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, atol=1e-9 * np.abs(array).max())
    got32 = correlate(array.astype(np.float32), kernel, border=border, cval=1.5, method=method)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, expected, atol=1e-4 * np.abs(array).max() * 10)


@pytest.mark.parametrize("method", EXPLICIT)
def test_large_kernel_larger_than_the_image(method, rng):
    kernel = gaussian_kernel(6.0)  # 37 x 37
    array = image(rng, np.uint8, (20, 30, 3))
    for border in PADDED + ["keep"]:
        got = filter_array(array, kernel, border=border, method=method)
        check_contract(got, array, kernel, border, 0.0, False)


@pytest.mark.parametrize("dtype", [np.uint8, np.float64])
def test_fft_without_scipy_uses_numpy_alike(dtype, rng, monkeypatch):
    kernel = Kernel(rng.normal(size=(7, 6)))
    array = image(rng, dtype, (70, 90, 3))
    with_scipy = filter_array(array, kernel, border="reflect", method="fft")
    monkeypatch.setattr(methods, "_scipy_fft", None)
    with_numpy = filter_array(array, kernel, border="reflect", method="fft")
    check_contract(with_numpy, array, kernel, "reflect", 0.0, False)
    if dtype == np.uint8:
        assert np.abs(as_int(with_numpy) - as_int(with_scipy)).max() <= 1
    else:
        np.testing.assert_allclose(with_numpy, with_scipy, atol=1e-9 * np.abs(array).max())


@pytest.mark.parametrize("kernel", [Kernel(np.arange(1.0, 82.0).reshape(9, 9)), gaussian_kernel(4.0)],
                         ids=["dense", "separable"])  # fmt: skip
def test_auto_keeps_infinity_and_nan_local(kernel):
    array = np.ones((1200, 1500), np.float32)
    array[100, 100], array[900, 1300] = np.inf, np.nan
    assert choose_method(array.shape, kernel, dtype=array.dtype) in ("fft", "separable")
    got = correlate(array, kernel)
    direct = correlate(array, kernel, method="direct")
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(direct))
    assert np.isfinite(got).mean() > 0.9


def test_fft_of_huge_float32_values_does_not_overflow(rng):
    kernel = Kernel(rng.uniform(0.1, 1, (9, 9))).normalized()  # the sums stay in range
    array = (rng.uniform(-1, 1, (200, 240)) * 3e37).astype(np.float32)
    with np.errstate(over="raise", invalid="raise"):
        got = correlate(array, kernel, method="fft")
    expected = correlate(array.astype(np.float64), kernel, method="direct")
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * 3e37 * kernel.weights.sum())


def test_exact_fft_for_integer_kernels_matches_direct_bytes(rng):
    kernel = Kernel(rng.integers(-3, 4, (11, 13)).astype(float), scale=9, offset=100)
    array = image(rng, np.uint8, (90, 120, 3))
    for border in BORDER_MODES:
        direct = filter_array(array, kernel, border=border, method="direct")
        np.testing.assert_array_equal(filter_array(array, kernel, border=border, method="fft"), direct)


# ---------------------------------------------------------------------------
# Threads
# ---------------------------------------------------------------------------


KERNELS_AND_METHODS = [
    pytest.param(PRESETS["smooth_more"].kernel(), method, id=f"integer-{method}")
    for method in ("auto", "direct", "fft")
] + [
    pytest.param(gaussian_kernel(4.0), method, id=f"separable-{method}")
    for method in ("auto", "direct", "separable", "fft")
] + [
    pytest.param(Kernel(np.arange(81.0).reshape(9, 9)), method, id=f"dense-{method}")
    for method in ("auto", "direct", "fft")
]


@pytest.mark.parametrize("extra", range(0, 18))
def test_separable_sums_of_a_row_do_not_depend_on_the_rows_below_it(extra, rng):
    # Matrix products (a 19-tap Gaussian, float32) sum 16 rows at a time;
    # a streamed band or a Dask chunk ends its last batch elsewhere than
    # the whole image does, and a short batch summed in another order.
    kernel = gaussian_kernel(3.0)
    array = image(rng, np.float32, (60, 70, 3))
    want = filter_array(array[:40], kernel, border="valid", method="separable", threads=1)
    got = filter_array(array[: 40 + extra], kernel, border="valid", method="separable", threads=1)
    np.testing.assert_array_equal(got[: want.shape[0]], want)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize(("kernel", "method"), KERNELS_AND_METHODS)
def test_threads_strips_and_progress_do_not_change_the_result(kernel, method, dtype, rng,
                                                              monkeypatch):  # fmt: skip
    array = image(rng, dtype, (300, 257, 3))
    one = filter_array(array, kernel, method=method, threads=1)
    # Work this small runs on one thread, in few strips, unless told
    # otherwise; from here on strips are short and FFT tiles go in passes.
    monkeypatch.setattr(engine, "_THREAD_SECONDS", 0.0)
    monkeypatch.setattr(engine, "_KERNEL_THREAD_SECONDS", 0.0)
    monkeypatch.setattr(engine, "_STRIP_BYTES", 1)
    monkeypatch.setattr(methods, "FFT_CALL_ELEMENTS", 5000)
    ignore = lambda done, total: None  # noqa: E731
    for threads, progress in [(1, None), (2, None), (2, ignore), (3, None), (None, None)]:
        got = filter_array(array, kernel, method=method, threads=threads, progress=progress)
        np.testing.assert_array_equal(got, one)


def test_small_work_runs_on_one_thread():
    assert engine.worker_count(4, 0.001) == 1
    assert engine.worker_count(4, 1.0) == 4
    assert engine.worker_count(None, 1.0) >= 1


# ---------------------------------------------------------------------------
# Progress
# ---------------------------------------------------------------------------


def record_progress(calls: list):
    """A progress callback appending (done, total, on the main thread?) to ``calls``."""

    def progress(done: int, total: int) -> None:
        calls.append((done, total, threading.current_thread() is threading.main_thread()))

    return progress


@pytest.mark.parametrize("function", [filter_array, correlate])
@pytest.mark.parametrize("method", EXPLICIT)
def test_progress_on_one_thread_counts_every_piece(method, function, rng, monkeypatch):
    monkeypatch.setattr(engine, "_PROGRESS_SECONDS", 0.0)  # report every piece
    monkeypatch.setattr(engine, "_STRIP_BYTES", 1)  # in strips of 8 rows
    array = image(rng, np.uint8, (600, 700, 3))
    calls: list = []
    function(array, gaussian_kernel(2.0), method=method, threads=1, progress=record_progress(calls))
    total = calls[-1][1]
    assert total >= 4
    assert calls == [(done, total, True) for done in range(1, total + 1)]


@pytest.mark.parametrize("method", EXPLICIT)
def test_progress_with_workers_is_reported_on_the_calling_thread(method, rng, monkeypatch):
    monkeypatch.setattr(engine, "_THREAD_SECONDS", 0.0)
    monkeypatch.setattr(engine, "_KERNEL_THREAD_SECONDS", 0.0)
    monkeypatch.setattr(engine, "_PROGRESS_SECONDS", 0.0)
    monkeypatch.setattr(engine, "_STRIP_BYTES", 1)
    monkeypatch.setattr(engine, "_WAIT_SECONDS", 0.001)
    array = image(rng, np.uint8, (600, 700, 3))
    kernel = gaussian_kernel(2.0)
    calls: list = []
    got = filter_array(array, kernel, method=method, threads=2, progress=record_progress(calls))
    done = [call[0] for call in calls]
    total = calls[-1][1]
    assert done == sorted(set(done)) and done[-1] == total
    assert {call[1] for call in calls} == {total}
    assert all(call[2] for call in calls)
    np.testing.assert_array_equal(got, filter_array(array, kernel, method=method, threads=1))


def test_progress_is_reported_at_most_every_tenth_of_a_second(rng):
    calls: list = []
    times: list = []

    def progress(done, total):
        calls.append(done)
        times.append(time.monotonic())

    array = image(rng, np.uint8, (1000, 1200, 3))
    filter_array(array, Kernel(rng.random((15, 15))), method="direct", threads=1, progress=progress)
    assert len(calls) >= 2
    # Every call but the last, which always comes, waits its turn.
    assert np.all(np.diff(times[:-1]) > engine._PROGRESS_SECONDS - 0.005)


def test_progress_is_not_called_when_there_is_nothing_to_filter():
    calls: list = []
    small = np.zeros((2, 2), np.uint8)
    filter_array(small, PRESETS["blur"].kernel(), border="keep", progress=record_progress(calls))
    assert calls == []


# ---------------------------------------------------------------------------
# Separability, the cost model and absurd work
# ---------------------------------------------------------------------------


def test_rank_one_kernels_are_found_without_factors():
    column, row = np.array([1.0, 4, 6, 4, 1]), np.array([1.0, 2, 1])
    assert methods_for(Kernel(np.outer(column, row))) == EXPLICIT
    almost = np.outer(column, row)
    almost[0, 0] += 1e-3
    assert methods_for(Kernel(almost)) == ["direct", "fft"]
    with pytest.raises(FilterError, match="not separable.*'direct' or 'fft'"):
        filter_array(np.zeros((9, 9), np.uint8), Kernel(almost), method="separable")


def test_cost_model_orders_methods_sensibly():
    shape = (3000, 4000, 3)
    small = PRESETS["edge_enhance"].kernel()
    gaussian = gaussian_kernel(5.0)
    # No row pattern and no weight shared by most taps: dense for direct sums too.
    dense = Kernel(np.random.default_rng(3).integers(1, 10, (31, 31)).astype(float))
    # Each estimate is finite and positive; 12 MP by 3x3 direct takes well under a second.
    assert 0 < estimate_seconds("direct", shape, small) < 1
    assert estimate_seconds("direct", shape, small) < estimate_seconds("fft", shape, small)
    assert estimate_seconds("separable", shape, gaussian) < estimate_seconds("direct", shape, gaussian)
    assert estimate_seconds("fft", shape, dense) < estimate_seconds("direct", shape, dense)
    assert estimate_seconds("separable", shape, dense) == np.inf
    assert choose_method(shape, small) == "direct"
    assert choose_method(shape, gaussian) == "separable"
    assert choose_method(shape, dense) == "fft"
    # Twice the pixels, about twice the time.
    double = estimate_seconds("direct", (6000, 4000, 3), small)
    assert double == pytest.approx(2 * estimate_seconds("direct", shape, small))


def test_the_first_fft_of_a_process_pays_for_importing_scipy_fft(monkeypatch):
    # A 31x31 kernel on 300x200: about 0.09 s direct, 0.006 s by FFT once
    # scipy.fft is loaded, but 0.2 s more before the first FFT of a process.
    kernel = Kernel(np.random.default_rng(1).normal(size=(31, 31)))
    shape = (200, 300, 3)
    monkeypatch.setattr(methods, "_scipy_fft", methods._NOT_LOADED)
    monkeypatch.setattr(methods, "_scipy_available", True)
    assert methods.fft_start_seconds() == methods.SCIPY_FFT_IMPORT_SECONDS
    assert choose_method(shape, kernel) == "direct"
    monkeypatch.setattr(methods, "_scipy_fft", object())  # loaded
    assert methods.fft_start_seconds() == 0.0
    assert choose_method(shape, kernel) == "fft"
    monkeypatch.setattr(methods, "_scipy_fft", None)  # no SciPy: numpy.fft, part of NumPy
    assert methods.fft_start_seconds() == 0.0


def test_a_job_measured_at_179_seconds_is_estimated_within_half_of_it():
    # `--method direct -k box:1001` on a 451 x 300 RGB image ran 179 s on the
    # development machine (one thread); the refusal limit needs honest estimates.
    seconds = estimate_seconds("direct", (300, 451, 3), box_kernel(1001))
    assert 179 / 1.5 < seconds < 179 * 1.5


def test_tiny_jobs_stay_direct():
    # Direct sums are exact for integer weights on float images; auto does
    # not trade that for speed nobody would notice.
    assert choose_method((13, 13), Kernel(np.ones((5, 5))), dtype=np.float64) == "direct"


def test_auto_takes_the_passes_when_they_save_real_time():
    # gaussian:2 (13 x 13) on a 640 x 480 greyscale photograph: 71 ms by
    # direct sums, 4 ms by separable passes on the development machine.
    # Estimated 33 against 2 ms; a rule keeping direct sums for any job
    # estimated under 50 ms kept the 71.
    gaussian = gaussian_kernel(2.0)
    shape = (480, 640)
    assert estimate_seconds("separable", shape, gaussian) < 0.1 * estimate_seconds("direct", shape, gaussian)
    assert choose_method(shape, gaussian) == "separable"


def test_auto_sums_fractional_pillow_shapes_in_pillow_order_at_any_size():
    # Pillow's ImageFilter.Kernel takes 3x3 and 5x5 kernels; their bytes
    # come only from direct sums unless the sums are exact integers.
    shape = (3000, 4000, 3)
    binomial = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1])
    fractional = Kernel(binomial / 256.0 * 1.001)
    assert estimate_seconds("separable", shape, fractional) < 0.5 * estimate_seconds("direct", shape, fractional)
    assert choose_method(shape, fractional) == "direct"
    assert choose_method(shape, fractional, dtype=np.float32) == "separable"  # no Pillow bytes to keep
    assert choose_method(shape, gaussian_kernel(1.0)) == "separable"  # 7 x 7: Pillow cannot apply it


def test_absurd_direct_work_is_refused_with_advice():
    huge = Kernel(np.ones((301, 301)) + np.eye(301))  # dense, not separable
    twelve_mp = np.zeros((3000, 4000, 3), np.uint8)
    assert estimate_seconds("direct", twelve_mp.shape, huge) > MAX_SECONDS
    assert estimate_seconds("fft", twelve_mp.shape, huge) < 30
    assert choose_method(twelve_mp.shape, huge) == "fft"
    with pytest.raises(FilterError, match=r"minutes; use method 'fft' \(about \d+ s\) or a smaller kernel"):
        filter_array(twelve_mp, huge, method="direct")
    with pytest.raises(FilterError, match="minutes"):
        correlate(twelve_mp, huge, method="direct")
    assert issubclass(FilterError, ValueError)


def test_work_beyond_every_method_is_refused():
    huge = Kernel(np.ones((1001, 1001)) + np.eye(1001))
    with pytest.raises(FilterError, match="smaller kernel or a smaller image"):
        choose_method((100_000, 100_000, 4), huge, method="auto")


def test_fft_tiles_fit_the_kernel():
    for k in (1, 3, 31, 101, 301, 1024):
        length = methods.fft_length(k)
        assert length >= 2 * k - 1 and length in methods._FAST_LENGTHS or length == 2 * k


# ---------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("library", ["scipy", "numpy"])
def test_fft_tiles_in_passes_are_the_whole_tiles_bits(library, rng, monkeypatch):
    if library == "numpy":
        monkeypatch.setattr(methods, "_scipy_fft", None)
    weights = rng.random((31, 25))
    plan = methods.FourierTiles(weights, 3, np.float32)
    rows, cols = plan.rows - 5, plan.cols - 7  # a tile at the image's corner
    src = rng.random((rows + 30, (cols + 24) * 3)).astype(np.float32)
    whole = plan.run(src, rows, cols, np.float32, methods.Scratch()).copy()
    monkeypatch.setattr(methods, "FFT_CALL_ELEMENTS", 10_000)
    in_passes = methods.FourierTiles(weights, 3, np.float32)
    np.testing.assert_array_equal(in_passes.spectrum, plan.spectrum)
    checkpoints = []
    sums = in_passes.run(src, rows, cols, np.float32, methods.Scratch(),
                         checkpoint=lambda: checkpoints.append(None))  # fmt: skip
    np.testing.assert_array_equal(sums, whole)
    assert len(checkpoints) > 10


def test_fft_tile_is_abandoned_at_a_checkpoint(rng, monkeypatch):
    monkeypatch.setattr(methods, "FFT_CALL_ELEMENTS", 10_000)
    plan = methods.FourierTiles(rng.random((31, 31)), 1, np.float32)
    src = rng.random((plan.fh, plan.fw)).astype(np.float32)
    checkpoints = []

    class Abandoned(Exception):
        pass

    def checkpoint():
        checkpoints.append(None)
        if len(checkpoints) == 3:
            raise Abandoned

    with pytest.raises(Abandoned):
        plan.run(src, plan.rows, plan.cols, np.float32, methods.Scratch(), checkpoint)
    assert len(checkpoints) == 3


@settings(max_examples=100, deadline=None)
@given(
    coefs=st.lists(st.integers(-4, 4), min_size=1, max_size=7),
    accumulate=st.booleans(),
)
def test_lincomb_is_the_weighted_sum(coefs, accumulate):
    rng = np.random.default_rng(len(coefs))
    views = [rng.integers(-50, 50, 6) for _ in coefs]
    out = np.full(6, 7, np.int64)
    scratch = np.empty(6, np.int64)
    methods.lincomb(out, list(zip(coefs, views, strict=True)), scratch, accumulate=accumulate)
    expected = sum(c * v for c, v in zip(coefs, views, strict=True)) + (7 if accumulate else 0)
    np.testing.assert_array_equal(out, expected)


@settings(max_examples=60, deadline=None)
@given(
    matrix=st.integers(1, 5).flatmap(
        lambda h: st.lists(st.lists(st.integers(-6, 6), min_size=4, max_size=4), min_size=h, max_size=h)
    )
)
def test_integer_direct_is_the_exact_correlation(matrix):
    matrix = np.array(matrix, dtype=np.int64)
    h, w = matrix.shape
    rng = np.random.default_rng(h)
    src = rng.integers(0, 256, (h + 6, (w + 9) * 2)).astype(np.int32)
    n, m = 7, 10 * 2
    out = np.empty((n, m), np.int32)
    methods.IntegerDirect(matrix, 2).run(src, out, methods.Scratch())
    source = src.reshape(h + 6, w + 9, 2)
    expected = sum(
        matrix[r, c] * source[r : r + n, c : c + 10] for r in range(h) for c in range(w)
    ).reshape(n, m)
    np.testing.assert_array_equal(out, expected)


@settings(max_examples=80, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    common=st.integers(-3, 3),
    others=st.lists(st.tuples(st.integers(0, 24), st.integers(-20, 20)), max_size=6),
    channels=st.integers(1, 4),
)
def test_a_box_and_the_taps_that_differ_sum_exactly(shape, common, others, channels):
    # Mostly one weight: summed as that weight times the box, plus the rest.
    h, w = shape
    matrix = np.full(shape, common, np.int64)
    for index, value in others:
        matrix.flat[index % matrix.size] = value
    rng = np.random.default_rng(h * 7 + w)
    src = rng.integers(0, 256, (h + 6, (w + 9) * channels)).astype(np.int32)
    n, m = 7, 10 * channels
    out = np.empty((n, m), np.int32)
    plan = methods.IntegerDirect(matrix, channels, max_weight_sum=10**6)
    plan.run(src, out, methods.Scratch())
    source = src.reshape(h + 6, w + 9, channels)
    expected = sum(
        matrix[r, c] * source[r : r + n, c : c + 10] for r in range(h) for c in range(w)
    ).reshape(n, m)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("matrix", [
    [[-1, -1, -1], [-1, 10, -1], [-1, -1, -1]],  # edge_enhance
    [[-2, -2, -2], [-2, 32, -2], [-2, -2, -2]],  # sharpen
    [[1, 1, 1], [1, 5, 1], [1, 1, 1]],  # smooth
    [[3, 3, 3, 3], [3, -4, 3, 3], [3, 3, 3, 0]],
])  # fmt: skip
def test_kernels_of_mostly_one_weight_are_summed_as_a_box_exactly(matrix):
    matrix = np.array(matrix)
    h, w = matrix.shape
    plan = methods.IntegerDirect(matrix, 3, max_weight_sum=128)
    assert plan.boxes[0][0] == np.bincount((matrix + 10).ravel()).argmax() - 10  # the weight most taps have
    src = np.random.default_rng(w).integers(0, 256, (h + 11, (w + 20) * 3)).astype(np.int16)
    out = np.empty((12, 21 * 3), np.int16)
    plan.run(src, out, methods.Scratch())
    source = src.reshape(h + 11, w + 20, 3).astype(np.int64)
    expected = sum(matrix[r, c] * source[r : r + 12, c : c + 21] for r in range(h) for c in range(w))
    np.testing.assert_array_equal(out, expected.reshape(12, 63))


@settings(max_examples=80, deadline=None)
@given(
    layers=st.lists(st.tuples(st.integers(-4, 4), st.integers(0, 2), st.integers(0, 2)), min_size=1, max_size=3),
    others=st.lists(st.tuples(st.integers(0, 48), st.integers(-9, 9)), max_size=3),
    channels=st.integers(1, 3),
)
def test_nested_boxes_sum_exactly(layers, others, channels):
    # Boxes inside boxes (smooth_more is 1 x 5x5 + 4 x 3x3 + 39 x centre),
    # each shrunk from the one outside by the drawn rows and columns.
    matrix = np.zeros((7, 7), np.int64)
    top, bottom, left, right = 0, 7, 0, 7
    for weight, dy, dx in layers:
        top, bottom = min(top + dy, 3), max(bottom - dy, 4)
        left, right = min(left + dx, 3), max(right - dx, 4)
        matrix[top:bottom, left:right] += weight
    for index, value in others:
        matrix.flat[index] += value
    src = np.random.default_rng(7).integers(0, 256, (7 + 5, (7 + 8) * channels)).astype(np.int32)
    n, m = 6, 9 * channels
    out = np.empty((n, m), np.int32)
    methods.IntegerDirect(matrix, channels, max_weight_sum=10**6).run(src, out, methods.Scratch())
    source = src.reshape(12, 15, channels)
    expected = sum(matrix[r, c] * source[r : r + n, c : c + 9] for r in range(7) for c in range(7))
    np.testing.assert_array_equal(out, expected.reshape(n, m))


def test_smooth_more_is_summed_as_two_nested_boxes_and_its_centre():
    matrix = PRESETS["smooth_more"].kernel().matrix.astype(np.int64)
    plan = methods.IntegerDirect(matrix, 3, max_weight_sum=32767 // 255)
    assert plan.boxes == [(1, 0, 5, 0, 5), (4, 1, 4, 1, 4)]
    assert plan.groups == [([(1, 2)], [0, 0, 39, 0, 0])]
    # Its partial sums carry 25 + 4 * 9 + 39 = 100 weights; with fewer allowed, one box or none.
    assert methods.IntegerDirect(matrix, 3, max_weight_sum=99).boxes != plan.boxes


def test_concentric_rings_are_nested_boxes_summed_exactly():
    # 9x9, weight 1 on the outer ring up to 5 in the centre: no weight has
    # most taps, but each ring's is the weight of the whole edge.
    i, j = np.mgrid[0:9, 0:9]
    matrix = 5 - np.maximum(abs(i - 4), abs(j - 4))
    plan = methods.IntegerDirect(matrix, 2, max_weight_sum=10**6)
    assert [box[1:] for box in plan.boxes] == [(k, 9 - k, k, 9 - k) for k in range(4)]
    assert plan.ops() < methods.IntegerDirect(matrix, 2).ops() / 3
    src = np.random.default_rng(9).integers(0, 256, (9 + 4, (9 + 6) * 2)).astype(np.int32)
    out = np.empty((5, 7 * 2), np.int32)
    plan.run(src, out, methods.Scratch())
    source = src.reshape(13, 15, 2)
    expected = sum(matrix[r, c] * source[r : r + 5, c : c + 7] for r in range(9) for c in range(9))
    np.testing.assert_array_equal(out, expected.reshape(5, 14))


class _CountingNumpy:
    """numpy, but counting the array operations IntegerDirect runs."""

    OPERATIONS = {"add", "subtract", "multiply", "negative", "copyto"}

    def __init__(self) -> None:
        self.count = 0

    def __getattr__(self, name):
        value = getattr(np, name)
        if name not in self.OPERATIONS:
            return value

        def counted(*args, **kwargs):
            self.count += 1
            return value(*args, **kwargs)

        return counted


@pytest.mark.parametrize("matrix", [
    PRESETS["smooth_more"].kernel().matrix,
    PRESETS["edge_enhance"].kernel().matrix,
    PRESETS["smooth"].kernel().matrix,
    [[-2, -2, -2, -2], [-2, -2, -2, -2], [-2, 5, -2, -2]],
    [[3, 3, 3], [3, 3, 3], [3, 3, 3]],
    [[1, 2, 1], [2, 4, 2], [1, 2, 1]],
])  # fmt: skip
def test_integer_plans_count_the_operations_they_run(matrix, monkeypatch):
    matrix = np.array(matrix, np.int64)
    plan = methods.IntegerDirect(matrix, 3, max_weight_sum=1000)
    h, w = matrix.shape
    src = np.ones((4 + h - 1, (5 + w - 1) * 3), np.int32)
    out = np.zeros((4, 15), np.int32)
    counting = _CountingNumpy()
    monkeypatch.setattr(methods, "np", counting)
    plan.run(src, out, methods.Scratch())
    # lincomb's own count is generous: a weight that starts the sums is
    # counted as a multiply and an add.
    assert counting.count <= plan.ops() <= counting.count + len(plan.groups) * len(matrix)
    if plan.boxes:  # the boxes' count is exact
        counting.count = 0
        plan._add_boxes(src, out, methods.Scratch(), np.empty((4, src.shape[1]), np.int32),
                        accumulate=bool(plan.groups))  # fmt: skip
        assert counting.count == methods._boxes_ops(plan.boxes, alone=not plan.groups)


def test_edge_enhance_is_summed_as_a_box_only_where_its_partial_sums_fit():
    matrix = np.array([[-1, -1, -1], [-1, 10, -1], [-1, -1, -1]])
    rows_only = methods.IntegerDirect(matrix, 3)
    boxed = methods.IntegerDirect(matrix, 3, max_weight_sum=32767 // 255)
    assert (rows_only.boxes, boxed.boxes) == ([], [(-1, 0, 3, 0, 3)]) and boxed.ops() < rows_only.ops()
    # Its partial sums carry 9 + 11 = 20 weights, more than the matrix's own 18.
    assert methods.IntegerDirect(matrix, 3, max_weight_sum=19).boxes == []


def test_auto_does_not_overflow_float32_values_near_the_limit():
    from convfilter.kernels import Kernel

    image = np.full((300, 300), 3e38, np.float32)
    result = filter_array(image, Kernel(np.ones((31, 31)), scale=961))
    assert np.isfinite(result).all()
    assert np.allclose(result, 3e38, rtol=1e-4)


@pytest.mark.parametrize("bad", [{"threads": "2"}, {"threads": 1.5}, {"threads": True},
                                 {"cval": None}, {"cval": "x"}, {"cval": float("nan")}])  # fmt: skip
def test_bad_parameters_are_filter_errors(bad):
    from convfilter.kernels import Kernel

    with pytest.raises(FilterError):
        filter_array(np.zeros((4, 4), np.uint8), Kernel([[1]]), border="constant", **bad)


def test_big_endian_input_gives_the_native_result():
    from convfilter.kernels import parse_kernel

    rng = np.random.default_rng(3)
    native = rng.integers(0, 65536, (20, 30)).astype(np.uint16)
    swapped = native.astype(">u2")
    kernel = parse_kernel("sharpen")
    assert np.array_equal(filter_array(swapped, kernel), filter_array(native, kernel))
