"""Tests for convfilter.ranks: rank, median, min, max and mode filters.

Oracles: Pillow's own ``RankFilter``, ``MedianFilter``, ``MinFilter``,
``MaxFilter`` and ``ModeFilter`` on its modes; ``scipy.ndimage`` for the rank
filters on other borders and dtypes; and, for the mode filter and NaN, plain
loops over each window written here (``numpy.pad``, ``np.unique``, ``np.sort``).
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image, ImageFilter

from convfilter import circuits, ranks
from convfilter.engine import FilterError
from convfilter.options import BorderMode, SettingsError
from convfilter.ranks import (
    max_filter,
    median_filter,
    min_filter,
    mode_filter,
    rank_filter,
)

#: convfilter border -> scipy.ndimage mode (for filters, 'wrap' repeats the image).
SCIPY_MODES = {"nearest": "nearest", "reflect": "reflect", "mirror": "mirror", "wrap": "wrap",
               "constant": "constant"}  # fmt: skip

#: convfilter border -> numpy.pad mode, for the plain loops.
PAD_MODES = {"nearest": "edge", "reflect": "symmetric", "mirror": "reflect", "wrap": "wrap",
             "constant": "constant"}  # fmt: skip

PROPERTY = settings(max_examples=50, deadline=None)


# ---------------------------------------------------------------------------
# Oracles and images


def pillow_filter(array: np.ndarray, mode: str, image_filter) -> np.ndarray:
    """``Image.filter`` on ``array`` read as a Pillow image of ``mode``."""
    if mode in ("L", "I", "F"):
        image = Image.fromarray(array)
        assert image.mode == mode
    else:
        image = Image.frombytes(mode, (array.shape[1], array.shape[0]), np.ascontiguousarray(array).tobytes())
    return np.asarray(image.filter(image_filter))


def scipy_rank(array: np.ndarray, size: int, rank: int, border: str, cval: float = 0.0) -> np.ndarray:
    """scipy's rank filter, each channel by itself."""
    footprint = (size, size) + (1,) * (array.ndim - 2)
    return ndi.rank_filter(array, rank, size=footprint, mode=SCIPY_MODES[border], cval=cval)


def windows(array2d: np.ndarray, size: int, border: str, cval=0):
    """Each pixel's window as a flat array, and the pixel: row by row. ``keep``
    cuts the window at the image's edge; ``valid`` yields only whole windows."""
    reach = size // 2
    height, width = array2d.shape
    if border == "keep":
        for y in range(height):
            for x in range(width):
                window = array2d[max(0, y - reach) : y + reach + 1, max(0, x - reach) : x + reach + 1]
                yield window.ravel(), array2d[y, x]
        return
    if border == "valid":
        padded, rows, cols = array2d, range(height - 2 * reach), range(width - 2 * reach)
    else:
        extra = {"constant_values": cval} if border == "constant" else {}
        padded, rows, cols = np.pad(array2d, reach, mode=PAD_MODES[border], **extra), range(height), range(width)
    for y in rows:
        for x in cols:
            yield padded[y : y + size, x : x + size].ravel(), padded[y + reach, x + reach]


def plain_rank(array2d: np.ndarray, size: int, rank: int, border: str, cval=0) -> np.ndarray:
    """The rank-th of each window by np.sort (NaN last)."""
    reach = size // 2
    height, width = array2d.shape
    if border == "valid":
        height, width = height - 2 * reach, width - 2 * reach
    values = [np.sort(window)[rank] for window, _ in windows(array2d, size, border, cval)]
    return np.array(values, array2d.dtype).reshape(height, width)


def plain_mode(array2d: np.ndarray, size: int, border: str, cval=0) -> np.ndarray:
    """Pillow's mode rule, window by window: the value found most often (the
    smallest of ties) if found more than twice, else the pixel. NaN never
    equals anything, so it is left out of the counts."""
    reach = size // 2
    height, width = array2d.shape
    if border == "valid":
        height, width = height - 2 * reach, width - 2 * reach
    result = []
    for window, pixel in windows(array2d, size, border, cval):
        if window.dtype.kind == "f":
            window = window[~np.isnan(window)]
        values, counts = np.unique(window, return_counts=True)
        result.append(values[np.argmax(counts)] if len(counts) and counts.max() > 2 else pixel)
    return np.array(result, array2d.dtype).reshape(height, width)


def per_channel(function, array: np.ndarray, *args) -> np.ndarray:
    if array.ndim == 2:
        return function(array, *args)
    return np.stack([function(array[:, :, c], *args) for c in range(array.shape[2])], axis=-1)


@pytest.fixture(scope="module")
def photo(sample_dir) -> np.ndarray:
    """A 40 x 30 crop of a photograph (a cat's face and fur), RGB."""
    with Image.open(sample_dir / "chelsea.png") as image:
        return np.asarray(image.convert("RGB").crop((200, 60, 240, 90)))


@pytest.fixture(scope="module")
def edges(sample_dir) -> np.ndarray:
    """A 40 x 30 crop of a card of hard black-and-white edges, L."""
    with Image.open(sample_dir / "cards" / "edges.png") as image:
        return np.asarray(image.convert("L").crop((20, 10, 60, 40)))


def as_mode(photo: np.ndarray, mode: str) -> np.ndarray:
    """The photograph as samples of a Pillow mode: 8-bit bands, or wide I and F
    values with negatives."""
    luma = np.asarray(Image.fromarray(photo).convert("L")).astype(np.int64)
    alpha = ((np.arange(photo.shape[1]) * 7)[None, :] + luma // 3) % 256
    if mode == "L":
        return luma.astype(np.uint8)
    if mode == "LA":
        return np.stack([luma, alpha], -1).astype(np.uint8)
    if mode == "RGB":
        return photo
    if mode == "RGBA":
        return np.dstack([photo, alpha]).astype(np.uint8)
    if mode == "CMYK":
        return np.dstack([255 - photo, np.minimum(luma, 255 - luma)]).astype(np.uint8)
    if mode == "I":
        return ((luma - 128) * 16_000_001).astype(np.int32)
    return ((luma - 100) / 7.0).astype(np.float32)


def quantized(array: np.ndarray, levels: int = 4) -> np.ndarray:
    """Few values, so that modes exist."""
    return (array // (256 // levels) * (256 // levels)).astype(array.dtype)


# ---------------------------------------------------------------------------
# Pillow's own filters


def pillow_ranks(size: int) -> list[int]:
    last = size * size - 1
    return sorted({0, 1, last // 4, size * size // 2, last - 1, last} & set(range(last + 1)))


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "CMYK", "I", "F"])
@pytest.mark.parametrize("size", [1, 3, 5, 7])
def test_rank_filter_is_pillows_on_a_photograph(photo, mode, size):
    array = as_mode(photo, mode)
    for rank in pillow_ranks(size):
        expected = pillow_filter(array, mode, ImageFilter.RankFilter(size, rank))
        assert rank_filter(array, size, rank).dtype == array.dtype
        np.testing.assert_array_equal(rank_filter(array, size, rank), expected, err_msg=f"rank {rank}")
        np.testing.assert_array_equal(rank_filter(array, size, rank, border="keep"), expected)


@pytest.mark.parametrize("mode", ["L", "RGB", "I", "F"])
@pytest.mark.parametrize("size", [3, 5, 7])
def test_median_min_max_are_pillows(photo, mode, size):
    array = as_mode(photo, mode)
    for ours, theirs in ((median_filter, ImageFilter.MedianFilter), (min_filter, ImageFilter.MinFilter),
                         (max_filter, ImageFilter.MaxFilter)):  # fmt: skip
        np.testing.assert_array_equal(ours(array, size), pillow_filter(array, mode, theirs(size)))


def test_size_1_returns_the_input_as_pillow_does(photo):
    array = as_mode(photo, "RGB")
    assert np.array_equal(pillow_filter(array, "RGB", ImageFilter.RankFilter(1, 0)), array)
    result = rank_filter(array, 1, 0)
    assert np.array_equal(result, array) and result is not array and not np.shares_memory(result, array)
    assert np.array_equal(mode_filter(array, 1), array)


def test_rank_filter_is_pillows_on_hard_edges(edges):
    assert len(np.unique(edges)) <= 4  # black, white and a few grey anti-aliased pixels
    for size in (3, 5, 7):
        for rank in range(0, size * size, max(1, size * size // 8)):
            np.testing.assert_array_equal(rank_filter(edges, size, rank),
                                          pillow_filter(edges, "L", ImageFilter.RankFilter(size, rank)))  # fmt: skip


EXTREMES = {
    "L": np.array([0, 255, 1, 254, 128], np.uint8),
    "I": np.array([-(2**31), 2**31 - 1, 0, -1, 1, -(2**31) + 1, 2**31 - 2, 7], np.int32),
    "F": np.array([np.inf, -np.inf, np.finfo(np.float32).max, np.finfo(np.float32).min, 1e-45, -1e-45, 0.0,
                   np.finfo(np.float32).tiny, 3.5], np.float32),
}


@pytest.mark.parametrize("mode", ["L", "I", "F"])
def test_rank_filter_is_pillows_on_extreme_values(rng, mode):
    array = rng.choice(EXTREMES[mode], size=(11, 9))
    for size in (3, 5):
        for rank in range(size * size):
            expected = pillow_filter(array, mode, ImageFilter.RankFilter(size, rank))
            np.testing.assert_array_equal(rank_filter(array, size, rank), expected, err_msg=f"{size} {rank}")


@pytest.mark.parametrize("shape", [(1, 1), (2, 5), (5, 2), (3, 3)])
@pytest.mark.parametrize("mode", ["L", "RGB", "I", "F"])
def test_images_smaller_than_the_window_are_pillows(rng, shape, mode):
    array = as_mode(rng.integers(0, 256, shape + (3,)).astype(np.uint8), mode)
    for size in (3, 5, 7):
        for rank in (0, size * size // 2, size * size - 1):
            np.testing.assert_array_equal(rank_filter(array, size, rank),
                                          pillow_filter(array, mode, ImageFilter.RankFilter(size, rank)))  # fmt: skip
        if mode in ("L", "RGB"):
            np.testing.assert_array_equal(mode_filter(array, size), pillow_filter(array, mode,
                                                                                  ImageFilter.ModeFilter(size)))


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "CMYK"])
@pytest.mark.parametrize("size", [3, 5, 7, 9, 13])
def test_mode_filter_is_pillows(photo, edges, mode, size):
    array = as_mode(photo, mode)
    for image in (quantized(array), quantized(array, 16), array):
        np.testing.assert_array_equal(mode_filter(image, size), pillow_filter(image, mode,
                                                                              ImageFilter.ModeFilter(size)))
    if mode == "L":
        np.testing.assert_array_equal(mode_filter(edges, size), pillow_filter(edges, "L",
                                                                              ImageFilter.ModeFilter(size)))


def test_mode_filter_ties_and_threshold():
    ties = np.array([[5, 5, 5], [2, 2, 2], [9, 8, 7]], np.uint8)  # 5 and 2 three times each
    assert mode_filter(ties, 3, border="valid").tolist() == [[2]]
    twice = np.array([[5, 5, 1], [2, 2, 3], [9, 8, 7]], np.uint8)  # nothing more than twice
    assert mode_filter(twice, 3, border="valid").tolist() == [[2]]
    assert mode_filter(twice, 3).tolist() == twice.tolist()
    assert pillow_filter(twice, "L", ImageFilter.ModeFilter(3)).tolist() == twice.tolist()


# ---------------------------------------------------------------------------
# Other borders and dtypes


BORDERS = ["nearest", "reflect", "mirror", "wrap", "constant"]
DTYPES = [np.uint8, np.uint16, np.int32, np.float32, np.float64, np.int8, np.int64, np.uint64, np.bool_, np.float16]


def sample_array(rng, dtype, shape=(13, 11, 2)) -> np.ndarray:
    if np.dtype(dtype).kind == "b":
        return rng.integers(0, 2, shape).astype(bool)
    if np.dtype(dtype).kind == "f":
        return (rng.standard_normal(shape) * 50).astype(dtype)
    info = np.iinfo(dtype)
    low, high = max(info.min, -(2**52)), min(info.max, 2**52)  # scipy's 64-bit ranks pass through float64
    return rng.integers(low, high, shape, dtype=dtype, endpoint=True)


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_rank_filter_is_scipys(rng, border, dtype):
    array = sample_array(rng, dtype)
    cval = 1 if dtype is np.bool_ else 3
    reference = array.astype(np.float32) if dtype is np.float16 else array
    for size in (3, 5):
        for rank in (0, 1, size * size // 2, size * size - 2, size * size - 1):
            expected = scipy_rank(reference, size, rank, border, cval).astype(dtype)
            result = rank_filter(array, size, rank, border=border, cval=cval)
            assert result.dtype == array.dtype and result.shape == array.shape
            np.testing.assert_array_equal(result, expected, err_msg=f"{size} {rank}")


@pytest.mark.parametrize("dtype", [np.int64, np.uint64])
def test_64_bit_samples_are_exact(rng, dtype):
    info = np.iinfo(dtype)
    array = rng.choice(np.array([info.min, info.max, info.max - 1, info.min + 1, 2**53 + 1], dtype), (7, 8))
    for rank in (0, 3, 4, 8):
        np.testing.assert_array_equal(rank_filter(array, 3, rank), plain_rank(array, 3, rank, "nearest"))
    np.testing.assert_array_equal(mode_filter(array, 3), plain_mode(array, 3, "keep"))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_every_rank_of_small_windows_is_scipys(rng, dtype):
    array = sample_array(rng, dtype, (16, 17))
    for size in (3, 5):
        for rank in range(size * size):
            np.testing.assert_array_equal(rank_filter(array, size, rank, border="reflect"),
                                          scipy_rank(array, size, rank, "reflect"), err_msg=f"{size} {rank}")


@pytest.mark.parametrize("size", [9, 11, 17])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_large_windows_are_scipys(rng, size, dtype):
    array = sample_array(rng, dtype, (30, 26))
    for rank in (1, size * size // 3, size * size // 2):
        np.testing.assert_array_equal(rank_filter(array, size, rank, border="mirror"),
                                      scipy_rank(array, size, rank, "mirror"), err_msg=f"rank {rank}")


def test_valid_is_the_interior_of_the_padded_result(photo):
    for size in (3, 5):
        reach = size // 2
        result = median_filter(photo, size, border="valid")
        assert result.shape == (photo.shape[0] - 2 * reach, photo.shape[1] - 2 * reach, 3)
        np.testing.assert_array_equal(result, median_filter(photo, size)[reach:-reach, reach:-reach])


@pytest.mark.parametrize("cval", [-5, 300, 2.5, 2.4])
def test_constant_fill_is_rounded_and_clipped_to_the_dtype(rng, cval):
    array = rng.integers(0, 256, (8, 9)).astype(np.uint8)
    rounded = np.floor(cval + 0.5)  # half up
    for rank in (0, 4, 8):
        wide = scipy_rank(array.astype(np.float64), 3, rank, "constant", rounded)
        np.testing.assert_array_equal(rank_filter(array, 3, rank, border="constant", cval=cval),
                                      np.clip(wide, 0, 255).astype(np.uint8))  # fmt: skip


def test_nan_sorts_last(rng):
    array = rng.standard_normal((9, 10)).astype(np.float32)
    array[rng.random(array.shape) < 0.3] = np.nan
    array[0, :3] = [np.inf, -np.inf, np.nan]
    for size in (3, 5):
        for rank in (0, 1, size * size // 2, size * size - 1):
            for border in ("nearest", "constant"):
                np.testing.assert_array_equal(rank_filter(array, size, rank, border=border, cval=np.nan),
                                              plain_rank(array, size, rank, border, np.nan))  # fmt: skip
    window = np.array([[np.nan, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
    assert min_filter(window, 3, border="valid")[0, 0] == 1.0
    assert np.isnan(max_filter(window, 3, border="valid")[0, 0])
    assert median_filter(window, 3, border="valid")[0, 0] == 5.0


@pytest.mark.parametrize("border", BORDERS + ["valid", "keep"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32, np.float64, np.int8, np.bool_])
def test_mode_filter_follows_the_rule_on_every_border_and_dtype(rng, border, dtype):
    array = rng.integers(0, 4, (9, 8, 2)).astype(dtype) * (1 if dtype is np.bool_ else 3)
    if np.dtype(dtype).kind == "f":
        array[0, 0, 0] = -0.0
    for size in (3, 5):
        result = mode_filter(array, size, border=border, cval=1)
        assert result.dtype == array.dtype
        np.testing.assert_array_equal(result, per_channel(plain_mode, array, size, border, 1))


def test_mode_filter_never_counts_nan(rng):
    array = rng.integers(0, 3, (10, 9)).astype(np.float64)
    array[rng.random(array.shape) < 0.4] = np.nan
    for size in (3, 5, 13):
        for border in ("keep", "reflect"):
            np.testing.assert_array_equal(mode_filter(array, size, border=border),
                                          plain_mode(array, size, border))  # fmt: skip
    all_nan = np.full((5, 5), np.nan)
    assert np.isnan(mode_filter(all_nan, 3, border="reflect")).all()


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_mode_filter_on_large_windows(rng, dtype):
    array = rng.integers(0, 5, (16, 18)).astype(dtype)
    for size in (13, 15):
        np.testing.assert_array_equal(mode_filter(array, size, border="wrap"), plain_mode(array, size, "wrap"))


# ---------------------------------------------------------------------------
# Every way of computing, on the same cases


def pin_strategy(monkeypatch, strategy: str) -> None:
    """Pin how the filters compute: circuits alone, counting the values of
    8-bit tiles wherever it applies, or np.partition and sorts."""
    if strategy == "circuits":
        monkeypatch.setattr(ranks, "_COUNTING_WORTH", 10**9)
    elif strategy == "counting":
        monkeypatch.setattr(ranks, "_COUNTING_WORTH", 0)
        monkeypatch.setattr(ranks, "_COUNTING_CALL", 0.0)
    else:
        monkeypatch.setattr(ranks, "_CIRCUIT_SIZES", 1)
        monkeypatch.setattr(ranks, "_SORTING_SIZES", 1)
        monkeypatch.setattr(ranks, "_COUNTING_WORTH", 10**9)


@pytest.mark.parametrize("strategy,dtype", [("circuits", np.uint8), ("circuits", np.float32), ("counting", np.uint8),
                                            ("fallbacks", np.uint8), ("fallbacks", np.float32)])  # fmt: skip
def test_every_strategy_gives_the_same_results(rng, monkeypatch, strategy, dtype):
    pin_strategy(monkeypatch, strategy)
    array = quantized(rng.integers(0, 256, (19, 23, 3)).astype(np.uint8), 8).astype(dtype)
    for size in (3, 5, 7):
        for rank in (1, size * size // 2, size * size - 2):
            np.testing.assert_array_equal(rank_filter(array, size, rank, border="constant", cval=32),
                                          scipy_rank(array, size, rank, "constant", 32))  # fmt: skip
        for border in ("keep", "nearest"):
            np.testing.assert_array_equal(mode_filter(array, size, border=border),
                                          per_channel(plain_mode, array, size, border))  # fmt: skip


def test_tiles_and_threads_give_the_same_results(rng, monkeypatch):
    monkeypatch.setattr(ranks, "_TILE_BYTES", 4096)  # many small tiles, edge tiles of every shape
    monkeypatch.setattr(ranks, "_MIN_TILE_SAMPLES", 1)
    monkeypatch.setattr(ranks.engine, "worker_count", lambda threads, seconds: threads or 1)
    array = rng.integers(0, 256, (67, 71, 3)).astype(np.uint8)
    calls = []
    expected = scipy_rank(array, 5, 12, "reflect")
    for threads in (1, 2):
        result = median_filter(array, 5, border="reflect", threads=threads, progress=lambda *a: calls.append(a))
        np.testing.assert_array_equal(result, expected)
        assert calls[-1][0] == calls[-1][1] > 4
    calls.clear()
    modes = [mode_filter(quantized(array), 5, threads=threads, progress=lambda *a: calls.append(a))
             for threads in (1, 2)]  # fmt: skip
    np.testing.assert_array_equal(modes[0], modes[1])
    np.testing.assert_array_equal(modes[0], per_channel(plain_mode, quantized(array), 5, "keep"))
    assert len({total for _, total in calls}) == 1  # the windows cut by the edge are part of one count
    assert calls[-1][0] == calls[-1][1]


@pytest.mark.parametrize("strategy", ["circuits", "counting", "fallbacks"])
def test_tiles_in_any_order(rng, monkeypatch, strategy):
    """A thread's first tile may be a small one from the edge, its next a whole one."""
    pin_strategy(monkeypatch, strategy)
    monkeypatch.setattr(ranks, "_TILE_BYTES", 4096)
    monkeypatch.setattr(ranks, "_MIN_TILE_SAMPLES", 1)
    run_pieces = ranks.engine.run_pieces
    monkeypatch.setattr(ranks.engine, "run_pieces",
                        lambda work, pieces, workers, progress: run_pieces(work, pieces[::-1], 1, progress))
    array = quantized(rng.integers(0, 256, (37, 41, 3)).astype(np.uint8), 8)
    np.testing.assert_array_equal(median_filter(array, 7, border="reflect"), scipy_rank(array, 7, 24, "reflect"))
    np.testing.assert_array_equal(mode_filter(array, 7, border="reflect"), per_channel(plain_mode, array, 7, "reflect"))


# ---------------------------------------------------------------------------
# Properties


@PROPERTY
@given(
    array=hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=7),
                     elements=st.sampled_from([0.0, 1.0, -2.5, np.inf, -np.inf, np.nan, 3e38])),
    size=st.sampled_from([1, 3, 5]),
    rank_fraction=st.floats(0, 1, exclude_max=True),
    border=st.sampled_from(BORDERS),
)  # fmt: skip
def test_rank_filter_is_the_sorted_windows_rank(array, size, rank_fraction, border):
    rank = int(rank_fraction * size * size)
    np.testing.assert_array_equal(rank_filter(array, size, rank, border=border, cval=-1.0),
                                  plain_rank(array, size, rank, border, -1.0))  # fmt: skip


@PROPERTY
@given(
    array=hnp.arrays(np.uint8, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=8),
                     elements=st.integers(0, 3)),
    size=st.sampled_from([3, 5, 7]),
    border=st.sampled_from(BORDERS + ["keep"]),
)  # fmt: skip
def test_mode_filter_follows_pillows_rule(array, size, border):
    np.testing.assert_array_equal(mode_filter(array, size, border=border, cval=2), plain_mode(array, size, border, 2))


@PROPERTY
@given(array=hnp.arrays(np.uint8, (9, 10), elements=st.integers(0, 255)), size=st.sampled_from([3, 5, 7]))
def test_ranks_are_ordered(array, size):
    lower = rank_filter(array, size, 0)
    for rank in range(1, size * size, size):
        higher = rank_filter(array, size, rank)
        assert (lower <= higher).all()
        lower = higher
    assert (lower <= max_filter(array, size)).all()


# ---------------------------------------------------------------------------
# Shapes, dtypes and errors


def test_shapes_and_byte_order_are_kept(photo):
    planar = photo[:, :, 0]
    assert median_filter(planar, 3).shape == planar.shape
    np.testing.assert_array_equal(median_filter(planar, 3), median_filter(photo, 3)[:, :, 0])
    swapped = photo.astype(">u2") * 200
    result = median_filter(swapped, 3)
    assert result.dtype == np.dtype("u2") and result.dtype.isnative
    np.testing.assert_array_equal(result, median_filter(photo.astype(np.uint16) * 200, 3))
    before = photo.copy()
    mode_filter(photo, 3)
    np.testing.assert_array_equal(photo, before)


def test_numpy_integers_as_size_and_rank(rng):
    array = rng.integers(0, 256, (20, 21)).astype(np.uint8)
    for size, rank in ((3, 4), (17, 100)):  # a circuit, and counting
        np.testing.assert_array_equal(rank_filter(array, np.int64(size), np.uint16(rank)), rank_filter(array, size, rank))
        np.testing.assert_array_equal(mode_filter(array, np.int32(size)), mode_filter(array, size))


def test_empty_arrays_give_empty_results():
    assert median_filter(np.zeros((0, 7), np.uint8), 3).shape == (0, 7)
    assert mode_filter(np.zeros((6, 5, 0), np.float32), 5).shape == (6, 5, 0)
    assert rank_filter(np.zeros((6, 5, 0)), 5, 3, border="valid").shape == (2, 1, 0)


def test_memory_stays_bounded_for_huge_windows(rng):
    """A 31 x 31 window over 120 x 100 float64 samples: every window copied
    out at once would take 92 MB."""
    array = rng.standard_normal((120, 100))
    tracemalloc.start()
    try:
        result = rank_filter(array, 31, 480, border="reflect")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 24e6
    np.testing.assert_array_equal(result[::37, ::23], scipy_rank(array, 31, 480, "reflect")[::37, ::23])


@pytest.mark.parametrize("size", [0, -3, 2, 4, 3.0, True, "3"])
def test_a_bad_size_is_refused(size):
    for call in (lambda: rank_filter(np.zeros((5, 5)), size, 0), lambda: median_filter(np.zeros((5, 5)), size),
                 lambda: mode_filter(np.zeros((5, 5)), size)):  # fmt: skip
        with pytest.raises(ValueError, match="size must be"):
            call()


@pytest.mark.parametrize("rank", [-1, 9, 2.0, None])
def test_a_bad_rank_is_refused(rank):
    with pytest.raises(ValueError, match="rank must be"):
        rank_filter(np.zeros((5, 5)), 3, rank)


def test_bad_arrays_and_borders_are_refused():
    with pytest.raises(FilterError, match="complex"):
        median_filter(np.zeros((5, 5), complex), 3)
    with pytest.raises(FilterError, match="H x W"):
        median_filter(np.zeros(5), 3)
    with pytest.raises(FilterError, match="5x5 or more"):
        median_filter(np.zeros((4, 9)), 5, border="valid")
    with pytest.raises(FilterError, match="3x3 or more"):
        mode_filter(np.zeros((9, 2), np.uint8), 3, border="valid")
    with pytest.raises(SettingsError, match="border"):
        median_filter(np.zeros((5, 5)), 3, border="clamp")
    assert median_filter(np.zeros((5, 5)), 3, border=BorderMode.WRAP).shape == (5, 5)


# ---------------------------------------------------------------------------
# The sorting networks the circuits are made of


@pytest.mark.parametrize("network", [circuits.merge_sort_pairs, circuits.mirrored_pairs])
def test_networks_sort_every_zero_one_input(network):
    for n in range(1, 13):
        pairs = network(n)
        inputs = (np.arange(2**n)[:, None] >> np.arange(n)) & 1  # every 0/1 input, one per row
        for i, j in pairs:
            assert i < j
            inputs[:, i], inputs[:, j] = np.minimum(inputs[:, i], inputs[:, j]), np.maximum(inputs[:, i], inputs[:, j])
        assert (np.diff(inputs, axis=1) >= 0).all(), n
