"""convfilter.chunked: one image filtered in Dask chunks gives the bytes of filtering it in memory."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

from convfilter import engine, streaming
from convfilter.kernels import as_kernel

da = pytest.importorskip("dask.array", reason="the Dask extra is not installed (pip install 'convfilter[dask]')")
distributed = pytest.importorskip("distributed", reason="the Dask extra is not installed")

from convfilter import chunked  # noqa: E402
from convfilter.cluster import SchedulerError, connect  # noqa: E402

BORDERS = ["nearest", "reflect", "mirror", "wrap", "constant", "keep", "valid"]

STEPS = {
    "preset-3x3": ["edge_enhance"],
    "gaussian-13x13": ["gaussian:2"],
    "even-4x4-anchored": [as_kernel("1 2 3 4; 0 1 0 2; 3 0 1 1; 1 1 1 1")],
    "chain": ["blur", "sharpen"],
    "median": ["median:3"],
    "gaussian-blur": ["gaussian_blur:2"],
    "unsharp-then-emboss": ["unsharp", "emboss"],
}

IMAGES = {
    "rgb8": ((61, 83, 3), np.uint8),
    "grey16": ((57, 70), np.uint16),
    "float32": ((50, 66), np.float32),
}


def _image(shape, dtype, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return (rng.random(shape) * 300 - 50).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)


def _in_memory(array, steps, border, cval=0.0, repeat=1) -> np.ndarray:
    for step in list(steps) * repeat:
        array = engine.filter_array(array, as_kernel(step), border=border, cval=cval)
    return array


def _chunked(array, steps, chunks, **options) -> np.ndarray:
    lazy = da.from_array(array, chunks=chunks + array.shape[2:])
    return chunked.filter_dask_array(lazy, steps, **options).compute(scheduler="synchronous")


# ---------------------------------------------------------------------------
# filter_dask_array: every border, chunks smaller than the reach, as in memory
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("steps", STEPS.values(), ids=STEPS.keys())
@pytest.mark.parametrize("image", IMAGES.values(), ids=IMAGES.keys())
def test_chunks_give_the_bytes_of_the_whole_image(image, steps, border):
    array = _image(*image)
    expected = _in_memory(array, steps, border, cval=40)
    result = _chunked(array, steps, (16, 23), border=border, cval=40)
    assert result.dtype == expected.dtype
    np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("border", ["nearest", "wrap", "valid"])
def test_chunks_smaller_than_the_reach_are_regrouped(border):
    array = _image((90, 75), np.uint8, seed=3)
    steps = ["box:9", "gaussian_blur:3"]  # reaches 4 rows, then 3 passes of a box of radius 3
    expected = _in_memory(array, steps, border)
    np.testing.assert_array_equal(_chunked(array, steps, (5, 7), border=border), expected)


def test_repeat_and_irregular_chunks():
    array = _image((70, 64, 3), np.uint8, seed=4)
    expected = _in_memory(array, ["sharpen", "blur"], "reflect", repeat=3)
    lazy = da.from_array(array, chunks=((20, 9, 41), (30, 34), (3,)))
    result = chunked.filter_dask_array(lazy, ["sharpen", "blur"], border="reflect", repeat=3)
    np.testing.assert_array_equal(result.compute(scheduler="synchronous"), expected)


@pytest.mark.parametrize("border", [b for b in BORDERS if b != "valid"])
def test_the_result_has_the_chunks_of_the_input(border):
    lazy = da.zeros((100, 90, 3), dtype=np.uint8, chunks=(25, 30, 3))
    result = chunked.filter_dask_array(lazy, ["gaussian:2", "median:5"], border=border)
    assert result.chunks == lazy.chunks


def test_one_chunk_is_the_whole_image():
    array = _image((40, 30), np.uint16, seed=5)
    expected = _in_memory(array, ["edge_enhance"], "mirror")
    np.testing.assert_array_equal(_chunked(array, ["edge_enhance"], (40, 30), border="mirror"), expected)


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("chunks", [(20, 20), (37, 53)], ids=str)
def test_separable_passes_in_chunks_give_the_bytes_of_memory(border, chunks):
    # Matrix products of float32 rows, whose last batch of rows each chunk
    # cuts short elsewhere than the whole image does.
    array = _image((130, 177, 3), np.float32, 5)
    want = engine.filter_array(array, as_kernel("gaussian:5"), border=border, method="separable")
    np.testing.assert_array_equal(_chunked(array, ["gaussian:5"], chunks, border=border, method="separable"), want)


def test_a_float_image_with_nan_is_summed_directly_as_in_memory():
    # A 31x31 Gaussian on a float image would be summed by FFT (or separably),
    # which spreads NaN; filter_array scans for NaN and sums directly, and so must the chunks.
    array = _image((80, 90), np.float32, seed=6)
    array[40, 45] = np.nan
    array[3, 3] = np.inf
    expected = _in_memory(array, ["gaussian:5"], "nearest")
    assert np.isnan(expected).sum() == 31 * 31  # only the windows that hold the NaN
    np.testing.assert_array_equal(_chunked(array, ["gaussian:5"], (20, 20), border="nearest"), expected)


def test_the_result_is_lazy_until_computed():
    reads = []
    array = _image((64, 64), np.uint8)

    def counted(block):
        if block.size:  # dask calls it once on an empty block to learn the output's type
            reads.append(block.shape)
        return block

    lazy = da.from_array(array, chunks=(32, 32)).map_blocks(counted, dtype=array.dtype)
    result = chunked.filter_dask_array(lazy, ["blur"])
    assert reads == [] and result.shape == array.shape and result.dtype == array.dtype
    result.compute(scheduler="synchronous")
    assert len(reads) == 4


def test_what_cannot_be_chunked_is_refused_before_any_work():
    lazy = da.zeros((20, 20), dtype=np.uint8, chunks=10)
    with pytest.raises(streaming.StreamingError, match="leaves nothing"):
        chunked.filter_dask_array(lazy, ["gaussian:12"], border="valid")
    with pytest.raises(streaming.StreamingError, match="chunked along rows and columns only"):
        chunked.filter_dask_array(da.zeros((20, 20, 3), dtype=np.uint8, chunks=(10, 10, 1)), ["blur"])
    with pytest.raises(streaming.StreamingError, match="rows, columns"):
        chunked.filter_dask_array(da.zeros((4, 20, 20, 3), dtype=np.uint8), ["blur"])


# ---------------------------------------------------------------------------
# tiff_array: chunks read from the file's strips and tiles
# ---------------------------------------------------------------------------

FILES = {
    "rgb8-tiled": ((150, 203, 3), np.uint8, dict(tile=(32, 48), photometric="rgb")),
    "grey16-striped-deflate": ((170, 141), np.uint16, dict(rowsperstrip=9, compression="zlib")),
    "rgba8-striped-lzw": ((120, 133, 4), np.uint8, dict(rowsperstrip=5, compression="lzw", photometric="rgb",
                                                         extrasamples=["unassalpha"])),  # fmt: skip
    "float32-tiled-bigtiff": ((130, 177), np.float32, dict(tile=(16, 32), bigtiff=True)),
}


@pytest.fixture(params=FILES, scope="module")
def tiff(request, tmp_path_factory) -> tuple[Path, np.ndarray]:
    shape, dtype, options = FILES[request.param]
    array = _image(shape, dtype, seed=len(request.param))
    path = tmp_path_factory.mktemp("tiff") / f"{request.param}.tif"
    tifffile.imwrite(path, array, metadata=None, **options)
    return path, array


@pytest.mark.parametrize("chunks", [None, (17, 29), (200, 300), (1, 1000)])
def test_a_tiff_is_read_chunk_by_chunk_as_tifffile_reads_it(tiff, chunks):
    path, array = tiff
    lazy = chunked.tiff_array(path, chunks)
    assert lazy.shape == array.shape and lazy.dtype == array.dtype
    if chunks is not None:
        assert lazy.chunks[0][0] == min(chunks[0], array.shape[0])
    np.testing.assert_array_equal(lazy.compute(scheduler="synchronous"), array)


def test_default_chunks_are_whole_tiles_and_whole_strips(tiff):
    path, array = tiff
    lazy = chunked.tiff_array(path)
    with tifffile.TiffFile(path) as file:
        page = file.pages.first
        rows = page.tilelength if page.is_tiled else page.rowsperstrip
        cols = page.tilewidth if page.is_tiled else page.imagewidth
    assert all(size % rows == 0 for size in lazy.chunks[0][:-1])
    assert all(size % cols == 0 for size in lazy.chunks[1][:-1])


# ---------------------------------------------------------------------------
# filter_tiff on a loopback cluster: the streamed file, byte for byte
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client():
    with connect("local", 2) as connection:
        yield connection.client


CLUSTER_CASES = [
    ("rgb8-tiled", ["edge_enhance"], "nearest"),
    ("rgb8-tiled", ["gaussian_blur:3", "sharpen"], "wrap"),
    ("grey16-striped-deflate", ["median:3", "emboss"], "reflect"),
    ("rgba8-striped-lzw", ["unsharp"], "keep"),
    ("float32-tiled-bigtiff", ["gaussian:3"], "valid"),
]


@pytest.mark.parametrize("name, steps, border", CLUSTER_CASES)
def test_a_cluster_writes_the_file_streaming_writes(client, tmp_path, name, steps, border):
    shape, dtype, options = FILES[name]
    array = _image(shape, dtype, seed=9)
    source = tmp_path / "in.tif"
    tifffile.imwrite(source, array, metadata=None, **options)
    streamed, clustered = tmp_path / "streamed.tif", tmp_path / "clustered.tif"
    streaming.filter_tiff(source, streamed, steps, border=border, cval=3)
    seen = []
    report = chunked.filter_tiff(source, clustered, steps, client=client, border=border, cval=3,
                                 chunks=(48, 64), progress=lambda done, total: seen.append((done, total)))  # fmt: skip
    assert clustered.read_bytes() == streamed.read_bytes()
    np.testing.assert_array_equal(tifffile.imread(clustered), _in_memory(array, steps, border, cval=3))
    assert report.workers == 2 and report.chunks > 4
    assert seen[-1][0] == seen[-1][1] > 1
    assert sorted(os.listdir(tmp_path)) == ["clustered.tif", "in.tif", "streamed.tif"]


def test_a_damaged_tile_on_a_worker_leaves_nothing_behind(client, tmp_path):
    source = tmp_path / "damaged.tif"
    tifffile.imwrite(source, np.full((300, 200), 7, np.uint8), tile=(32, 32), compression="zlib")
    with tifffile.TiffFile(source) as tiff:
        offset = tiff.pages.first.dataoffsets[40]
    with open(source, "r+b") as fh:  # tile 40's deflate stream garbled
        fh.seek(offset)
        fh.write(b"\xff" * 8)
    out = tmp_path / "out.tif"
    with pytest.raises(streaming.StreamingError, match="tile 40 cannot be decoded"):
        chunked.filter_tiff(source, out, ["blur"], client=client, chunks=(64, 64))
    assert sorted(os.listdir(tmp_path)) == ["damaged.tif"]


def test_an_unreachable_scheduler_is_one_error():
    with pytest.raises(SchedulerError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        with connect("tcp://127.0.0.1:9", 1):
            pass
