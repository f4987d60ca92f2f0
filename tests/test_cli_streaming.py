"""`convfilter apply` on TIFFs too large for the memory budget: streamed by bands, as in memory."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image

from convfilter import cli


def run(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args], prog_name="convfilter")


@pytest.fixture(scope="module")
def tall_tiff(tmp_path_factory) -> Path:
    """A 12 MB striped RGB TIFF: 4000 rows of 1000 pixels."""
    rng = np.random.default_rng(14)
    rows = np.linspace(0, 255, 4000)[:, None, None] * np.ones((1, 1000, 3))
    image = np.clip(rows + rng.normal(0, 20, (4000, 1000, 3)), 0, 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("tiff") / "tall.tif"
    tifffile.imwrite(path, image, photometric="rgb", rowsperstrip=64)
    return path


def in_memory(source: Path, out: Path, *args) -> np.ndarray:
    result = run("apply", source, out, *args, "--memory", "64G")
    assert result.exit_code == 0, result.output
    assert "streamed" not in result.output
    return tifffile.imread(out)


@pytest.mark.parametrize("args", [
    ["-k", "edge_enhance", "-k", "median:3"],
    ["-k", "gaussian:3", "--border", "reflect"],
    ["-k", "1 2; 3 4", "--scale", "10", "--border", "wrap", "--anchor", "0,1"],
    ["-k", "gaussian_blur:2", "--border", "constant", "--cval", "50%"],
])  # fmt: skip
def test_a_tiff_too_large_for_the_budget_is_streamed_and_the_same(tall_tiff, tmp_path, args):
    expected = in_memory(tall_tiff, tmp_path / "memory.tif", *args)
    out = tmp_path / "streamed.tif"
    result = run("apply", tall_tiff, out, *args, "--memory", "28M", "--threads", "1", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["notes"][0].startswith("streamed: ")  # 12 MB held 2.5 times is over 28 MiB
    bands = int(summary["notes"][0].split()[1])
    assert bands > 1
    np.testing.assert_array_equal(tifffile.imread(out), expected)
    with tifffile.TiffFile(out) as written:
        assert written.is_bigtiff and written.pages.first.is_tiled


def test_stream_forces_streaming_of_a_small_tiff(tall_tiff, tmp_path):
    expected = in_memory(tall_tiff, tmp_path / "memory.tif", "-k", "sharpen")
    out = tmp_path / "forced.tif"
    result = run("apply", tall_tiff, out, "-k", "sharpen", "--stream")
    assert result.exit_code == 0, result.output
    assert "streamed:" in result.output and "copies no ICC profile" in result.output
    np.testing.assert_array_equal(tifffile.imread(out), expected)


def test_fft_sums_that_depend_on_the_bands_are_said_to(tall_tiff, tmp_path):
    inexact = run("apply", tall_tiff, tmp_path / "g.tif", "-k", "gaussian:2", "--method", "fft", "--stream",
                  "--memory", "28M", "--json")  # fmt: skip
    exact = run("apply", tall_tiff, tmp_path / "b.tif", "-k", "box:5", "--method", "fft", "--stream",
                "--memory", "28M", "--json")  # fmt: skip
    assert inexact.exit_code == exact.exit_code == 0, inexact.output + exact.output
    notes = json.loads(inexact.stdout)["notes"]
    assert any(n.startswith("FFT sums of gaussian:2") and "cut into bands" in n for n in notes), notes
    assert not any("FFT sums" in n for n in json.loads(exact.stdout)["notes"])
    expected = in_memory(tall_tiff, tmp_path / "memory.tif", "-k", "box:5", "--method", "fft")
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "b.tif"), expected)


def test_what_streaming_cannot_do_is_refused_before_anything_is_written(tall_tiff, tmp_path):
    two = tmp_path / "two.tif"
    tifffile.imwrite(two, np.zeros((2, 20, 30), np.uint8))
    short, damaged = tmp_path / "short.tif", tmp_path / "damaged.tif"
    short.write_bytes(tall_tiff.read_bytes()[:4])
    tifffile.imwrite(damaged, np.full((300, 40), 7, np.uint8), rowsperstrip=64, compression="zlib")
    with tifffile.TiffFile(damaged) as tiff:
        third = tiff.pages.first.dataoffsets[2]
    with open(damaged, "r+b") as fh:  # the third strip's deflate stream garbled
        fh.seek(third)
        fh.write(b"\xff" * 8)
    fifo = tmp_path / "fifo.tif"
    os.mkfifo(fifo)  # never opened: it would wait for a writer
    cases = [
        ([fifo, tmp_path / "out.tif", "-k", "blur", "--stream"], "'{}' is not a regular file".format(fifo)),
        ([tall_tiff, tmp_path / "out.png", "-k", "blur", "--stream"], "name the output .tif or .tiff"),
        ([two, tmp_path / "out.tif", "-k", "blur", "--stream"], "holds 2 images; streaming filters one"),
        ([tall_tiff, tmp_path / "out.tif", "-k", "blur", "--stream", "--channels", "R"], "cannot take --channels"),
        ([tall_tiff, tmp_path / "out.tif", "-k", "blur", "--stream", "--diff-pil"], "cannot be streamed"),
        ([tall_tiff, tmp_path / "out.tif", "-k", "blur", "--stream", "--memory", "1M"],
         "the budget is 1.00 MiB"),
        ([tall_tiff, tmp_path / "out.tif", "-k", "blur", "--stream", "--max-pixels", "1000"],
         "more than --max-pixels 1,000"),
        ([tall_tiff, tmp_path / "out.tif", "-k", "blur", "--memory", "lots"], "'lots' is not a size"),
        ([short, tmp_path / "out.tif", "-k", "blur", "--stream"], "is not a TIFF file tifffile reads"),
        ([damaged, tmp_path / "out.tif", "-k", "blur", "--stream"], "its strip 2 cannot be decoded"),
    ]  # fmt: skip
    for args, message in cases:
        result = run("apply", *args)
        assert result.exit_code in (1, 2), (args, result.output)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.output
        assert not (tmp_path / "out.tif").exists() and not (tmp_path / "out.png").exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged.tif", "fifo.tif", "short.tif", "two.tif"], args


def test_batch_streams_a_tiff_too_large_for_the_default_budget(tall_tiff, tmp_path, monkeypatch):
    from convfilter import streaming

    monkeypatch.setattr(streaming, "default_memory", lambda: 28 << 20)
    expected = in_memory(tall_tiff, tmp_path / "memory.tif", "-k", "smooth")
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "tall.tif").symlink_to(tall_tiff)
    result = run("batch", folder, "-d", tmp_path / "out", "-k", "smooth", "--threads", "1", "--json")
    assert result.exit_code == 0, result.output
    (line,) = [json.loads(x) for x in result.stdout.splitlines() if '"type": "file"' in x]
    assert line["notes"][0].startswith("streamed: ")
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out" / "tall.tif"), expected)


#: What a streamed run holds beyond its budget: Python with NumPy, Pillow, Click
#: and tifffile (about 40 MiB), and the allocator's slack and the temporaries
#: convfilter does not count (about 16 MiB measured); 64 MiB in all.
STREAMING_OVERHEAD = 64 << 20

def test_peak_memory_of_a_streamed_apply_stays_near_the_budget(tmp_path, peak_of_apply):
    rng = np.random.default_rng(20)
    image = rng.integers(0, 256, (4000, 5000, 3), dtype=np.uint8)  # 60 MB
    source = tmp_path / "big.tif"
    tifffile.imwrite(source, image, tile=(256, 256), photometric="rgb")
    del image
    budget = 32 << 20

    def peak(out: Path, memory: str) -> int:
        return peak_of_apply(source, out, "-k", "edge_enhance", "--memory", memory, "--threads", "1", "-q")

    streamed = peak(tmp_path / "streamed.tif", "32M")
    held = peak(tmp_path / "held.tif", "64G")
    assert streamed < budget + STREAMING_OVERHEAD, streamed >> 20
    assert held > 2 * 60_000_000  # in memory, input and result are held whole
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "streamed.tif"), tifffile.imread(tmp_path / "held.tif"))


# ---------------------------------------------------------------------------
# apply --scheduler: the same TIFF filtered in chunks on a Dask cluster
# ---------------------------------------------------------------------------

needs_dask = pytest.mark.skipif(
    importlib.util.find_spec("distributed") is None, reason="the Dask extra is not installed (pip install 'convfilter[dask]')"
)


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes and a scheduler on 127.0.0.1."""
    import distributed

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=":0") as local:  # fmt: skip
        yield local


@needs_dask
@pytest.mark.parametrize("args", [
    ["-k", "edge_enhance", "-k", "median:3"],
    ["-k", "1 2; 3 4", "--scale", "10", "--border", "wrap", "--anchor", "0,1"],
    ["-k", "gaussian_blur:2", "--border", "constant", "--cval", "50%", "--repeat", "2"],
])  # fmt: skip
def test_a_cluster_writes_the_file_a_streamed_apply_writes(cluster, tall_tiff, tmp_path, args):
    streamed, clustered = tmp_path / "streamed.tif", tmp_path / "clustered.tif"
    assert run("apply", tall_tiff, streamed, *args, "--stream").exit_code == 0
    result = run("apply", tall_tiff, clustered, *args, "--scheduler", cluster.scheduler_address, "--json")
    assert result.exit_code == 0, result.output
    note = json.loads(result.stdout)["notes"][0]
    assert note.startswith(f"filtered on the Dask cluster at {cluster.scheduler_address}: ") and "2 workers" in note
    assert clustered.read_bytes() == streamed.read_bytes()
    np.testing.assert_array_equal(tifffile.imread(clustered), in_memory(tall_tiff, tmp_path / "memory.tif", *args))


@needs_dask
def test_scheduler_local_starts_and_stops_its_own_cluster(tall_tiff, tmp_path):
    expected = in_memory(tall_tiff, tmp_path / "memory.tif", "-k", "sharpen", "--border", "mirror")
    out = tmp_path / "out.tif"
    result = run("apply", tall_tiff, out, "-k", "sharpen", "--border", "mirror", "--scheduler", "local",
                 "--threads", "2")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "filtered on a local Dask cluster" in result.output and "over 2 workers" in result.output
    np.testing.assert_array_equal(tifffile.imread(out), expected)


def test_what_a_cluster_cannot_do_is_refused_in_one_line(tall_tiff, tmp_path, monkeypatch):
    png = tmp_path / "small.png"
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(png)
    out = tmp_path / "out.tif"
    malformed = run("apply", tall_tiff, out, "-k", "blur", "--scheduler", "10.0.0.5")
    assert malformed.exit_code == 2 and "--scheduler" in malformed.stderr
    if importlib.util.find_spec("distributed") is not None:
        cases = [
            ([tall_tiff, tmp_path / "out.png", "--scheduler", "local"], "name the output .tif or .tiff"),
            ([png, out, "--scheduler", "local"], "is not a TIFF file tifffile reads"),
            ([tall_tiff, out, "--scheduler", "local", "--diff-pil"], "it cannot be filtered on a cluster"),
            ([tall_tiff, out, "--scheduler", "local", "-k", "box:1001", "--border", "valid"], "leaves nothing"),
            ([tall_tiff, out, "--scheduler", "tcp://127.0.0.1:9"], "cannot reach the Dask scheduler at tcp://127.0.0.1:9"),
        ]  # fmt: skip
        for args, message in cases:
            result = run("apply", *args, "-k", "blur")
            assert result.exit_code == 1, (args, result.output)
            assert result.stderr.count("\n") == 1 and message in result.stderr, (args, result.stderr)
    from convfilter import cluster

    def no_dask(address="local"):
        raise cluster.SchedulerError("--scheduler needs Dask's distributed scheduler; install it with pip")

    monkeypatch.setattr(cluster, "require_dask", no_dask)
    missing = run("apply", tall_tiff, out, "-k", "blur", "--scheduler", "local")
    assert missing.exit_code == 1 and "needs Dask's distributed scheduler" in missing.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.png"]


#: What the writing process of a cluster run holds beyond its budget: Python with
#: NumPy, Pillow, Click, tifffile, Dask and distributed (about 80 MiB), and the
#: allocator's slack and the messages in flight (about 30 MiB measured); 112 MiB in all.
CLUSTER_CLIENT_OVERHEAD = 112 << 20


@needs_dask
def test_the_writing_process_of_a_cluster_run_stays_near_the_budget(cluster, tmp_path, peak_of_apply):
    rng = np.random.default_rng(21)
    source = tmp_path / "big.tif"
    tifffile.imwrite(source, rng.integers(0, 256, (4000, 5000, 3), dtype=np.uint8), tile=(256, 256),
                     photometric="rgb")  # fmt: skip  (60 MB)
    budget = 32 << 20
    out = tmp_path / "out.tif"
    peak = peak_of_apply(source, out, "-k", "edge_enhance", "--memory", "32M", "--scheduler",
                         cluster.scheduler_address, "-q")  # fmt: skip
    assert peak < budget + CLUSTER_CLIENT_OVERHEAD, peak >> 20
    streamed = tmp_path / "streamed.tif"
    assert run("apply", source, streamed, "-k", "edge_enhance", "--stream").exit_code == 0
    assert out.read_bytes() == streamed.read_bytes()


@needs_dask
@pytest.mark.parametrize("where", ["external", "local"])
def test_ctrl_c_stops_a_cluster_run_within_a_second_leaving_nothing(cluster, tmp_path, where):
    import signal
    import subprocess
    import sys
    import time

    source = tmp_path / "big.tif"
    tifffile.imwrite(source, np.random.default_rng(22).integers(0, 256, (6000, 6000), dtype=np.uint8),
                     tile=(256, 256))  # fmt: skip
    out = tmp_path / "out" / "filtered.tif"
    out.parent.mkdir()
    address = cluster.scheduler_address if where == "external" else "local"
    child = subprocess.Popen([sys.executable, "-m", "convfilter", "apply", str(source), str(out), "-k",
                              "gaussian_blur:40", "-k", "median:5", "--scheduler", address],
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not any(out.parent.iterdir()) and time.monotonic() < deadline:  # writing has begun
            time.sleep(0.05)
        assert child.poll() is None, child.stderr.read()
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=30)
        stopped = time.monotonic() - sent
    finally:
        child.kill()
    assert child.returncode == 130 and stderr == "convfilter: error: interrupted\n", stderr
    assert stopped < 1.5, stopped  # a second, and the slack of a busy test machine
    assert list(out.parent.iterdir()) == []


def _limited_file_size(limit: int):
    """For a child process: files it writes fail (EFBIG) beyond ``limit`` bytes, as on a full disk."""
    import resource
    import signal

    def limit_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error from write(), not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_files


@pytest.mark.parametrize("how", ["--stream", "--scheduler"])
def test_a_write_that_runs_out_of_room_leaves_nothing(tall_tiff, tmp_path, how, request):
    import subprocess
    import sys

    extra = ["--stream"]
    if how == "--scheduler":
        if importlib.util.find_spec("distributed") is None:
            pytest.skip("the Dask extra is not installed")
        extra = ["--scheduler", request.getfixturevalue("cluster").scheduler_address]
    out = tmp_path / "out" / "filtered.tif"
    out.parent.mkdir()
    child = subprocess.run([sys.executable, "-m", "convfilter", "apply", str(tall_tiff), str(out), "-k", "blur",
                            "-k", "sharpen", *extra], capture_output=True, text=True, timeout=300,
                           preexec_fn=_limited_file_size(4 << 20))  # fmt: skip  (the output is 12 MB)
    assert child.returncode == 1, child.stderr
    assert child.stderr.startswith("convfilter: error: ") and child.stderr.count("\n") == 1, child.stderr
    assert "File too large" in child.stderr or "stopped short" in child.stderr
    assert list(out.parent.iterdir()) == []


#: Images of 64 megapixels (128 to 256 MB), each written as the layout says, the
#: filters each is given and its budget: together about 200 megapixels, as large as CI affords.
LARGE = {
    "rgb8-tiled": ((8000, 8000, 3), np.uint8, dict(tile=(256, 256), photometric="rgb"), ["edge_enhance"], "48M"),
    "grey16-striped-deflate": ((8000, 8000), np.uint16, dict(rowsperstrip=64, compression="zlib"),
                               ["gaussian:2"], "48M"),
    # a neighbourhood filter's float64 working copies need more room for one band of 256 rows
    "float32-tiled": ((8000, 8000), np.float32, dict(tile=(256, 256)), ["sharpen", "median:3"], "96M"),
}  # fmt: skip


def _large_image(shape, dtype) -> np.ndarray:
    rng = np.random.default_rng(23)
    if np.dtype(dtype).kind == "f":
        return rng.standard_normal(shape, dtype=np.float32) * 100
    ramp = np.linspace(0, np.iinfo(dtype).max * 0.8, shape[1], dtype=np.float32)
    ramp = ramp[None, :, None] if len(shape) == 3 else ramp[None, :]
    return (ramp + rng.integers(0, np.iinfo(dtype).max // 5, shape, dtype=dtype)).astype(dtype)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["--stream", "--scheduler"])
@pytest.mark.parametrize("name", LARGE)
def test_64_megapixels_under_a_small_budget_are_filtered_exactly(tmp_path, name, how, request, peak_of_apply):
    from convfilter import engine

    shape, dtype, options, steps, memory = LARGE[name]
    extra = ["--stream"]
    overhead = STREAMING_OVERHEAD
    if how == "--scheduler":
        if importlib.util.find_spec("distributed") is None:
            pytest.skip("the Dask extra is not installed")
        extra = ["--scheduler", request.getfixturevalue("cluster").scheduler_address]
        overhead = CLUSTER_CLIENT_OVERHEAD
    image = _large_image(shape, dtype)
    source, out = tmp_path / "big.tif", tmp_path / "out.tif"
    tifffile.imwrite(source, image, metadata=None, **options)
    budget = int(memory[:-1]) << 20
    kernels = [arg for step in steps for arg in ("-k", step)]
    peak = peak_of_apply(source, out, *kernels, "--memory", memory, "--max-pixels", "0", *extra, "-q", timeout=600)
    assert image.nbytes > 2.5 * budget and peak < budget + overhead, (image.nbytes >> 20, peak >> 20)
    for step in steps:  # the oracle: the engine on the whole image in memory
        image = engine.filter_array(image, step)
    np.testing.assert_array_equal(tifffile.imread(out), image)
