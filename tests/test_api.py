"""The public API: ``import convfilter as cf`` on arrays of every dtype and on Pillow images.

Oracles: scipy.ndimage.correlate in float64 with the dtype policy written
out here by hand, Python's exact integers, and ``convfilter apply`` itself
for the image functions (which the CLI tests hold to Pillow).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.ndimage as ndi
from click.testing import CliRunner
from PIL import Image, ImageFilter

import convfilter as cf
from convfilter.cli import main

#: Every mode name scipy.ndimage.correlate takes, and the border that means the same.
SCIPY_MODES = {
    "reflect": "reflect",
    "grid-mirror": "reflect",
    "mirror": "mirror",
    "nearest": "nearest",
    "wrap": "wrap",
    "grid-wrap": "wrap",
    "constant": "constant",
    "grid-constant": "constant",
}

DTYPES = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
          np.float16, np.float32, np.float64]  # fmt: skip

INTEGER_KERNEL = np.array([[1, -2, 3], [0, 4, -1], [2, 1, -3]])
FLOAT_KERNEL = np.array([[0.05, 0.2, -0.1], [0.3, 0.125, 0.2], [-0.15, 0.1, 0.3]])


def test_the_tutorial_example_verbatim():
    result = cf.filter_array(np.arange(25).reshape(5, 5), np.arange(9).reshape(3, 3), border="valid")
    assert result.tolist() == [[312, 348, 384], [492, 528, 564], [672, 708, 744]]
    assert result.dtype == np.arange(25).dtype


def sample(dtype, shape, rng) -> np.ndarray:
    """Values spread over the type's range; 64-bit integers kept below 2**40, so
    float64 sums (SciPy's) of them stay exact."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    if dtype.kind == "f":
        return (rng.normal(0, 100, shape)).astype(dtype)
    info = np.iinfo(dtype)
    low, high = max(int(info.min), -(2**40)), min(int(info.max), 2**40)
    return rng.integers(low, high, shape, endpoint=True).astype(dtype)


def scipy_policy(array, weights, scipy_mode, cval, offset, dtype) -> np.ndarray:
    """SciPy's float64 correlation plus offset, then convfilter's written policy:
    integers and bool rounded half up and clipped to the type's range."""
    values = np.asarray(array, np.float64)
    footprint = weights if values.ndim == 2 else weights[:, :, np.newaxis]
    result = ndi.correlate(values, footprint, mode=scipy_mode, cval=cval) + offset
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return result
    low, high = (0, 1) if dtype.kind == "b" else (int(np.iinfo(dtype).min), int(np.iinfo(dtype).max))
    return np.clip(np.floor(result + 0.5), low, high)


@pytest.mark.parametrize("scipy_mode", SCIPY_MODES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("channels", [0, 3])
def test_every_dtype_agrees_with_scipy_in_every_scipy_mode(dtype, scipy_mode, channels):
    rng = np.random.default_rng(abs(hash((np.dtype(dtype).name, scipy_mode, channels))) % 2**32)
    shape = (13, 17) + ((channels,) if channels else ())
    array = sample(dtype, shape, rng)
    cval = 1 if np.dtype(dtype).kind in "bu" else -3
    border = SCIPY_MODES[scipy_mode]
    for weights, offset in ((INTEGER_KERNEL, 2.0), (FLOAT_KERNEL, 0.25)):
        kernel = cf.Kernel(weights, offset=offset)
        got = cf.filter_array(array, kernel, border=border, cval=cval)
        assert got.dtype == np.dtype(dtype) and got.shape == array.shape
        expected = scipy_policy(array, weights, scipy_mode, cval, offset, dtype)
        if np.dtype(dtype).kind == "f":
            scale = np.abs(weights).sum() * np.abs(array.astype(np.float64)).max()
            tolerance = {2: 2e-3, 4: 1e-5, 8: 1e-12}[np.dtype(dtype).itemsize] * scale
            np.testing.assert_allclose(got.astype(np.float64), expected, rtol=0, atol=tolerance)
        elif weights is INTEGER_KERNEL and np.dtype(dtype) not in (np.uint8, np.uint16):
            # Exact integer sums; 8- and 16-bit samples follow Pillow's float32 order instead.
            np.testing.assert_array_equal(got.astype(np.float64), expected)
        else:
            assert np.abs(got.astype(np.float64) - expected).max() <= 1


def test_integer_sums_are_exact_beyond_float64():
    # Values near 2**59 (so sum(|weights|) * max|sample| < 2**63): float64, SciPy's
    # arithmetic, cannot hold these sums; int64 and Python's integers can.
    rng = np.random.default_rng(7)
    array = rng.integers(2**58, 2**59, (6, 7), dtype=np.int64) * rng.choice([-1, 1], (6, 7))
    matrix = np.array([[1, -1, 0], [2, 1, -1], [0, 1, 0]])
    got = cf.filter_array(array, matrix, border="reflect")
    padded = np.pad(array.astype(object), 1, mode="symmetric")
    expected = np.zeros(array.shape, object)
    for (y, x), weight in np.ndenumerate(matrix):
        expected += int(weight) * padded[y : y + 6, x : x + 7]
    assert got.dtype == np.int64
    assert got.tolist() == expected.tolist()
    assert not np.array_equal(ndi.correlate(array.astype(np.float64), matrix, mode="reflect"), expected.astype(float))


def test_keep_on_an_image_smaller_than_the_kernel_returns_it_unchanged():
    for array in (np.array([[2**60, 5], [3, -(2**59)]], np.int64), np.array([[7, -3]], np.int16)):
        assert cf.filter_array(array, np.ones((3, 3), int), border="keep").tolist() == array.tolist()


@pytest.mark.parametrize(
    ("dtype", "values", "expected"),
    [
        # out[x] = (in[x - 1] + in[x]) / 2, the edge repeated: out[0] = in[0].
        (np.uint64, [2**64 - 1, 2**64 - 1], [2**64 - 1, 2**64 - 1]),
        (np.int64, [-(2**63), -(2**63)], [-(2**63), -(2**63)]),
        (np.uint32, [4_000_000_000, 10], [4_000_000_000, 2_000_000_005]),
        (np.int8, [-128, 127], [-128, 0]),  # -0.5 rounds half up to 0
        (np.int16, [-7, 2], [-7, -2]),  # -2.5 rounds half up to -2
        (np.bool_, [True, False], [True, True]),  # 0.5 rounds up to True
    ],
)
def test_rounding_and_clipping_at_the_ends_of_each_type(dtype, values, expected):
    array = np.array([values], dtype=dtype)
    got = cf.filter_array(array, cf.Kernel([[1, 1, 0]], scale=2), border="nearest")
    assert got.dtype == np.dtype(dtype)
    assert got.tolist() == [expected]


def test_out_dtype_keeps_what_the_input_type_cannot_hold():
    ramp = np.tile(np.array([0, 0, 200, 200, 0, 0], np.uint8), (3, 1))
    signed = cf.filter_array(ramp, "sobel-x", out_dtype=np.int16)
    assert signed.dtype == np.int16 and signed[1].tolist() == [0, 800, 800, -800, -800, 0]
    clipped = cf.filter_array(ramp, "sobel-x")
    assert clipped[1].tolist() == [0, 255, 255, 0, 0, 0]
    sums = cf.filter_array(ramp, "blur", out_dtype=np.float64)
    expected = ndi.correlate(ramp.astype(float), cf.parse_kernel("blur").weights, mode="nearest")
    np.testing.assert_allclose(sums, expected, rtol=0, atol=1e-9)
    assert cf.filter_array(ramp.astype(np.float32), "box:3", out_dtype=np.uint8).dtype == np.uint8


@pytest.mark.parametrize("dtype", [np.int16, np.float16, np.bool_, np.uint64])
def test_keep_leaves_the_frame_as_it_was(dtype):
    rng = np.random.default_rng(3)
    array = sample(dtype, (6, 8), rng)
    got = cf.filter_array(array, cf.Kernel(np.ones((3, 3)), scale=9), border="keep")
    frame = np.ones(array.shape, bool)
    frame[1:-1, 1:-1] = False
    np.testing.assert_array_equal(got[frame], array[frame])


def test_kernels_in_every_form_give_the_same_result():
    image = sample(np.uint8, (9, 9), np.random.default_rng(1))
    matrix = [[0, -1, 0], [-1, 5, -1], [0, -1, 0]]
    expected = cf.filter_array(image, cf.Kernel(matrix))
    for kernel in (matrix, np.array(matrix), "0 -1 0; -1 5 -1; 0 -1 0", cf.parse_kernel("[[0,-1,0],[-1,5,-1],[0,-1,0]]")):
        np.testing.assert_array_equal(cf.filter_array(image, kernel), expected)


def run_apply(source, destination, *options) -> None:
    result = CliRunner().invoke(main, ["apply", str(source), str(destination), *options, "-q"])
    assert result.exit_code == 0, result.output


def written(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


CASES = [
    ("RGB", ["-k", "edge_enhance", "--border", "keep"], {"kernel": "edge_enhance", "border": "keep"}),
    ("RGBA", ["-k", "gaussian:1.5", "--border", "reflect"], {"kernel": "gaussian:1.5", "border": "reflect"}),
    ("LA", ["-k", "sobel-x", "--abs", "--alpha", "filter"], {"kernel": "sobel-x", "abs": True, "alpha": "filter"}),
    ("P", ["-k", "sharpen", "--repeat", "2"], {"kernel": "sharpen", "repeat": 2}),
    ("1", ["-k", "blur", "--border", "constant", "--cval", "50%"], {"kernel": "blur", "border": "constant", "cval": "50%"}),
    ("I;16", ["-k", "1 2 1; 2 4 2; 1 2 1", "--normalize"], {"kernel": cf.parse_kernel("1 2 1; 2 4 2; 1 2 1", normalize=True)}),
    ("RGB", ["-k", "blur", "-k", "emboss", "--channels", "R,B"], {"kernel": ["blur", "emboss"], "channels": "R,B"}),
]  # fmt: skip


def picture(mode: str) -> Image.Image:
    """A 40 x 30 picture with edges, gradients and (for alpha modes) transparency."""
    rng = np.random.default_rng(11)
    y, x = np.mgrid[0:30, 0:40]
    rgb = np.stack([x * 6, y * 8, (x * y) % 256], axis=-1).astype(np.uint8)
    rgb[10:20, 12:28] = rng.integers(0, 256, (10, 16, 3))
    image = Image.fromarray(rgb)
    if mode == "RGBA":
        alpha = Image.fromarray(np.where(x < 20, 255, (y * 8) % 256).astype(np.uint8))
        image.putalpha(alpha)
        return image
    if mode == "I;16":
        return Image.fromarray((x * 1500 + y * 40).astype(np.uint16))
    return image.convert(mode)


@pytest.mark.parametrize(("mode", "arguments", "options"), CASES, ids=[f"{c[0]}-{c[1][1]}" for c in CASES])
def test_filter_image_and_filter_give_what_apply_writes(tmp_path, mode, arguments, options):
    source = tmp_path / "in.png"
    picture(mode).save(source)
    run_apply(source, tmp_path / "out.png", *arguments)
    expected = written(tmp_path / "out.png")
    options = dict(options)
    kernel = options.pop("kernel")
    with Image.open(source) as image:
        got = cf.filter_image(image, kernel, **options)
        np.testing.assert_array_equal(np.asarray(got), expected)
        through_pillow = image.filter(cf.Filter(kernel, **options))
        np.testing.assert_array_equal(np.asarray(through_pillow), expected)


def test_filter_is_byte_identical_to_pillows_own_filter():
    image = picture("RGB")
    ours = image.filter(cf.Filter("edge_enhance", border="keep"))
    assert ours.tobytes() == image.filter(ImageFilter.EDGE_ENHANCE).tobytes()


def test_filter_image_takes_one_settings_value():
    image = picture("RGB")
    settings = cf.FilterSettings(["blur", "sharpen"], border="reflect")
    np.testing.assert_array_equal(
        np.asarray(cf.filter_image(image, settings)),
        np.asarray(cf.filter_image(image, ["blur", "sharpen"], border="reflect")),
    )
    with pytest.raises(cf.SettingsError, match="not beside it"):
        cf.filter_image(image, settings, border="wrap")
    with pytest.raises(cf.SettingsError, match="unknown option 'bordr'"):
        cf.filter_image(image, "blur", bordr="wrap")


def test_filter_file_writes_what_apply_writes(tmp_path):
    source = tmp_path / "in.png"
    picture("RGB").save(source)
    run_apply(source, tmp_path / "cli.png", "-k", "emboss", "--border", "mirror")
    result = cf.filter_file(source, tmp_path / "api.png", cf.FilterSettings("emboss", border="mirror"))
    assert result.output == str(tmp_path / "api.png") and result.mode == "RGB"
    np.testing.assert_array_equal(written(tmp_path / "api.png"), written(tmp_path / "cli.png"))


def test_errors_a_caller_can_cause_are_value_errors_with_a_reason():
    cases = [
        (lambda: cf.filter_array(np.zeros((3, 3), np.complex64), "blur"), cf.FilterError, "complex64"),
        (lambda: cf.filter_array(np.zeros(5), "blur"), cf.FilterError, "H x W"),
        (lambda: cf.filter_array(np.zeros((3, 3)), "gaussion:2"), cf.KernelSpecError, "gaussion"),
        (lambda: cf.filter_array(np.zeros((3, 3)), "blur", border="clamp"), cf.FilterError, "clamp"),
        (lambda: cf.filter_image(Image.new("HSV", (4, 4)), "blur"), cf.ImageError, "HSV"),
        (lambda: cf.FilterSettings("blur", alpha="yes"), cf.SettingsError, "alpha"),
    ]
    for call, error, reason in cases:
        with pytest.raises(error, match=reason):
            call()
        assert issubclass(error, ValueError)


def test_public_names_are_exported_and_load_lazily():
    assert sorted(cf.__all__) == sorted(["__version__", *cf._EXPORTS])
    for name in cf.__all__:
        assert getattr(cf, name) is not None
    assert set(cf.__all__) <= set(dir(cf))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        cf.nothing  # noqa: B018
    code = "import sys, convfilter; print('numpy' in sys.modules, 'PIL' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
