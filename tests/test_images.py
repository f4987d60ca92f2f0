"""images.py: modes, conversions, orientation, metadata, frames, limits, allow-list, atomic writes."""

from __future__ import annotations

import errno
import io
import os
import stat
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFilter, ImageOps

from convfilter import engine, images
from convfilter.kernels import Kernel, parse_kernel
from convfilter.options import FilterSettings, OutputSettings
from convfilter.pipeline import filter_file, filter_image


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def load_bytes(data: bytes, **options) -> images.LoadedImage:
    return images.load_image(io.BytesIO(data), **options)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR (with a valid CRC) claims ``width`` x ``height`` and has no pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b"")


# --- modes ------------------------------------------------------------------------------

MODE_CASES = [
    ("L", "PNG"), ("LA", "PNG"), ("RGB", "PNG"), ("RGBA", "PNG"), ("CMYK", "TIFF"),
    ("I;16", "PNG"), ("I;16", "TIFF"), ("I", "TIFF"), ("F", "TIFF"), ("RGB", "WEBP"),
]  # fmt: skip


def random_image(rng: np.random.Generator, mode: str, size=(7, 5)) -> Image.Image:
    width, height = size
    dtype = images.FILTERABLE_MODES[mode]
    bands = len(images.band_names(mode))
    shape = (height, width) if bands == 1 else (height, width, bands)
    if dtype.kind == "f":
        array = rng.normal(0, 1000, shape).astype(dtype)
    elif dtype == np.int32:
        array = rng.integers(-(2**31), 2**31 - 1, shape, dtype=np.int64).astype(dtype)
    else:
        array = rng.integers(0, np.iinfo(dtype).max + 1, shape).astype(dtype)
    return images.from_array(array, mode)


@pytest.mark.parametrize(("mode", "fmt"), MODE_CASES)
def test_each_mode_loads_as_itself_and_round_trips_through_save(mode, fmt, rng, tmp_path):
    if fmt == "WEBP":  # lossless WebP keeps RGB exactly
        original = random_image(rng, mode)
        data = encoded(original, fmt, lossless=True)
    else:
        original = random_image(rng, mode)
        data = encoded(original, fmt)
    loaded = load_bytes(data)
    assert loaded.mode == mode
    assert loaded.format == fmt
    array = images.to_array(loaded.frames[0])
    assert array.dtype == images.FILTERABLE_MODES[mode]
    np.testing.assert_array_equal(array, images.to_array(original))
    out = tmp_path / f"out.{fmt.lower()}"
    options = {"lossless": True} if fmt == "WEBP" else {}
    if options:
        out.write_bytes(encoded(loaded.frames[0], fmt, **options))
    else:
        images.save_image(loaded.frames, out, fmt=fmt)
    again = images.load_image(out)
    assert again.mode == mode
    np.testing.assert_array_equal(images.to_array(again.frames[0]), array)


@pytest.mark.parametrize("mode", list(images.FILTERABLE_MODES))
def test_from_array_inverts_to_array(mode, rng):
    image = random_image(rng, mode, size=(4, 3))
    array = images.to_array(image)
    assert array.shape[:2] == (3, 4)
    back = images.from_array(array, mode)
    assert back.mode == mode
    np.testing.assert_array_equal(images.to_array(back), array)
    assert images.to_array(back).dtype == images.FILTERABLE_MODES[mode]


def test_palette_becomes_rgb_and_transparent_palette_becomes_rgba(rng):
    rgb = Image.fromarray(rng.integers(0, 256, (6, 6, 3)).astype(np.uint8))
    palette = rgb.quantize(16)
    loaded = load_bytes(encoded(palette, "PNG"))
    assert loaded.source_mode == "P" and loaded.mode == "RGB"
    assert loaded.notes == ["converted mode P to RGB for filtering"]
    assert loaded.frames[0].tobytes() == palette.convert("RGB").tobytes()

    transparent = encoded(palette, "PNG", transparency=0)
    loaded = load_bytes(transparent)
    assert loaded.mode == "RGBA"
    expected = Image.open(io.BytesIO(transparent)).convert("RGBA")
    assert loaded.frames[0].tobytes() == expected.tobytes()


def test_bilevel_becomes_l_with_0_and_255():
    bilevel = Image.fromarray(np.array([[0, 1, 1], [1, 0, 0]], bool))
    loaded = load_bytes(encoded(bilevel, "PNG"))
    assert loaded.source_mode == "1" and loaded.mode == "L"
    assert loaded.notes == ["converted mode 1 to L for filtering"]
    np.testing.assert_array_equal(images.to_array(loaded.frames[0]), [[0, 255, 255], [255, 0, 0]])


@pytest.mark.skipif(int(Image.__version__.split(".")[0]) < 13, reason="older Pillow reads a YCbCr TIFF as RGB")
def test_unsupported_mode_names_it():
    with pytest.raises(images.UnsupportedModeError, match="mode YCbCr is not supported"):
        load_bytes(encoded(Image.new("YCbCr", (3, 3)), "TIFF"))


# --- EXIF orientation -------------------------------------------------------------------

@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "JPEG"])
def test_exif_orientation_is_applied_and_dropped(orientation, fmt, tmp_path):
    stored = (np.arange(6, dtype=np.uint8).reshape(2, 3) * 40 + 10).repeat(8, 0).repeat(8, 1)
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "TestCam"
    with Image.open(io.BytesIO(encoded(Image.fromarray(stored), "PNG", exif=exif.tobytes()))) as probe:
        upright = np.asarray(ImageOps.exif_transpose(probe))  # Pillow's reading is the oracle
    loaded = load_bytes(encoded(Image.fromarray(stored), fmt, exif=exif.tobytes()))
    got = images.to_array(loaded.frames[0])
    assert got.shape == upright.shape
    tolerance = 8 if fmt == "JPEG" else 0  # JPEG is lossy; the block layout still shows
    assert np.abs(got.astype(int) - upright).max() <= tolerance
    assert any("orientation" in note for note in loaded.notes) == (orientation != 1)
    written = Image.Exif()
    written.load(loaded.metadata.exif)
    assert 0x0112 not in written and written[0x010F] == "TestCam"
    out = tmp_path / f"o.{fmt.lower()}"
    images.save_image(loaded.frames, out, fmt=fmt, metadata=loaded.metadata)
    with Image.open(out) as again:
        assert 0x0112 not in again.getexif()
        assert again.getexif()[0x010F] == "TestCam"
        assert again.size == (upright.shape[1], upright.shape[0])
        assert np.abs(np.asarray(again).astype(int) - upright).max() <= tolerance


def test_a_tiffs_own_layout_tags_are_not_carried_as_exif(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "TestCam"
    loaded = load_bytes(encoded(Image.new("L", (24, 16), 3), "TIFF", exif=exif.tobytes(), dpi=(200, 200)))
    carried = Image.Exif()
    carried.load(loaded.metadata.exif)
    assert dict(carried) == {0x010F: "TestCam"}  # no width, strips, resolution, ...
    assert loaded.metadata.dpi == (200, 200)
    out = tmp_path / "o.tif"
    images.save_image(loaded.frames, out, fmt="TIFF", metadata=loaded.metadata)
    with Image.open(out) as again:
        assert again.size == (16, 24) and again.getpixel((5, 5)) == 3
        assert tuple(round(v) for v in again.info["dpi"]) == (200, 200)


# --- metadata ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "WEBP"])
def test_icc_exif_and_dpi_are_kept_and_stripped(fmt, srgb_profile, rng, tmp_path):
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    source = tmp_path / f"in.{fmt.lower()}"
    Image.fromarray(rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)).save(
        source, format=fmt, icc_profile=srgb_profile, exif=exif.tobytes(), dpi=(300, 150)
    )
    loaded = images.load_image(source)
    assert loaded.metadata.icc_profile == srgb_profile
    settings = FilterSettings(kernels=(parse_kernel("blur"),))
    kept, stripped = tmp_path / f"kept.{fmt.lower()}", tmp_path / f"stripped.{fmt.lower()}"
    filter_file(source, kept, settings)
    filter_file(source, stripped, settings, OutputSettings(strip_metadata=True))
    with Image.open(kept) as im:
        assert im.info.get("icc_profile") == srgb_profile
        assert im.getexif().get(0x010F) == "TestCam"
        if fmt != "WEBP":  # WebP has no DPI field
            assert tuple(round(v) for v in im.info["dpi"]) == (300, 150)
    with Image.open(stripped) as im:
        assert not im.info.get("icc_profile")
        assert 0x010F not in im.getexif()
        assert "dpi" not in im.info or tuple(round(v) for v in im.info["dpi"]) != (300, 150)


@pytest.mark.parametrize(
    "dpi", [(float("nan"),) * 2, (float("inf"),) * 2, (0.0, 72.0), (-5.0, 72.0), (1e12, 1e12), ("x", 1), None]
)
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "BMP"])
def test_a_dpi_no_writer_can_hold_is_dropped_not_fatal(dpi, fmt):
    metadata = images.Metadata(dpi=dpi)
    assert "dpi" not in metadata.save_options(fmt)
    images.encode_image([Image.new("RGB", (2, 2))], io.BytesIO(), fmt=fmt, metadata=metadata)


def test_tiff_with_zero_resolution_loads_and_saves(tmp_path):
    data = bytearray(encoded(Image.new("L", (4, 4), 9), "TIFF", dpi=(72, 72)))
    # XResolution and YResolution are RATIONALs; make both 72/0.
    for tag in (282, 283):
        at = data.find(struct.pack("<HH", tag, 5))
        assert at > 0
        (offset,) = struct.unpack_from("<I", data, at + 8)
        struct.pack_into("<II", data, offset, 72, 0)
    loaded = load_bytes(bytes(data))
    assert loaded.metadata.dpi is None
    images.save_image(loaded.frames, tmp_path / "o.png", fmt="PNG", metadata=loaded.metadata)
    with Image.open(tmp_path / "o.png") as again:
        assert again.size == (4, 4)


def test_an_encoder_error_names_the_output_and_is_an_output_error(tmp_path):
    with pytest.raises(images.OutputError, match=r"'.*o\.tif': TIFF cannot store"):
        images.save_image([Image.new("RGB", (2, 2))], tmp_path / "o.tif", fmt="TIFF",
                          metadata=images.Metadata(exif=b"not a TIFF structure"))  # fmt: skip
    with pytest.raises(images.OutputError, match=r"'.*o\.jpg': JPEG cannot store this image \(mode I;16\)"):
        images.save_image([Image.new("I;16", (2, 2))], tmp_path / "o.jpg", fmt="JPEG")
    assert list(tmp_path.iterdir()) == []


# --- frames -----------------------------------------------------------------------------


def frames_of(rng, count, size=(10, 8)) -> list[Image.Image]:
    return [Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3)).astype(np.uint8)) for _ in range(count)]


def test_every_gif_frame_is_filtered_like_pillow_filters_it(rng, tmp_path):
    frames = [f.quantize(32) for f in frames_of(rng, 3)]
    source = tmp_path / "anim.gif"
    frames[0].save(source, save_all=True, append_images=frames[1:], duration=[40, 50, 60], loop=2)
    loaded = images.load_image(source)
    assert len(loaded.frames) == 3
    assert loaded.encoding.durations == (40, 50, 60) and loaded.encoding.loop == 2
    settings = FilterSettings(kernels=(parse_kernel("smooth"),), border="keep")
    out = tmp_path / "anim.tif"  # lossless, so every page can be compared exactly
    result = filter_file(source, out, settings)
    assert result.frames == 3
    expected = [f.convert("RGB").filter(ImageFilter.SMOOTH) for f in frames]
    with Image.open(out) as written:
        assert written.n_frames == 3
        for index, reference in enumerate(expected):
            written.seek(index)
            assert written.convert("RGB").tobytes() == reference.tobytes(), index
    gif_out = tmp_path / "out.gif"
    filter_file(source, gif_out, settings)
    with Image.open(gif_out) as written:
        assert written.n_frames == 3
        assert [(written.seek(i), written.info["duration"])[1] for i in range(3)] == [40, 50, 60]


def test_every_tiff_page_is_filtered(rng, tmp_path):
    pages = frames_of(rng, 4)
    source = tmp_path / "pages.tif"
    pages[0].save(source, save_all=True, append_images=pages[1:])
    settings = FilterSettings(kernels=(parse_kernel("edge_enhance"),), border="keep")
    out = tmp_path / "out.tif"
    filter_file(source, out, settings)
    with Image.open(out) as written:
        assert written.n_frames == 4
        for index, page in enumerate(pages):
            written.seek(index)
            assert written.tobytes() == filter_image(page, settings).tobytes()


# --- pixel limits -----------------------------------------------------------------------


def test_limit_is_inclusive_and_checked_from_the_header():
    data = encoded(Image.new("L", (10, 10)), "PNG")
    assert load_bytes(data, max_pixels=100).size == (10, 10)
    with pytest.raises(images.ImageTooLargeError, match=r"100 pixels.*limit of 99 .*--max-pixels"):
        load_bytes(data, max_pixels=99)
    huge = png_header_only(100_000, 100_000)
    started = time.perf_counter()
    with pytest.raises(images.ImageTooLargeError, match="10,000,000,000 pixels"):
        load_bytes(huge)
    assert time.perf_counter() - started < 1


def test_pillows_own_bomb_check_never_reaches_the_caller(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    data = encoded(Image.new("L", (6, 6)), "PNG")  # 36 pixels: over twice Pillow's limit
    for limit in (0, None, 36, 1000):
        assert load_bytes(data, max_pixels=limit).size == (6, 6)  # no warning, no error
    with pytest.raises(images.ImageTooLargeError, match="more than the limit of 35"):
        load_bytes(data, max_pixels=35)
    assert Image.MAX_IMAGE_PIXELS == 10  # Pillow's setting is put back


def test_all_frames_count_toward_the_limit(rng):
    frames = [f.quantize(8) for f in frames_of(rng, 5, size=(10, 10))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    assert len(load_bytes(buffer.getvalue(), max_pixels=500).frames) == 5
    with pytest.raises(images.ImageTooLargeError, match=r"500 pixels \(5 frames of 10x10\)"):
        load_bytes(buffer.getvalue(), max_pixels=499)


def tiny_frames_gif(count: int, width: int, height: int) -> bytes:
    """A GIF whose logical screen is width x height, holding ``count`` 1x1 frames."""
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff")
    for _ in range(count):
        out += b"!\xf9\x04\x00\x01\x00\x00\x00"  # graphic control: 10 ms
        out += b"," + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return bytes(out + b";")


def test_a_small_gif_with_many_huge_frames_is_refused_before_decoding():
    # 46 kB on disk, 96 GB decoded: decoding it would get the process OOM-killed.
    data = tiny_frames_gif(2000, 4000, 4000)
    started = time.perf_counter()
    with pytest.raises(images.ImageTooLargeError, match=r"2000 frames of 4000x4000"):
        load_bytes(data)
    assert time.perf_counter() - started < 2


def test_a_png_bomb_inside_an_ico_is_refused_before_decoding():
    # ICO decodes its largest icon while opening; Pillow's check there must enforce our limit.
    width = height = 3000
    compressor = zlib.compressobj(9)
    rows = b"".join(compressor.compress(b"\0" * (width + 1)) for _ in range(height)) + compressor.flush()
    png = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
           + png_chunk(b"IDAT", rows) + png_chunk(b"IEND", b""))  # fmt: skip
    ico = struct.pack("<HHH", 0, 1, 1) + struct.pack("<BBBBHHII", 0, 0, 0, 0, 1, 32, len(png), 22) + png
    with pytest.raises(images.ImageTooLargeError, match="9,000,000 pixels, more than the limit of 1,000,000"):
        load_bytes(ico, max_pixels=1_000_000)
    assert load_bytes(ico, max_pixels=0).size == (width, height)


def test_concurrent_loads_restore_pillows_setting(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 12345)
    data = encoded(Image.new("RGB", (64, 64)), "PNG")
    errors: list[BaseException] = []

    def work(limit):
        try:
            for _ in range(30):
                load_bytes(data, max_pixels=limit)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(limit,)) for limit in (0, 5000, 10**6, 4096)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert Image.MAX_IMAGE_PIXELS == 12345


# --- formats ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PCX", "SGI", "DDS", "QOI", "SPIDER"])
def test_formats_outside_the_list_are_not_decoded(fmt):
    mode = "F" if fmt == "SPIDER" else "RGB"
    data = encoded(Image.new(mode, (4, 4), (1, 2, 3) if mode == "RGB" else 1.5), fmt)
    with pytest.raises(images.ImageError) as raised:
        load_bytes(data)
    message = str(raised.value)
    if fmt == "SPIDER":  # no signature to recognise it by: still refused, with the list
        assert "not an image, or not in an allowed format (PNG, JPEG" in message
    else:
        assert f"{fmt} format, which is not decoded by default" in message
        assert f"--allow-format {fmt}" in message
    allowed = load_bytes(data, formats=images.DEFAULT_FORMATS + (fmt,))
    assert allowed.format == fmt
    assert allowed.frames[0].getpixel((0, 0)) == ((1, 2, 3) if mode == "RGB" else 1.5)


def test_eps_never_starts_ghostscript_unless_allowed(monkeypatch):
    from PIL import EpsImagePlugin

    calls = []

    def fake_ghostscript(tile, size, fp, scale=1, transparency=False):
        calls.append(size)
        return Image.new("RGB", size, (7, 7, 7)).im

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", fake_ghostscript)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 5 4\n0 setgray showpage\n%%EOF\n"
    with pytest.raises(images.ImageError, match="EPS format, which is not decoded.*--allow-format EPS"):
        load_bytes(eps)
    assert calls == []
    loaded = load_bytes(eps, formats=("PNG", "EPS"))
    assert calls and loaded.format == "EPS" and loaded.size == (5, 4)


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"", "empty file"), (b"hello\n", "not an image"), (b"\x89PNG\r\n\x1a\n", "a damaged or unsupported PNG file")],
)
def test_not_images(data, message):
    with pytest.raises(images.ImageError, match=message):
        load_bytes(data)


# --- opening inputs ---------------------------------------------------------------------


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    unblocked = []

    def unblock():  # if the loader were stuck in open(), let it go so the test fails, not hangs
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return
        unblocked.append(True)
        os.close(fd)

    watchdog = threading.Timer(5, unblock)
    watchdog.start()
    try:
        with pytest.raises(images.ImageError, match="not a regular file"):
            images.load_image(fifo)
    finally:
        watchdog.cancel()
    assert not unblocked


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: None, "no such file"),
        (lambda p: p.symlink_to("/dev/null"), "not a regular file"),
        (lambda p: p.symlink_to(p), "Too many levels of symbolic links"),
    ],
)
def test_inputs_that_are_not_files(make, message, tmp_path):
    path = tmp_path / "thing.png"
    make(path)
    with pytest.raises(images.ImageError, match=message) as raised:
        images.load_image(path)
    assert "thing.png" in str(raised.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_input(tmp_path):
    path = tmp_path / "secret.png"
    path.write_bytes(encoded(Image.new("L", (2, 2)), "PNG"))
    path.chmod(0)
    with pytest.raises(images.ImageError, match="permission denied"):
        images.load_image(path)


# --- atomic writes ----------------------------------------------------------------------


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part"))


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"previous")

    def half_then_fail(stream):
        stream.write(b"partial data")
        raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(images.OutputError, match="cannot write '.*out.png': Input/output error"):
        images.write_atomically(target, half_then_fail)
    assert target.read_bytes() == b"previous"
    assert leftovers(tmp_path) == []


def test_an_interrupt_while_writing_removes_the_temporary(tmp_path):
    target = tmp_path / "out.png"

    def interrupted(stream):
        stream.write(b"x" * 1000)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        images.write_atomically(target, interrupted)
    assert list(tmp_path.iterdir()) == []


def test_a_deferred_write_is_whole_but_not_in_place_until_committed(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    target.chmod(0o640)
    with images.deferred_commits() as writes:
        images.write_atomically(target, lambda stream: stream.write(b"new data"))
    assert target.read_bytes() == b"old"  # untouched so far
    [pending] = writes
    [temporary] = leftovers(tmp_path)
    assert (tmp_path / temporary).read_bytes() == b"new data"
    done = threading.Thread(target=pending.commit)  # from another thread, as a batch does
    done.start()
    done.join()
    assert target.read_bytes() == b"new data" and stat.S_IMODE(target.stat().st_mode) == 0o640
    assert leftovers(tmp_path) == []
    pending.discard()  # after a commit: nothing to remove
    assert target.read_bytes() == b"new data"
    with pytest.raises(ValueError):
        pending.commit()


def test_a_discarded_write_leaves_the_target_as_it_was(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    with images.deferred_commits() as writes:
        images.write_atomically(target, lambda stream: stream.write(b"new"))
        images.write_atomically(tmp_path / "other.png", lambda stream: stream.write(b"new"))
    for pending in writes:
        pending.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"] and target.read_bytes() == b"old"


def test_only_writes_on_the_deferring_thread_are_deferred(tmp_path):
    with images.deferred_commits() as writes:
        elsewhere = threading.Thread(
            target=images.write_atomically, args=(tmp_path / "b.png", lambda stream: stream.write(b"b")))
        elsewhere.start()
        elsewhere.join()
        with images.deferred_commits() as inner:  # nested: the inner list, then the outer again
            images.write_atomically(tmp_path / "c.png", lambda stream: stream.write(b"c"))
        images.write_atomically(tmp_path / "a.png", lambda stream: stream.write(b"a"))
    assert (tmp_path / "b.png").read_bytes() == b"b"
    assert [w.target.name for w in inner] == ["c.png"] and [w.target.name for w in writes] == ["a.png"]
    images.write_atomically(tmp_path / "d.png", lambda stream: stream.write(b"d"))  # after the block: at once
    assert (tmp_path / "d.png").read_bytes() == b"d"
    for pending in inner + writes:
        pending.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "c.png", "d.png"]


def test_a_commit_the_disk_refuses_is_an_output_error_and_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    with images.deferred_commits() as writes:
        images.write_atomically(target, lambda stream: stream.write(b"new"))

    def failing(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(images.OutputError, match=r"cannot write '.*out.png': Input/output error"):
        writes[0].commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"] and target.read_bytes() == b"old"


def test_the_temporary_is_a_hidden_part_file_beside_the_target(tmp_path):
    seen = []

    def look(stream):
        seen.extend(leftovers(tmp_path))
        stream.write(b"data")

    images.write_atomically(tmp_path / "out.png", look)
    assert len(seen) == 1 and seen[0].startswith(".out.png.") and seen[0].endswith(".part")
    assert leftovers(tmp_path) == [] and (tmp_path / "out.png").read_bytes() == b"data"


def test_a_symlink_is_replaced_and_its_target_never_written(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"keep me")
    link = tmp_path / "out.png"
    link.symlink_to(victim)
    images.write_atomically(link, lambda s: s.write(b"new"))
    assert not link.is_symlink() and link.read_bytes() == b"new"
    assert victim.read_bytes() == b"keep me"


def test_permissions_of_a_replaced_file_are_kept_and_a_new_file_follows_umask(tmp_path):
    old = tmp_path / "old.png"
    old.write_bytes(b"x")
    old.chmod(0o640)
    images.write_atomically(old, lambda s: s.write(b"y"))
    assert stat.S_IMODE(old.stat().st_mode) == 0o640
    previous = os.umask(0o027)
    try:
        images.write_atomically(tmp_path / "new.png", lambda s: s.write(b"z"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "new.png").stat().st_mode) == 0o640


@pytest.mark.parametrize(
    ("name", "message"),
    [("adir", "is a directory"), ("adir/", "names a directory"), ("missing/out.png", "does not exist"),
     ("..", "names a directory")],
)  # fmt: skip
def test_targets_that_cannot_be_files(name, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "adir").mkdir()
    with pytest.raises(images.OutputError, match=message):
        images.write_atomically(name, lambda s: s.write(b"data"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir"]
    assert list((tmp_path / "adir").iterdir()) == []


def test_a_name_at_the_length_limit_still_gets_a_temporary(tmp_path):
    name = "é" * 120 + ".png"  # 244 bytes: too long for '.NAME.XXXX.part' in full
    images.write_atomically(tmp_path / name, lambda s: s.write(b"data"))
    assert (tmp_path / name).read_bytes() == b"data"
    assert leftovers(tmp_path) == []


def test_save_image_to_a_stream_writes_the_bytes():
    stream = io.BytesIO()
    notes = images.save_image([Image.new("L", (3, 3), 5)], stream, fmt="PNG")
    assert notes == [] and Image.open(stream).getpixel((1, 1)) == 5


# --- precision, camera JPEGs, rotation (review findings) -----------------------------


def _png_16bit_rgb(path: Path, width: int = 4, height: int = 3) -> None:
    """A 16-bit-per-channel RGB PNG, written by hand (Pillow cannot write one)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(range(width * 6)) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))  # fmt: skip


def test_sixteen_bit_colour_png_is_read_at_16_bits(tmp_path):
    path = tmp_path / "rgb16.png"
    _png_16bit_rgb(path)
    loaded = images.load_image(path)
    assert loaded.mode == "RGB;16"
    expected = np.frombuffer(bytes(range(4 * 6)), ">u2").reshape(1, 4, 3).repeat(3, axis=0)
    np.testing.assert_array_equal(images.to_array(loaded.frames[0]), expected)


@pytest.mark.parametrize("mode, fmt", [("I;16", "WEBP"), ("I;16", "GIF"), ("F", "WEBP"), ("I", "PNG")])
def test_deep_modes_are_never_cut_to_8_bits(mode, fmt):
    image = Image.new(mode, (4, 4))
    with pytest.raises(images.OutputError, match="without losing precision"):
        images.encode_image([image], io.BytesIO(), fmt=fmt)


def test_camera_jpeg_with_extra_pictures_keeps_the_main_one(tmp_path):
    main_picture = Image.new("RGB", (40, 30), (200, 10, 10))
    preview = Image.new("RGB", (8, 6), (0, 0, 255))
    path = tmp_path / "camera.jpg"
    main_picture.save(path, format="MPO", save_all=True, append_images=[preview])
    loaded = images.load_image(path)
    assert len(loaded.frames) == 1 and loaded.size == (40, 30)
    assert any("extra picture" in note for note in loaded.notes)


def test_quarter_turn_swaps_the_dpi(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "turned.jpg"
    Image.new("RGB", (30, 20)).save(path, exif=exif.tobytes(), dpi=(300, 100))
    loaded = images.load_image(path)
    assert loaded.size == (20, 30)
    assert tuple(round(v) for v in loaded.metadata.dpi) == (100, 300)


def test_a_gif_of_more_than_256_colours_is_noted(rng):
    many = Image.fromarray(rng.integers(0, 256, (32, 32, 3)).astype(np.uint8))
    few = many.quantize(16).convert("RGB")
    assert any("256 colours" in note for note in images.encode_image([many], io.BytesIO(), fmt="GIF"))
    assert images.encode_image([few], io.BytesIO(), fmt="GIF") == []
    assert images.encode_image([many], io.BytesIO(), fmt="PNG") == []


@pytest.mark.parametrize("mode", ["L", "RGB"])
@pytest.mark.parametrize("border", ["nearest", "reflect", "mirror", "wrap", "constant", "keep", "valid"])
@pytest.mark.parametrize(("spec", "method"), [("edge_enhance", "direct"), ("gaussian:2", "separable"),
                                              ("gaussian:2", "fft"), ("emboss", "fft")])  # fmt: skip
def test_pixel_rows_filter_exactly_as_the_whole_array(rng, mode, border, spec, method):
    # The engine reads strips (and FFT tiles of columns) from Pillow's buffer.
    array = rng.integers(0, 256, (203, 157, 3), dtype=np.uint8)
    image = Image.fromarray(array).convert(mode)
    rows = images.PixelRows(image)
    assert rows.shape == np.asarray(image).shape and rows.dtype == np.uint8
    kernel = parse_kernel(spec)
    expected = engine.filter_array(np.asarray(image), kernel, border=border, method=method, cval=7, threads=2)
    got = engine.filter_array(rows, kernel, border=border, method=method, cval=7, threads=2)
    np.testing.assert_array_equal(got, expected)


def test_pixel_rows_of_an_image_smaller_than_the_kernel_under_keep():
    image = Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4))
    got = engine.filter_array(images.PixelRows(image), parse_kernel("blur"), border="keep")
    np.testing.assert_array_equal(got, np.asarray(image))


def test_pixel_rows_read_rows_in_any_order():
    image = Image.fromarray(np.arange(30, dtype=np.uint8).reshape(6, 5))
    rows = images.PixelRows(image)
    index = np.array([2, 1, 0, 0, 1, 2, 3, 5, 4])
    np.testing.assert_array_equal(rows.rows(index, slice(1, 4))[..., 0], np.asarray(image)[index, 1:4])
    with pytest.raises(engine.FilterError, match="its own dtype"):
        engine.filter_array(rows, parse_kernel("blur"), out_dtype=np.float32)


@pytest.mark.parametrize("count", [2, 3])
def test_gif_frames_that_repeat_the_one_before_are_merged_with_a_note(tmp_path, count):
    # Distinct frames that filtering makes equal: reds of 255, 254 and 253 all
    # become 32 (divided by 8, rounded half up). Pillow's GIF writer merges
    # repeated frames; alone, it failed when every frame repeats the first.
    reds = [Image.new("RGB", (3, 2), (255 - i, 0, 0)) for i in range(count)]
    blue = Image.new("RGB", (3, 2), (0, 0, 255))
    sequences = {"all the same": reds, "one differs": reds[:-1] + [blue]}
    for name, frames in sequences.items():
        source = tmp_path / f"{name}.gif"
        frames[0].save(source, save_all=True, append_images=frames[1:], duration=[40] * count, loop=0)
        with Image.open(source) as check:
            assert check.n_frames == count  # distinct in the input
        out = tmp_path / f"{name}-out.gif"
        result = filter_file(source, out, FilterSettings(Kernel([[1]], scale=8)))
        with Image.open(out) as written:
            shown = []
            for index in range(written.n_frames):
                written.seek(index)
                shown.append((written.convert("RGB").getpixel((0, 0)), written.info.get("duration")))
        if name == "all the same":
            expected = [((32, 0, 0), 40 * count)]
        else:
            expected = [((32, 0, 0), 40 * (count - 1)), ((0, 0, 32), 40)]
        assert shown == expected
        merged = count - len(expected)
        notes = [note for note in result.notes if "merged" in note]
        assert (notes and f"{merged} frame" in notes[0]) if merged else not notes, result.notes


# --- decoded into memory NumPy owns ----------------------------------------------------

SHARED_CASES = [("JPEG", "RGB"), ("JPEG", "L"), ("PNG", "RGB"), ("PNG", "L"), ("TIFF", "RGB"), ("TIFF", "L"),
                ("WEBP", "RGB"), ("BMP", "RGB"), ("PPM", "RGB")]  # fmt: skip


@pytest.mark.parametrize(("fmt", "mode"), SHARED_CASES)
def test_a_still_l_or_rgb_image_is_decoded_into_a_writable_array(fmt, mode, rng, tmp_path):
    source = tmp_path / f"in.{fmt.lower()}"
    Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)).convert(mode).save(source, format=fmt)
    with Image.open(source) as pillow:
        expected = np.asarray(pillow.convert(mode))  # Pillow's own decode
    loaded = images.load_image(source)
    frame = loaded.frames[0]
    assert loaded.pixels is not None and loaded.pixels.flags.writeable
    assert loaded.pixels.shape == ((37, 53, 4) if mode == "RGB" else (37, 53))
    np.testing.assert_array_equal(loaded.pixels[..., :3] if mode == "RGB" else loaded.pixels, expected)
    np.testing.assert_array_equal(np.asarray(frame), expected)
    loaded.pixels[5, 7] = 1  # the frame is this memory
    assert frame.getpixel((7, 5)) == ((1, 1, 1) if mode == "RGB" else 1)
    assert frame.info == {}  # the file's metadata travels in loaded.metadata alone


@pytest.mark.parametrize("case", ["GIF (palette)", "ICO", "RGBA PNG", "two TIFF pages", "EXIF-turned JPEG",
                                  "16-bit PNG", "L PNG with a transparent grey"])  # fmt: skip
def test_other_images_are_read_from_pillows_memory(case, rng):
    image = Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8))
    if case == "GIF (palette)":
        data = encoded(image, "GIF")
    elif case == "ICO":
        data = encoded(image.resize((16, 16)), "ICO", sizes=[(16, 16)])
    elif case == "RGBA PNG":
        data = encoded(image.convert("RGBA"), "PNG")
    elif case == "two TIFF pages":
        data = encoded(image, "TIFF", save_all=True, append_images=[image])
    elif case == "EXIF-turned JPEG":
        exif = Image.Exif()
        exif[0x0112] = 6
        data = encoded(image, "JPEG", exif=exif.tobytes())
    elif case == "16-bit PNG":
        data = encoded(Image.fromarray(rng.integers(0, 65536, (12, 10), dtype=np.uint16)), "PNG")
    else:
        data = encoded(image.convert("L"), "PNG", transparency=7)
    loaded = load_bytes(data)
    assert loaded.pixels is None
