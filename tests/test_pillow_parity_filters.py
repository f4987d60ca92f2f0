"""Pillow is the oracle for its filters that are not kernels: BoxBlur,
GaussianBlur, UnsharpMask, the rank filters and ModeFilter, run through
``filter_image`` (bands, alpha, the image's own dtype) with border ``keep``,
in every mode Pillow takes each of them in.
"""

from __future__ import annotations

import functools
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convfilter.kernels import parse_kernel
from convfilter.pipeline import filter_image

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_images"

#: The parameter sets of the issue: radii 0, 0.5, 1, 2.7, 10; sizes 3, 5, 7.
BLURS = [f"{name}:{r}" for name in ("box_blur", "gaussian_blur") for r in ("0", "0.5", "1", "2.7", "10")]
BLURS += ["box_blur:2.5,0.7", "box_blur:0,3", "gaussian_blur:1,3", "gaussian_blur:0,2"]
UNSHARP = ["unsharp", "unsharp:0.5,150,3", "unsharp:1,300,0", "unsharp:2.7,50,10", "unsharp:10,100,255"]
RANKS = [f"{name}:{n}" for name in ("median", "min", "max") for n in (3, 5, 7)]
RANKS += ["rank:3,0", "rank:3,2", "rank:5,7", "rank:7,48"]
MODE_FILTERS = ["mode:3", "mode:5", "mode:7"]

#: Modes by the filters Pillow runs in them (found by trying every mode).
EIGHT_BIT = ["L", "LA", "RGB", "RGBA", "CMYK"]
LAYOUT = {"L": (np.uint8, 0), "LA": (np.uint8, 2), "RGB": (np.uint8, 3), "RGBA": (np.uint8, 4),
          "CMYK": (np.uint8, 4), "I": (np.dtype("<i4"), 0), "F": (np.dtype("<f4"), 0)}  # fmt: skip
IMAGES = ["photo", "hard-edges", "extremes", "noise"]

EXTREMES = {
    np.dtype(np.uint8): [0, 1, 127, 128, 254, 255],
    np.dtype("<i4"): [-(2**31), -(2**31) + 1, -65536, -1, 0, 1, 255, 2**24 + 1, 2**31 - 1],
    np.dtype("<f4"): [-np.inf, -3.4e38, -1.5, -1e-30, 0.0, 1e-45, 0.5, 1.0, 255.0, 3.4e38, np.inf],
}


@functools.lru_cache(maxsize=None)
def sample_array(kind: str, mode: str) -> np.ndarray:
    """A test image of ``kind`` in ``mode``'s layout: a photo crop or a generated one."""
    dtype, channels = LAYOUT[mode]
    rng = np.random.default_rng(zlib.crc32(f"{kind}/{mode}".encode()))
    if kind == "photo":
        with Image.open(SAMPLE_DIR / "coffee.png") as image:
            rgb = np.asarray(image.convert("RGB"))[100:172, 150:246].astype(np.int64)
        planes = [rgb[..., 0], rgb[..., 1], rgb[..., 2], 255 - rgb.mean(axis=2).astype(np.int64)]
        if mode == "I":
            return ((planes[0] - 128) << 23 | planes[1] << 8 | planes[2]).astype(dtype)
        if mode == "F":
            return (planes[0] * 1.5 - 100.25).astype(dtype)
        value = np.stack([planes[c % 4] for c in range(max(channels, 1))], axis=-1)
        return (value if channels else value[..., 0]).astype(dtype)
    shape = (37, 41) + ((channels,) if channels else ())
    values = np.array(EXTREMES[np.dtype(dtype)])
    if kind == "extremes":
        return rng.choice(values, shape).astype(dtype)
    if kind == "noise":
        return rng.choice(np.linspace(values[1], values[-2], 97), shape).astype(dtype)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    plane = ((y - 18) ** 2 + (x - 12) ** 2 <= 64) | ((x >= 26) & (x < 31)) | (y == 3)
    low, high = values[0], values[-1]
    layers = [np.where(plane, high, low), np.where(plane, low, high)]
    layers += [np.roll(layers[0], c, axis=1) for c in range(2, max(channels, 2))]
    value = np.stack(layers[: max(channels, 1)], axis=-1)
    return (value if channels else value[..., 0]).astype(dtype)


def check(spec: str, mode: str, kind: str) -> None:
    array = sample_array(kind, mode)
    image = Image.frombytes(mode, (array.shape[1], array.shape[0]), array.tobytes())
    step = parse_kernel(spec)
    expected = np.asarray(image.filter(step.pillow_filter()))
    got = np.asarray(filter_image(image, step, border="keep", alpha="filter"))
    assert got.dtype == expected.dtype and got.shape == expected.shape
    if not np.array_equal(got, expected):
        wrong = np.argwhere(got != expected)
        first = tuple(wrong[0])
        pytest.fail(f"{spec} on {kind} {mode}: {len(wrong)} samples differ from Pillow; first at {first}: "
                    f"convfilter {got[first]}, Pillow {expected[first]}")  # fmt: skip


@pytest.mark.parametrize("kind", IMAGES)
@pytest.mark.parametrize("mode", EIGHT_BIT)
@pytest.mark.parametrize("spec", BLURS + UNSHARP)
def test_blurs_match_pillow(spec, mode, kind):
    check(spec, mode, kind)


@pytest.mark.parametrize("kind", IMAGES)
@pytest.mark.parametrize("mode", EIGHT_BIT + ["I", "F"])
@pytest.mark.parametrize("spec", RANKS)
def test_rank_filters_match_pillow(spec, mode, kind):
    check(spec, mode, kind)


@pytest.mark.parametrize("kind", IMAGES)
@pytest.mark.parametrize("mode", EIGHT_BIT)
@pytest.mark.parametrize("spec", MODE_FILTERS)
def test_mode_filter_matches_pillow(spec, mode, kind):
    check(spec, mode, kind)


@pytest.mark.parametrize("spec", ["box_blur:10", "gaussian_blur:2.7", "unsharp", "median:7", "max:5",
                                  "rank:7,10", "mode:7"])  # fmt: skip
@pytest.mark.parametrize("size", [(1, 1), (2, 7), (7, 2), (3, 3), (6, 5)], ids=str)
def test_images_smaller_than_the_window_match_pillow(size, spec):
    rng = np.random.default_rng(size[0] * 10 + size[1])
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    step = parse_kernel(spec)
    expected = np.asarray(image.filter(step.pillow_filter()))
    np.testing.assert_array_equal(np.asarray(filter_image(image, step, border="keep")), expected)


def test_whole_photo_matches_pillow():
    with Image.open(SAMPLE_DIR / "rocket.jpg") as image:
        image.load()
        for spec in ("median:3", "gaussian_blur:2", "unsharp", "mode:3"):
            step = parse_kernel(spec)
            expected = image.filter(step.pillow_filter()).tobytes()
            assert filter_image(image, step, border="keep").tobytes() == expected, spec


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
@pytest.mark.parametrize("spec", ["box_blur:1.5", "gaussian_blur:2", "unsharp"])
def test_blurs_in_modes_pillow_refuses_are_computed(spec, mode):
    """Pillow refuses these; convfilter computes them (checked against SciPy in test_blurs)."""
    image = Image.new(mode, (12, 9), 1000)
    with pytest.raises(ValueError):
        image.filter(parse_kernel(spec).pillow_filter())
    result = filter_image(image, spec, border="keep")
    assert result.mode == mode
    np.testing.assert_array_equal(np.asarray(result), np.asarray(image))  # a flat image stays flat
