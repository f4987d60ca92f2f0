"""Hostile input: corrupt, truncated, bomb and non-file inputs never crash or hang convfilter.

Every case is generated here. For PNG, JPEG, GIF, TIFF, BMP and WebP: a valid
file, the file truncated at many offsets, single bytes flipped in the header
and in the data, headers claiming enormous sizes (decompression bombs),
zero-byte and text files, and directories and FIFOs named like images.
Each goes through ``convfilter apply`` (in-process, Click's CliRunner);
the result must be exit 0 with a valid output image, or exit 1 with exactly
one ``convfilter: error:`` line naming the file, and in both cases no
traceback, no temporary file, the input unchanged and a run of a few
seconds at most. Exit 0 is right only when Pillow's strict full decode of
the input succeeds (every frame loaded, truncated data an error: the oracle
of test_strict_decoding.py), so every file Pillow rejects must exit 1. A
handful also go through the installed executable with a memory limit.

``python tests/test_hostile_files.py`` prints the table of outcomes quoted
in docs/reliability.md.
"""

from __future__ import annotations

import hashlib
import io
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import PIL
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from convfilter import cli, images
from convfilter.kernels import KernelSpecError, Kernel, parse_kernel
from convfilter.neighbourhood import NeighbourhoodFilter
from test_strict_decoding import strict_decode

EXECUTABLE = Path(sys.executable).with_name("convfilter")
FORMATS = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "TIFF": ".tif", "BMP": ".bmp", "WEBP": ".webp"}
SECONDS_PER_RUN = 5.0

#: Pillow before 13 cannot even parse some bomb headers (JPEG SOF, WebP VP8X):
#: still one clean error line, but without the pixel count to quote.
BOMB_MESSAGE = "more than the limit" if int(PIL.__version__.split(".")[0]) >= 13 else ""


# --- the corpus -------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One hostile input. ``data`` is None for a directory or FIFO; ``expect`` is
    "ok" (must decode), "error" (must fail cleanly) or "either"."""

    fmt: str
    kind: str
    detail: str
    data: bytes | None
    expect: str
    message: str = ""  # a fragment the error line must hold

    @property
    def suffix(self) -> str:
        return FORMATS.get(self.fmt, ".png")


def _picture(seed: int, size=(24, 16)) -> Image.Image:
    rng = np.random.default_rng(seed)
    width, height = size
    base = np.add.outer(np.arange(height) * 9, np.arange(width) * 5)[..., None] + [0, 60, 120]
    noise = rng.integers(0, 40, (height, width, 3))
    return Image.fromarray(((base + noise) % 256).astype(np.uint8))


@lru_cache(maxsize=None)
def valid_file(fmt: str) -> bytes:
    """A small valid file of ``fmt`` exercising its usual features."""
    buffer = io.BytesIO()
    if fmt == "PNG":
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text("Comment", "hostile test")
        _picture(1).convert("RGBA").save(buffer, "PNG", pnginfo=info, dpi=(96, 96))
    elif fmt == "JPEG":
        exif = Image.Exif()
        exif[0x0112] = 6
        exif[0x010F] = "TestCam"
        _picture(2).save(buffer, "JPEG", quality=90, exif=exif.tobytes(), progressive=True)
    elif fmt == "GIF":
        frames = [_picture(seed).quantize(32) for seed in (3, 4, 5)]
        frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=[30, 40, 50], loop=0)
    elif fmt == "TIFF":
        pages = [_picture(6), _picture(7)]
        pages[0].save(buffer, "TIFF", save_all=True, append_images=pages[1:], compression="tiff_lzw")
    elif fmt == "BMP":
        _picture(8).save(buffer, "BMP")
    elif fmt == "WEBP":
        _picture(9).save(buffer, "WEBP", quality=80)
    else:
        raise ValueError(fmt)
    return buffer.getvalue()


#: How many leading bytes count as "the header" when flipping bytes.
HEADER_BYTES = {"PNG": 33, "JPEG": 20, "GIF": 13, "TIFF": 8, "BMP": 54, "WEBP": 30}


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(width: int, height: int, *, color_type: int = 2, extra: bytes = b"", idat: bytes = b"") -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + extra
            + _png_chunk(b"IDAT", idat or zlib.compress(b"")) + _png_chunk(b"IEND", b""))  # fmt: skip


@lru_cache(maxsize=None)
def png_zlib_bomb() -> bytes:
    """10000 x 10000 gray zeros: 100 MB of pixels in about 100 kB."""
    width = height = 10_000
    compressor = zlib.compressobj(9)
    row = b"\0" * (width + 1)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return _png(width, height, color_type=0, idat=data)


def _gif_frames(count: int, width: int, height: int) -> bytes:
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff")
    for _ in range(count):
        out += b"!\xf9\x04\x00\x01\x00\x00\x00"
        out += b"," + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return bytes(out + b";")


def _tiff(width: int, height: int) -> bytes:
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, 0xFFFFFFF0)]  # fmt: skip
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\0\0\0\0"


def _bmp(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + 64, 0, 0, 54) + info + b"\0" * 64


def _jpeg(width: int, height: int, sof: int = 0xC0) -> bytes:
    frame = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x11\x00\x02\x11\x00\x03\x11\x00"
    return b"\xff\xd8" + bytes([0xFF, sof]) + struct.pack(">H", len(frame) + 2) + frame + b"\xff\xd9"


def _webp_vp8x(width: int, height: int) -> bytes:
    body = b"\x10\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    chunk = b"VP8X" + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def _webp_vp8l(width: int, height: int) -> bytes:
    bits = (width - 1) | ((height - 1) << 14)
    body = b"\x2f" + struct.pack("<I", bits) + b"\0" * 16
    chunk = b"VP8L" + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def bomb_cases(fmt: str) -> list[tuple[str, bytes]]:
    """Files whose headers claim far more pixels than the default limit."""
    if fmt == "PNG":
        actl = _png_chunk(b"acTL", struct.pack(">II", 1_000_000, 0))
        return [("IHDR 100000x100000", _png(100_000, 100_000)),
                ("IHDR 2^31-1 x 1", _png(2**31 - 1, 1)),
                ("APNG claiming 1e6 frames of 1000x1000", _png(1000, 1000, extra=actl)),
                ("zlib bomb 10000x10000", png_zlib_bomb())]  # fmt: skip
    if fmt == "JPEG":
        return [("SOF0 65500x65500", _jpeg(65_500, 65_500)), ("SOF2 65500x65500", _jpeg(65_500, 65_500, 0xC2))]
    if fmt == "GIF":
        screen = b"GIF89a" + struct.pack("<HHBBB", 65535, 65535, 0, 0, 0)
        descriptor = b"," + struct.pack("<HHHHB", 0, 0, 65535, 65535, 0) + b"\x08\x02\x4c\x01\x00;"
        grows = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0, 0, 0) + descriptor
        return [("screen 65535x65535", screen + descriptor),
                ("1x1 screen, 65535x65535 frame", grows),
                ("2000 frames of 4000x4000 in 46 kB", _gif_frames(2000, 4000, 4000))]  # fmt: skip
    if fmt == "TIFF":
        return [("IFD 100000x100000", _tiff(100_000, 100_000)), ("IFD 2^32-1 x 2", _tiff(2**32 - 1, 2))]
    if fmt == "BMP":
        return [("100000x100000", _bmp(100_000, 100_000)), ("top-down 100000x-100000", _bmp(100_000, -100_000))]
    if fmt == "WEBP":
        return [("VP8X canvas 16384x16384", _webp_vp8x(16384, 16384)),
                ("VP8L 16384x16384", _webp_vp8l(16384, 16384))]  # fmt: skip
    raise ValueError(fmt)


def truncation_offsets(size: int) -> list[int]:
    head = list(range(0, min(size, 40)))
    spread = np.linspace(40, size - 1, 24).astype(int).tolist() if size > 41 else []
    return sorted(set(head + spread))


def flips(fmt: str, data: bytes, *, where: str, count: int) -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(zlib.crc32(f"{fmt}-{where}".encode()))
    header = HEADER_BYTES[fmt]
    low, high = (0, header) if where == "header" else (header, len(data))
    out = []
    for _ in range(count):
        position = int(rng.integers(low, high))
        changed = bytearray(data)
        if rng.random() < 0.5:
            changed[position] ^= 1 << int(rng.integers(0, 8))
        else:
            changed[position] = int(rng.integers(0, 256))
        if bytes(changed) != data:
            out.append((f"byte {position}", bytes(changed)))
    return out


def hostile_cases(fmt: str) -> list[Case]:
    good = valid_file(fmt)
    cases = [Case(fmt, "valid", f"{len(good)} bytes", good, "ok")]
    for offset in truncation_offsets(len(good)):
        expect = "error" if offset < HEADER_BYTES[fmt] // 2 else "either"
        cases.append(Case(fmt, "truncated", f"at {offset}", good[:offset], expect))
    cases += [Case(fmt, "flipped header", d, data, "either") for d, data in flips(fmt, good, where="header", count=16)]
    cases += [Case(fmt, "flipped data", d, data, "either") for d, data in flips(fmt, good, where="data", count=16)]
    cases += [Case(fmt, "bomb", d, data, "error", BOMB_MESSAGE) for d, data in bomb_cases(fmt)]
    cases += [
        Case(fmt, "zero bytes", "", b"", "error", "empty file"),
        Case(fmt, "text", "plain text", b"this is not a picture\n" * 3, "error", "not an image"),
        Case(fmt, "text", "HTML", b"<!doctype html><title>x</title>", "error", "not an image"),
        Case(fmt, "directory", "", None, "error", "is a directory"),
        Case(fmt, "fifo", "", None, "error", "not a regular file"),
    ]
    return cases


def all_cases() -> list[Case]:
    return [case for fmt in FORMATS for case in hostile_cases(fmt)]


# --- running one case -------------------------------------------------------------------


def digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def materialise(case: Case, directory: Path, index: int) -> Path:
    path = directory / f"in{index} {case.kind}{case.suffix}"
    if case.kind == "directory":
        path.mkdir()
    elif case.kind == "fifo":
        os.mkfifo(path)
    else:
        path.write_bytes(case.data or b"")
    return path


class FifoGuard:
    """If convfilter were blocked opening a FIFO, open its other end after a while,
    so a regression fails the test instead of hanging it."""

    def __init__(self, path: Path, seconds: float = SECONDS_PER_RUN) -> None:
        self.path, self.fired = path, False
        self.timer = threading.Timer(seconds, self._release)

    def _release(self) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return
        self.fired = True
        os.close(fd)

    def __enter__(self):
        self.timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.timer.cancel()


def run_apply(case: Case, directory: Path, index: int, *extra: str) -> dict:
    """Run ``convfilter apply`` on the case; check every rule; return the outcome."""
    source = materialise(case, directory, index)
    output = directory / f"out{index}.png"
    before = digest(source)
    args = ["apply", str(source), str(output), "-k", "blur", *extra]
    started = time.perf_counter()
    if case.kind == "fifo":
        with FifoGuard(source) as guard:
            result = CliRunner().invoke(cli.main, args, prog_name="convfilter")
        assert not guard.fired, "convfilter blocked on a FIFO"
    else:
        result = CliRunner().invoke(cli.main, args, prog_name="convfilter")
    elapsed = time.perf_counter() - started
    check_outcome(case, result.exit_code, result.stdout, result.stderr, source, output, directory, elapsed)
    assert digest(source) == before, "the input changed"
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return {"exit": result.exit_code, "seconds": elapsed, "stderr": result.stderr}


def check_pillow_decodes(case: Case, source: Path, where) -> None:
    """convfilter decoded ``source``: Pillow's strict decode of it must succeed too.

    With exit codes 0 and 1 only, this is also the converse: a file Pillow rejects exits 1.
    """
    decode = strict_decode(source, case.fmt)
    assert decode.error is None, (where, f"exit 0, but Pillow rejects the file: {decode.error}")


def check_outcome(case, code, stdout, stderr, source, output, directory, elapsed) -> None:
    where = f"{case.fmt} {case.kind} {case.detail}"
    assert code in (0, 1), (where, code, stderr)
    assert "Traceback" not in stdout + stderr, (where, stderr)
    assert elapsed < SECONDS_PER_RUN, (where, elapsed)
    assert [p.name for p in directory.iterdir() if p.name.endswith(".part")] == [], where
    lines = [line for line in stderr.splitlines() if line.strip()]
    if code == 1:
        assert case.expect != "ok", (where, stderr)
        assert len(lines) == 1, (where, lines)
        assert lines[0].startswith("convfilter: error: "), (where, lines)
        assert f"'{source}'" in lines[0], (where, lines)
        assert case.message in lines[0], (where, lines)
        assert "internal error" not in lines[0], (where, lines)
        assert not output.exists(), where
    else:
        assert case.expect != "error", (where, stdout, stderr)
        assert lines == [], (where, lines)
        with Image.open(output) as written:  # a real, complete image
            written.load()
            assert written.width >= 1 and written.height >= 1
        check_pillow_decodes(case, source, where)


# --- the tests --------------------------------------------------------------------------

KINDS = ["valid", "truncated", "flipped header", "flipped data", "bomb", "zero bytes", "text", "directory", "fifo"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_apply_on_hostile_files(fmt, kind, tmp_path, capfd):
    cases = [case for case in hostile_cases(fmt) if case.kind == kind]
    assert cases
    for index, case in enumerate(cases):
        capfd.readouterr()
        run_apply(case, tmp_path, index)
        native = capfd.readouterr().err  # C libraries writing to file descriptor 2 themselves
        assert native == "", (case.fmt, case.kind, case.detail, native)


def test_a_raised_limit_lets_a_moderate_file_through_and_a_lower_one_refuses_it(tmp_path):
    good = Case("PNG", "valid", "", valid_file("PNG"), "ok")
    assert run_apply(good, tmp_path, 0)["exit"] == 0
    small = Case("PNG", "too large", "", valid_file("PNG"), "error", "384 pixels, more than the limit of 383")
    assert run_apply(small, tmp_path, 1, "--max-pixels", "383")["exit"] == 1


def test_apply_on_devices_and_links_to_them(tmp_path):
    for index, device in enumerate(["/dev/zero", "/dev/urandom", "/dev/null"]):
        link = tmp_path / f"device{index}.png"
        link.symlink_to(device)
        case = Case("PNG", "device", device, None, "error", "not a regular file")
        output = tmp_path / f"out{index}.png"
        result = CliRunner().invoke(cli.main, ["apply", str(link), str(output), "-k", "blur"])
        check_outcome(case, result.exit_code, result.stdout, result.stderr, link, output, tmp_path, 0)


def test_libtiff_never_prints_on_stderr_itself(capfd):
    """Pillow leaves libtiff's error handler printing to file descriptor 2."""
    good = valid_file("TIFF")
    with Image.open(io.BytesIO(good)) as probe:
        strip = int(probe.tag_v2[273][0])
    broken = bytearray(good)
    broken[strip + 10 : strip + 40] = b"\xff" * 30  # LZW codes "not yet in table"
    capfd.readouterr()
    with pytest.raises(images.ImageError, match="cannot decode image"):
        images.load_image(io.BytesIO(bytes(broken)))
    assert capfd.readouterr().err == ""


# --- formats outside the allow-list ----------------------------------------------------

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 6 4\n0 setgray showpage\n%%EOF\n"


def _not_allowed(fmt: str) -> bytes:
    if fmt == "EPS":
        return EPS
    buffer = io.BytesIO()
    Image.new("RGB", (6, 4), (10, 20, 30)).save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PCX", "SGI", "DDS", "QOI", "EPS"])
def test_formats_outside_the_list_are_refused_by_name_until_allowed(fmt, tmp_path, monkeypatch):
    from PIL import EpsImagePlugin

    started = []
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript",  # no external program in tests
                        lambda tile, size, fp, scale=1, transparency=False:
                        started.append(size) or Image.new("RGB", size, (9, 9, 9)).im)  # fmt: skip
    case = Case(fmt, "not allowed", fmt, _not_allowed(fmt), "error",
                f"the file is in {fmt} format, which is not decoded by default")  # fmt: skip
    outcome = run_apply(case, tmp_path, 0)
    assert f"add --allow-format {fmt} to read it" in outcome["stderr"]
    assert started == []  # Ghostscript was never asked
    output = tmp_path / "allowed.png"
    result = CliRunner().invoke(cli.main, ["apply", str(tmp_path / f"in0 not allowed{case.suffix}"),
                                           str(output), "-k", "blur", "--allow-format", fmt.lower()])  # fmt: skip
    assert result.exit_code == 0, result.stderr
    with Image.open(output) as written:
        assert written.size == (6, 4)
    assert bool(started) == (fmt == "EPS")


def test_an_unknown_allow_format_name_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(cli.main, ["apply", "x.png", str(tmp_path / "o.png"), "-k", "blur",
                                           "--allow-format", "NOPE"])  # fmt: skip
    assert result.exit_code == 2
    assert "--allow-format: 'NOPE' is not a format Pillow reads here" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# --- standard input ----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_hostile_bytes_on_standard_input(fmt, tmp_path):
    cases = [c for c in hostile_cases(fmt) if c.data is not None and c.kind != "valid"][::4]
    for case in cases:
        output = tmp_path / "out.png"
        result = CliRunner().invoke(cli.main, ["apply", "-", str(output), "-k", "blur"], input=case.data)
        where = (case.kind, case.detail)
        assert result.exit_code in (0, 1) and "Traceback" not in result.output, where
        if result.exit_code == 1:
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("convfilter: error: standard input: "), where
            assert case.message in lines[0] and not output.exists(), where
        else:
            assert case.expect != "error", where
            output.unlink()
            source = tmp_path / f"decoded{case.suffix}"
            source.write_bytes(case.data)
            check_pillow_decodes(case, source, where)


def test_an_endless_standard_input_is_refused_in_bounded_memory(tmp_path):
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    with open("/dev/zero", "rb") as zeros:
        done = subprocess.run([str(EXECUTABLE), "apply", "-", str(tmp_path / "o.png"), "-k", "blur"],
                              stdin=zeros, capture_output=True, text=True, timeout=60, preexec_fn=limit,
                              env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "convfilter: error: standard input holds more than 1024 MiB; save the image to a file and give its name"
    )


# --- through the installed executable, with a memory limit ------------------------------

MEMORY_LIMIT = 1536 * 1024 * 1024  # far below what any of these bombs would need decoded


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


SUBPROCESS_CASES = [
    ("PNG", "IHDR 100000x100000"), ("PNG", "zlib bomb 10000x10000"),
    ("GIF", "2000 frames of 4000x4000 in 46 kB"), ("JPEG", "SOF0 65500x65500"),
    ("WEBP", "VP8X canvas 16384x16384"), ("TIFF", "IFD 100000x100000"),
]  # fmt: skip


@pytest.mark.parametrize(("fmt", "detail"), SUBPROCESS_CASES)
def test_bombs_through_the_executable_fail_fast_in_bounded_memory(fmt, detail, tmp_path):
    data = dict(bomb_cases(fmt))[detail]
    case = Case(fmt, "bomb", detail, data, "error", BOMB_MESSAGE)
    source = materialise(case, tmp_path, 0)
    output = tmp_path / "out.png"
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    started = time.perf_counter()
    done = subprocess.run([str(EXECUTABLE), "apply", str(source), str(output), "-k", "blur"],
                          capture_output=True, text=True, timeout=60, preexec_fn=_limit_memory, env=env)  # fmt: skip
    elapsed = time.perf_counter() - started - 0.0
    check_outcome(case, done.returncode, done.stdout, done.stderr, source, output, tmp_path, elapsed)
    assert done.returncode == 1


@pytest.mark.parametrize("kind", ["fifo", "zero bytes", "truncated", "directory"])
def test_non_images_through_the_executable(kind, tmp_path):
    case = next(c for c in hostile_cases("JPEG") if c.kind == kind and c.expect == "error")
    source = materialise(case, tmp_path, 0)
    output = tmp_path / "out.png"
    started = time.perf_counter()
    done = subprocess.run([str(EXECUTABLE), "apply", str(source), str(output), "-k", "blur"],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    check_outcome(case, done.returncode, done.stdout, done.stderr, source, output, tmp_path,
                  time.perf_counter() - started)  # fmt: skip
    assert done.returncode == 1


def test_corrupt_tiffs_through_the_executable_print_one_line(tmp_path):
    """The libtiff case for real: its messages would go around Python's stderr."""
    good = valid_file("TIFF")
    broken = [data for _, data in flips("TIFF", good, where="data", count=4)]
    with Image.open(io.BytesIO(good)) as probe:
        strip = int(probe.tag_v2[273][0])
    lzw = bytearray(good)
    lzw[strip + 10 : strip + 40] = b"\xff" * 30
    broken.append(bytes(lzw))
    rgb = io.BytesIO()
    Image.new("RGB", (4, 4)).save(rgb, "TIFF")
    many_samples = bytearray(rgb.getvalue())
    at = many_samples.find(struct.pack("<HHI", 277, 3, 1))  # SamplesPerPixel, SHORT, 1
    struct.pack_into("<H", many_samples, at + 8, 32771)  # Pillow logs an ERROR line before refusing
    broken.append(bytes(many_samples))
    listing = tmp_path / "cases"
    listing.mkdir()
    outcomes = Counter()
    for index, data in enumerate(broken):
        case = Case("TIFF", "corrupt", str(index), data, "either")
        source = materialise(case, listing, index)
        output = listing / f"out{index}.png"
        started = time.perf_counter()
        done = subprocess.run([str(EXECUTABLE), "apply", str(source), str(output), "-k", "blur", "-q"],
                              capture_output=True, text=True, timeout=30)  # fmt: skip
        check_outcome(case, done.returncode, done.stdout, done.stderr, source, output, listing,
                      time.perf_counter() - started)  # fmt: skip
        outcomes[done.returncode] += 1
    assert outcomes[1] >= 2  # the LZW and samples-per-pixel cases at least


def test_float_pixels_near_the_float32_limit_filter_without_warnings(tmp_path):
    values = np.array([[3.0e38, -3.0e38, 1.0], [2.5e38, 0.0, -2.9e38], [1e38, 3.3e38, -1e-30]], np.float32)
    source = tmp_path / "extreme.tif"
    Image.fromarray(values).save(source)
    for kernel in ("sobel-x", "emboss", "1 2 1; 2 4 2; 1 2 1"):
        output = tmp_path / "out.tif"
        result = CliRunner().invoke(cli.main, ["apply", str(source), str(output), "-k", kernel])
        warnings = [line for line in result.stderr.splitlines() if not line.startswith("convfilter: note:")]
        assert result.exit_code == 0 and warnings == [], (kernel, result.stderr)


# --- the same corpus through `convfilter batch` -------------------------------------------


def run_batch_on(cases: list[Case], directory: Path, *, jobs: int = 1, executable: bool = False):
    """Name every case explicitly (a NUL-separated --from-file list) and run one batch.

    Returns (exit code, {input path: JSON line}, summary line, stderr, {input path: case}).
    """
    inputs = directory / "in"
    inputs.mkdir()
    by_path = {}
    for index, case in enumerate(cases):
        path = materialise(case, inputs, index)
        by_path[str(path)] = case
    listing = directory / "list"
    listing.write_bytes(b"".join(os.fsencode(p) + b"\0" for p in by_path))
    out = directory / "out"
    args = ["batch", "--from-file", str(listing), "-0", "-d", str(out), "-k", "blur", "--json", "-j", str(jobs)]
    if executable:
        done = subprocess.run([str(EXECUTABLE), *args], capture_output=True, text=True, timeout=120)
        code, stdout, stderr = done.returncode, done.stdout, done.stderr
    else:
        result = CliRunner().invoke(cli.main, args, prog_name="convfilter")
        code, stdout, stderr = result.exit_code, result.stdout, result.stderr
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    import json

    lines = [json.loads(line) for line in stdout.splitlines()]
    files = {line["input"]: line for line in lines if line["type"] == "file"}
    summary = lines[-1]
    assert summary["type"] == "summary"
    return code, files, summary, stderr, by_path


def check_batch(code, files, summary, stderr, by_path, out: Path) -> Counter:
    assert "Traceback" not in stderr
    failures = {f"convfilter: error: {p}: {line['error']}" for p, line in files.items() if line["status"] == "failed"}
    assert set(stderr.splitlines()) == failures, "stderr holds one error line per failed file"
    outcomes = Counter()
    for path, case in by_path.items():
        where = f"{case.fmt} {case.kind} {case.detail}"
        if case.kind == "directory":  # a directory named explicitly is walked: it is empty
            assert path not in files, where
            continue
        line = files[path]
        assert line["status"] in ("ok", "failed"), (where, line)
        assert line["milliseconds"] < SECONDS_PER_RUN * 1000, (where, line)
        output = Path(line["output"]) if line["output"] else None
        if line["status"] == "failed":
            assert case.expect != "ok", (where, line)
            assert line["error"] and "internal error" not in line["error"], (where, line)
            assert case.message in line["error"], (where, line)
            assert output is None or not output.exists(), where
        else:
            assert case.expect != "error", (where, line)
            with Image.open(output) as written:
                written.load()
            check_pillow_decodes(case, Path(path), where)
        outcomes[line["status"]] += 1
    assert summary["processed"] == outcomes["ok"] and summary["failed"] == outcomes["failed"]
    assert code == (1 if outcomes["failed"] else 0)
    if out.exists():
        assert not [p for p in out.rglob("*") if p.name.endswith(".part")]
    return outcomes


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_batch_on_hostile_files_agrees_with_apply(fmt, tmp_path, capfd):
    cases = hostile_cases(fmt)
    digests = {}
    capfd.readouterr()
    code, files, summary, stderr, by_path = run_batch_on(cases, tmp_path)
    assert capfd.readouterr().err == ""
    check_batch(code, files, summary, stderr, by_path, tmp_path / "out")
    for path in by_path:
        digests[path] = digest(Path(path))
    # Every file gets the verdict apply gives it.
    apply_dir = tmp_path / "apply"
    apply_dir.mkdir()
    for index, (path, case) in enumerate(by_path.items()):
        if case.kind in ("directory", "fifo"):
            continue
        expected = run_apply(case, apply_dir, index)["exit"]
        assert files[path]["status"] == ("ok" if expected == 0 else "failed"), (case.kind, case.detail)
    for path, before in digests.items():
        assert digest(Path(path)) == before


def test_batch_executable_with_workers_on_a_mixed_hostile_corpus(tmp_path):
    cases = [case for fmt in FORMATS for case in hostile_cases(fmt)
             if case.kind in ("bomb", "valid", "zero bytes", "fifo", "text")
             or (case.kind == "truncated" and case.detail.endswith(("0", "5")))]  # fmt: skip
    started = time.perf_counter()
    code, files, summary, stderr, by_path = run_batch_on(cases, tmp_path, jobs=2, executable=True)
    assert time.perf_counter() - started < 60
    outcomes = check_batch(code, files, summary, stderr, by_path, tmp_path / "out")
    assert outcomes["ok"] >= len(FORMATS) and outcomes["failed"] > 20


# --- properties -------------------------------------------------------------------------


@st.composite
def mutated_images(draw):
    """Valid files of each format, cut, spliced and overwritten at random."""
    data = bytearray(valid_file(draw(st.sampled_from(list(FORMATS)))))
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(["cut", "overwrite", "insert", "delete"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if action == "cut":
            del data[at:]
        elif action == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[at : at + len(chunk)] = chunk
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        else:
            del data[at : at + draw(st.integers(1, 64))]
    return bytes(data)


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(st.one_of(st.binary(max_size=512), mutated_images()))
def test_load_image_gives_an_image_or_an_image_error(data):
    try:
        loaded = images.load_image(io.BytesIO(data), max_pixels=4_000_000)
    except images.ImageError as exc:
        assert str(exc).startswith("standard input")
        return
    assert isinstance(loaded, images.LoadedImage)
    assert loaded.frames and all(frame.mode == loaded.mode for frame in loaded.frames)
    assert loaded.mode in images.FILTERABLE_MODES
    images.to_array(loaded.frames[0])


@PROPERTY
@given(st.one_of(
    st.text(max_size=80),
    st.lists(st.sampled_from(["1", "-2", "0.5", "1e3", "1/3", "nan", "inf", ";", ",", " ", "\n", "[", "]",
                              "box:", "gaussian:", "sobel-x", "emboss", ":", "3", "1025", "#", "@", "e", "/"]),
             max_size=20).map("".join),
))  # fmt: skip
def test_the_kernel_parser_gives_a_kernel_or_a_kernel_spec_error(text):
    with tempfile.TemporaryDirectory() as empty:  # '@NAME' specs find no files
        previous = os.getcwd()
        os.chdir(empty)
        try:
            kernel = parse_kernel(text)
        except KernelSpecError as exc:
            assert str(exc)
            return
        finally:
            os.chdir(previous)
    if isinstance(kernel, NeighbourhoodFilter):  # a filter's name in any case ('RANK:3,0')
        assert all(side >= 0 for side in kernel.reach)
        return
    assert isinstance(kernel, Kernel)
    assert np.isfinite(kernel.weights).all() and kernel.weights.ndim == 2


# --- the table for docs/reliability.md -----------------------------------------------------------


def summary_table() -> str:
    """Run every case through ``convfilter apply`` and tabulate the outcomes."""
    rows: dict[tuple[str, str], Counter] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for index, case in enumerate(all_cases()):
            directory = Path(scratch) / str(index)
            directory.mkdir()
            outcome = run_apply(case, directory, 0)
            rows.setdefault((case.fmt, case.kind), Counter())[outcome["exit"]] += 1
            shutil.rmtree(directory)
    lines = [f"{'format':<6} {'kind':<15} {'files':>5} {'exit 0':>6} {'exit 1':>6}"]
    totals: dict[str, Counter] = {}
    for (fmt, kind), counts in rows.items():
        lines.append(f"{fmt:<6} {kind:<15} {sum(counts.values()):>5} {counts[0]:>6} {counts[1]:>6}")
        totals.setdefault(fmt, Counter()).update(counts)
    lines.append("")
    grand = Counter()
    for fmt, counts in totals.items():
        lines.append(f"{fmt:<6} {'all':<15} {sum(counts.values()):>5} {counts[0]:>6} {counts[1]:>6}")
        grand.update(counts)
    lines.append(f"{'total':<22} {sum(grand.values()):>5} {grand[0]:>6} {grand[1]:>6}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary_table())
