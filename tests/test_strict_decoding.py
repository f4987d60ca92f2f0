"""Strict decoding: convfilter decodes a damaged file exactly when Pillow's strict decode does.

Every file is generated here. For each format of the default allow-list that
Pillow writes (PNG with and without an eXIf chunk, baseline and progressive
JPEG, a 3-frame GIF, a 3-frame APNG, uncompressed and LZW TIFF, BMP, lossy
and lossless WebP, PPM, TGA, ICO) a small valid file is made from a NumPy
picture, then damaged: XOR 0xFF over 1 and over 8 bytes at offsets spread
over the header and the whole file and aimed at each frame's compressed
data in turn, and truncated at many offsets.

The oracle is Pillow's own strict full decode, computed here: the file is
opened as its format only, every frame is sought and loaded, with
``ImageFile.LOAD_TRUNCATED_IMAGES`` false and warnings ignored; any exception
means "rejected by Pillow". Then ``convfilter apply FILE OUT -k identity``
must agree:

* rejected: exit 1, exactly one ``convfilter: error:`` line naming the file,
  no traceback, no output file and no ``.part`` file;
* decoded: exit 0, and every frame of the output holds exactly the pixels
  Pillow decoded (palette images expanded to RGB, or RGBA when the palette
  has transparency, and the EXIF orientation applied, as convfilter
  documents; the identity kernel changes nothing).

A few files Pillow decodes are refused by convfilter for a documented reason
(more pixels than the default limit, a pixel mode it does not filter); the
oracle names the reason and the error line must carry it. ``convfilter
batch`` must fail exactly the files Pillow rejects.

``python tests/test_strict_decoding.py`` prints how many files each format
gives, and how many Pillow rejects and decodes.
"""

from __future__ import annotations

import io
import json
import struct
import sys
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageFile

from convfilter import cli

# --- the valid files --------------------------------------------------------------------


def picture(seed: int, size: tuple[int, int] = (24, 16)) -> Image.Image:
    """An RGB picture: a diagonal gradient in each band plus noise (compresses, but not to nothing)."""
    rng = np.random.default_rng(seed)
    width, height = size
    base = np.add.outer(np.arange(height) * 9, np.arange(width) * 5)[..., None] + [0, 60, 120]
    noise = rng.integers(0, 40, (height, width, 3))
    return Image.fromarray(((base + noise) % 256).astype(np.uint8))


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


ORIENTATION = 0x0112


def exif_rotated_a_quarter() -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # shown turned 90 degrees clockwise: the 24x16 file becomes 16x24
    exif[0x010F] = "StrictCam"
    return exif.tobytes()


def animated(fmt: str, seeds: tuple[int, ...], **options) -> bytes:
    frames = [picture(seed) for seed in seeds]
    if fmt == "GIF":
        frames = [frame.quantize(32) for frame in frames]  # each frame with its own palette
    return encoded(frames[0], fmt, save_all=True, append_images=frames[1:], **options)


@dataclass(frozen=True)
class Variant:
    """One kind of valid file: ``fmt`` is the Pillow format the oracle opens it as."""

    name: str
    fmt: str
    suffix: str
    build: Callable[[], bytes]
    frames: int = 1


VARIANTS = [
    Variant("PNG", "PNG", ".png", lambda: encoded(picture(1), "PNG")),
    Variant("PNG-eXIf", "PNG", ".png", lambda: encoded(picture(2), "PNG", exif=exif_rotated_a_quarter())),
    Variant("JPEG-baseline", "JPEG", ".jpg", lambda: encoded(picture(3), "JPEG", quality=90)),
    Variant("JPEG-progressive", "JPEG", ".jpg",
            lambda: encoded(picture(4), "JPEG", quality=90, progressive=True)),
    Variant("GIF-3-frames", "GIF", ".gif",
            lambda: animated("GIF", (5, 6, 7), duration=[30, 40, 50], loop=0), frames=3),
    Variant("APNG-3-frames", "PNG", ".png",
            lambda: animated("PNG", (8, 9, 10), duration=[30, 40, 50], loop=0), frames=3),
    Variant("TIFF-raw", "TIFF", ".tif", lambda: encoded(picture(11), "TIFF")),
    Variant("TIFF-LZW-2-pages", "TIFF", ".tif",
            lambda: animated("TIFF", (12, 13), compression="tiff_lzw"), frames=2),
    Variant("BMP", "BMP", ".bmp", lambda: encoded(picture(14), "BMP")),
    Variant("WebP-lossy", "WEBP", ".webp", lambda: encoded(picture(15), "WEBP", quality=80)),
    Variant("WebP-lossless", "WEBP", ".webp", lambda: encoded(picture(16), "WEBP", lossless=True)),
    Variant("PPM", "PPM", ".ppm", lambda: encoded(picture(17), "PPM")),
    Variant("TGA", "TGA", ".tga", lambda: encoded(picture(18), "TGA")),
    Variant("TGA-RLE", "TGA", ".tga", lambda: encoded(picture(19), "TGA", compression="tga_rle")),
    Variant("ICO", "ICO", ".ico", lambda: encoded(picture(20, (16, 16)), "ICO", sizes=[(16, 16)])),
]  # fmt: skip
BY_NAME = {variant.name: variant for variant in VARIANTS}


@lru_cache(maxsize=None)
def valid_file(name: str) -> bytes:
    return BY_NAME[name].build()


# --- where the data lies ----------------------------------------------------------------


def png_chunks(data: bytes):
    """(type, start, end) of each chunk's data."""
    at = 8
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        yield kind.decode("latin-1"), at + 8, at + 8 + length
        at += 12 + length


def _after_sub_blocks(data: bytes, at: int) -> int:
    while data[at]:
        at += data[at] + 1
    return at + 1


def gif_frame_data(data: bytes) -> list[tuple[str, int, int]]:
    flags = data[10]
    at = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    regions = []
    while at < len(data) and data[at] != 0x3B:
        if data[at] == 0x21:  # an extension: its label, then sub-blocks
            at = _after_sub_blocks(data, at + 2)
        elif data[at] == 0x2C:  # an image: descriptor, local palette, LZW code size, sub-blocks
            local = data[at + 9]
            at += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0)
            end = _after_sub_blocks(data, at + 1)
            regions.append((f"frame {len(regions) + 1} data", at + 1, end))
            at = end
        else:
            raise ValueError(f"unexpected GIF block {data[at]:#x} at {at}")
    return regions


def jpeg_scans(data: bytes) -> list[tuple[str, int, int]]:
    regions = []
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF and data[at + 1] != 0xD9:
        marker = data[at + 1]
        at += 2 + struct.unpack(">H", data[at + 2 : at + 4])[0]
        if marker == 0xDA:  # entropy-coded data runs to the next marker that is not a stuffed byte or RSTn
            start = at
            while not (data[at] == 0xFF and data[at + 1] != 0 and not 0xD0 <= data[at + 1] <= 0xD7):
                at += 1
            regions.append((f"scan {len(regions) + 1}", start, at))
    return regions


def tiff_strips(data: bytes) -> list[tuple[str, int, int]]:
    regions = []
    with Image.open(io.BytesIO(data)) as image:
        for page in range(image.n_frames):
            image.seek(page)
            for strip, (offset, count) in enumerate(zip(image.tag_v2[273], image.tag_v2[279])):
                regions.append((f"page {page + 1} strip {strip + 1}", int(offset), int(offset) + int(count)))
    return regions


def data_regions(name: str) -> list[tuple[str, int, int]]:
    """Where the pixels (each frame's, for animations) and the EXIF lie: (label, start, end)."""
    data = valid_file(name)
    fmt = BY_NAME[name].fmt
    if fmt == "PNG":
        labels = {"IDAT": "frame 1 data (IDAT)", "eXIf": "eXIf"}
        regions, frame = [], 1
        for kind, start, end in png_chunks(data):
            if kind == "fdAT":
                frame += 1
                regions.append((f"frame {frame} data (fdAT)", start, end))
            elif kind in labels:
                regions.append((labels[kind], start, end))
        return regions
    if fmt == "GIF":
        return gif_frame_data(data)
    if fmt == "JPEG":
        return jpeg_scans(data)
    if fmt == "TIFF":
        return tiff_strips(data)
    if fmt == "BMP":
        return [("pixels", struct.unpack("<I", data[10:14])[0], len(data))]
    if fmt == "WEBP":
        kind, size = struct.unpack("<4sI", data[12:20])
        return [(f"{kind.decode().strip()} bitstream", 20, 20 + size)]
    if fmt == "PPM":
        header = len(b"\n".join(data.split(b"\n", 3)[:3])) + 1  # magic, size, maxval lines
        return [("pixels", header, len(data))]
    if fmt == "TGA":
        footer = 26 if data.endswith(b"TRUEVISION-XFILE.\0") else 0
        return [("pixels", 18, len(data) - footer)]
    if fmt == "ICO":
        size, offset = struct.unpack("<II", data[14:22])
        return [("embedded image", offset, offset + size)]
    raise ValueError(name)


def where(regions: list[tuple[str, int, int]], offset: int) -> str:
    for label, start, end in regions:
        if start <= offset < end:
            return label
    return "header" if offset < min(start for _, start, _ in regions) else "outside the data"


# --- the damaged files ------------------------------------------------------------------


@dataclass(frozen=True)
class Damaged:
    """One generated file: ``kind`` is "valid", "flip 1 byte", "flip 8 bytes" or "truncated"."""

    variant: str
    kind: str
    offset: int
    place: str
    data: bytes

    @property
    def label(self) -> str:
        if self.kind == "valid":
            return f"{self.variant} valid file ({len(self.data)} bytes)"
        return f"{self.variant} {self.kind} at {self.offset} ({self.place})"

    @property
    def slug(self) -> str:
        return f"{self.kind.replace(' ', '-')}-at-{self.offset}"


def flip_offsets(size: int, regions: list[tuple[str, int, int]]) -> list[int]:
    """Offsets in the first 32 bytes, spread over the file, and aimed at each region in turn."""
    header = list(range(0, 32, 3))
    spread = np.linspace(32, size - 1, 16).round().astype(int).tolist()
    per_region = max(3, 9 // len(regions))
    aimed = [start + (end - start) * k // (per_region + 1) for _, start, end in regions
             for k in range(1, per_region + 1)]  # fmt: skip
    return sorted(set(header + spread + aimed))


def cut_offsets(size: int, regions: list[tuple[str, int, int]]) -> list[int]:
    """Lengths to keep: short headers, spread over the file, mid-region and one byte short of its end."""
    header = [0, 1, 2, 4, 8, 12, 16, 24, 32]
    spread = np.linspace(32, size - 1, 10).round().astype(int).tolist()
    aimed = [offset for _, start, end in regions for offset in ((start + end) // 2, end - 1)]
    return sorted({offset for offset in header + spread + aimed if offset < size})


def flipped(data: bytes, offset: int, count: int) -> bytes:
    changed = bytearray(data)
    for at in range(offset, min(offset + count, len(data))):
        changed[at] ^= 0xFF
    return bytes(changed)


@lru_cache(maxsize=None)
def corpus(name: str) -> tuple[Damaged, ...]:
    """The valid file of ``name`` and every damaged variant of it."""
    good = valid_file(name)
    regions = data_regions(name)
    files = [Damaged(name, "valid", len(good), "whole file", good)]
    for offset in flip_offsets(len(good), regions):
        for count in (1, 8):
            kind = "flip 1 byte" if count == 1 else "flip 8 bytes"
            files.append(Damaged(name, kind, offset, where(regions, offset), flipped(good, offset, count)))
    for offset in cut_offsets(len(good), regions):
        files.append(Damaged(name, "truncated", offset, where(regions, offset), good[:offset]))
    return tuple(files)


# --- the oracle: Pillow's strict full decode --------------------------------------------

#: convfilter's default --max-pixels is Pillow's own limit.
PIXEL_LIMIT = int(Image.MAX_IMAGE_PIXELS or 0)

#: The modes convfilter filters, and those it converts first (docs/images.md).
FILTERED_MODES = {"L", "LA", "RGB", "RGBA", "CMYK", "I;16", "I", "F"}
CONVERTED_MODES = {"1": "L", "PA": "RGBA", "I;16L": "I;16", "I;16B": "I;16", "I;16N": "I;16"}

#: EXIF orientation -> the transpose that shows the picture upright (the EXIF standard).
UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass
class Decode:
    """Pillow's verdict on one file.

    ``error``: why Pillow rejects it. ``refusal``: Pillow decodes it but
    convfilter documents a refusal (the fragment its error line holds).
    Otherwise ``mode`` and ``frames`` are what convfilter must write.
    """

    error: str | None = None
    refusal: str | None = None
    mode: str | None = None
    frames: tuple[np.ndarray, ...] = ()

    @property
    def verdict(self) -> str:
        if self.error is not None:
            return "rejected"
        return "refused" if self.refusal is not None else "decoded"


def orientation(image: Image.Image) -> int:
    """The EXIF orientation; EXIF that cannot be read counts as none (convfilter drops it)."""
    try:
        return int(image.getexif().get(ORIENTATION, 1) or 1)
    except Exception:
        return 1


def filtered_mode(frame: Image.Image) -> str:
    if frame.mode == "P":
        return "RGBA" if frame.has_transparency_data else "RGB"
    return CONVERTED_MODES.get(frame.mode, frame.mode)


def strict_decode(path: Path, fmt: str) -> Decode:
    """Open ``path`` as ``fmt`` only, then seek and load every frame; any exception rejects it.

    Orientation is read after frame 1 is loaded, so reading it never loads pixels.
    """
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with Image.open(path, formats=[fmt]) as image:
                count = getattr(image, "n_frames", 1)
                if PIXEL_LIMIT and count * image.width * image.height > PIXEL_LIMIT:
                    return Decode(refusal="more than the limit")
                frames, pixels, turn = [], 0, 1
                for index in range(count):
                    image.seek(index)
                    pixels += image.width * image.height
                    if PIXEL_LIMIT and pixels > PIXEL_LIMIT:
                        return Decode(refusal="more than the limit")
                    image.load()
                    if index == 0:
                        turn = orientation(image)
                    frames.append(image.copy())
        except Exception as exc:  # noqa: BLE001 - any failure is Pillow's "no"
            return Decode(error=f"{type(exc).__name__}: {exc}")
        mode = filtered_mode(frames[0])
        if mode not in FILTERED_MODES:
            return Decode(refusal=f"image mode {frames[0].mode} is not supported")
        upright = [frame.convert(mode) for frame in frames]
        if turn in UPRIGHT:
            upright = [frame.transpose(UPRIGHT[turn]) for frame in upright]
        return Decode(mode=mode, frames=tuple(np.asarray(frame) for frame in upright))


# --- running convfilter and judging it --------------------------------------------------


def output_name(decode: Decode) -> str:
    """PNG holds every frame and most modes; CMYK, I and F need TIFF."""
    return "out.tif" if decode.mode in ("CMYK", "I", "F") else "out.png"


def written_frames(output: Path) -> tuple[str, list[np.ndarray], list[str]]:
    """The output's first mode, and each frame's pixels converted to it (and each frame's own mode)."""
    with Image.open(output) as written:
        written.load()
        mode = written.mode
        frames, modes = [], []
        for index in range(getattr(written, "n_frames", 1)):
            written.seek(index)
            modes.append(written.mode)
            frames.append(np.asarray(written.convert(mode)))
    return mode, frames, modes


def apply_problems(file: Damaged, decode: Decode, source: Path, output: Path, result, native: str) -> list[str]:
    """Everything wrong with convfilter's answer on ``file``; empty when it agrees with Pillow."""
    said = f"exit {result.exit_code}, stdout {result.stdout.strip()!r}, stderr {result.stderr.strip()!r}"
    problems = []
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        problems.append(f"raised {result.exception!r}")
    if "Traceback" in result.stdout + result.stderr:
        problems.append("printed a traceback")
    if native:
        problems.append(f"printed on file descriptor 2: {native!r}")
    leftovers = sorted(p.name for p in output.parent.iterdir() if p.name.endswith(".part"))
    if leftovers:
        problems.append(f"left {leftovers}")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if decode.verdict != "decoded":
        why = f"Pillow: {decode.error}" if decode.error else f"documented refusal: {decode.refusal}"
        if result.exit_code != 1:
            problems.append(f"{why}; but convfilter gave {said}")
        elif len(lines) != 1 or not lines[0].startswith("convfilter: error: "):
            problems.append(f"{why}; not exactly one error line: {said}")
        elif f"'{source}'" not in lines[0] or (decode.refusal or "") not in lines[0]:
            problems.append(f"{why}; the error line lacks the file name or reason: {said}")
        if output.exists():
            problems.append("wrote an output")
    elif result.exit_code != 0 or lines:
        problems.append(f"Pillow decodes it; but convfilter gave {said}")
    else:
        mode, frames, modes = written_frames(output)
        if mode != decode.mode:
            problems.append(f"wrote mode {mode}, Pillow's decode is {decode.mode}")
        elif len(frames) != len(decode.frames):
            problems.append(f"wrote {len(frames)} frames (modes {modes}), Pillow decodes {len(decode.frames)}")
        else:
            for index, (ours, pillows) in enumerate(zip(frames, decode.frames)):
                if ours.shape != pillows.shape:
                    problems.append(f"frame {index + 1}: shape {ours.shape}, Pillow's decode {pillows.shape}")
                elif not np.array_equal(ours, pillows):
                    difference = np.abs(ours.astype(np.float64) - pillows.astype(np.float64))
                    problems.append(f"frame {index + 1}: {np.count_nonzero(difference)} samples differ from "
                                    f"Pillow's decode, by up to {difference.max():g}")  # fmt: skip
    return [f"{file.label}: {problem}" for problem in problems]


def invoke(*args: str):
    return CliRunner().invoke(cli.main, list(args), prog_name="convfilter")


def check_apply(
    file: Damaged, directory: Path, read_native: Callable[[], str] = lambda: ""
) -> tuple[Decode, list[str]]:
    """Write ``file`` into ``directory``, decode it with Pillow, run ``convfilter apply`` and judge."""
    variant = BY_NAME[file.variant]
    directory.mkdir()
    source = directory / f"in{variant.suffix}"
    source.write_bytes(file.data)
    decode = strict_decode(source, variant.fmt)
    output = directory / output_name(decode)
    read_native()
    result = invoke("apply", str(source), str(output), "-k", "identity")
    native = read_native()
    return decode, apply_problems(file, decode, source, output, result, native)


# --- the tests --------------------------------------------------------------------------

PARAMETERS = [pytest.param(variant.name, id=variant.name) for variant in VARIANTS]


@pytest.mark.parametrize("name", PARAMETERS)
def test_the_valid_file_is_what_it_claims(name):
    """Format, frames and the feature each variant is there for; Pillow decodes it strictly."""
    data = valid_file(name)
    variant = BY_NAME[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(io.BytesIO(data), formats=[variant.fmt]) as image:
            assert image.format == variant.fmt
            assert getattr(image, "n_frames", 1) == variant.frames
            info = dict(image.info)
            exif_orientation = image.getexif().get(ORIENTATION)
    chunks = [kind for kind, _, _ in png_chunks(data)] if variant.fmt == "PNG" else []
    features = {
        "PNG": "eXIf" not in chunks and "acTL" not in chunks,
        "PNG-eXIf": "eXIf" in chunks and chunks.index("eXIf") < chunks.index("IDAT") and exif_orientation == 6,
        "JPEG-baseline": not info.get("progressive"),
        "JPEG-progressive": bool(info.get("progressive")) and len(data_regions(name)) > 1,
        "GIF-3-frames": len(data_regions(name)) == 3,
        "APNG-3-frames": "acTL" in chunks and len(data_regions(name)) == 3,
        "TIFF-raw": info.get("compression") == "raw",
        "TIFF-LZW-2-pages": info.get("compression") == "tiff_lzw",
        "BMP": data[:2] == b"BM",
        "WebP-lossy": data[12:16] == b"VP8 ",
        "WebP-lossless": data[12:16] == b"VP8L",
        "PPM": data[:2] == b"P6",
        "TGA": data[2] == 2,  # uncompressed true colour
        "TGA-RLE": data[2] == 10,  # run-length encoded true colour
        "ICO": data[:4] == b"\0\0\1\0",
    }
    assert features[name]
    assert corpus(name)[0].kind == "valid"
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / f"valid{variant.suffix}"
        path.write_bytes(data)
        assert strict_decode(path, variant.fmt).verdict == "decoded"


@pytest.mark.parametrize("name", PARAMETERS)
def test_apply_decodes_exactly_what_pillow_decodes(name, tmp_path, capfd):
    """Every damaged file: refused with one error line when Pillow rejects it, else Pillow's pixels."""
    files = corpus(name)
    flips = {file.offset for file in files if file.kind.startswith("flip")}
    assert len(flips) >= 20 and sum(file.kind == "truncated" for file in files) >= 15
    problems, wrong, verdicts = [], 0, Counter()
    for index, file in enumerate(files):
        decode, found = check_apply(file, tmp_path / str(index), lambda: capfd.readouterr().err)
        verdicts[decode.verdict] += 1
        wrong += bool(found)
        problems += found
    assert verdicts["rejected"] > 0 and verdicts["decoded"] > 0, verdicts
    assert not problems, f"{wrong} of {len(files)} files:\n" + "\n".join(problems)


def test_a_png_without_exif_with_flipped_idat_bytes_is_refused(tmp_path):
    """The case that was accepted: reading metadata decoded the image and swallowed Pillow's error."""
    good = valid_file("PNG")
    _, start, end = next(region for region in data_regions("PNG") if region[0].endswith("(IDAT)"))
    file = Damaged("PNG", "flip 8 bytes", (start + end) // 2, "IDAT", flipped(good, (start + end) // 2, 8))
    decode, problems = check_apply(file, tmp_path / "case")
    assert decode.verdict == "rejected"
    assert problems == []


@pytest.mark.parametrize("name", PARAMETERS)
def test_batch_fails_exactly_the_files_pillow_rejects(name, tmp_path):
    """A third of the corpus in one folder, through ``convfilter batch --jobs 1 --json``."""
    variant = BY_NAME[name]
    folder = tmp_path / "in"
    folder.mkdir()
    expected = {}
    for index, file in enumerate(corpus(name)[::3]):
        path = folder / f"{index:03d}-{file.slug}{variant.suffix}"
        path.write_bytes(file.data)
        expected[str(path)] = (file, strict_decode(path, variant.fmt))
    out = tmp_path / "out"
    result = invoke("batch", str(folder), "-d", str(out), "-k", "identity", "--jobs", "1", "--json")
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.stdout + result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    reports = {line["input"]: line for line in lines if line["type"] == "file"}
    assert set(reports) == set(expected)
    failures = {f"convfilter: error: {r['input']}: {r['error']}" for r in reports.values() if r["status"] == "failed"}
    assert set(result.stderr.splitlines()) == failures, "stderr holds one error line per failed file"
    problems, failed = [], 0
    for path, (file, decode) in expected.items():
        report = reports[path]
        should_fail = decode.verdict != "decoded"
        failed += should_fail
        if report["status"] != ("failed" if should_fail else "ok"):
            why = f"Pillow: {decode.error}" if decode.error else decode.refusal or "Pillow decodes it"
            problems.append(f"{file.label}: {why}; batch said {report['status']}: {report['error']}")
        elif should_fail and (report["output"] and Path(report["output"]).exists()):
            problems.append(f"{file.label}: failed but its output exists")
        elif not should_fail and not Path(report["output"]).is_file():
            problems.append(f"{file.label}: ok but no output")
    assert not problems, "\n".join(problems)
    assert lines[-1]["type"] == "summary" and lines[-1]["failed"] == failed
    assert result.exit_code == (1 if failed else 0)
    assert not [p for p in out.rglob("*") if p.name.endswith(".part")]


# --- the counts for docs/reliability.md ----------------------------------------------------------


def count_table() -> str:
    """Every file through the oracle and ``convfilter apply``: how many of each verdict."""
    header = f"{'format':<18} {'files':>5} {'rejected by Pillow':>18} {'accepted':>8} {'convfilter agrees':>17}"
    lines = [header]
    total = Counter()
    with tempfile.TemporaryDirectory() as scratch:
        for variant in VARIANTS:
            counts = Counter()
            for index, file in enumerate(corpus(variant.name)):
                decode, problems = check_apply(file, Path(scratch) / f"{variant.name}-{index}")
                counts["files"] += 1
                counts[decode.verdict] += 1
                counts["agrees"] += not problems
            accepted = counts["decoded"] + counts["refused"]
            refused = f" ({counts['refused']} refused for a documented reason)" if counts["refused"] else ""
            lines.append(f"{variant.name:<18} {counts['files']:>5} {counts['rejected']:>18} {accepted:>8}"
                         f" {counts['agrees']:>17}{refused}")  # fmt: skip
            total.update(counts)
    accepted = total["decoded"] + total["refused"]
    lines.append(f"{'total':<18} {total['files']:>5} {total['rejected']:>18} {accepted:>8} {total['agrees']:>17}")
    return "\n".join(lines)


if __name__ == "__main__":
    started = time.perf_counter()
    print(count_table())
    print(f"({time.perf_counter() - started:.1f} s)", file=sys.stderr)
