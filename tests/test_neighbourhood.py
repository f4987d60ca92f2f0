"""The filter specs that are not one matrix, gradient magnitude, and the log/dog kernels.

Oracles: scipy.ndimage (gaussian_laplace, gaussian_filter, sobel, prewitt,
correlate) and Pillow's ImageFilter classes.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
from PIL import ImageFilter

from convfilter import engine
from convfilter.kernels import Kernel, KernelSpecError, parse_kernel
from convfilter.neighbourhood import (
    FILTER_SPECS,
    BoxBlur,
    GaussianBlur,
    GradientMagnitude,
    ModeFilter,
    RankFilter,
    UnsharpMask,
)
from oracles import SCIPY_MODES

# scipy's gaussian_laplace, gaussian_filter, sobel and prewitt run one 1-D pass per
# axis, each padding its own input: with a constant border the second pass pads
# with cval where a 2-D kernel sees the first pass's result of the padding.
# Only a fill of 0 (which every pass keeps at 0) makes the two the same filter.
CVAL = 0.0


@pytest.fixture
def rng():
    return np.random.default_rng(13)


# --- specs ---------------------------------------------------------------------


@pytest.mark.parametrize("spec, expected", [
    ("median:3", RankFilter(3, 4, "median")),
    ("MEDIAN:5", RankFilter(5, 12, "median")),
    ("min:7", RankFilter(7, 0, "min")),
    ("max:3", RankFilter(3, 8, "max")),
    ("rank:5,3", RankFilter(5, 3, "rank")),
    ("mode:3", ModeFilter(3)),
    ("unsharp", UnsharpMask(2.0, 150, 3)),
    ("unsharp:1.5", UnsharpMask(1.5, 150, 3)),
    ("unsharp:1,200,0", UnsharpMask(1.0, 200, 0)),
    ("box_blur:1.5", BoxBlur((1.5, 1.5))),
    ("box-blur:2,0", BoxBlur((2.0, 0.0))),
    ("gaussian_blur:2", GaussianBlur((2.0, 2.0))),
    ("gaussian_blur:0.5,3", GaussianBlur((0.5, 3.0))),
    ("box_blur:1.0000001192092896", BoxBlur((1 + 2**-23, 1 + 2**-23))),
    ("unsharp:1e-07", UnsharpMask(1e-7, 150, 3)),
    ("sobel", GradientMagnitude("sobel")),
    ("Scharr", GradientMagnitude("scharr")),
])  # fmt: skip
def test_filter_specs_parse_to_their_filter(spec, expected):
    step = parse_kernel(spec)
    assert step == expected
    assert parse_kernel(step.name) == expected  # the name is a spec that gives the filter back


@pytest.mark.parametrize("spec, message", [
    ("median:4", "median size N must be an odd whole number from 3 to 101"),
    ("median:1", "median size N must be an odd whole number"),
    ("mode:2", "mode size N must be an odd whole number"),
    ("min:1025", "min size N must be an odd whole number from 3 to 1023"),
    ("rank:3,9", "rank RANK must be a whole number from 0 (the smallest) to 8"),
    ("rank:3,-1", "rank RANK must be a whole number"),
    ("rank:3", "rank needs other parameters: rank:N,RANK"),
    ("median", "median needs parameters: median:N"),
    ("median:3,1", "median needs other parameters: median:N"),
    ("unsharp:2,150,3,4", "unsharp needs other parameters"),
    ("unsharp:2,1.5", "unsharp PERCENT must be a whole number"),
    ("unsharp:2,150,-3", "unsharp THRESHOLD must be a whole number"),
    ("box_blur:nan", "box_blur radius must be a number from 0"),
    ("gaussian_blur:1,2,3", "gaussian_blur needs other parameters"),
    ("sobel:3", "sobel takes no parameters (the gradient along x is sobel-x)"),
    ("median:", "bad parameters ''"),
    ("log:-1", "log SIGMA must be a positive number"),
    ("log:130", "needs a kernel wider than 1024"),
    ("dog:1", "expected dog:SIGMA1,SIGMA2"),
    ("dog:1,0", "dog SIGMA2 must be a positive number"),
])  # fmt: skip
def test_bad_filter_specs_say_what_is_wrong(spec, message):
    with pytest.raises(KernelSpecError) as raised:
        parse_kernel(spec)
    assert message in str(raised.value)


@pytest.mark.parametrize("option", [{"scale": 2.0}, {"offset": 1.0}, {"normalize": True}, {"flip": True},
                                    {"anchor": (0, 0)}])  # fmt: skip
@pytest.mark.parametrize("spec", ["median:3", "unsharp", "mode:3", "sobel", "rank:3,2"])
def test_kernel_options_on_a_filter_without_a_matrix_are_an_error(spec, option):
    with pytest.raises(KernelSpecError, match="is not a kernel .it has no matrix."):
        parse_kernel(spec, **option)


def test_kernel_options_turn_a_linear_filter_into_its_matrix():
    kernel = parse_kernel("box_blur:1", scale=2)
    assert isinstance(kernel, Kernel)
    np.testing.assert_allclose(kernel.weights, np.full((3, 3), 1 / 18))
    fractional = parse_kernel("box_blur:0.5,0", normalize=True)
    # radius 0.5: the pixel weighs 1 and each neighbour 0.5, over 2 * 0.5 + 1
    np.testing.assert_allclose(fractional.weights, [[0.25, 0.5, 0.25]])


def test_gaussian_blur_matrix_is_three_box_passes():
    step = parse_kernel("gaussian_blur:1.3")
    kernel = step.matrix_kernel()
    box = BoxBlur(step.box_radius).matrix_kernel().weights
    thrice = ndi.convolve(ndi.convolve(np.pad(box, 2 * box.shape[0]), box), box)
    thrice = thrice[np.any(thrice, axis=1)][:, np.any(thrice, axis=0)]
    np.testing.assert_allclose(kernel.weights, thrice, atol=1e-15)
    assert kernel.shape == step.shape
    assert float(kernel.weights.sum()) == pytest.approx(1.0)


def test_every_filter_spec_is_in_the_table_with_its_pillow_class():
    for key, spec in FILTER_SPECS.items():
        example = {"rank": "rank:3,1"}.get(key, spec.usage.replace("N", "3").replace("[,RY]", "").replace("R", "2"))
        example = example.split("[")[0]
        step = parse_kernel(example)
        pillow = step.pillow_filter()
        assert (pillow is None) == (spec.pillow is None)
        if pillow is not None:
            assert type(pillow).__name__ == spec.pillow == step.pillow_label.split(".")[1].split("(")[0]
            assert isinstance(pillow, ImageFilter.Filter)


def test_pillow_equivalents_carry_the_parameters():
    assert parse_kernel("rank:5,7").pillow_filter().rank == 7
    assert parse_kernel("median:5").pillow_filter().rank == 12
    unsharp = parse_kernel("unsharp:1.5,80,2").pillow_filter()
    assert (unsharp.radius, unsharp.percent, unsharp.threshold) == (1.5, 80, 2)
    assert parse_kernel("gaussian_blur:1,2").pillow_filter().radius == (1.0, 2.0)
    assert parse_kernel("box_blur:3").pillow_filter().radius == 3.0


# --- log and dog ------------------------------------------------------------------


@pytest.mark.parametrize("border", sorted(SCIPY_MODES))
@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.3])
def test_log_is_scipy_gaussian_laplace(sigma, border, rng):
    image = rng.normal(0, 40, (23, 19))
    out = engine.filter_array(image, f"log:{sigma}", border=border, cval=CVAL)
    expected = ndi.gaussian_laplace(image, sigma, mode=SCIPY_MODES[border], cval=CVAL)
    np.testing.assert_allclose(out, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("border", sorted(SCIPY_MODES))
@pytest.mark.parametrize("sigmas", [(1.0, 2.0), (2.5, 0.8), (1.0, 1.6)])
def test_dog_is_a_difference_of_scipy_gaussian_filters(sigmas, border, rng):
    image = rng.normal(0, 40, (25, 21))
    out = engine.filter_array(image, "dog:{},{}".format(*sigmas), border=border, cval=CVAL)
    mode = SCIPY_MODES[border]
    expected = (ndi.gaussian_filter(image, sigmas[0], mode=mode, cval=CVAL)
                - ndi.gaussian_filter(image, sigmas[1], mode=mode, cval=CVAL))  # fmt: skip
    np.testing.assert_allclose(out, expected, rtol=1e-9, atol=1e-9)


def test_log_of_a_uint8_image_rounds_the_signed_result(rng):
    image = rng.integers(0, 256, (20, 20), dtype=np.uint8)
    out = engine.filter_array(image, "log:1", abs=True, border="reflect")
    exact = np.abs(ndi.gaussian_laplace(image.astype(np.float64), 1.0, mode="reflect"))
    assert out.dtype == np.uint8
    # float32 sums (the engine's 8-bit policy): within 1 of the exactly rounded result
    assert np.abs(out.astype(int) - np.clip(np.floor(exact + 0.5), 0, 255)).max() <= 1


# --- gradient magnitude -------------------------------------------------------------

SCHARR_X = np.array([[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]], dtype=np.float64)


def scipy_magnitude(image: np.ndarray, operator: str, mode: str) -> np.ndarray:
    """sqrt(gx^2 + gy^2) by scipy: sobel and prewitt are its own; Scharr's published weights."""
    if operator == "scharr":
        return np.hypot(ndi.correlate(image, SCHARR_X, mode=mode, cval=CVAL),
                        ndi.correlate(image, SCHARR_X.T, mode=mode, cval=CVAL))  # fmt: skip
    derivative = getattr(ndi, operator)
    return np.hypot(derivative(image, axis=1, mode=mode, cval=CVAL), derivative(image, axis=0, mode=mode, cval=CVAL))


@pytest.mark.parametrize("border", sorted(SCIPY_MODES))
@pytest.mark.parametrize("operator", ["sobel", "scharr", "prewitt"])
def test_gradient_magnitude_is_scipys_on_floats(operator, border, rng):
    image = rng.normal(0, 40, (17, 15))
    out = engine.filter_array(image, operator, border=border, cval=CVAL)
    np.testing.assert_allclose(out, scipy_magnitude(image, operator, SCIPY_MODES[border]), rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32])
@pytest.mark.parametrize("operator", ["sobel", "scharr"])
def test_gradient_magnitude_rounds_half_up_and_clips(operator, dtype, rng):
    top = min(np.iinfo(dtype).max, 70000)
    image = rng.integers(0, top, (16, 18)).astype(dtype)
    image[4:9, 5:12] = top  # a hard edge whose magnitude clips in 8 and 16 bits
    out = engine.filter_array(image, operator, border="mirror")
    exact = scipy_magnitude(image.astype(np.float64), operator, "mirror")
    expected = np.clip(np.floor(exact + 0.5), 0, np.iinfo(dtype).max).astype(dtype)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, expected)


def test_gradient_magnitude_of_an_impulse_is_the_kernels_weights():
    image = np.zeros((5, 5))
    image[2, 2] = 1.0
    out = engine.filter_array(image, "sobel", border="constant")
    # worked by hand: gx and gy of an impulse are the kernels rotated; |(1, 1)| at the corners
    expected = np.zeros((5, 5))
    expected[1:4, 1:4] = [[np.sqrt(2), 2, np.sqrt(2)], [2, 0, 2], [np.sqrt(2), 2, np.sqrt(2)]]
    np.testing.assert_allclose(out, expected, atol=1e-12)


def test_gradient_magnitude_keep_and_valid(rng):
    image = rng.integers(0, 256, (9, 11), dtype=np.uint8)
    valid = engine.filter_array(image, "prewitt", border="valid")
    keep = engine.filter_array(image, "prewitt", border="keep")
    assert valid.shape == (7, 9)
    np.testing.assert_array_equal(keep[1:-1, 1:-1], valid)
    frame = np.ones(image.shape, bool)
    frame[1:-1, 1:-1] = False
    np.testing.assert_array_equal(keep[frame], image[frame])
    tiny = image[:2, :5]
    np.testing.assert_array_equal(engine.filter_array(tiny, "prewitt", border="keep"), tiny)
    with pytest.raises(engine.FilterError, match="needs an image of 3x3 or more"):
        engine.filter_array(tiny, "prewitt", border="valid")


def test_correlate_refuses_a_filter_without_sums():
    with pytest.raises(engine.FilterError, match="median:3 is not a kernel"):
        engine.correlate(np.zeros((4, 4)), "median:3")
