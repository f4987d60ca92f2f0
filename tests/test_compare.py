"""compare.py: metrics worked out by hand, margins, Pillow equivalents, the picture."""

from __future__ import annotations

import math

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageFilter

from convfilter import cli, compare
from convfilter.kernels import PRESETS, Kernel, parse_kernel


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


def pillow_builtins() -> dict[str, type]:
    """Pillow's own kernel built-ins (ImageFilter.BLUR, ...), found in ImageFilter."""
    return {
        name: value for name, value in vars(ImageFilter).items()
        if isinstance(value, type) and issubclass(value, ImageFilter.BuiltinFilter)
        and hasattr(value, "filterargs")  # the class's own kernel; ImageFilter.Kernel has none
    }  # fmt: skip


@pytest.mark.parametrize("name", sorted(pillow_builtins()))
def test_every_pillow_builtin_is_named_and_is_its_presets_equivalent(name):
    builtin = pillow_builtins()[name]
    assert compare.pillow_filter(name.lower()) is builtin
    assert compare.pillow_equivalent(parse_kernel(name.lower())) is builtin
    assert compare.pillow_label(parse_kernel(name.lower())) == f"ImageFilter.{name}"


def test_pillow_names_are_the_presets_that_have_a_builtin():
    assert compare.PILLOW_FILTER_NAMES == {key.lower(): key for key in pillow_builtins()}
    for key in PRESETS.keys() - compare.PILLOW_FILTER_NAMES.keys():
        with pytest.raises(compare.CompareError, match="unknown Pillow filter"):
            compare.pillow_filter(key)


def test_pillow_label_of_a_kernel_without_a_builtin():
    kernel = Kernel(np.arange(15).reshape(5, 3))
    assert compare.pillow_label(kernel) == "ImageFilter.Kernel 3x5"
    assert compare.pillow_label(parse_kernel("sobel-x")) == "ImageFilter.Kernel 3x3"


def test_pillow_filter_parametric_and_unknown():
    assert isinstance(compare.pillow_filter("gaussian_blur:2"), ImageFilter.GaussianBlur)
    assert compare.pillow_filter("median:3").size == 3
    with pytest.raises(compare.CompareError, match="unknown Pillow filter"):
        compare.pillow_filter("sparkle")
    with pytest.raises(compare.CompareError, match="median:N"):
        compare.pillow_filter("median")  # a parametric filter without its value


ODD_SIZE = "median size N must be an odd whole number from 3 to 101 (3, 5, 7, ...: a window centred on the pixel), got "
RADIUS = "radius must be a number from 0 to 1e+09 (0.5, 2, ...), got "


@pytest.mark.parametrize("name, message", [
    ("median:4", ODD_SIZE + "'4'"), ("median:1", ODD_SIZE + "'1'"), ("median:0", ODD_SIZE + "'0'"),
    ("median:-3", ODD_SIZE + "'-3'"),
    ("median:2.5", ODD_SIZE + "'2.5'"), ("median:x", ODD_SIZE + "'x'"), ("median:nan", ODD_SIZE + "'nan'"),
    ("median:inf", ODD_SIZE + "'inf'"), ("median:103", ODD_SIZE + "'103'"),
    ("gaussian_blur:-1", "gaussian_blur " + RADIUS + "'-1'"),
    ("gaussian_blur:nan", "gaussian_blur " + RADIUS + "'nan'"),
    ("gaussian_blur:inf", "gaussian_blur " + RADIUS + "'inf'"),
    ("Gaussian-Blur:x", "gaussian_blur " + RADIUS + "'x'"),
    ("box_blur:-0.5", "box_blur " + RADIUS + "'-0.5'"),
    ("box_blur:-inf", "box_blur " + RADIUS + "'-inf'"),
    ("box_blur:NaN", "box_blur " + RADIUS + "'NaN'"),
    ("box_blur:1e30", "box_blur " + RADIUS + "'1e30'"),
    ("sobel", "unknown Pillow filter 'sobel'"),
])  # fmt: skip
def test_pillow_filter_refuses_bad_parameters_in_its_own_words(name, message):
    with pytest.raises(compare.CompareError) as raised:
        compare.pillow_filter(name)
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize("name, pillow", [
    ("median:3", ImageFilter.MedianFilter(3)), ("median:5", ImageFilter.MedianFilter(5)),
    ("median:3.0", ImageFilter.MedianFilter(3)), ("gaussian_blur:0", ImageFilter.GaussianBlur(0)),
    ("gaussian_blur:1.5", ImageFilter.GaussianBlur(1.5)), ("box_blur:0", ImageFilter.BoxBlur(0)),
    ("box_blur:2", ImageFilter.BoxBlur(2)),
])  # fmt: skip
def test_pillow_filter_good_parameters_give_pillows_filter(name, pillow):
    image = Image.fromarray(np.random.default_rng(3).integers(0, 256, (9, 11), dtype=np.uint8))
    ours = compare.pillow_filter(name)
    assert type(ours) is type(pillow)
    assert np.array_equal(np.asarray(image.filter(ours)), np.asarray(image.filter(pillow)))


def test_apply_refuses_a_bad_reference_before_reading_or_writing(tmp_path):
    source = tmp_path / "in.png"
    Image.new("L", (8, 8), 100).save(source)
    for input_path in (source, tmp_path / "missing.png"):  # the value is checked before the input
        out = tmp_path / "out.png"
        result = CliRunner().invoke(
            cli.main, ["apply", str(input_path), str(out), "-k", "blur", "--diff-pil", "median:4"]
        )
        assert result.exit_code == 1
        lines = result.stderr.splitlines()
        assert lines == ["convfilter: error: " + ODD_SIZE + "'4'"]
        assert not out.exists()


# --- the diff picture -------------------------------------------------------------

BLACK, RING = (0, 0, 0), compare._RING_COLOUR


def heat_panel(picture: Image.Image, panels: int, size: tuple[int, int]) -> np.ndarray:
    """The heat map as drawn in a diff picture of ``panels`` panels of ``size``."""
    x = compare._GAP + (panels - 1) * (size[0] + compare._GAP)
    y = compare._GAP + compare._LABEL_HEIGHT
    return np.asarray(picture)[y : y + size[1], x : x + size[0]]


def legend_strip(picture: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """Everything in a diff picture below the panels: the legend."""
    return np.asarray(picture)[compare._GAP + compare._LABEL_HEIGHT + size[1] :]


def test_one_pixel_differing_by_one_is_ringed_and_coloured():
    a = np.full((40, 50), 20, np.uint8)
    b = a.copy()
    b[10, 12] += 1  # the difference to see
    b[30, 40] += 200  # the largest, far away
    image_a, image_b = Image.fromarray(a), Image.fromarray(b)
    picture = compare.diff_picture([("a", image_a), ("b", image_b)], image_a, image_b)
    heat = heat_panel(picture, 3, (50, 40))
    assert np.array_equal(heat, np.asarray(compare.heat_map(image_a, image_b)[0]))
    red, green, blue = (int(v) for v in heat[10, 12])
    assert red >= 128 and green == blue == 0  # a clear red, not near-black
    neighbourhood = heat[7:14, 9:16].reshape(-1, 3)
    ring = [tuple(int(v) for v in pixel) for pixel in neighbourhood]
    assert ring.count(RING) == 7 * 7 - 1
    assert tuple(heat[10, 16]) == BLACK and tuple(heat[14, 12]) == BLACK  # 4 pixels away
    assert tuple(heat[30, 40]) == (255, 255, 255)


def test_heat_map_of_identical_images_is_black():
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (6, 7, 3), dtype=np.uint8))
    heat, largest = compare.heat_map(image, image.copy())
    assert largest == 0 and not np.asarray(heat).any()


def test_heat_map_takes_the_largest_band():
    a = np.zeros((5, 5, 3), np.uint8)
    b = a.copy()
    b[2, 2] = (3, 9, 1)
    heat, largest = compare.heat_map(Image.fromarray(a), Image.fromarray(b))
    assert largest == 9 and heat.getpixel((2, 2)) == (255, 255, 255)


@pytest.mark.parametrize("max_abs, text", [
    (37.0, "max |diff| 37"), (65535.0, "max |diff| 65535"), (0.25, "max |diff| 0.25"),
    (1 / 3, "max |diff| 0.3333"), (math.inf, "max |diff| inf"), (0.0, "identical"),
])  # fmt: skip
def test_heat_map_legend_text(max_abs, text):
    assert compare.heat_map_legend(max_abs) == text


def test_legend_drawn_follows_the_largest_difference():
    a = np.zeros((30, 30), np.uint8)
    legends = []
    for largest in (5, 37, 0):
        b = a.copy()
        b[15, 15] = largest
        image_a, image_b = Image.fromarray(a), Image.fromarray(b)
        picture = compare.diff_picture([("a", image_a), ("b", image_b)], image_a, image_b)
        legends.append(legend_strip(picture, (30, 30)))
    five, thirty_seven, identical = legends
    assert not np.array_equal(five, thirty_seven)
    assert identical.shape[1] < five.shape[1]  # "identical" needs no ramp
    for legend in (five, thirty_seven):  # the ramp ends in white and starts at a clear red
        colours = {tuple(int(v) for v in pixel) for pixel in legend.reshape(-1, 3)}
        assert {RING, BLACK, (255, 255, 255)} <= colours
        assert any(r >= 128 and g == b == 0 for r, g, b in colours)
    assert RING not in {tuple(int(v) for v in pixel) for pixel in identical.reshape(-1, 3)}


def test_diff_picture_shrinks_large_images_but_keeps_single_pixel_differences():
    a = np.zeros((2048, 3000), np.uint8)
    b = a.copy()
    b[1000, 1500] = 1
    b[40, 60] = 9
    image_a, image_b = Image.fromarray(a), Image.fromarray(b)
    picture = compare.diff_picture([("a", image_a), ("b", image_b)], image_a, image_b)
    assert picture.width < 3 * 1100
    heat = heat_panel(picture, 3, (1000, 683))  # shrunk by 3, blocks keep their largest
    assert tuple(heat[40 // 3, 60 // 3]) == (255, 255, 255)
    assert heat[1000 // 3, 1500 // 3, 0] >= 128  # the difference of 1 is a clear red
    assert tuple(heat[1000 // 3 + 3, 1500 // 3]) == RING
    assert (heat != 0).any(axis=2).sum() == 2 * 7 * 7


def test_diff_picture_of_float_images_with_nan():
    a = np.array([[np.nan, 1.0, 2.0], [3.0, 4.0, np.inf]], np.float32)
    b = a.copy()
    b[1, 1] = np.nan  # NaN against a number: an unbounded difference
    image_a, image_b = Image.fromarray(a), Image.fromarray(b)
    picture = compare.diff_picture([("a", image_a), ("b", image_b)], image_a, image_b)
    heat = heat_panel(picture, 3, (3, 2))
    assert tuple(heat[1, 1]) == (255, 255, 255)
    assert tuple(heat[0, 0]) == RING  # NaN in both, and inf in both, are no difference
    assert tuple(heat[1, 2]) == RING
    report = compare.compare_images(image_a, image_b)
    assert report.whole.differing == 1 and report.whole.max_abs == math.inf


def test_diff_picture_panels_are_pillows_box_reduction():
    rng = np.random.default_rng(11)
    a = Image.fromarray(rng.integers(0, 256, (1000, 2100, 3), dtype=np.uint8))
    b = a.filter(ImageFilter.SMOOTH)
    picture = np.asarray(compare.diff_picture([("a", a), ("b", b)], a, b))
    size = (700, 334)  # shrunk by 3, rounded up
    top = compare._GAP + compare._LABEL_HEIGHT
    for i, image in enumerate((a, b)):
        left = compare._GAP + i * (size[0] + compare._GAP)
        shown = picture[top : top + size[1], left : left + size[0]]
        assert np.array_equal(shown, np.asarray(image.resize(size, Image.Resampling.BOX)))


def test_diff_picture_labels_stop_at_their_panel():
    image = Image.new("L", (40, 30), 100)
    long = "Pillow ImageFilter.EDGE_ENHANCE_MORE then ImageFilter.Kernel 5x5"
    picture = np.asarray(compare.diff_picture([(long, image), (long, image)], image, image))
    strip = picture[compare._GAP : compare._GAP + compare._LABEL_HEIGHT]
    left = compare._GAP
    assert (strip[:, left : left + 40] < 128).any()
    for i in range(3):  # the gap after each panel stays blank
        gap_left = left + 40 + i * (40 + compare._GAP)
        assert (strip[:, gap_left : gap_left + compare._GAP] == 255).all()


def test_pillow_reference_keeps_unfiltered_bands(rng):
    rgba = Image.fromarray(rng.integers(0, 256, (15, 18, 4)).astype(np.uint8), "RGBA")
    reference, label = compare.pillow_reference(rgba, [parse_kernel("blur")], [1])
    assert label == "Pillow ImageFilter.BLUR on G, alpha as in the input"
    ref, src = np.asarray(reference), np.asarray(rgba)
    assert np.array_equal(ref[..., 1], np.asarray(rgba.filter(ImageFilter.BLUR))[..., 1])
    assert np.array_equal(ref[..., [0, 2, 3]], src[..., [0, 2, 3]])


def test_pillow_reference_repeats_the_chain(rng):
    image = Image.fromarray(rng.integers(0, 256, (12, 14)).astype(np.uint8))
    kernels = [parse_kernel("smooth"), parse_kernel("sharpen")]
    reference, label = compare.pillow_reference(image, kernels, [0], repeat=2)
    assert label == "Pillow ImageFilter.SMOOTH then ImageFilter.SHARPEN (x2)"
    expected = image
    for _ in range(2):
        expected = expected.filter(ImageFilter.SMOOTH).filter(ImageFilter.SHARPEN)
    assert reference.tobytes() == expected.tobytes()


def test_pillow_reference_of_float_images_is_an_error(rng):
    image = Image.fromarray(rng.normal(size=(6, 6)).astype(np.float32))
    with pytest.raises(compare.CompareError, match="mode F"):
        compare.pillow_reference(image, [parse_kernel("blur")], [0])
