"""Image files, Pillow side: pixel modes and arrays, formats, encoding and atomic writes.

Reading files lives in :mod:`convfilter.loading` (whose names are
available here too); filtering works on the arrays that :func:`to_array`
returns.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import io
import os
import re
import stat
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageMode

from . import deep_colour
from .deep_colour import DeepImage
from .encoding import TIFF_PREDICTOR_TAG
from .errors import first_line, os_reason
from .loading import (
    DEFAULT_FORMATS,
    DEFAULT_MAX_PIXELS,
    SAMPLE_TYPES,
    ImageError,
    ImageTooLargeError,
    LoadedImage,
    Metadata,
    UnsupportedModeError,
    filterable_mode,
    load_image,
    readable_formats,
    valid_dpi,
)

__all__ = [
    "ImageError",
    "ImageTooLargeError",
    "UnsupportedModeError",
    "OutputError",
    "LoadedImage",
    "Metadata",
    "DEFAULT_FORMATS",
    "FILTERABLE_MODES",
    "PixelRows",
    "filterable",
    "DEFAULT_MAX_PIXELS",
    "readable_formats",
    "load_image",
    "to_array",
    "from_array",
    "output_format",
    "format_for_extension",
    "extensions_of",
    "unknown_extension_message",
    "band_names",
    "alpha_is_opaque",
    "opaque_alpha",
    "check_depth",
    "check_alpha",
    "flatten",
    "flattened_mode",
    "reduce_to_8_bits",
    "encode_image",
    "write_atomically",
    "deferred_commits",
    "PendingWrite",
    "check_output_path",
    "save_image",
]

#: Pillow modes the engine filters directly, with their NumPy dtypes.
FILTERABLE_MODES: dict[str, np.dtype] = {mode: np.dtype(kind) for mode, kind in SAMPLE_TYPES.items()}

_MULTIFRAME_FORMATS = {"PNG", "GIF", "TIFF", "WEBP"}

#: Modes with more than 8 bits per sample, and the formats that hold them exactly.
_DEEP_MODE_FORMATS = {"I;16": {"PNG", "TIFF", "PPM"}, "I": {"TIFF"}, "F": {"TIFF"},
                      **deep_colour.FORMATS}


class OutputError(ValueError):
    """An output that cannot be written: bad format, mode, directory, disk."""


def filterable(image: Image.Image | DeepImage) -> Image.Image | DeepImage:
    """``image`` in a mode the engine filters, converted as loading a file
    converts it (palette to RGB or RGBA, 1 to L, a colour key to alpha).

    Raises
    ------
    UnsupportedModeError
        For a mode convfilter does not filter (HSV, YCbCr, LAB, ...).
    """
    if isinstance(image, DeepImage):
        return image
    mode = filterable_mode(image, "image")
    return image if mode == image.mode else image.convert(mode)


_COPY_STRIP_BYTES = 4 << 20


def band_names(mode: str) -> tuple[str, ...]:
    """The bands of a filterable mode.

    >>> band_names("RGBA;16"), band_names("L")
    (('R', 'G', 'B', 'A'), ('L',))
    """
    if mode in deep_colour.DEEP_MODES:
        return tuple("RGBA"[: deep_colour.DEEP_MODES[mode]])
    return ImageMode.getmode(mode).bands


def alpha_is_opaque(image: Image.Image | DeepImage) -> bool:
    """Whether every pixel is fully opaque (True for modes without alpha)."""
    if isinstance(image, DeepImage):
        return image.mode != "RGBA;16" or opaque_alpha(image.array[..., 3])
    if "A" not in image.getbands():
        return True
    return image.getchannel("A").getextrema()[0] == 255


def opaque_alpha(alpha: np.ndarray) -> bool:
    """Whether an integer alpha band is everywhere at its type's maximum."""
    return bool((alpha == np.iinfo(alpha.dtype).max).all())


class PixelRows:
    """A decoded 8-bit L or RGB image as the engine's row source
    (:class:`convfilter.engine.RowSource`): each strip is copied out of
    Pillow's own buffer when the engine needs it, on the engine's threads,
    so the image is never copied whole into an array beside itself.

    For an image whose memory is Pillow's own (one the loader could not
    decode into memory of its own, or one given by a caller); a file
    loaded into shared memory is filtered in place instead. Measured on
    the development machine (a 2-core Intel Xeon) with a 12 MP RGB JPEG:
    ``np.asarray`` of the whole image takes 40-70 ms on one thread and
    holds 36 MB more; read in strips, ``convfilter apply -k edge_enhance``
    took 0.68 s instead of 0.74 s (medians of 7) and peaked at 139 MiB
    instead of 144. The result then becomes a Pillow image by one copy.
    """

    def __init__(self, image: Image.Image) -> None:
        if image.mode not in ("L", "RGB"):
            raise UnsupportedModeError(f"rows are read from L and RGB images, not {image.mode}")
        self.image = image
        width, height = image.size
        self.channels = 1 if image.mode == "L" else 3
        self.shape = (height, width) if self.channels == 1 else (height, width, 3)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(np.uint8)

    def rows(self, index: np.ndarray | slice, columns: slice) -> np.ndarray:
        height, width = self.shape[:2]
        left, right, _ = columns.indices(width)
        if isinstance(index, slice):
            top, bottom, _ = index.indices(height)
            return self._block(top, bottom, left, right)
        index = np.asarray(index)
        # Runs of consecutive rows, each one crop (padding repeats or reverses a few at the ends).
        breaks = np.flatnonzero(np.diff(index) != 1) + 1
        runs = np.split(index, breaks)
        blocks = [self._block(int(run[0]), int(run[-1]) + 1, left, right) for run in runs]
        return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)

    def _block(self, top: int, bottom: int, left: int, right: int) -> np.ndarray:
        if bottom <= top or right <= left:
            return np.empty((max(0, bottom - top), max(0, right - left), self.channels), self.dtype)
        height, width = self.shape[:2]
        whole = (top, bottom, left, right) == (0, height, 0, width)  # a small image is one strip
        block = np.asarray(self.image if whole else self.image.crop((left, top, right, bottom)))
        return block.reshape(bottom - top, right - left, self.channels)


def to_array(image: Image.Image | DeepImage) -> np.ndarray:
    """Pixels as an H x W (one band) or H x W x C array in the mode's dtype."""
    if isinstance(image, DeepImage):
        return image.array
    if image.mode not in FILTERABLE_MODES:
        raise UnsupportedModeError(f"image mode {image.mode} cannot be filtered")
    width, height = image.size
    rows = max(1, _COPY_STRIP_BYTES // max(1, width * 4))
    if rows >= height:
        return np.asarray(image)
    # In strips: converting a whole large image at once holds two extra copies
    # of it for a moment (Pillow joins its encoded chunks).
    first = np.asarray(image.crop((0, 0, width, rows)))
    array = np.empty((height,) + first.shape[1:], first.dtype)
    array[:rows] = first
    for top in range(rows, height, rows):
        array[top : top + rows] = np.asarray(image.crop((0, top, width, min(height, top + rows))))
    return array


def from_array(array: np.ndarray, mode: str, *, like: DeepImage | None = None) -> Image.Image | DeepImage:
    """An image of ``mode`` from an array shaped and typed as :func:`to_array` gives.

    For 16-bit colour, a :class:`DeepImage` with the layout details of ``like``.
    """
    dtype = FILTERABLE_MODES[mode]
    array = np.ascontiguousarray(array, dtype=dtype)
    if mode in deep_colour.DEEP_MODES:
        return DeepImage(array, dict(like.info) if like is not None else {})
    height, width = array.shape[:2]
    return Image.frombuffer(mode, (width, height), array, "raw", mode, 0, 1)


def output_format(
    path: str | os.PathLike | None, fmt: str | None, *, fallback: str | None = None,
    format_option: str | None = "--format",
) -> str:
    """The Pillow format name to write: ``fmt`` if given, else from the extension.

    ``fallback`` (the input's format) is used for standard output.

    >>> output_format("out.JPG", None)
    'JPEG'
    """
    if fmt:
        name = fmt.upper()
        if name == "JPG":
            name = "JPEG"
        if name == "TIF":
            name = "TIFF"
        if name not in _writers(name):
            writable = ", ".join(sorted(Image.SAVE))
            raise OutputError(f"unknown output format {fmt!r} (Pillow writes: {writable})")
        return name
    if path is None or os.fspath(path) == "-":
        if fallback:
            return fallback
        if format_option:
            raise OutputError(f"give {format_option} to write to standard output")
        raise OutputError("this output cannot be standard output; give a file name")
    if os.path.isdir(path) and not os.path.islink(path):  # a link is replaced, not followed
        raise OutputError(_directory_output_message(f"'{os.fsdecode(os.fspath(path))}'", "is"))
    ext = Path(os.fspath(path)).suffix
    found = format_for_extension(ext)
    if found is None:
        raise OutputError(f"'{os.fspath(path)}': {unknown_extension_message(ext, format_option)}")
    return found


def format_for_extension(ext: str) -> str | None:
    """The format Pillow writes for a file extension (``".jpg"``), or None.

    >>> format_for_extension(".JPG"), format_for_extension(".xyz")
    ('JPEG', None)
    """
    if not ext:
        return None
    Image.preinit()
    found = Image.EXTENSION.get(ext.lower())
    if found is None or found not in Image.SAVE:
        Image.init()
        found = Image.EXTENSION.get(ext.lower())
    return found if found in Image.SAVE else None


#: Pillow's plugin modules for the default formats that ``Image.preinit()`` leaves out.
_PLUGIN_MODULES = {"TIFF": "TiffImagePlugin", "WEBP": "WebPImagePlugin", "TGA": "TgaImagePlugin",
                   "ICO": "IcoImagePlugin"}  # fmt: skip


def _load_plugins(formats: Sequence[str]) -> set[str]:
    """Load Pillow's plugins for ``formats`` (names in upper case, returned as a set).

    Pillow's common plugins first, then the default formats' own modules;
    every plugin only for a format still missing. Loading every plugin costs
    about 40 ms, a noticeable share of filtering one photo; Pillow's own
    ``open`` works the same way.
    """
    wanted = {f.upper() for f in formats}
    Image.preinit()
    for name in sorted(wanted - set(Image.OPEN) - set(Image.SAVE)):
        if name in _PLUGIN_MODULES:
            importlib.import_module(f"PIL.{_PLUGIN_MODULES[name]}")
    if not wanted <= set(Image.OPEN) | set(Image.SAVE):
        Image.init()
    return wanted


def extensions_of(formats: Sequence[str]) -> dict[str, str]:
    """The file extensions Pillow registers for ``formats`` (``{".jpg": "JPEG", ...}``)."""
    wanted = _load_plugins(formats)
    return {ext: fmt for ext, fmt in Image.EXTENSION.items() if fmt in wanted}


def _writers(name: str):
    """Pillow's savers, with the plugin of ``name`` loaded."""
    _load_plugins([name])
    return Image.SAVE


def unknown_extension_message(ext: str, format_option: str | None = "--format") -> str:
    """Why an output with extension ``ext`` cannot be written, and what to do
    (``format_option``: the option that names a format, where there is one)."""
    also = f" or give {format_option}" if format_option else ""
    return f"unknown output extension {ext.lower() or '(none)'!r}; use .png, .jpg, .tif, .webp, ...{also}"


def check_depth(mode: str, fmt: str) -> None:
    """Refuse writing a mode of more than 8 bits per sample to a format that would cut it.

    Raises
    ------
    OutputError
        Naming the formats that hold the mode, and ``--depth 8``.
    """
    if mode in _DEEP_MODE_FORMATS and fmt not in _DEEP_MODE_FORMATS[mode]:
        holders = ", ".join(sorted(_DEEP_MODE_FORMATS[mode]))
        raise OutputError(
            f"{fmt} cannot store this image (mode {mode}) without losing precision; "
            f"write {holders}, or give --depth 8 to write 8 bits per sample"
        )


#: Formats that store no alpha band (Pillow writes RGBA to BMP and PPM as RGB).
_NO_ALPHA_FORMATS = {"JPEG", "BMP", "PPM"}


def check_alpha(mode: str, fmt: str) -> None:
    """Refuse writing a mode with alpha to a format that would drop it.

    Raises
    ------
    OutputError
        Naming the formats that hold alpha, and ``--background``.
    """
    if fmt in _NO_ALPHA_FORMATS and "A" in band_names(mode):
        raise OutputError(
            f"{fmt} cannot store transparency (mode {mode}); write PNG, TIFF or WebP to keep it, "
            "or give --background COLOR to flatten the image onto a colour"
        )


def flattened_mode(mode: str) -> str:
    """The mode :func:`flatten` gives an image of ``mode``.

    >>> flattened_mode("RGBA;16"), flattened_mode("LA"), flattened_mode("RGB")
    ('RGB;16', 'L', 'RGB')
    """
    return {"LA": "L", "RGBA": "RGB", "RGBA;16": "RGB;16"}.get(mode, mode)


def flatten(
    image: Image.Image | DeepImage, background: tuple[int, int, int]
) -> tuple[Image.Image | DeepImage, str | None]:
    """``image`` composited over an opaque ``background`` (8-bit RGB), alpha removed,
    and a note saying so; an image without alpha is returned as it is, with None.

    LA becomes L (the background as grey, ITU-R 601-2 luma, as Pillow
    converts RGB to L); RGBA becomes RGB; 16-bit colour stays 16-bit.
    """
    mode = image.mode
    if "A" not in band_names(mode):
        return image, None
    array = to_array(image)
    top = float(np.iinfo(array.dtype).max)
    if mode == "LA":
        red, green, blue = background
        backdrop = np.array([(red * 299 + green * 587 + blue * 114) / 1000 * top / 255])
    else:
        backdrop = np.array(background, np.float64) * (top / 255)
    coverage = array[..., -1:].astype(np.float64) / top
    values = array[..., :-1] * coverage + backdrop * (1.0 - coverage)
    flat = np.clip(np.floor(values + 0.5), 0, top).astype(array.dtype)
    note = f"flattened onto the background {_hex_colour(background)} (--background); no alpha is written"
    if mode == "LA":
        return from_array(flat[..., 0], "L"), note
    return from_array(flat, flattened_mode(mode)), note


def _hex_colour(rgb: tuple[int, int, int]) -> str:
    return "#" + "".join(f"{value:02x}" for value in rgb)


def reduce_to_8_bits(image: Image.Image | DeepImage) -> tuple[Image.Image, str | None]:
    """``image`` at 8 bits per sample, and a note saying how (None when already 8 bits).

    16-bit samples are scaled by 255/65535 and rounded; 32-bit integer and
    float samples are rounded and clipped to 0-255.
    """
    if isinstance(image, DeepImage):
        return image.to_8_bits(), "wrote 8 bits per sample (--depth 8): 16-bit colour scaled by 255/65535"
    if image.mode == "I;16":
        narrow = deep_colour.scale_to_8_bits(to_array(image))
        return Image.fromarray(narrow), "wrote 8 bits per sample (--depth 8): 16-bit grey scaled by 255/65535"
    if image.mode in ("I", "F"):
        values = np.nan_to_num(to_array(image).astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8)), (
            f"wrote 8 bits per sample (--depth 8): mode {image.mode} samples rounded and clipped to 0-255"
        )
    return image, None


def encode_image(
    frames: Sequence[Image.Image | DeepImage],
    stream: BinaryIO,
    *,
    fmt: str,
    metadata: Metadata | None = None,
    options: dict | None = None,
) -> list[str]:
    """Encode ``frames`` to ``stream`` as ``fmt``, with the metadata it can hold.

    ``options`` are Pillow ``save`` keywords (:func:`encoding.save_options`
    makes them). Returns notes on anything the format could not keep.

    Raises
    ------
    OutputError
        When the format cannot store the mode or several frames.
    OSError
        When ``stream`` fails (its ``errno`` set); the caller knows its name.
    """
    first = frames[0]
    check_depth(first.mode, fmt)
    if len(frames) > 1 and fmt not in _MULTIFRAME_FORMATS:
        holders = sorted(_MULTIFRAME_FORMATS & _DEEP_MODE_FORMATS.get(first.mode, _MULTIFRAME_FORMATS))
        raise OutputError(
            f"{fmt} cannot hold {len(frames)} frames; write {' or '.join(holders)} to keep every frame"
        )
    if isinstance(first, DeepImage):
        return _encode_deep_colour(frames, stream, fmt, metadata, options or {})
    options = dict(options or {})
    if metadata is not None:
        options.update(metadata.save_options(fmt))
    if fmt == "GIF" and first.mode == "LA":  # Pillow writes LA to GIF as opaque grey
        frames = [frame.convert("RGBA") for frame in frames]
        first = frames[0]
    predictor = options.pop("predictor", None)
    if predictor and fmt == "TIFF":  # Pillow writes a predictor given as a tag of the IFD
        tags = Image.Exif()
        if options.get("exif"):
            tags.load(options["exif"])
        tags[TIFF_PREDICTOR_TAG] = predictor
        options["exif"] = tags
    if fmt == "ICO":  # Pillow's default icon sizes would shrink the image
        options.setdefault("sizes", [first.size])
    notes = []
    if fmt == "GIF" and len(frames) > 1:
        frames, options, notes = _merge_repeated_frames(list(frames), options)
        first = frames[0]
    if len(frames) > 1:
        options["save_all"] = True
        options["append_images"] = list(frames[1:])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fmt == "WEBP" and len(frames) > 1:
                stream.write(_animated_webp(frames, options))
            else:
                first.save(stream, format=fmt, **options)
    except MemoryError:
        raise
    except OSError as exc:
        if exc.errno is not None:  # the stream failed, not the encoder: the caller names it
            raise
        raise OutputError(_cannot_store(fmt, first.mode, exc)) from None
    except Exception as exc:  # encoders raise many kinds on what they cannot hold
        raise OutputError(_cannot_store(fmt, first.mode, exc)) from None
    return notes + _palette_notes(frames) if fmt == "GIF" else []


def _merge_repeated_frames(frames: list, options: dict) -> tuple[list, dict, list[str]]:
    """GIF frames with each frame that repeats the one before merged into it,
    its display time added, as Pillow's GIF writer merges them; with a note.

    Done here so that the note can say so, and because Pillow, left with a
    single frame, reads per-frame duration and disposal lists as one number
    and fails.
    """
    durations, disposals = options.get("duration"), options.get("disposal")
    kept, kept_durations, kept_disposals = [], [], []
    for index, frame in enumerate(frames):
        if kept and frame.mode == kept[-1].mode and frame.tobytes() == kept[-1].tobytes():
            if isinstance(durations, (list, tuple)):
                kept_durations[-1] += durations[index]
            continue
        kept.append(frame)
        if isinstance(durations, (list, tuple)):
            kept_durations.append(durations[index])
        if isinstance(disposals, (list, tuple)):
            kept_disposals.append(disposals[index])
    merged = len(frames) - len(kept)
    if not merged:
        return frames, options, []
    options = dict(options)
    if isinstance(durations, (list, tuple)):
        options["duration"] = kept_durations if len(kept) > 1 else kept_durations[0]
    elif durations and len(kept) == 1:
        options["duration"] = durations * len(frames)
    if isinstance(disposals, (list, tuple)):
        options["disposal"] = kept_disposals if len(kept) > 1 else kept_disposals[0]
    what = "frame repeated" if merged == 1 else "frames repeated"
    note = (f"GIF: {merged} {what} the one before and {'was' if merged == 1 else 'were'} merged into it, "
            f"display times added ({len(kept)} of {len(frames)} frames written)")  # fmt: skip
    return kept, options, [note]


def _animated_webp(frames: Sequence[Image.Image], options: dict) -> bytes:
    """An animated WebP that keeps transparency.

    libwebp's animation encoder can leave the alpha flag out of the file when
    only some frames' changed areas hold transparent pixels; readers then show
    every frame opaque. Such a file is encoded again with every frame a key
    frame, which keeps the flag.
    """
    buffer = io.BytesIO()
    frames[0].save(buffer, format="WEBP", **options)
    data = buffer.getvalue()
    transparent = any(not alpha_is_opaque(frame) for frame in frames)
    if transparent and data[12:16] == b"VP8X" and not data[20] & 0x10:
        buffer = io.BytesIO()
        frames[0].save(buffer, format="WEBP", **options, kmax=1)
        data = buffer.getvalue()
    return data


def _palette_notes(frames: Sequence[Image.Image]) -> list[str]:
    """A note when GIF's 256 colours a frame could not hold every frame's colours."""
    notes = []
    reduced = sum(1 for frame in frames if frame.mode != "P" and frame.getcolors(256) is None)
    if reduced:
        which = "the image had" if len(frames) == 1 else f"{reduced} of {len(frames)} frames had"
        verb = "was" if len(frames) == 1 else "were"
        notes.append(f"GIF holds 256 colours a frame: {which} more, and {verb} reduced to 256")
    partial = any(
        "A" in frame.getbands() and any(0 < value < 255 for value, _ in _alpha_values(frame)) for frame in frames
    )
    if partial:
        notes.append("GIF holds only fully transparent or opaque pixels: partly transparent ones "
                     "were made one or the other")
    return notes


def _alpha_values(frame: Image.Image) -> list[tuple[int, int]]:
    """(value, count) of the alpha band's values."""
    histogram = frame.getchannel("A").histogram()
    return [(value, count) for value, count in enumerate(histogram) if count]


def _encode_deep_colour(
    frames, stream: BinaryIO, fmt: str, metadata: Metadata | None, options: dict
) -> list[str]:
    metadata = metadata or Metadata()
    try:
        return deep_colour.encode(
            list(frames), stream, fmt=fmt, icc_profile=metadata.icc_profile, exif=metadata.exif,
            dpi=valid_dpi(metadata.dpi), compression=options.get("compression"),
        )  # fmt: skip
    except MemoryError:
        raise
    except OSError as exc:
        if exc.errno is not None:  # the stream failed: the caller names it
            raise
        raise OutputError(_cannot_store(fmt, frames[0].mode, exc)) from None
    except Exception as exc:  # the codecs raise their own kinds; deep_colour's say what to write
        raise OutputError(f"{fmt} cannot store this image (mode {frames[0].mode}): {first_line(exc)}") from None


def _cannot_store(fmt: str, mode: str, exc: BaseException) -> str:
    hint = {"TIFF": "", "PNG": "; try TIFF"}.get(fmt, "; try PNG or TIFF")
    return f"{fmt} cannot store this image (mode {mode}): {first_line(exc)}{hint}"


def check_output_path(path: str | os.PathLike) -> None:
    """Refuse, before any work, an output path that cannot be a new file.

    Raises
    ------
    OutputError
        ``path`` names or is a directory, or its directory does not exist.
    """
    text = os.fspath(path)
    label = f"'{os.fsdecode(text)}'"
    target = Path(text)
    if os.fsdecode(text).endswith(("/", os.sep)) or target.name in ("", ".", ".."):
        raise OutputError(_directory_output_message(label, "names"))
    if target.is_dir() and not target.is_symlink():
        raise OutputError(_directory_output_message(label, "is"))
    kind = _special_kind(text)
    if kind in ("socket", "block device"):
        raise OutputError(f"{label} is a {kind}; convfilter writes image files, give a file name")
    if not target.parent.is_dir():
        raise OutputError(f"cannot write {label}: directory '{target.parent}' does not exist")


def _special_kind(path: str | os.PathLike) -> str | None:
    """What ``path`` is when it exists and is neither a regular file, a directory
    nor a symbolic link: "character device", "FIFO", "socket", "block device".

    A symbolic link counts as what it leads to when that is a character
    device or FIFO, and as ``"descriptor"`` (written through, never
    replaced) when it lies in /dev or /proc or leads into /proc or /dev/fd
    (``/dev/stdout``, ``/dev/fd/63`` from a shell's ``>(...)``): replacing
    such a link would break the system's own, and writing through it is
    what ``>`` does.
    """
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if stat.S_ISLNK(info.st_mode):
        try:
            where = os.path.abspath(path)
            leads_to = os.path.normpath(os.path.join(os.path.dirname(where), os.readlink(path)))
            target = os.stat(path).st_mode
        except OSError:
            return None
        if where.startswith(("/dev/", "/proc/")) or leads_to.startswith(("/proc/", "/dev/fd/")):
            return "descriptor"
        kind = _node_kind(target)
        return kind if kind in ("character device", "FIFO") else None
    return _node_kind(info.st_mode)


def _node_kind(mode: int) -> str | None:
    kinds = ((stat.S_ISCHR, "character device"), (stat.S_ISFIFO, "FIFO"),
             (stat.S_ISSOCK, "socket"), (stat.S_ISBLK, "block device"))  # fmt: skip
    return next((name for test, name in kinds if test(mode)), None)


def _write_into(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` into an existing character device, FIFO or open file
    descriptor, as ``cp`` and ``>`` do.

    The node itself is kept; opening a FIFO waits for its reader.
    """
    label = f"'{os.fsdecode(os.fspath(path))}'"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0))
        if os.isatty(fd):
            os.close(fd)
            raise OutputError(f"{label} is a terminal; image data is not written to a terminal, redirect it")
        with os.fdopen(fd, "wb") as stream:
            _write_all(stream, data)
    except OSError as exc:
        raise OutputError(f"cannot write {label}: {os_reason(exc)}") from None


def _directory_output_message(label: str, verb: str) -> str:
    return (
        f"{label} {verb} a directory; give a file name (to write into a folder, use "
        f"convfilter batch INPUTS... -d {label})"
    )


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Write a file through ``write(stream)`` so that ``path`` is never partial.

    The data goes to a temporary file beside ``path`` (``.NAME.XXXXXXXX.part``),
    is flushed to disk and then renamed over ``path``. On any failure the
    temporary file is removed and ``path`` keeps its previous content (or
    stays absent); only a process killed outright (SIGKILL, power loss) can
    leave the temporary file behind. If ``path`` is a symbolic link, the link
    itself is replaced; its target is never written through. A replaced file
    keeps its permission bits (not its owner, nor other hard links); a new
    one gets the usual ``0o666 & ~umask``. Within :func:`deferred_commits`
    it stops once the temporary file is whole, and leaves the rest to the
    caller.

    Raises
    ------
    OutputError
        Missing or read-only directory, ``path`` is a directory, disk full
        and other write errors, each with one clear message.
    """
    deferred = getattr(_deferred, "writes", None)
    _write_temporary(path, write, then=PendingWrite.commit if deferred is None else deferred.append)


#: Per thread: the list that write_atomically leaves its PendingWrites in, if any.
_deferred = threading.local()


@contextlib.contextmanager
def deferred_commits() -> Iterator[list[PendingWrite]]:
    """Within the block, on this thread, :func:`write_atomically` leaves its
    complete temporary file as a :class:`PendingWrite` in the list yielded,
    without syncing it to disk or renaming it into place.

    The caller then commits or discards each, from any thread: a batch's
    threads move on to their next file while another thread waits for the
    disk.
    """
    saved = getattr(_deferred, "writes", None)
    _deferred.writes = writes = []
    try:
        yield writes
    finally:
        _deferred.writes = saved


@dataclass
class PendingWrite:
    """A complete temporary file of :func:`write_atomically`, not yet in place.

    Exactly one of :meth:`commit` and :meth:`discard` must be called.
    """

    fd: int | None  # open on the temporary file until committed or discarded
    temp_name: str
    target: Path
    label: str

    def _close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)

    def commit(self) -> None:
        """Sync the file to disk and rename it over its target (see write_atomically).

        Raises OutputError (the temporary file then removed) when that fails.
        """
        if self.fd is None:
            raise ValueError("this write was committed or discarded already")
        try:
            try:
                os.fsync(self.fd)
            finally:
                self._close()
            kept_mode = _regular_file_mode(self.target)
            if kept_mode is not None:
                os.chmod(self.temp_name, kept_mode)
            os.replace(self.temp_name, self.target)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(self.temp_name)
            if isinstance(exc, OSError):
                raise OutputError(f"cannot write {self.label}: {os_reason(exc)}") from None
            raise
        _sync_directory(self.target.parent)

    def discard(self) -> None:
        """Remove the temporary file, unless committed; the target keeps what it had."""
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            self._close()
        with contextlib.suppress(OSError):
            os.unlink(self.temp_name)


def _write_temporary(path: str | os.PathLike, write: Callable[[BinaryIO], None],
                     then: Callable[[PendingWrite], None]) -> None:  # fmt: skip
    """Create the temporary file beside ``path``, fill it through ``write``, and pass
    it to ``then``; on any failure up to then, it is removed."""
    text = os.fspath(path)
    label = f"'{os.fsdecode(text)}'"
    target = Path(text)
    directory = target.parent
    check_output_path(path)
    try:
        fd, temp_name = _create_temporary(directory, target.name)
    except PermissionError:
        raise OutputError(f"cannot write {label}: directory '{directory}' is not writable") from None
    except OSError as exc:
        raise OutputError(f"cannot write {label}: {os_reason(exc)}") from None
    pending = PendingWrite(fd, temp_name, target, label)
    try:
        # read too: multi-page TIFF reads back what it wrote; the descriptor stays open to be synced
        with os.fdopen(fd, "w+b", closefd=False) as stream:
            write(stream)
            stream.flush()
        then(pending)
    except BaseException as exc:
        pending.discard()  # nothing left to remove once committed
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {label}: {os_reason(exc)}") from None
        raise


_TEMPORARY_NAME = re.compile(r"\.(.+)\.[0-9a-f]{8}\.part")


def _temporary_stem(name: str) -> str:
    """NAME as it appears in its temporary file: shortened when very long."""
    stem = name
    while len(os.fsencode(stem)) > 180:  # leave room in the 255-byte name limit
        stem = stem[: len(stem) * 3 // 4]
    return stem


def is_temporary_for(entry: str, name: str) -> bool:
    """Whether file name ``entry`` is a temporary file that writing ``name`` creates.

    >>> is_temporary_for(".a.png.0f3a9b2c.part", "a.png"), is_temporary_for(".a.png.keep.part", "a.png")
    (True, False)
    """
    found = _TEMPORARY_NAME.fullmatch(entry)
    return bool(found) and found.group(1) == _temporary_stem(name)


def _create_temporary(directory: Path, name: str) -> tuple[int, str]:
    """Create ``.NAME.XXXXXXXX.part`` in ``directory`` (umask applies, like any new file)."""
    stem = _temporary_stem(name)
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        temp_name = os.path.join(directory, f".{stem}.{os.urandom(4).hex()}.part")
        try:
            return os.open(temp_name, flags, 0o666), temp_name
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "cannot find a free temporary name")


def _regular_file_mode(target: Path) -> int | None:
    """The permission bits of an existing regular file at ``target`` (not a link)."""
    try:
        info = os.lstat(target)
    except OSError:
        return None
    return stat.S_IMODE(info.st_mode) if stat.S_ISREG(info.st_mode) else None


def _sync_directory(directory: Path) -> None:
    """Make the rename durable; best effort (some systems cannot sync directories)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_image(
    frames: Sequence[Image.Image | DeepImage],
    destination: str | os.PathLike | BinaryIO,
    *,
    fmt: str,
    metadata: Metadata | None = None,
    options: dict | None = None,
) -> list[str]:
    """Encode and write ``frames``: atomically to a path, or to a binary stream.

    A regular file is encoded straight into its temporary file (see
    :func:`write_atomically`), so an encoder error never touches the
    destination; Pillow's encoders release the GIL writing to a file, not
    to memory, which lets a batch encode on several threads at once. 16-bit
    colour, a stream, a character device or a FIFO get the image encoded in
    memory first; a device or FIFO is written into, never replaced; a
    socket or block device is refused. Returns the notes from
    :func:`encode_image`.
    """
    path = destination if isinstance(destination, (str, os.PathLike)) else None
    device = path is not None and _special_kind(path) in ("character device", "FIFO", "descriptor")
    notes: list[str] = []
    try:
        if path is not None and not device and not isinstance(frames[0], DeepImage):
            write_atomically(path, lambda stream: notes.extend(
                encode_image(frames, stream, fmt=fmt, metadata=metadata, options=options)))  # fmt: skip
            return notes
        # In memory: a stream or device is written only once the image is whole,
        # and tifffile takes an open file's name (a descriptor here) for a path.
        buffer = io.BytesIO()
        notes = encode_image(frames, buffer, fmt=fmt, metadata=metadata, options=options)
    except OutputError as exc:
        name = "" if path is None else f"'{os.fsdecode(os.fspath(path))}'"
        if name and not str(exc).startswith(("cannot write '", name)):
            raise OutputError(f"{name}: {exc}") from None
        raise
    data = buffer.getvalue()  # bytes, not a view: nothing is left exported if a write fails
    if device:
        check_output_path(path)
        _write_into(path, data)
    elif path is not None:
        write_atomically(path, lambda stream: _write_all(stream, data))
    else:
        try:
            _write_all(destination, data)
            destination.flush()
        except OSError as exc:
            raise OutputError(f"cannot write to {_stream_name(destination)}: {os_reason(exc)}") from None
    return notes


def _write_all(stream: BinaryIO, data: memoryview) -> None:
    """Write every byte: a buffered write interrupted by a signal can return short."""
    view = memoryview(data)
    while view:
        written = stream.write(view)
        if written is None:  # a non-blocking stream that is full
            raise OSError(errno.EAGAIN, "the output stream is not accepting data")
        view = view[written:]


def _stream_name(stream: BinaryIO) -> str:
    name = getattr(stream, "name", None)
    if name in ("<stdout>", 1):
        return "standard output"
    return f"'{name}'" if isinstance(name, str) else "the output stream"
