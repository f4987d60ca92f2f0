"""Reading image files safely: one decoded, upright, filterable image per file.

Imports Pillow but not NumPy, so that a file can be decoding on a thread of
its own while the rest of the command is still importing
(:class:`ReadAhead`). Arrays come later: :attr:`LoadedImage.pixels` wraps
the decoded memory when asked for.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import mmap
import os
import re
import stat
import threading
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO, Sequence

from PIL import Image

from .encoding import TIFF_PREDICTOR_TAG, SourceEncoding, webp_is_lossless
from .errors import first_line, os_reason
from .options import DEFAULT_FORMATS, DEFAULT_MAX_PIXELS

if TYPE_CHECKING:
    import numpy as np

    from .deep_colour import DeepImage

__all__ = [
    "ImageError",
    "ImageTooLargeError",
    "UnsupportedModeError",
    "Metadata",
    "LoadedImage",
    "SAMPLE_TYPES",
    "DEFAULT_FORMATS",
    "DEFAULT_MAX_PIXELS",
    "readable_formats",
    "load_image",
    "ReadAhead",
    "filterable_mode",
    "valid_dpi",
]

# Pillow logs some refusals (a TIFF claiming 32771 samples per pixel) at ERROR level
# before raising. With logging unconfigured, Python's last-resort handler printed
# them on stderr next to convfilter's own one-line error; a NullHandler keeps them
# quiet unless an application configures logging itself.
logging.getLogger("PIL").addHandler(logging.NullHandler())

#: Pillow modes the engine filters directly, with their NumPy sample types
#: (``images.FILTERABLE_MODES`` holds them as dtypes).
SAMPLE_TYPES: dict[str, str] = {
    "L": "u1",
    "LA": "u1",
    "RGB": "u1",
    "RGBA": "u1",
    "CMYK": "u1",
    "I;16": "<u2",
    "I": "i4",
    "F": "f4",
    "RGB;16": "u2",  # 16-bit colour, held by DeepImage (no Pillow mode)
    "RGBA;16": "u2",
}

#: Modes converted before filtering, and what they become.
_CONVERTED_MODES = {
    "1": "L",
    "P": None,  # RGB, or RGBA when the palette has transparency
    "PA": "RGBA",
    "I;16L": "I;16",
    "I;16B": "I;16",
    "I;16N": "I;16",
}

#: Save keywords each writer understands (anything else is left out).
_METADATA_KEYS = {
    "PNG": {"icc_profile", "exif", "dpi"},
    "JPEG": {"icc_profile", "exif", "dpi"},
    "TIFF": {"icc_profile", "exif", "dpi"},
    "WEBP": {"icc_profile", "exif"},
    "BMP": {"dpi"},
}

# EXIF orientation value -> the transpose that shows the picture upright.
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_EXIF_ORIENTATION = 0x0112
#: Orientations that turn the picture a quarter (width and height swap).
_QUARTER_TURNS = {5, 6, 7, 8}


#: Tags never copied into the output's EXIF: the orientation (applied), the
#: resolution (carried as DPI) and, since a TIFF's EXIF is its main IFD, the
#: tags that describe the stored pixels, which would contradict the output's.
_NOT_CARRIED_TAGS = frozenset({
    _EXIF_ORIENTATION, 282, 283, 296,  # orientation; X/Y resolution and unit
    305,  # Software: the program that wrote the input, not the output
    254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 277, 278, 279, 280, 281, 284,
    317, 320, 322, 323, 324, 325, 338, 339, 340, 341, 347, 512, 513, 514, 515, 517,
    518, 519, 520, 521, 529, 530, 531, 532, 34675,
})  # fmt: skip


class ImageError(ValueError):
    """An input that cannot be read as an image; the message names the file."""


class ImageTooLargeError(ImageError):
    """The image has more pixels than the allowed maximum."""


class UnsupportedModeError(ImageError):
    """A pixel mode convfilter does not filter (e.g. YCbCr, HSV)."""


@dataclass(frozen=True)
class Metadata:
    """What is carried from input to output: ICC profile, EXIF (no rotation), DPI."""

    icc_profile: bytes | None = None
    exif: bytes | None = None
    dpi: tuple[float, float] | None = None

    def save_options(self, fmt: str) -> dict:
        """The keywords for ``Image.save`` that ``fmt`` can hold.

        A DPI no writer can store (not finite, not positive, over 65535) is left out.
        """
        keys = _METADATA_KEYS.get(fmt, set())
        options = {}
        for key in keys:
            value = getattr(self, key)
            if key == "dpi":
                value = valid_dpi(value)
            if value:
                options[key] = value
        return options

    def not_held(self, fmt: str) -> list[str]:
        """What this metadata holds that ``fmt`` cannot: ``["ICC profile", "DPI"]``."""
        names = {"icc_profile": "ICC profile", "exif": "EXIF", "dpi": "DPI"}
        keys = _METADATA_KEYS.get(fmt, set())
        return [name for key, name in names.items() if getattr(self, key) and key not in keys]


def valid_dpi(value: object) -> tuple[float, float] | None:
    """``(x, y)`` as floats when both are finite and in (0, 65535]; else None."""
    try:
        x, y = (float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError, OverflowError):
        return None
    if all(math.isfinite(v) and 0 < v <= 65535 for v in (x, y)):
        return (x, y)
    return None


@dataclass
class LoadedImage:
    """A decoded input, upright and in a filterable mode.

    ``frames`` has one image per frame (one for still images): Pillow
    images, or :class:`DeepImage` for 16-bit colour; ``notes`` says what
    was done to make it filterable (palette expanded, EXIF rotation
    applied); ``encoding`` is how the file was encoded, for writing it
    back the same way.
    """

    frames: list[Image.Image | DeepImage]
    format: str | None
    source_mode: str
    metadata: Metadata
    notes: list[str] = field(default_factory=list)
    encoding: SourceEncoding = field(default_factory=SourceEncoding)
    shared: _SharedPixels | None = field(default=None, repr=False)

    @functools.cached_property
    def pixels(self) -> np.ndarray | None:
        """The single frame's memory (an L or RGB image decoded in place) as a
        writable array, or None: H x W for L, H x W x 4 for RGB (Pillow's
        layout; the fourth byte is padding), so that the frame can be
        filtered in place."""
        return None if self.shared is None else self.shared.array()

    @property
    def mode(self) -> str:
        return self.frames[0].mode

    @property
    def size(self) -> tuple[int, int]:
        return self.frames[0].size


def _describe(source: str | os.PathLike | None) -> str:
    return "standard input" if source in (None, "-") else f"'{os.fsdecode(source)}'"


def readable_formats() -> tuple[str, ...]:
    """Every format name Pillow can decode here (what ``formats`` may list)."""
    Image.init()
    return tuple(sorted(Image.OPEN))


def _open_input(source: str | os.PathLike) -> BinaryIO:
    """Open a regular file for reading, refusing directories, FIFOs and devices.

    The file is opened without blocking and checked through its descriptor,
    so a FIFO (even one swapped in after a check) can never hang the process.
    """
    name = _describe(source)

    def opener(path, flags):
        return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))

    try:
        handle = open(source, "rb", opener=opener)  # O_NONBLOCK does not affect regular files
    except IsADirectoryError:
        raise ImageError(f"{name} is a directory, not an image") from None
    except OSError as exc:
        raise ImageError(f"{name}: {os_reason(exc)}") from None
    try:
        mode = os.fstat(handle.fileno()).st_mode
    except OSError as exc:
        handle.close()
        raise ImageError(f"{name}: {os_reason(exc)}") from None
    if stat.S_ISREG(mode):
        return handle
    handle.close()
    if stat.S_ISDIR(mode):
        raise ImageError(f"{name} is a directory, not an image")
    raise ImageError(f"{name} is not a regular file (a FIFO, socket or device)")


def load_image(
    source: str | os.PathLike | BinaryIO,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    formats: Sequence[str] = DEFAULT_FORMATS,
    name: str | None = None,
) -> LoadedImage:
    """Decode an image file (a path, or a binary stream such as stdin).

    The pixel count is checked from the header before any pixel is decoded
    (``max_pixels`` of 0 or None means no limit). Every frame is decoded;
    EXIF orientation is applied; P becomes RGB/RGBA and 1 becomes L.

    Raises
    ------
    ImageError
        Missing, unreadable, not an image, format not allowed, truncated or
        corrupt; :class:`ImageTooLargeError` and :class:`UnsupportedModeError`
        are subclasses.
    """
    if isinstance(source, (str, os.PathLike)):
        label = name or _describe(source)
        handle = _open_input(source)
    else:
        label = name or "standard input"
        handle = source
    try:
        return _decode(handle, label, max_pixels or 0, tuple(formats))
    finally:
        if handle is not source:
            handle.close()


#: Set on a ReadAhead's thread, which makes pixel memory without NumPy.
_reading_ahead = threading.local()


class ReadAhead:
    """:func:`load_image` of one file, started at once on a thread of its own.

    ``convfilter apply`` starts one before it imports NumPy and the engine:
    the decoder lets go of the GIL while it works, so the file decodes on a
    second core while the first imports. :meth:`result` gives what
    :func:`load_image` would have returned, or raises what it would have
    raised, when the caller needs it. The thread is a daemon: a command
    that fails before it asks does not wait for the decode to end.
    """

    def __init__(self, path: str | os.PathLike, **options) -> None:
        """``options`` as for :func:`load_image`."""
        self.path = path
        self._loaded: LoadedImage | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._load, args=(options,), name="convfilter-read-ahead",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def _load(self, options: dict) -> None:
        _reading_ahead.active = True
        try:
            self._loaded = load_image(self.path, **options)
        except BaseException as exc:  # noqa: BLE001 - raised again by result()
            self._error = exc

    def result(self) -> LoadedImage:
        """The loaded image, once decoded (raises what loading it raised)."""
        self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        loaded, self._loaded = self._loaded, None  # handed over once: the caller may filter it in place
        if loaded is None:
            raise RuntimeError("ReadAhead.result() gives the image once")
        return loaded


def _decode(handle: BinaryIO, label: str, max_pixels: int, formats: tuple[str, ...]) -> LoadedImage:
    allowed = tuple(f.upper() for f in formats)
    _silence_libtiff()
    stage = "read image header"
    with _pillow_pixel_limit(max_pixels), _warnings_ignored():
        try:
            try:
                image = Image.open(handle, formats=allowed)
            except Image.UnidentifiedImageError:
                raise ImageError(_unidentified_message(handle, label, allowed)) from None
            stage = "decode image"
            try:
                loaded = _decode_frames(image, handle, label, max_pixels)
            except BaseException:
                image.close()
                raise
            if all(frame is not image for frame in loaded.frames):
                image.close()  # a single frame used as it is stays open (closing frees pixels)
            return loaded
        except ImageError:
            raise
        except Image.DecompressionBombError as exc:
            raise ImageTooLargeError(_bomb_message(label, exc, max_pixels)) from None
        except MemoryError:
            raise ImageTooLargeError(
                f"{label}: not enough memory to decode this image (lower --max-pixels)"
            ) from None
        except Exception as exc:  # Pillow plugins raise many kinds on bad files
            raise ImageError(f"{label}: cannot {stage}: {first_line(exc)}") from None


#: The filter :func:`_warnings_ignored` puts first while any thread decodes.
_IGNORE_ALL = ("ignore", None, Warning, None, 0)
_quiet_lock = threading.Lock()
_quiet_decodes = 0  # decodes running now, on any thread


@contextlib.contextmanager
def _warnings_ignored():
    """Ignore every warning while this thread (or another) decodes: Pillow's
    warnings on odd files are not ours to print.

    ``warnings.catch_warnings`` swaps the process's whole filter list and
    puts its saved list back on exit, so with two threads decoding at once
    (a batch's jobs, or a read-ahead while NumPy is imported and adds its
    own filters) the wrong list could be left in place. Here the first
    decode puts one filter in front and the last takes out only that one.
    """
    global _quiet_decodes
    with _quiet_lock:
        if _quiet_decodes == 0:
            warnings.filters.insert(0, _IGNORE_ALL)
            _filters_changed()
        _quiet_decodes += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_decodes -= 1
            if _quiet_decodes == 0:
                for index, entry in enumerate(warnings.filters):
                    if entry is _IGNORE_ALL:
                        del warnings.filters[index]
                        break
                _filters_changed()


def _filters_changed() -> None:
    """Tell the warnings module its filter list changed, so that no warning it
    remembers as ignored stays ignored (what ``warnings.filterwarnings`` does)."""
    changed = getattr(warnings, "_filters_mutated", None)
    if changed is not None:
        changed()


_libtiff_silenced: list[bool] = []


def _silence_libtiff() -> None:
    """Stop libtiff printing its own error lines on the process's stderr.

    Pillow installs a libtiff warning handler but keeps libtiff's default
    error handler, which writes straight to file descriptor 2: a corrupt TIFF
    then printed lines such as "LZWDecode: Not enough data at scanline 0"
    before convfilter's one-line error. Pillow still reports the failure
    itself. Done once per process, where libtiff can be found (Linux reads
    /proc/self/maps; elsewhere Pillow's bundled library folder is searched).
    """
    if _libtiff_silenced:
        return
    _libtiff_silenced.append(True)
    try:
        import ctypes

        for path in _libtiff_paths():
            library = ctypes.CDLL(path)
            library.TIFFSetErrorHandler.restype = ctypes.c_void_p
            library.TIFFSetErrorHandler.argtypes = [ctypes.c_void_p]
            library.TIFFSetErrorHandler(None)
    except Exception:  # noqa: BLE001 - cosmetic; decoding works the same without it
        pass


def _libtiff_paths() -> list[str]:
    found: list[str] = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                path = line.split(maxsplit=5)[-1].strip()
                if "libtiff" in os.path.basename(path) and path.startswith("/") and path not in found:
                    found.append(path)
    except OSError:
        pass
    if not found:
        import glob

        pil_dir = os.path.dirname(Image.__file__)
        for pattern in ("../pillow.libs/libtiff*", ".dylibs/libtiff*"):
            found += sorted(glob.glob(os.path.join(pil_dir, pattern)))
    return found


# Pillow checks sizes itself, in places convfilter cannot reach (while opening
# an ICO, allocating a WebP canvas, growing a GIF frame). While a decode runs,
# its global MAX_IMAGE_PIXELS is set so that its check fires exactly above
# convfilter's limit (it raises above twice the value, and only warns below).
# Concurrent decodes (threads) share one setting: the loosest limit wins.
_limit_lock = threading.Lock()
_active_limits: list[int] = []
_saved_limit: list[float | int | None] = []


@contextlib.contextmanager
def _pillow_pixel_limit(max_pixels: int):
    with _limit_lock:
        if not _active_limits:
            _saved_limit[:] = [Image.MAX_IMAGE_PIXELS]
        _active_limits.append(max_pixels)
        _set_pillow_limit()
    try:
        yield
    finally:
        with _limit_lock:
            _active_limits.remove(max_pixels)
            if _active_limits:
                _set_pillow_limit()
            else:
                Image.MAX_IMAGE_PIXELS = _saved_limit.pop()


def _set_pillow_limit() -> None:
    loosest = 0 if 0 in _active_limits else max(_active_limits)
    Image.MAX_IMAGE_PIXELS = None if loosest == 0 else loosest / 2  # type: ignore[assignment]


def _bomb_message(label: str, exc: BaseException, max_pixels: int) -> str:
    found = re.search(r"\((\d+) pixels\)", str(exc))
    pixels = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
    return (
        f"{label}: {pixels}, more than the limit of {max_pixels:,} "
        "(raise it with --max-pixels, 0 for no limit)"
    )


def _too_large_message(label: str, what: str, pixels: int, max_pixels: int) -> str:
    return (
        f"{label}: {pixels:,} pixels ({what}), more than the limit of {max_pixels:,} "
        "(raise it with --max-pixels, 0 for no limit)"
    )


def _unidentified_message(handle: BinaryIO, label: str, allowed: tuple[str, ...]) -> str:
    """Say whether the file is no image at all or looks like a format not allowed.

    Only the formats' signature checks run on the first bytes; no decoder
    outside the allowed list parses the file.
    """
    try:
        handle.seek(0)
        prefix = handle.read(16)
    except Exception:
        prefix = b""
    if not prefix:
        return f"{label}: empty file, not an image"
    found = _format_by_signature(prefix)
    if found in allowed:
        return f"{label}: a damaged or unsupported {found} file (its header cannot be read)"
    if found:
        return (
            f"{label}: the file is in {found} format, which is not decoded by default "
            f"(allowed: {', '.join(allowed)}); add --allow-format {found} to read it"
        )
    return f"{label}: not an image, or not in an allowed format ({', '.join(allowed)})"


def _format_by_signature(prefix: bytes) -> str | None:
    Image.init()
    for name in Image.ID:
        accept = Image.OPEN[name][1]
        if accept is None:
            continue
        try:
            if accept(prefix) is True:
                return name
        except Exception:
            continue
    return None


def _decode_frames(image: Image.Image, handle: BinaryIO, label: str, max_pixels: int) -> LoadedImage:
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"{label}: image has no pixels ({width}x{height})")
    if max_pixels and width * height > max_pixels:
        raise ImageTooLargeError(_too_large_message(label, f"{width}x{height}", width * height, max_pixels))
    source_mode = image.mode
    fmt = image.format
    try:
        n_frames = max(1, int(getattr(image, "n_frames", 1) or 1))
    except Exception as exc:
        raise ImageError(f"{label}: cannot count the frames: {first_line(exc)}") from None
    if max_pixels and n_frames * width * height > max_pixels:
        raise ImageTooLargeError(_too_large_message(
            label, f"{n_frames} frames of {width}x{height}", n_frames * width * height, max_pixels
        ))  # fmt: skip
    deep_source = _deep_colour_source(image)  # before load(), which consumes the tile list
    if deep_source is None:
        _refuse_16_bits_read_as_8(image, label, 0)
    # A PNG whose EXIF is not ahead of its pixels decodes them when EXIF is
    # read, so its first frame is decoded first: a decoder error must fail the
    # image, not pass for unreadable EXIF. Other formats' EXIF is read before
    # decoding (the TIFF plugin drops the orientation tag once it has decoded).
    exif_after_pixels = fmt == "PNG" and "exif" not in image.info
    if not exif_after_pixels:
        orientation = _orientation(image)  # before _read_metadata drops the tag
        metadata = _read_metadata(image)
    shared = _SharedPixels.attach(image) if n_frames == 1 and deep_source is None else None
    image.decodermaxblock = max(image.decodermaxblock, _block_for(handle))
    try:
        image.load()
    except (ImageError, Image.DecompressionBombError, MemoryError):
        raise
    except Exception as exc:
        where = f" (frame 1 of {n_frames})" if n_frames > 1 else ""
        raise ImageError(f"{label}: cannot decode image{where}: {first_line(exc)}") from None
    if exif_after_pixels:
        orientation = _orientation(image)
        metadata = _read_metadata(image)
    uncarried = _uncarried_metadata(image)
    if orientation in _QUARTER_TURNS and metadata.dpi:
        metadata = dataclasses.replace(metadata, dpi=metadata.dpi[::-1])
    frames: list[Image.Image] = []
    durations: list[int] = []
    target_mode: str | None = None
    notes: list[str] = uncarried
    if fmt == "MPO" and n_frames > 1:
        # A camera JPEG with extra pictures (previews, other views): the
        # first is the photograph; the others are not frames of an animation.
        notes.append(f"kept the main picture of this MPO/JPEG; its {n_frames - 1} extra "
                     "picture(s) (previews or other views) are not written")  # fmt: skip
        n_frames = 1
    source_encoding = _source_encoding(image, fmt)
    upright_note = f"applied EXIF orientation {orientation}; the output is stored upright"
    if deep_source is not None:  # Pillow's 8-bit decode above has checked the first frame
        deep_frames, deep_notes = _decode_deep_colour(handle, image, n_frames, deep_source, label, orientation,
                                                      max_pixels)  # fmt: skip
        notes += deep_notes
        if orientation in _ORIENTATION_TRANSPOSE:
            notes.append(upright_note)
        return LoadedImage(deep_frames, fmt, deep_frames[0].mode, metadata, notes, source_encoding)
    total = 0
    disposal: list[int] = []
    for index in range(n_frames):
        try:
            if index:
                image.seek(index)
                _refuse_16_bits_read_as_8(image, label, index)
            total += image.size[0] * image.size[1]
            if max_pixels and total > max_pixels:
                raise ImageTooLargeError(_too_large_message(
                    label, f"frames 1 to {index + 1} of {n_frames}", total, max_pixels
                ))  # fmt: skip
            image.load()
            # A still image is used as decoded; frames of an animation are
            # copied because seeking to the next one reuses the decoder's image.
            frame = image if n_frames == 1 else image.copy()
            if shared is not None:
                frame = shared.image(image) or frame
        except (ImageError, Image.DecompressionBombError, MemoryError):
            raise
        except Exception as exc:
            where = f" (frame {index + 1} of {n_frames})" if n_frames > 1 else ""
            raise ImageError(f"{label}: cannot decode image{where}: {first_line(exc)}") from None
        if target_mode is None:
            # A 16-bit PGM opens as mode I; as I;16 it is filtered and written at 16 bits.
            target_mode = "I;16" if fmt == "PPM" and frame.mode == "I" else filterable_mode(frame, label)
        if frame.mode != target_mode:
            if index == 0:
                notes.append(f"converted mode {frame.mode} to {target_mode} for filtering")
            frame = frame.convert(target_mode)
        if orientation in _ORIENTATION_TRANSPOSE:
            frame = frame.transpose(_ORIENTATION_TRANSPOSE[orientation])
        frames.append(frame)
        durations.append(_duration(image.info.get("duration")))
        disposal.append(_small_int(getattr(image, "disposal_method", getattr(image, "dispose_op", 0))))
    if orientation in _ORIENTATION_TRANSPOSE:
        notes.append(upright_note)
    source_encoding = dataclasses.replace(
        source_encoding,
        durations=tuple(durations),
        loop=_loop(image.info.get("loop")),
        disposal=tuple(disposal) if fmt in ("GIF", "PNG") else None,
        default_image=bool(fmt == "PNG" and image.info.get("default_image")),
        webp_lossless=_webp_lossless(handle) if fmt == "WEBP" else None,
    )
    memory = shared if shared is not None and frames[0] is shared.frame else None
    return LoadedImage(frames, fmt, source_mode, metadata, notes, source_encoding, memory)


#: The most a decoder is given at once (Pillow's default is 64 KiB).
_DECODE_BLOCK = 64 << 20


def _block_for(handle: BinaryIO) -> int:
    """How much of the file a decoder is handed at once: all of it, up to
    :data:`_DECODE_BLOCK`.

    A decoder lets go of the GIL while it works, and needs it back between
    two blocks. With another thread busy (the command importing beside a
    :class:`ReadAhead`, a batch's second job), each of those waits could
    last Python's whole switch interval (5 ms): in 64 KiB blocks a 12 MP
    JPEG took 460 ms to decode instead of 105; in one block, 150 ms.
    (Formats whose plugins read for themselves, TIFF and PNG's chunks,
    are handed what they read.)
    """
    try:
        size = os.fstat(handle.fileno()).st_size
    except (OSError, AttributeError, ValueError):
        try:
            size = len(handle.getbuffer())  # type: ignore[attr-defined]
        except (AttributeError, TypeError, ValueError):
            return 0
    return min(size, _DECODE_BLOCK)


#: Formats whose Pillow plugins decode into the memory an image is given
#: (others, ICO for one, take memory that is already there for pixels
#: already decoded).
_DECODED_IN_PLACE = frozenset({"JPEG", "PNG", "TIFF", "WEBP", "BMP", "PPM"})


class _SharedPixels:
    """Decoded pixels in memory that NumPy can take over, so that they can be
    filtered in place and written from there, with no copy between Pillow
    and NumPy.

    Pillow keeps an RGB image's pixels 4 bytes apart and an L image's 1,
    each row a pointer into memory it allocates. Before the first decode,
    :meth:`attach` gives the image memory of that layout instead
    (``Image.core.map_buffer``, which ``Image.frombuffer`` uses for its
    modes); Pillow's decoders then write into it, and :meth:`array` wraps it
    without a copy. Measured on the development machine (2-core Intel Xeon),
    12 MP RGB JPEG, ``apply -k edge_enhance``, medians of 7 runs taking
    turns: reading strips out of Pillow's memory and copying the result
    into a new Pillow image, filtering took 111 ms of the command's 0.69 s
    and it peaked at 138 MiB; filtered in place, 89 ms of 0.57 s, and 99 MiB.

    The memory is zeros, as Pillow gives (a decoder may leave pixels of a
    damaged file unwritten), made without NumPy where it is not loaded yet
    (:func:`_zeroed_memory`).

    Pillow's own plugins decide where they decode: one that maps the file
    or replaces the image memory leaves this memory unused, which
    :meth:`image` notices, and the pixels are then read from Pillow.
    """

    def __init__(self, memory, shape: tuple[int, ...], core) -> None:
        self.memory = memory
        self.shape = shape
        self.core = core
        self.frame: Image.Image | None = None

    @classmethod
    def attach(cls, image: Image.Image) -> _SharedPixels | None:
        """Memory for ``image``, an L or RGB image not yet decoded; None for other
        modes, or if this Pillow does not allow it."""
        if image.format not in _DECODED_IN_PLACE or image.mode not in ("L", "RGB") or "transparency" in image.info:
            return None
        width, height = image.size
        # A TIFF turned by its orientation tag decodes at its stored size.
        if not all(0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
                   for x0, y0, x1, y1 in (tile[1] for tile in image.tile)):  # fmt: skip
            return None
        shape = (height, width, 4) if image.mode == "RGB" else (height, width)
        try:
            memory = _zeroed_memory(math.prod(shape))
            core = Image.core.map_buffer(memory, image.size, "raw", 0, (image.mode, 0, 1))
            if core.mode != image.mode or core.size != image.size:
                return None
            image.im = core
        except Exception:  # an older or newer Pillow without this way in
            return None
        return cls(memory, shape, core)

    def image(self, decoded: Image.Image) -> Image.Image | None:
        """The decoded image as a plain Pillow image over the memory (without
        the file's info, as ``images.from_array`` gives), or None if the
        decoder did not write into it."""
        if getattr(decoded, "im", None) is not self.core:
            return None
        self.frame = Image.new(decoded.mode, (0, 0))._new(self.core)
        return self.frame

    def array(self) -> np.ndarray:
        """The memory as a writable uint8 array (H x W, or H x W x 4 for RGB)."""
        import numpy as np

        return np.frombuffer(self.memory, np.uint8).reshape(self.shape)


def _zeroed_memory(size: int):
    """``size`` bytes of zeros that NumPy can wrap.

    NumPy's own (a batch, a library caller): it reuses freed memory, where
    a fresh mapping for each of 200 small photos cost 0.5 ms of page faults
    a file (a batch's loading took 1.6 times as long). On a
    :class:`ReadAhead`'s thread, whose command may be importing NumPy at
    that moment, a private anonymous mapping, asking for huge pages as
    NumPy does for its large arrays: writing 48 MB into it the first time
    took 46 ms in 4 KiB pages, 18 ms in huge pages.
    """
    if not getattr(_reading_ahead, "active", False):
        import numpy as np

        return np.zeros(size, np.uint8)
    private = getattr(mmap, "MAP_PRIVATE", None)
    memory = mmap.mmap(-1, size) if private is None else mmap.mmap(-1, size, flags=private)
    huge = getattr(mmap, "MADV_HUGEPAGE", None)
    if huge is not None:
        with contextlib.suppress(OSError):
            memory.madvise(huge)
    return memory


def _small_int(value: object) -> int:
    try:
        return int(value or 0)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0


def _webp_lossless(handle: BinaryIO) -> bool | None:
    try:
        handle.seek(0)
        return webp_is_lossless(handle.read())
    except (OSError, ValueError):
        return None


def _source_encoding(image: Image.Image, fmt: str | None) -> SourceEncoding:
    """What the file says about its own encoding (frames are added later)."""
    info = image.info
    comment = info.get("comment")
    found: dict = {"format": fmt, "comment": comment if isinstance(comment, bytes) and comment else None}
    if fmt in ("JPEG", "MPO"):
        from PIL import JpegImagePlugin

        tables = getattr(image, "quantization", None)
        if tables:
            found["jpeg_qtables"] = tuple(tuple(tables[key]) for key in sorted(tables))
        try:
            found["jpeg_subsampling"] = JpegImagePlugin.get_sampling(image)
        except Exception:  # noqa: BLE001 - an odd layout: the writer's default is used
            found["jpeg_subsampling"] = None
        found["jpeg_progressive"] = bool(info.get("progressive") or info.get("progression"))
    if fmt == "TIFF" and isinstance(info.get("compression"), str):
        found["tiff_compression"] = info["compression"]
        found["tiff_predictor"] = _small_int(getattr(image, "tag_v2", {}).get(TIFF_PREDICTOR_TAG, 1)) or 1
    return SourceEncoding(**found)


def _deep_colour_source(image: Image.Image) -> dict | None:
    """For a 16-bit colour PNG, TIFF or raw PPM (which Pillow decodes to 8 bits),
    what :func:`deep_colour.decode` needs; None for any other image."""
    if image.mode not in ("RGB", "RGBA") or image.format not in ("PNG", "TIFF", "PPM"):
        return None
    if image.format == "PPM":
        for tile in getattr(image, "tile", None) or ():
            args = tile[3] if len(tile) > 3 else None
            if isinstance(args, tuple) and len(args) > 1 and int(args[1]) > 255:
                if tile[0] == "ppm":
                    return {"ppm_offset": int(tile[2]), "ppm_maxval": int(args[1])}
                if tile[0] == "ppm_plain":
                    return {"plain": True}
        return None
    return {} if _stores_16_bit_samples(image) else None


def _stores_16_bit_samples(image: Image.Image) -> bool:
    """Whether the current frame's data holds 16-bit samples (its raw mode says ``;16``)."""
    for tile in getattr(image, "tile", None) or ():
        args = tile[3] if len(tile) > 3 else None
        rawmode = args[0] if isinstance(args, tuple) and args else args
        if isinstance(rawmode, str) and ";16" in rawmode:
            return True
    return False


def _refuse_16_bits_read_as_8(image: Image.Image, label: str, index: int) -> None:
    """Refuse a frame whose 16-bit samples Pillow would decode to 8 bits (16-bit
    CMYK or grey with alpha, or a 16-bit colour page after an 8-bit one)."""
    if image.mode not in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F") and _stores_16_bit_samples(image):
        where = f" (frame {index + 1})" if index else ""
        raise ImageError(
            f"{label}: 16-bit {image.mode}{where} would be read at 8 bits per sample; convfilter keeps "
            "16 bits for grey and for RGB(A) images whose every frame is 16-bit, not for this one"
        )


def _decode_deep_colour(
    handle: BinaryIO, image: Image.Image, n_frames: int, source: dict, label: str, orientation: int,
    max_pixels: int,
) -> tuple[list[DeepImage], list[str]]:
    fmt = image.format
    if source.get("plain") or (n_frames > 1 and fmt != "TIFF"):
        what = "plain-text PPM" if source.get("plain") else "animations"
        raise ImageError(f"{label}: 16-bit colour {what} are not supported")
    from . import deep_colour

    try:
        handle.seek(0)
        frames, notes = deep_colour.decode(handle.read(), fmt, size=image.size, max_pixels=max_pixels, **source)
    except deep_colour.PixelLimitError as exc:
        raise ImageTooLargeError(_too_large_message(label, exc.what, exc.pixels, max_pixels)) from None
    except MemoryError:
        raise
    except Exception as exc:  # the codecs raise their own kinds on bad data
        raise ImageError(f"{label}: cannot decode 16-bit colour: {first_line(exc)}") from None
    for frame in frames:
        frame.array = _upright(frame.array, orientation)
    return frames, notes


def _upright(array: np.ndarray, orientation: int) -> np.ndarray:
    """``array`` turned as the EXIF orientation says (as the Pillow transposes do)."""
    import numpy as np

    turned = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
        8: lambda a: np.rot90(a, 1),
    }.get(orientation)
    return array if turned is None else np.ascontiguousarray(turned(array))


def _duration(value: object) -> int:
    """A frame duration in milliseconds; anything odd in the file counts as 0."""
    try:
        number = float(value or 0)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0
    return int(number) if math.isfinite(number) and 0 <= number < 2**31 else 0


def _loop(value: object) -> int | None:
    """The loop count (0: for ever), or None when the file has none (plays once)."""
    if value is None:
        return None
    try:
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return 0
    return number if 0 <= number < 2**16 else 0


def filterable_mode(frame: Image.Image, label: str) -> str:
    """The mode ``frame`` is filtered in (itself, or what it is converted to);
    :class:`UnsupportedModeError`, naming ``label``, for one never filtered."""
    mode = frame.mode
    if mode in ("L", "RGB") and "transparency" in frame.info:
        return mode[0] + "A" if mode == "L" else "RGBA"  # a colour key becomes alpha
    if mode in SAMPLE_TYPES:
        return mode
    if mode in _CONVERTED_MODES:
        target = _CONVERTED_MODES[mode]
        if target is None:  # palette
            has_alpha = frame.has_transparency_data
            target = "RGBA" if has_alpha else "RGB"
        return target
    supported = ", ".join(list(SAMPLE_TYPES) + ["P", "1"])
    raise UnsupportedModeError(
        f"{label}: image mode {mode} is not supported (supported: {supported})"
    )


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:
        return 1


def _read_metadata(image: Image.Image) -> Metadata:
    icc = image.info.get("icc_profile") or None
    exif_bytes = None
    try:
        exif = image.getexif()
        for tag in set(exif) & _NOT_CARRIED_TAGS:
            del exif[tag]
        exif_bytes = exif.tobytes() if len(exif) else None
    except Exception:
        exif_bytes = None  # unreadable EXIF is dropped rather than failing the image
    dpi = valid_dpi(image.info.get("dpi"))
    if not isinstance(icc, bytes):
        icc = None
    return Metadata(icc_profile=icc, exif=exif_bytes, dpi=dpi)


def _uncarried_metadata(image: Image.Image) -> list[str]:
    """Notes on metadata in the file that convfilter never writes (XMP, PNG text)."""
    info = image.info
    notes = []
    if info.get("xmp") or info.get("XML:com.adobe.xmp"):
        notes.append("the input's XMP metadata is not written")
    texts = sorted(key for key, value in info.items()
                   if image.format == "PNG" and isinstance(value, str) and key != "XML:com.adobe.xmp")  # fmt: skip
    if texts:
        notes.append(f"the input's PNG text ({', '.join(texts)}) is not written")
    return notes


