"""convfilter.streaming: TIFFs filtered band by band give the bytes of filtering in memory."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pytest
import tifffile

from convfilter import engine, streaming
from convfilter.kernels import as_kernel
from convfilter.neighbourhood import NeighbourhoodFilter
from convfilter.streaming import StreamingError, filter_tiff

BORDERS = ["nearest", "reflect", "mirror", "wrap", "constant", "keep", "valid"]

#: The image files: shape, dtype and how tifffile writes them.
FILES = {
    "rgb8-tiled-bigtiff": ((150, 203, 3), np.uint8, dict(tile=(32, 48), bigtiff=True, photometric="rgb")),
    "grey16-striped": ((170, 141), np.uint16, dict(rowsperstrip=9)),
    "float32-tiled-deflate": ((130, 177), np.float32, dict(tile=(16, 32), compression="zlib")),
    "rgba8-striped-lzw": ((120, 133, 4), np.uint8, dict(rowsperstrip=5, compression="lzw", photometric="rgb",
                                                         extrasamples=["unassalpha"])),  # fmt: skip
}

STEPS = {
    "preset-3x3": ["edge_enhance"],
    "gaussian-31x31": ["gaussian:5"],
    "even-4x4": ["1 2 3 4; 0 1 0 2; 3 0 1 1; 1 1 1 1"],
    "chain": ["blur", "sharpen"],
    "median": ["median:3"],
    "gaussian-blur": ["gaussian_blur:2"],
}


def _image(shape, dtype, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return (rng.random(shape) * 300 - 50).astype(dtype)
    top = np.iinfo(dtype).max
    return rng.integers(0, top, size=shape, endpoint=True).astype(dtype)


def _write(path, array, options) -> None:
    options = dict(options)
    tifffile.imwrite(path, array, metadata=None, **options)


def _in_memory(array, steps, border, cval=0.0, repeat=1) -> np.ndarray:
    for step in list(steps) * repeat:
        array = engine.filter_array(array, as_kernel(step), border=border, cval=cval)
    return array


def _budget(path, chain, border="nearest", tile=(16, 16)) -> int:
    """A budget of one and a half times the least one band of any step needs, as
    the refusal of a budget of one byte states it: bands of about 24 rows."""
    needs = []
    for step in chain:
        with pytest.raises(StreamingError) as refused:
            filter_tiff(path, path.with_name("never.tif"), step, border=border, memory=1, tile=tile)
        needs.append(int(re.search(r"about [\d.]+ MiB \((\d+) bytes\)", str(refused.value)).group(1)))
    return max(needs) * 3 // 2


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    made = {}
    for seed, (name, (shape, dtype, options)) in enumerate(FILES.items()):
        array = _image(shape, dtype, seed)
        path = folder / f"{name}.tif"
        _write(path, array, options)
        made[name] = (path, array)
    return made


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("steps", STEPS, ids=list(STEPS))
@pytest.mark.parametrize("name", FILES)
def test_bands_give_the_bytes_of_memory(files, tmp_path, name, steps, border):
    path, array = files[name]
    chain = STEPS[steps]
    out = tmp_path / "out.tif"
    memory = _budget(path, chain, border)
    report = filter_tiff(path, out, chain, border=border, cval=77.0, memory=memory, tile=(16, 16))
    want = _in_memory(array, chain, border, cval=77.0)
    got = tifffile.imread(out)
    assert report.bands > report.passes  # several bands in some pass
    assert report.passes == len(chain)
    assert got.dtype == want.dtype and got.shape == want.shape == report.shape
    assert np.array_equal(got, want, equal_nan=True)


@pytest.mark.parametrize("border", BORDERS)
def test_separable_passes_in_bands_give_the_bytes_of_memory(files, tmp_path, border):
    # Matrix products of float32 rows: bands whose last batch of rows is
    # cut short elsewhere than the whole image's.
    path, array = files["float32-tiled-deflate"]
    chain = ["gaussian:5"]
    out = tmp_path / "out.tif"
    report = filter_tiff(path, out, chain, border=border, cval=77.0, method="separable",
                         memory=_budget(path, chain, border), tile=(16, 16))  # fmt: skip
    want = engine.filter_array(array, as_kernel(chain[0]), border=border, cval=77.0, method="separable")
    assert report.bands > 1
    assert np.array_equal(tifffile.imread(out), want, equal_nan=True)


@pytest.mark.parametrize("border", ["reflect", "wrap", "nearest"])
def test_megapixels_in_many_bands(tmp_path, border):
    array = _image((1100, 1500, 3), np.uint8, 7)
    path = tmp_path / "big.tif"
    _write(path, array, dict(tile=(64, 64), photometric="rgb"))
    chain = ["edge_enhance", "gaussian:5"]
    report = filter_tiff(path, tmp_path / "out.tif", chain, border=border, memory=6 << 20, tile=(64, 64))
    assert report.bands >= 2 * 4
    assert report.peak_bytes <= 6 << 20
    assert np.array_equal(tifffile.imread(tmp_path / "out.tif"), _in_memory(array, chain, border))


def test_each_tile_is_decoded_about_once(tmp_path):
    array = _image((600, 300), np.uint16, 3)
    path = tmp_path / "in.tif"
    _write(path, array, dict(tile=(32, 32)))
    report = filter_tiff(path, tmp_path / "out.tif", "blur", memory=400_000, tile=(16, 16))
    tiles = (600 // 32 + 1) * (300 // 32 + 1)
    assert report.bands > 5
    assert tiles <= report.decoded <= tiles + 2 * (300 // 32 + 1)


def test_repeat_runs_the_chain_again(tmp_path):
    array = _image((140, 90, 3), np.uint8, 4)
    path = tmp_path / "in.tif"
    _write(path, array, dict(photometric="rgb", rowsperstrip=3))
    chain = ["blur", "median:3"]
    report = filter_tiff(path, tmp_path / "out.tif", chain, border="mirror", repeat=2,
                         memory=_budget(path, chain, "mirror"), tile=(16, 16))  # fmt: skip
    assert report.passes == 4
    twice = _in_memory(array, chain, "mirror", repeat=2)
    assert not np.array_equal(twice, _in_memory(array, chain, "mirror"))
    assert np.array_equal(tifffile.imread(tmp_path / "out.tif"), twice)


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("shape", [(1, 300, 3), (300, 1), (5, 7)], ids=["one-row", "one-column", "tiny"])
def test_awkward_sizes(tmp_path, shape, border):
    array = _image(shape, np.uint8, 5)
    path = tmp_path / "in.tif"
    _write(path, array, dict(photometric="rgb" if len(shape) == 3 else "minisblack", rowsperstrip=16))
    memory = 3000 if shape == (300, 1) else 200_000
    for chain in (["gaussian:5"], ["gaussian_blur:2"], ["blur", "emboss"]):
        out = tmp_path / "out.tif"
        if border == "valid":
            with pytest.raises(engine.FilterError):
                _in_memory(array, chain, border)
            with pytest.raises(StreamingError, match="valid"):
                filter_tiff(path, out, chain, border=border, memory=memory, tile=(16, 16))
            assert not out.exists()
            continue
        report = filter_tiff(path, out, chain, border=border, cval=9, memory=memory, tile=(16, 16))
        if shape[0] == 300:
            assert report.bands > report.passes
        assert np.array_equal(tifffile.imread(out).reshape(shape), _in_memory(array, chain, border, cval=9))


def test_output_is_a_tiled_bigtiff_like_the_input(files, tmp_path):
    path, array = files["rgba8-striped-lzw"]
    out = tmp_path / "out.tif"
    report = filter_tiff(path, out, "sharpen", tile=(32, 64))
    with tifffile.TiffFile(out) as tif:
        page = tif.pages.first
        assert tif.is_bigtiff
        assert page.is_tiled and (page.tilelength, page.tilewidth) == (32, 64)
        assert page.dtype == np.uint8 and page.shape == array.shape
        assert page.photometric == tifffile.PHOTOMETRIC.RGB
        assert page.extrasamples == (tifffile.EXTRASAMPLE.UNASSALPHA,)
        assert page.compression == tifffile.COMPRESSION.LZW
    assert report.compression == "lzw"
    assert report.bands == 1  # the default budget holds it whole


def test_lossy_input_is_written_uncompressed(tmp_path):
    array = _image((64, 64, 3), np.uint8, 6)
    path = tmp_path / "in.tif"
    _write(path, array, dict(photometric="rgb", compression="jpeg", tile=(16, 16)))
    out = tmp_path / "out.tif"
    report = filter_tiff(path, out, "blur", memory=300_000, tile=(16, 16))
    with tifffile.TiffFile(out) as tif:
        assert tif.pages.first.compression == tifffile.COMPRESSION.NONE
    assert report.compression == "none"
    decoded = tifffile.imread(path)
    assert np.array_equal(tifffile.imread(out), _in_memory(decoded, ["blur"], "nearest"))


def test_progress_counts_every_band(files, tmp_path):
    path, array = files["grey16-striped"]
    calls = []
    report = filter_tiff(path, tmp_path / "out.tif", ["blur", "smooth"], memory=_budget(path, ["blur"]),
                         tile=(16, 16), progress=lambda done, total: calls.append((done, total)))  # fmt: skip
    assert calls == [(k, report.bands) for k in range(1, report.bands + 1)]


def test_a_budget_too_small_for_one_band_is_refused(files, tmp_path):
    path, _ = files["rgb8-tiled-bigtiff"]
    out = tmp_path / "out.tif"
    with pytest.raises(StreamingError, match=r"needs a memory budget of about .* MiB .*give at least that") as refused:
        filter_tiff(path, out, "gaussian:5", memory=50_000)
    assert list(tmp_path.iterdir()) == []
    needed = int(re.search(r"about [\d.]+ MiB \((\d+) bytes\)", str(refused.value))[1])
    with pytest.raises(StreamingError):
        filter_tiff(path, out, "gaussian:5", memory=needed - 1)
    filter_tiff(path, out, "gaussian:5", memory=needed)  # what the message asks for does fit
    assert out.exists()


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
@pytest.mark.parametrize("chain", [["blur"], ["blur", "sharpen"]], ids=["one-step", "chain"])
def test_a_failure_mid_write_leaves_nothing(files, tmp_path, monkeypatch, error, chain):
    path, array = files["rgb8-tiled-bigtiff"]
    real = engine.filter_array
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise error("stop")
        return real(*args, **kwargs)

    out = tmp_path / "out.tif"
    assert filter_tiff(path, out, chain, memory=_budget(path, chain), tile=(16, 16)).bands >= 3
    out.unlink()
    monkeypatch.setattr(streaming.engine, "filter_array", failing)
    with pytest.raises(error, match="stop"):
        filter_tiff(path, out, chain, memory=_budget(path, chain), tile=(16, 16))
    assert len(calls) == 3
    assert list(tmp_path.iterdir()) == []


def test_an_existing_destination_is_kept_when_filtering_fails(files, tmp_path, monkeypatch):
    path, array = files["grey16-striped"]
    out = tmp_path / "out.tif"
    out.write_bytes(b"before")
    monkeypatch.setattr(streaming.engine, "filter_array", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        filter_tiff(path, out, "blur")
    assert out.read_bytes() == b"before"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]


def test_files_that_cannot_stream_are_refused(tmp_path):
    planar = tmp_path / "planar.tif"
    tifffile.imwrite(planar, _image((3, 20, 20), np.uint8), planarconfig="separate", photometric="rgb")
    with pytest.raises(StreamingError, match="contiguous"):
        filter_tiff(planar, tmp_path / "out.tif", "blur")
    signed = tmp_path / "signed.tif"
    tifffile.imwrite(signed, np.zeros((20, 20), np.int16))
    with pytest.raises(StreamingError, match="int16 samples"):
        filter_tiff(signed, tmp_path / "out.tif", "blur")
    text = tmp_path / "text.tif"
    text.write_text("not a tiff")
    with pytest.raises(StreamingError, match="not a TIFF"):
        filter_tiff(text, tmp_path / "out.tif", "blur")
    assert not (tmp_path / "out.tif").exists()


@dataclass(frozen=True)
class _Unbounded(NeighbourhoodFilter):
    """A filter that does not say how far it reaches."""

    @property
    def name(self) -> str:
        return "unbounded"


def test_a_filter_without_a_reach_is_refused(files, tmp_path):
    path, _ = files["grey16-striped"]
    with pytest.raises(StreamingError, match="unbounded cannot be filtered in bands"):
        filter_tiff(path, tmp_path / "out.tif", ["blur", _Unbounded()])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("border", ["nearest", "reflect", "valid"])
def test_fft_sums_that_are_exact_stream_to_the_same_bytes(files, tmp_path, border):
    path, array = files["rgb8-tiled-bigtiff"]
    kernel = as_kernel(np.arange(81).reshape(9, 9) % 7 - 3)  # integer weights: exact sums
    out = tmp_path / "out.tif"
    report = filter_tiff(path, out, kernel, border=border, method="fft", memory=_budget(path, [kernel], border),
                         tile=(16, 16))  # fmt: skip
    assert report.bands > 2 and report.inexact_fft == ()
    expected = engine.filter_array(array, kernel, border=border, method="fft")
    np.testing.assert_array_equal(tifffile.imread(out), expected)


def test_fft_sums_that_are_not_exact_are_named_and_within_the_contract(files, tmp_path):
    path, array = files["float32-tiled-deflate"]
    kernel = as_kernel(np.random.default_rng(8).random((9, 9)) - 0.4)
    out = tmp_path / "out.tif"
    report = filter_tiff(path, out, ["blur", kernel], method="fft", memory=_budget(path, ["blur", kernel]),
                         tile=(16, 16))  # fmt: skip
    assert report.bands > 4 and report.inexact_fft == ("blur", kernel.name)  # --method applies to each step
    expected = engine.filter_array(engine.filter_array(array, "blur"), kernel, method="fft")
    scale = np.abs(array).max() * np.abs(kernel.weights).sum()
    np.testing.assert_allclose(tifffile.imread(out), expected, rtol=0, atol=scale * 1e-6)
