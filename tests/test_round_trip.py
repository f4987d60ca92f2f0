"""Round trip with ``-k identity``: the output holds exactly what the input holds.

A matrix of inputs is generated here (NumPy, Pillow, imagecodecs, tifffile),
each is filtered with the identity kernel into the same format, by
``convfilter apply`` and once more by one ``convfilter batch`` run, and the
output is checked against the input with readers independent of convfilter:
samples (dtype included), depth, frames and their timing, disposal, the
frames as displayed, ICC profile, compression, JPEG tables, subsampling and
comment. Then the refusals (16 bits into an 8-bit format, mode I/F into PNG)
and the options that override the input's encoding.

Each property is its own test, parametrized by route (apply or batch) and
case, so a failure names both; convfilter runs once per case and route.
"""

from __future__ import annotations

import io
import os
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image, ImageCms, JpegImagePlugin, PngImagePlugin

from convfilter import cli

WIDTH, HEIGHT = 23, 17  # odd sizes: no format gets whole blocks or rows of bytes
ICC_PROFILE = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()

#: Sample layouts of the still inputs: name -> (channels, dtype). I16 is
#: Pillow's I;16, I32 its I, F32 its F; RGB16/RGBA16 are 16 bits per channel.
LAYOUTS: dict[str, tuple[int, type]] = {
    "L": (1, np.uint8),
    "LA": (2, np.uint8),
    "RGB": (3, np.uint8),
    "RGBA": (4, np.uint8),
    "I16": (1, np.uint16),
    "I32": (1, np.int32),
    "F32": (1, np.float32),
    "RGB16": (3, np.uint16),
    "RGBA16": (4, np.uint16),
}
COLOUR_LAYOUTS = {"RGB", "RGBA", "RGB16", "RGBA16"}

#: TIFF compressions of the inputs: case-name part -> (Pillow name, TIFF tag value).
TIFF_COMPRESSIONS = {
    "none": ("raw", tifffile.COMPRESSION.NONE),
    "lzw": ("tiff_lzw", tifffile.COMPRESSION.LZW),
    "deflate": ("tiff_adobe_deflate", tifffile.COMPRESSION.ADOBE_DEFLATE),
}

#: Which still format holds which layout (PNG cannot hold I32/F32; lossless
#: WebP is 8-bit RGB(A) only; PGM/PPM have no alpha, nor signed or float samples).
STILL_FORMATS = {
    "png": ({"L", "LA", "RGB", "RGBA", "I16", "RGB16", "RGBA16"}, ".png"),
    "tiff": (set(LAYOUTS), ".tif"),
    "webp": ({"RGB", "RGBA"}, ".webp"),
    "pnm": ({"L", "I16", "RGB", "RGB16"}, None),  # .pgm for grey, .ppm for colour
}


@dataclass(frozen=True)
class Case:
    """One input of the matrix: its file name, kind and what it holds."""

    name: str
    suffix: str
    kind: str  # png, tiff, webp, pnm, gif, apng, webp-anim, jpeg
    layout: str | None = None  # LAYOUTS key, for still lossless inputs
    tiff_compression: str | None = None  # TIFF_COMPRESSIONS key
    has_icc: bool = False

    @property
    def filename(self) -> str:
        return self.name + self.suffix


def _still_cases() -> list[Case]:
    cases = []
    for layout in LAYOUTS:
        icc = layout in COLOUR_LAYOUTS
        if layout in STILL_FORMATS["png"][0]:
            cases.append(Case(f"{layout}-png", ".png", "png", layout, has_icc=icc))
        for compression in TIFF_COMPRESSIONS:
            cases.append(Case(f"{layout}-tiff-{compression}", ".tif", "tiff", layout, compression, icc))
        if layout in STILL_FORMATS["webp"][0]:
            cases.append(Case(f"{layout}-webp-lossless", ".webp", "webp", layout, has_icc=icc))
        if layout in STILL_FORMATS["pnm"][0]:
            suffix = ".pgm" if LAYOUTS[layout][0] == 1 else ".ppm"
            cases.append(Case(f"{layout}-{suffix[1:]}", suffix, "pnm", layout))
    return cases


#: The GIFs' disposal per frame. Pillow's GIF writer crops each frame to what
#: changed since the one before, so convfilter keeps a disposal only where that
#: still displays the frames as they are (all 2, or all 1 with nothing growing
#: more transparent); a mixed one is written as all 2, with a note.
GIF_DISPOSAL = {
    "anim-gif-mixed": ([2, 1, 2, 1], [2, 2, 2, 2]),
    "anim-gif-cleared": ([2, 2, 2, 2], [2, 2, 2, 2]),
    "anim-gif-kept": ([1, 1, 1, 1], [1, 1, 1, 1]),
}

# GIF holds no ICC profile that Pillow writes, so the GIFs have none.
ANIMATION_CASES = [
    *(Case(name, ".gif", "gif") for name in GIF_DISPOSAL),
    Case("anim-apng", ".png", "apng", has_icc=True),
    Case("anim-webp-lossless", ".webp", "webp-anim", has_icc=True),
]
JPEG_CASES = [
    Case("jpeg-q92-444", ".jpg", "jpeg", has_icc=True),
    Case("jpeg-q92-420-comment", ".jpg", "jpeg", has_icc=True),
]
CASES = _still_cases() + ANIMATION_CASES + JPEG_CASES
CASE_BY_NAME = {case.name: case for case in CASES}
ROUTES = ["apply", "batch"]


def cases_where(predicate) -> list:
    return [pytest.param(case, id=case.name) for case in CASES if predicate(case)]


# --- generating the inputs ---------------------------------------------------------


def samples_for(layout: str, seed_text: str) -> np.ndarray:
    """Random samples of ``layout`` holding the type's extremes.

    Pixel (0, 0) is all minimum and (0, 1) all maximum; for an alpha layout
    row 1 is fully transparent with random colour (a writer that drops the
    colour under alpha 0 shows) and row 2 fully opaque. 16-bit samples are
    random in all 16 bits, so a cut to 8 bits changes most of them.
    """
    channels, dtype = LAYOUTS[layout]
    shape = (HEIGHT, WIDTH) if channels == 1 else (HEIGHT, WIDTH, channels)
    rng = np.random.default_rng(zlib.crc32(seed_text.encode()))
    if dtype is np.float32:
        array = (rng.standard_normal(shape) * 1e4).astype(np.float32)
        info = np.finfo(np.float32)
        array[0, 2:6] = [info.max, -info.max, info.tiny, 1 / 3]
        low, high = np.float32(0), info.max
    else:
        info = np.iinfo(dtype)
        # Random 32-bit samples stay within float32's exact half-integers (below 2**23): beyond
        # them mode I is summed with float32 precision, as in Pillow, and noted.
        top = 2**23 - 1 if dtype == np.int32 else info.max
        array = rng.integers(max(info.min, -top), top, shape, dtype=dtype, endpoint=True)
        low, high = (dtype(0), info.max) if info.min == 0 else (info.min, info.max)
        if info.min < 0:
            array[0, 2] = 0
    array[0, 0] = low
    array[0, 1] = high
    if layout in {"LA", "RGBA", "RGBA16"}:
        array[1, :, -1] = 0
        array[2, :, -1] = info.max
    return array


def png_with_icc(png: bytes, icc: bytes) -> bytes:
    """``png`` with an iCCP chunk right after IHDR."""
    body = b"iCCP" + b"icc\x00\x00" + zlib.compress(icc)
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
    return png[:33] + chunk + png[33:]


def write_still(case: Case, path: Path) -> None:
    samples = samples_for(case.layout, case.name)
    icc = {"icc_profile": ICC_PROFILE} if case.has_icc else {}
    deep_colour = case.layout in {"RGB16", "RGBA16"}
    if case.kind == "png" and deep_colour:
        data = imagecodecs.png_encode(samples)
        path.write_bytes(png_with_icc(data, ICC_PROFILE) if case.has_icc else data)
    elif case.kind == "tiff" and deep_colour:
        tifffile.imwrite(
            path, samples, photometric="rgb",
            compression=TIFF_COMPRESSIONS[case.tiff_compression][1],
            extrasamples=("unassalpha",) if samples.shape[2] == 4 else None,
            iccprofile=ICC_PROFILE if case.has_icc else None,
        )  # fmt: skip
    elif case.kind == "pnm" and deep_colour:
        header = f"P6\n{WIDTH} {HEIGHT}\n65535\n".encode()
        path.write_bytes(header + samples.astype(">u2").tobytes())
    elif case.kind == "tiff":
        Image.fromarray(samples).save(path, compression=TIFF_COMPRESSIONS[case.tiff_compression][0], **icc)
    elif case.kind == "webp":
        Image.fromarray(samples).save(path, lossless=True, exact=True, **icc)
    else:  # png, pnm (Pillow writes I;16 as P5 with maxval 65535)
        Image.fromarray(samples).save(path, **icc)


FRAME_DURATIONS = [100, 40, 250, 70]


def moving_shape_frames() -> list[np.ndarray]:
    """RGBA frames: transparent background, an opaque square moving right,
    a half-transparent bar, each frame different from the one before."""
    frames = []
    for index in range(len(FRAME_DURATIONS)):
        frame = np.zeros((HEIGHT, WIDTH, 4), np.uint8)
        frame[4:10, 2 + 5 * index : 8 + 5 * index] = (255, 0, 0, 255) if index % 2 else (0, 0, 255, 255)
        frame[12:14, index : index + 3] = (10, 200, 30, 128)
        frames.append(frame)
    return frames


def write_gif(path: Path, disposal: list[int]) -> None:
    palette = [0, 0, 0, 255, 0, 0, 0, 0, 255, 255, 255, 255] + [0] * (3 * 252)
    frames = []
    for index in range(len(FRAME_DURATIONS)):
        indices = np.zeros((HEIGHT, WIDTH), np.uint8)  # index 0: transparent
        indices[4:10, 2 + 5 * index : 8 + 5 * index] = 1 + index % 2
        indices[12:14, index : index + 3] = 3
        frame = Image.frombytes("P", (WIDTH, HEIGHT), indices.tobytes())
        frame.putpalette(palette)
        frames.append(frame)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=FRAME_DURATIONS,
                   disposal=disposal, loop=0, transparency=0, optimize=False)  # fmt: skip


def write_apng(path: Path) -> None:
    frames = [Image.fromarray(frame) for frame in moving_shape_frames()]
    frames[0].save(path, format="PNG", save_all=True, append_images=frames[1:],
                   duration=FRAME_DURATIONS, disposal=[0, 1, 2, 0], blend=[0, 1, 0, 1],
                   loop=3, default_image=False, icc_profile=ICC_PROFILE)  # fmt: skip


def write_animated_webp(path: Path) -> None:
    frames = [Image.fromarray(frame) for frame in moving_shape_frames()]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=FRAME_DURATIONS,
                   loop=2, lossless=True, icc_profile=ICC_PROFILE)  # fmt: skip


def photo_like(width: int, height: int) -> np.ndarray:
    """Smooth RGB gradients with a little noise: what JPEG is made for."""
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(7)
    planes = [x / (width - 1), y / (height - 1), (x + y) / (width + height - 2)]
    image = np.stack(planes, axis=-1) * 255 + rng.normal(0, 4, (height, width, 3))
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def write_jpeg(case: Case, path: Path) -> None:
    options = {"quality": 92, "icc_profile": ICC_PROFILE}
    if case.name == "jpeg-q92-444":
        options["subsampling"] = 0
    else:
        options.update(subsampling=2, comment=b"round trip: keep me")
    Image.fromarray(photo_like(61, 45)).save(path, **options)


def write_case(case: Case, path: Path) -> None:
    writers = {"apng": write_apng, "webp-anim": write_animated_webp}
    if case.kind == "gif":
        write_gif(path, GIF_DISPOSAL[case.name][0])
    elif case.kind in writers:
        writers[case.kind](path)
    elif case.kind == "jpeg":
        write_jpeg(case, path)
    else:
        write_still(case, path)


# --- independent readers -----------------------------------------------------------


def native(array: np.ndarray) -> np.ndarray:
    """``array`` in native byte order: byte order is not depth."""
    return array.astype(array.dtype.newbyteorder("="), copy=False)


def read_pnm(path: Path) -> tuple[bytes, int, np.ndarray]:
    """Magic number, maxval and samples of a binary PGM/PPM, from its bytes."""
    data = path.read_bytes()
    tokens: list[bytes] = []
    position = 0
    while len(tokens) < 4:
        if data[position : position + 1].isspace():
            position += 1
        elif data[position : position + 1] == b"#":
            position = data.index(b"\n", position) + 1
        else:
            end = position
            while end < len(data) and not data[end : end + 1].isspace():
                end += 1
            tokens.append(data[position:end])
            position = end
    magic, width, height, maxval = tokens[0], int(tokens[1]), int(tokens[2]), int(tokens[3])
    position += 1  # the single whitespace after maxval
    channels = {b"P5": 1, b"P6": 3}[magic]
    dtype = np.dtype(">u2") if maxval > 255 else np.dtype(np.uint8)
    count = width * height * channels
    samples = np.frombuffer(data, dtype, count=count, offset=position)
    shape = (height, width) if channels == 1 else (height, width, channels)
    return magic, maxval, native(samples.reshape(shape))


def read_samples(case: Case, path: Path) -> np.ndarray:
    """The stored samples: PNG by imagecodecs, TIFF by tifffile, PNM from its
    bytes, WebP by Pillow."""
    if case.kind == "png":
        return native(imagecodecs.png_decode(path.read_bytes()))
    if case.kind == "tiff":
        return native(tifffile.imread(path))
    if case.kind == "pnm":
        return read_pnm(path)[2]
    with Image.open(path) as image:
        return np.asarray(image).copy()


def png_header(path: Path) -> tuple[int, int]:
    """(bit depth, colour type) from the IHDR chunk."""
    data = path.read_bytes()[:26]
    assert data[12:16] == b"IHDR", data
    return data[24], data[25]


def depth(case: Case, path: Path) -> tuple:
    """What the file says about its samples' depth and layout."""
    if case.kind in {"png", "apng"}:
        return png_header(path)
    if case.kind == "tiff":
        with tifffile.TiffFile(path) as tiff:
            page = tiff.pages[0]
            return (page.bitspersample, int(page.sampleformat), page.samplesperpixel,
                    int(page.photometric), tuple(int(e) for e in page.extrasamples))  # fmt: skip
    if case.kind == "pnm":
        magic, maxval, _ = read_pnm(path)
        return magic, maxval
    with Image.open(path) as image:  # webp, jpeg
        return image.mode, image.size


def icc_profile(path: Path) -> bytes | None:
    with Image.open(path) as image:
        return image.info.get("icc_profile")


def tiff_compression(path: Path) -> int:
    with tifffile.TiffFile(path) as tiff:
        return int(tiff.pages[0].compression)


def webp_bitstreams(path: Path) -> list[bytes]:
    """The fourccs of the image bitstream chunks (VP8 or VP8L), frames included."""

    def walk(data: bytes, start: int, end: int) -> list[bytes]:
        found = []
        while start + 8 <= end:
            fourcc = data[start : start + 4]
            (size,) = struct.unpack("<I", data[start + 4 : start + 8])
            if fourcc in {b"VP8 ", b"VP8L"}:
                found.append(fourcc)
            elif fourcc == b"ANMF":
                found += walk(data, start + 8 + 16, start + 8 + size)
            start += 8 + size + (size & 1)
        return found

    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP", data[:16]
    return walk(data, 12, len(data))


@dataclass
class Animation:
    """What Pillow sees in an animation, frame by frame."""

    n_frames: int
    loop: object
    durations: list
    disposal: list
    displayed: list[np.ndarray]


def animation(path: Path) -> Animation:
    with Image.open(path) as image:
        loop = image.info.get("loop")
        durations, disposal, displayed = [], [], []
        for index in range(image.n_frames):
            image.seek(index)
            image.load()
            durations.append(image.info.get("duration"))
            disposal.append(getattr(image, "disposal_method", image.info.get("disposal")))
            displayed.append(np.asarray(image.convert("RGBA")).copy())
        return Animation(image.n_frames, loop, durations, disposal, displayed)


def jpeg_facts(path: Path) -> dict:
    with Image.open(path) as image:
        return {
            "quantization": image.quantization,
            "subsampling": JpegImagePlugin.get_sampling(image),
            "comment": image.info.get("comment"),
        }


# --- running convfilter ------------------------------------------------------------


def run(*args) -> object:
    return CliRunner().invoke(cli.main, [str(a) for a in args], prog_name="convfilter")


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def describe_failure(result) -> str:
    lines = error_lines(result) or result.output.splitlines()
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return f"{type(result.exception).__name__}: {result.exception}"
    return lines[0] if lines else "(no message)"


def batch_failures(stderr: str) -> list[str]:
    """The error lines batch prints on standard error, one per failed input."""
    prefix = "convfilter: error: "
    return [line[len(prefix):] for line in stderr.splitlines() if line.startswith(prefix)]


class Conversions:
    """The matrix written once, converted once per case by apply and once by batch."""

    def __init__(self, root: Path) -> None:
        self.input_dir = root / "inputs"
        self.input_dir.mkdir()
        for case in CASES:
            write_case(case, self.input_dir / case.filename)
        self.apply_dir = root / "apply"
        self.apply_dir.mkdir()
        self.batch_dir = root / "batch"
        self._applied: dict[str, object] = {}
        self._batch = None

    def source(self, case: Case) -> Path:
        return self.input_dir / case.filename

    def apply(self, case: Case):
        if case.name not in self._applied:
            output = self.apply_dir / case.filename
            self._applied[case.name] = run("apply", self.source(case), output, "-k", "identity")
        return self._applied[case.name]

    def batch(self):
        if self._batch is None:
            self._batch = run("batch", self.input_dir, "-d", self.batch_dir, "-k", "identity", "--jobs", "1")
        return self._batch

    def output(self, route: str, case: Case) -> Path:
        """The output of ``case`` by ``route``; the test fails with convfilter's
        reason when there is none."""
        if route == "apply":
            result = self.apply(case)
            output = self.apply_dir / case.filename
            if result.exit_code != 0 or not output.exists():
                pytest.fail(f"apply exited {result.exit_code}: {describe_failure(result)}", pytrace=False)
            return output
        result = self.batch()
        output = self.batch_dir / case.filename
        reasons = [line for line in batch_failures(result.stderr) if f"{os.sep}{case.filename}:" in line]
        if not output.exists() or reasons:
            reason = reasons[0] if reasons else describe_failure(result)
            pytest.fail(f"batch wrote no {case.filename}: {reason}", pytrace=False)
        return output


@pytest.fixture(scope="module")
def conversions(tmp_path_factory: pytest.TempPathFactory) -> Conversions:
    return Conversions(tmp_path_factory.mktemp("round_trip"))


# --- the inputs are what the cases claim (checks this file, not convfilter) --------


@pytest.mark.parametrize("case", cases_where(lambda c: True))
def test_input_is_as_generated(conversions, case):
    """The generated input holds what its case says, read by the same oracles."""
    source = conversions.source(case)
    if case.layout is not None:
        expected = samples_for(case.layout, case.name)
        stored = read_samples(case, source)
        assert stored.dtype == expected.dtype and np.array_equal(stored, expected)
    if case.kind == "tiff":
        assert tiff_compression(source) == TIFF_COMPRESSIONS[case.tiff_compression][1]
    if case.kind in {"webp", "webp-anim"}:
        streams = webp_bitstreams(source)
        assert streams and set(streams) == {b"VP8L"}
    if case.kind in {"gif", "apng", "webp-anim"}:
        facts = animation(source)
        assert facts.n_frames == len(FRAME_DURATIONS) and facts.durations == FRAME_DURATIONS
        assert facts.loop == {"gif": 0, "apng": 3, "webp-anim": 2}[case.kind]
        assert facts.displayed[0][0, 0, 3] == 0 and facts.displayed[0][5, 3, 3] == 255
        if case.kind == "gif":
            assert facts.disposal == GIF_DISPOSAL[case.name][0]
        if case.kind == "apng":
            assert facts.disposal == [0, 1, 2, 0]
    if case.kind == "jpeg":
        facts = jpeg_facts(source)
        assert facts["subsampling"] == (0 if "444" in case.name else 2)
        assert (facts["comment"] is not None) == ("comment" in case.name)
    assert icc_profile(source) == (ICC_PROFILE if case.has_icc else None)


# --- the round trip: one test per property, by route and case ---------------------


@pytest.mark.parametrize("case", cases_where(lambda c: True))
@pytest.mark.parametrize("route", ROUTES)
def test_converts_without_error(conversions, route, case):
    """Exit 0 (apply) or no failure for this file (batch), and an output."""
    assert conversions.output(route, case).stat().st_size > 0


def test_batch_of_the_whole_matrix_exits_0(conversions):
    result = conversions.batch()
    assert result.exit_code == 0, result.output + result.stderr
    assert sorted(p.name for p in conversions.batch_dir.iterdir()) == sorted(c.filename for c in CASES)


@pytest.mark.parametrize("case", cases_where(lambda c: c.layout is not None))
@pytest.mark.parametrize("route", ROUTES)
def test_keeps_samples(conversions, route, case):
    """Same samples, dtype included (JPEG is lossy and animations are compared
    as displayed, below)."""
    output = conversions.output(route, case)
    expected = samples_for(case.layout, case.name)
    if case.layout == "I32":
        # Mode I is filtered as Pillow filters it, clamped at 0 (docs/pillow-parity.md);
        # test_negative_32_bit_samples_are_noted checks the note.
        expected = np.clip(expected, 0, None)
    stored = read_samples(case, output)
    assert stored.dtype == expected.dtype, f"dtype {stored.dtype}, input {expected.dtype}"
    assert stored.shape == expected.shape
    differ = stored != expected
    assert int(differ.sum()) == 0, (
        f"{int(differ.sum())} of {differ.size} samples differ; first at "
        f"{tuple(int(i) for i in np.argwhere(differ)[0])}: "
        f"{stored[differ][0]!r}, input {expected[differ][0]!r}"
    )


def test_negative_32_bit_samples_are_noted(conversions):
    case = CASE_BY_NAME["I32-tiff-none"]
    negative = int((samples_for(case.layout, case.name) < 0).sum())
    assert negative > 0
    result = conversions.apply(case)
    assert result.exit_code == 0 and f"{negative} samples below 0" in result.output, result.output


def test_32_bit_samples_beyond_float32_precision_are_noted(tmp_path):
    source, output = tmp_path / "wide.tif", tmp_path / "out.tif"
    Image.fromarray(np.array([[2**24 + 1, 5], [7, 2**30 + 3]], np.int32)).save(source)
    result = run("apply", source, output, "-k", "identity")
    assert result.exit_code == 0 and "2 samples of 8,388,608 or more" in result.output, result.output


DEPTH_KINDS = {"png", "apng", "tiff", "pnm", "webp", "jpeg"}


@pytest.mark.parametrize("case", cases_where(lambda c: c.kind in DEPTH_KINDS))
@pytest.mark.parametrize("route", ROUTES)
def test_keeps_depth(conversions, route, case):
    """Same depth and layout as the file says: PNG IHDR bit depth and colour
    type; TIFF bits, sample format, samples, photometric, extra samples;
    PNM magic and maxval; WebP/JPEG mode and size."""
    output = conversions.output(route, case)
    assert depth(case, output) == depth(case, conversions.source(case))


@pytest.mark.parametrize("case", cases_where(lambda c: c.has_icc))
@pytest.mark.parametrize("route", ROUTES)
def test_keeps_icc_profile(conversions, route, case):
    output = conversions.output(route, case)
    kept = icc_profile(output)
    assert kept == ICC_PROFILE, f"ICC profile {'absent' if kept is None else 'changed'}"


@pytest.mark.parametrize("case", cases_where(lambda c: c.kind == "tiff"))
@pytest.mark.parametrize("route", ROUTES)
def test_tiff_keeps_compression(conversions, route, case):
    output = conversions.output(route, case)
    found, wanted = tiff_compression(output), tiff_compression(conversions.source(case))
    assert found == wanted, f"{tifffile.COMPRESSION(found).name}, input {tifffile.COMPRESSION(wanted).name}"


@pytest.mark.parametrize("case", cases_where(lambda c: c.kind in {"webp", "webp-anim"}))
@pytest.mark.parametrize("route", ROUTES)
def test_lossless_webp_stays_lossless(conversions, route, case):
    streams = webp_bitstreams(conversions.output(route, case))
    assert streams and set(streams) == {b"VP8L"}, f"bitstreams {streams}"


ANIMATIONS = cases_where(lambda c: c.kind in {"gif", "apng", "webp-anim"})


@pytest.mark.parametrize("case", ANIMATIONS)
@pytest.mark.parametrize("route", ROUTES)
def test_animation_keeps_frames_durations_and_loop(conversions, route, case):
    found, wanted = animation(conversions.output(route, case)), animation(conversions.source(case))
    assert (found.n_frames, found.durations, found.loop) == (wanted.n_frames, wanted.durations, wanted.loop)


@pytest.mark.parametrize("case", cases_where(lambda c: c.kind in {"gif", "apng"}))
@pytest.mark.parametrize("route", ROUTES)
def test_animation_keeps_disposal(conversions, route, case):
    found, wanted = animation(conversions.output(route, case)), animation(conversions.source(case))
    if case.kind == "gif":
        assert found.disposal == GIF_DISPOSAL[case.name][1]
    else:
        assert found.disposal == wanted.disposal


def test_a_rewritten_gif_disposal_is_noted(conversions):
    for name, (disposal, written) in GIF_DISPOSAL.items():
        result = conversions.apply(CASE_BY_NAME[name])
        assert ("disposal 2" in result.output) == (disposal != written), (name, result.output)


@pytest.mark.parametrize("case", ANIMATIONS)
@pytest.mark.parametrize("route", ROUTES)
def test_animation_frames_display_the_same(conversions, route, case):
    """Every frame, composited by Pillow and as RGBA, is pixel-identical."""
    found, wanted = animation(conversions.output(route, case)), animation(conversions.source(case))
    assert found.n_frames == wanted.n_frames
    pairs = enumerate(zip(found.displayed, wanted.displayed))
    differing = [index for index, (shown, original) in pairs if not np.array_equal(shown, original)]
    assert not differing, f"frames {differing} differ as displayed"


@pytest.mark.parametrize("jpeg_property", ["quantization", "subsampling", "comment"])
@pytest.mark.parametrize("case", cases_where(lambda c: c.kind == "jpeg"))
@pytest.mark.parametrize("route", ROUTES)
def test_jpeg_keeps_encoding(conversions, route, case, jpeg_property):
    found = jpeg_facts(conversions.output(route, case))[jpeg_property]
    wanted = jpeg_facts(conversions.source(case))[jpeg_property]
    assert found == wanted


# --- refusals ----------------------------------------------------------------------

SIXTEEN_BIT_SOURCES = ["RGB16-png", "RGBA16-png", "RGB16-tiff-none", "RGBA16-tiff-none", "RGB16-ppm"]


def write_named_case(name: str, directory: Path) -> Path:
    case = CASE_BY_NAME[name]
    path = directory / case.filename
    write_case(case, path)
    return path


def assert_one_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, (result.exit_code, result.output, result.stderr)
    lines = error_lines(result)
    assert len(lines) == 1, lines
    assert lines[0].startswith("convfilter: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("target", [".jpg", ".gif", ".webp", ".bmp"])
@pytest.mark.parametrize("source_name", SIXTEEN_BIT_SOURCES)
def test_sixteen_bit_colour_into_an_8_bit_format_is_refused(tmp_path, source_name, target):
    source = write_named_case(source_name, tmp_path)
    output = tmp_path / f"out{target}"
    assert_one_error(run("apply", source, output, "-k", "identity"), "--depth 8")
    assert not output.exists()


def test_depth_8_into_jpeg_is_the_input_scaled_within_jpeg_error(tmp_path):
    """A smooth 16-bit RGB PNG (random low bytes) to JPEG with --depth 8."""
    gradient = photo_like(61, 45).astype(np.uint16) * 257
    rng = np.random.default_rng(3)
    samples = gradient ^ rng.integers(0, 256, gradient.shape, dtype=np.uint16)
    source = tmp_path / "deep.png"
    source.write_bytes(imagecodecs.png_encode(samples))
    output = tmp_path / "out.jpg"
    result = run("apply", source, output, "-k", "identity", "--depth", "8")
    assert result.exit_code == 0, describe_failure(result)
    notes = [line for line in (result.output + result.stderr).splitlines() if "note:" in line]
    assert any(re.search(r"\b8[- ]bits?\b", line) for line in notes), notes
    expected = np.round(samples * (255 / 65535)).astype(np.uint8)
    with Image.open(output) as image:
        assert image.mode == "RGB"
        error = np.abs(np.asarray(image).astype(np.float64) - expected)
        tables, sampling = image.quantization, JpegImagePlugin.get_sampling(image)
    # JPEG's own error: Pillow encoding the expected pixels with the output's settings.
    reference = io.BytesIO()
    Image.fromarray(expected).save(reference, "JPEG", qtables=tables, subsampling=sampling)
    with Image.open(reference) as image:
        jpeg_error = np.abs(np.asarray(image).astype(np.float64) - expected)
    assert error.max() <= jpeg_error.max() + 2 and error.mean() <= jpeg_error.mean() + 0.5, (
        f"max {error.max()}, mean {error.mean():.2f}; "
        f"JPEG alone: max {jpeg_error.max()}, mean {jpeg_error.mean():.2f}"
    )


def test_depth_8_into_bmp_is_the_input_scaled_and_rounded(tmp_path):
    """Lossless 8 bits: exactly round(sample * 255 / 65535), not a cut to the high byte."""
    source = write_named_case("RGB16-png", tmp_path)
    output = tmp_path / "out.bmp"
    result = run("apply", source, output, "-k", "identity", "--depth", "8")
    assert result.exit_code == 0, describe_failure(result)
    expected = np.round(samples_for("RGB16", "RGB16-png") * (255 / 65535)).astype(np.uint8)
    with Image.open(output) as image:
        assert image.mode == "RGB"
        assert np.array_equal(np.asarray(image), expected)


@pytest.mark.parametrize("source_name", ["I32-tiff-none", "F32-tiff-none"])
def test_32_bit_grey_into_png_is_refused(tmp_path, source_name):
    source = write_named_case(source_name, tmp_path)
    output = tmp_path / "out.png"
    assert_one_error(run("apply", source, output, "-k", "identity"))
    assert not output.exists()


# --- options that override the input's encoding ------------------------------------

#: --compression NAME -> the TIFF compression tag values it may write.
COMPRESSION_OPTIONS = {
    "none": {tifffile.COMPRESSION.NONE},
    "lzw": {tifffile.COMPRESSION.LZW},
    "deflate": {tifffile.COMPRESSION.ADOBE_DEFLATE, tifffile.COMPRESSION.DEFLATE},
    "packbits": {tifffile.COMPRESSION.PACKBITS},
}


@pytest.mark.parametrize("name", list(COMPRESSION_OPTIONS))
@pytest.mark.parametrize("layout", ["RGB", "RGB16"])
def test_compression_option_overrides_the_tiffs(tmp_path, layout, name):
    """From an uncompressed TIFF (an LZW one for ``none``), samples unchanged."""
    source_case = CASE_BY_NAME[f"{layout}-tiff-{'lzw' if name == 'none' else 'none'}"]
    source = write_named_case(source_case.name, tmp_path)
    output = tmp_path / "out.tif"
    result = run("apply", source, output, "-k", "identity", "--compression", name)
    assert result.exit_code == 0, describe_failure(result)
    assert tiff_compression(output) in COMPRESSION_OPTIONS[name]
    assert np.array_equal(read_samples(source_case, output), samples_for(layout, source_case.name))


def test_lossless_option_makes_a_lossy_webp_lossless(tmp_path):
    source = tmp_path / "lossy.webp"
    Image.fromarray(photo_like(WIDTH, HEIGHT)).save(source, quality=80)
    assert webp_bitstreams(source) == [b"VP8 "]
    output = tmp_path / "out.webp"
    result = run("apply", source, output, "-k", "identity", "--lossless")
    assert result.exit_code == 0, describe_failure(result)
    assert webp_bitstreams(output) == [b"VP8L"]
    with Image.open(source) as decoded, Image.open(output) as written:
        assert np.array_equal(np.asarray(written), np.asarray(decoded))


def test_quality_option_gives_coarser_jpeg_tables(tmp_path):
    source = write_named_case("jpeg-q92-420-comment", tmp_path)
    output = tmp_path / "out.jpg"
    result = run("apply", source, output, "-k", "identity", "--quality", "50")
    assert result.exit_code == 0, describe_failure(result)
    fine, coarse = jpeg_facts(source)["quantization"], jpeg_facts(output)["quantization"]
    assert coarse != fine
    assert coarse.keys() == fine.keys()
    for table in fine:
        assert all(c >= f for c, f in zip(coarse[table], fine[table])), table
        assert sum(coarse[table]) > sum(fine[table]), table


# --- awkward inputs: each once, through apply ------------------------------------------------


def moving_square_frames(count: int = 3) -> list[Image.Image]:
    """RGBA frames: a transparent canvas and one opaque square that moves."""
    frames = []
    for index in range(count):
        frame = np.zeros((24, 32, 4), np.uint8)
        frame[4:14, 2 + 6 * index : 12 + 6 * index] = (200, 30, 50, 255)
        frames.append(Image.fromarray(frame))
    return frames


def displayed(path: Path) -> list[np.ndarray]:
    return animation(path).displayed


@pytest.mark.parametrize("target", [".webp", ".gif", ".png"])
@pytest.mark.parametrize("source_kind", ["gif-disposal-2", "apng-dispose-background"])
def test_animations_display_the_same_after_a_change_of_format(tmp_path, source_kind, target):
    frames = moving_square_frames()
    if source_kind.startswith("gif"):
        source = tmp_path / "in.gif"
        frames[0].save(source, save_all=True, append_images=frames[1:], duration=100, loop=0, disposal=2)
    else:
        source = tmp_path / "in.png"
        frames[0].save(source, save_all=True, append_images=frames[1:], duration=100, loop=0, disposal=1)
    output = tmp_path / f"out{target}"
    result = run("apply", source, output, "-k", "identity", *(["--lossless"] if target == ".webp" else []))
    assert result.exit_code == 0, describe_failure(result)
    shown, wanted = displayed(output), displayed(source)
    assert len(shown) == len(wanted)
    assert all(np.array_equal(a, b) for a, b in zip(shown, wanted)), "frames differ as displayed"


def test_a_gif_that_plays_once_still_plays_once(tmp_path):
    frames = [frame.convert("RGB") for frame in moving_square_frames()]
    source, output = tmp_path / "once.gif", tmp_path / "out.gif"
    frames[0].save(source, save_all=True, append_images=frames[1:], duration=100)
    with Image.open(source) as original:
        assert "loop" not in original.info
    assert run("apply", source, output, "-k", "identity").exit_code == 0
    with Image.open(output) as written:
        assert "loop" not in written.info


def test_an_apng_default_image_stays_outside_the_animation(tmp_path):
    frames = moving_square_frames()
    source, output = tmp_path / "def.png", tmp_path / "out.png"
    frames[0].save(source, save_all=True, append_images=frames[1:], duration=100, default_image=True)
    assert run("apply", source, output, "-k", "identity").exit_code == 0
    with Image.open(output) as written, Image.open(source) as original:
        assert written.info.get("default_image") and written.n_frames == original.n_frames


def test_16_bit_tiff_pages_count_against_max_pixels(tmp_path):
    import tifffile

    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as writer:
        writer.write(np.zeros((10, 10, 3), np.uint16), photometric="rgb")
        writer.write(np.zeros((200, 200, 3), np.uint16), photometric="rgb")
    assert_one_error(run("apply", path, tmp_path / "o.tif", "-k", "identity", "--max-pixels", "1000"),
                     "more than the limit")  # fmt: skip


def test_packbits_drops_a_predictor_it_has_no_use_for(tmp_path):
    import tifffile

    samples = samples_for("RGB16", "packbits")
    source, output = tmp_path / "lzw.tif", tmp_path / "packbits.tif"
    tifffile.imwrite(source, samples, photometric="rgb", compression="lzw", predictor=True)
    assert run("apply", source, output, "-k", "identity", "--compression", "packbits").exit_code == 0
    with tifffile.TiffFile(output) as tiff:
        assert tiff.pages[0].predictor == 1 and tiff.pages[0].compression == 32773
    with Image.open(output) as pillow, Image.open(source) as original:  # libtiff reads it alike
        assert np.array_equal(np.asarray(pillow), np.asarray(original))
    assert np.array_equal(tifffile.imread(output), samples)


def test_16_bit_samples_pillow_reads_at_8_bits_are_refused(tmp_path):
    import tifffile

    path = tmp_path / "cmyk16.tif"
    tifffile.imwrite(path, np.full((6, 5, 4), 1000, np.uint16), photometric="separated")
    assert_one_error(run("apply", path, tmp_path / "o.tif", "-k", "identity"), "16-bit CMYK", "8 bits")
    assert not (tmp_path / "o.tif").exists()


def test_16_bit_grey_with_alpha_is_kept_as_16_bit_rgba(tmp_path):
    import imagecodecs

    grey_alpha = samples_for("RGBA16", "la16")[..., 2:]
    source, output = tmp_path / "la16.png", tmp_path / "out.png"
    source.write_bytes(imagecodecs.png_encode(np.ascontiguousarray(grey_alpha)))
    result = run("apply", source, output, "-k", "identity")
    assert result.exit_code == 0 and "16-bit RGBA" in result.output, describe_failure(result)
    written = imagecodecs.png_decode(output.read_bytes())
    grey = grey_alpha[..., :1]
    assert np.array_equal(written, np.concatenate([grey, grey, grey, grey_alpha[..., 1:]], axis=2))


def test_a_ppm_of_lower_maxval_is_rescaled_clipped_and_noted(tmp_path):
    import tifffile

    samples = np.array([[[0, 1023, 4000]]], ">u2")  # 4000 lies beyond maxval: taken as 1023
    source, output = tmp_path / "c10.ppm", tmp_path / "out.tif"
    source.write_bytes(b"P6\n1 1\n1023\n" + samples.tobytes())
    result = run("apply", source, output, "-k", "identity")
    assert result.exit_code == 0 and "maxval 1023" in result.output, describe_failure(result)
    assert tifffile.imread(output).tolist() == [[[0, 65535, 65535]]]


def test_background_makes_16_bit_rgba_fit_a_ppm(tmp_path):
    import imagecodecs

    source, output = tmp_path / "rgba16.png", tmp_path / "out.ppm"
    source.write_bytes(imagecodecs.png_encode(np.full((3, 4, 4), 65535, np.uint16)))
    assert run("apply", source, output, "-k", "identity", "--background", "black").exit_code == 0
    assert output.read_bytes().startswith(b"P6\n4 3\n65535\n")


def test_an_icon_keeps_its_size(tmp_path):
    source, output = tmp_path / "in.png", tmp_path / "out.ico"
    Image.fromarray(samples_for("RGBA", "icon")).save(source)
    assert run("apply", source, output, "-k", "identity").exit_code == 0
    with Image.open(output) as icon:
        assert icon.size == (WIDTH, HEIGHT) and max(WIDTH, HEIGHT) not in (16, 24, 32, 48)


def test_metadata_an_output_cannot_hold_is_noted(tmp_path):
    source = tmp_path / "in.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "a test")
    Image.fromarray(samples_for("RGB", "meta")).save(source, icc_profile=ICC_PROFILE, pnginfo=info)
    result = run("apply", source, tmp_path / "out.bmp", "-k", "identity")
    assert result.exit_code == 0
    assert "BMP holds no ICC profile" in result.output and "PNG text (Title)" in result.output


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_a_png_colour_key_becomes_alpha(tmp_path, mode):
    samples = samples_for(mode, "key")
    key = samples[0, 0].item() if mode == "L" else tuple(samples[0, 0].tolist())
    source, output = tmp_path / "key.png", tmp_path / "out.png"
    Image.fromarray(samples).save(source, transparency=key)
    result = run("apply", source, output, "-k", "identity")
    target = "LA" if mode == "L" else "RGBA"
    assert result.exit_code == 0 and f"converted mode {mode} to {target}" in result.output, result.output
    with Image.open(source) as original, Image.open(output) as written:
        expected = original.convert(target)
        assert written.mode == expected.mode and np.array_equal(np.asarray(written), np.asarray(expected))


def test_an_8_bit_tiff_keeps_its_predictor(tmp_path):
    samples = samples_for("RGB", "predictor")
    source, output = tmp_path / "pred.tif", tmp_path / "out.tif"
    tifffile.imwrite(source, samples, photometric="rgb", compression="lzw", predictor=True)
    assert run("apply", source, output, "-k", "identity").exit_code == 0
    with tifffile.TiffFile(output) as tiff:
        assert tiff.pages[0].predictor == 2 and tiff.pages[0].compression == 5
    assert np.array_equal(tifffile.imread(output), samples)


def test_strip_metadata_leaves_the_comment_out_too(tmp_path):
    source, output = tmp_path / "c.jpg", tmp_path / "out.jpg"
    Image.fromarray(photo_like(WIDTH, HEIGHT)).save(source, comment=b"private")
    assert run("apply", source, output, "-k", "identity", "--strip-metadata").exit_code == 0
    with Image.open(output) as written:
        assert "comment" not in written.info


def test_16_bit_associated_alpha_is_divided_back_and_noted(tmp_path):
    premultiplied = np.array([[[32768, 16384, 0, 32768], [65535, 0, 0, 65535]]], np.uint16)
    source, output = tmp_path / "assoc.tif", tmp_path / "out.tif"
    tifffile.imwrite(source, premultiplied, photometric="rgb", extrasamples=["assocalpha"])
    result = run("apply", source, output, "-k", "identity", "--alpha", "keep")
    assert result.exit_code == 0 and "associated" in result.output, describe_failure(result)
    with tifffile.TiffFile(output) as tiff:
        assert tuple(tiff.pages[0].extrasamples) == (2,)
        assert tiff.pages[0].asarray().tolist() == [[[65535, 32768, 0, 32768], [65535, 0, 0, 65535]]]
