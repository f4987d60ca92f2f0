"""compare.py: metrics worked out by hand, margins, Pillow equivalents, the picture."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageFilter

from convfilter import compare
from convfilter.kernels import Kernel, parse_kernel


def test_metrics_by_hand():
    a = np.array([[10, 20], [30, 40]], np.uint8)
    b = np.array([[10, 23], [30, 36]], np.uint8)
    report = compare.diff_arrays(a, b)
    whole = report.whole
    assert (whole.identical, whole.samples, whole.differing) == (False, 4, 2)
    assert whole.max_abs == 4 and whole.mean_abs == pytest.approx(7 / 4)
    assert whole.rmse == pytest.approx(math.sqrt(25 / 4))
    assert whole.psnr == pytest.approx(10 * math.log10(255**2 / (25 / 4)))


def test_interior_leaves_out_the_margin():
    a = np.zeros((6, 7), np.uint16)
    b = a.copy()
    b[0, 3] = 1000  # in the top margin
    report = compare.diff_arrays(a, b, margin=(1, 2, 1, 1))
    assert report.whole.differing == 1 and report.interior.identical
    assert report.interior.samples == (6 - 3) * (7 - 2)
    assert report.whole.psnr == pytest.approx(10 * math.log10(65535**2 / (1000**2 / 42)))


def test_identical_has_infinite_psnr_and_json_null():
    a = np.ones((3, 3), np.float32)
    report = compare.diff_arrays(a, a.copy())
    assert report.identical and math.isinf(report.whole.psnr)
    assert report.to_dict()["whole"]["psnr"] is None


def test_interior_is_none_when_nothing_is_left():
    a = np.zeros((2, 2), np.uint8)
    assert compare.diff_arrays(a, a, margin=(1, 1, 1, 1)).interior is None


def test_kernel_margin_adds_up_a_chain_and_repeats():
    chain = [Kernel(np.ones((3, 3))), Kernel(np.ones((2, 5)))]
    # 3x3: 1 each side; 2x5 with anchor (1, 2): top 1, bottom 0, left 2, right 2.
    assert compare.kernel_margin(chain) == (2, 1, 3, 3)
    assert compare.kernel_margin(chain, repeat=2) == (4, 2, 6, 6)


def test_shape_and_mode_mismatch_are_errors():
    with pytest.raises(compare.CompareError, match="sizes differ"):
        compare.compare_images(Image.new("L", (2, 2)), Image.new("L", (3, 2)))
    with pytest.raises(compare.CompareError, match="modes differ"):
        compare.compare_images(Image.new("L", (2, 2)), Image.new("RGB", (2, 2)))


def test_pillow_equivalent_of_presets_and_kernels():
    assert compare.pillow_equivalent(parse_kernel("emboss")) is ImageFilter.EMBOSS
    kernel = compare.pillow_equivalent(Kernel([[1, 2, 3], [4, 5, 6], [7, 8, 9]], scale=3, offset=1))
    assert kernel.filterargs == ((3, 3), 3, 1, [7.0, 8.0, 9.0, 4.0, 5.0, 6.0, 1.0, 2.0, 3.0])
    with pytest.raises(compare.CompareError, match="no equivalent"):
        compare.pillow_equivalent(parse_kernel("gaussian:2"))


@pytest.mark.parametrize("name, expected", [
    ("edge-enhance", ImageFilter.EDGE_ENHANCE), ("SMOOTH_MORE", ImageFilter.SMOOTH_MORE)])
def test_pillow_filter_by_name(name, expected):
    assert compare.pillow_filter(name) is expected


def test_pillow_filter_parametric_and_unknown():
    assert isinstance(compare.pillow_filter("gaussian_blur:2"), ImageFilter.GaussianBlur)
    assert compare.pillow_filter("median:3").size == 3
    with pytest.raises(compare.CompareError, match="unknown Pillow filter"):
        compare.pillow_filter("sparkle")
    with pytest.raises(compare.CompareError, match="bad value"):
        compare.pillow_filter("median:x")


def test_diff_picture_shrinks_large_images_but_keeps_single_pixel_differences():
    a = np.zeros((2048, 3000), np.uint8)
    b = a.copy()
    b[1000, 1500] = 9
    image_a, image_b = Image.fromarray(a), Image.fromarray(b)
    picture = compare.diff_picture([("a", image_a), ("b", image_b)], image_a, image_b)
    assert picture.width < 3 * 1100
    heat = np.asarray(picture)
    assert heat.max() == 255  # the lone difference is drawn at full strength
