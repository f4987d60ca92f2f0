"""Image files: safe loading, pixel modes, metadata and atomic writes (Pillow side).

Everything that touches Pillow's file handling lives here; filtering works
on the arrays that :func:`to_array` returns.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Sequence

import numpy as np
from PIL import Image

__all__ = [
    "ImageError",
    "ImageTooLargeError",
    "UnsupportedModeError",
    "OutputError",
    "LoadedImage",
    "Metadata",
    "DEFAULT_FORMATS",
    "FILTERABLE_MODES",
    "DEFAULT_MAX_PIXELS",
    "load_image",
    "to_array",
    "from_array",
    "output_format",
    "encode_image",
    "write_atomically",
    "save_image",
]

#: Formats decoded unless ``--allow-format`` widens the list. None of them
#: runs an external program (EPS/PostScript would start Ghostscript).
DEFAULT_FORMATS: tuple[str, ...] = (
    "PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM", "TGA", "ICO",
)  # fmt: skip

#: Pillow modes the engine filters directly, with their NumPy dtypes.
FILTERABLE_MODES: dict[str, np.dtype] = {
    "L": np.dtype(np.uint8),
    "LA": np.dtype(np.uint8),
    "RGB": np.dtype(np.uint8),
    "RGBA": np.dtype(np.uint8),
    "CMYK": np.dtype(np.uint8),
    "I;16": np.dtype("<u2"),
    "I": np.dtype(np.int32),
    "F": np.dtype(np.float32),
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

#: Pillow's own decompression-bomb threshold, the default for ``max_pixels``.
DEFAULT_MAX_PIXELS: int = int(Image.MAX_IMAGE_PIXELS or 0)

#: Save keywords each writer understands (anything else is left out).
_METADATA_KEYS = {
    "PNG": {"icc_profile", "exif", "dpi"},
    "JPEG": {"icc_profile", "exif", "dpi"},
    "TIFF": {"icc_profile", "exif", "dpi"},
    "WEBP": {"icc_profile", "exif"},
    "BMP": {"dpi"},
}
_QUALITY_FORMATS = {"JPEG", "WEBP"}
_MULTIFRAME_FORMATS = {"PNG", "GIF", "TIFF", "WEBP"}

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


class ImageError(ValueError):
    """An input that cannot be read as an image; the message names the file."""


class ImageTooLargeError(ImageError):
    """The image has more pixels than the allowed maximum."""


class UnsupportedModeError(ImageError):
    """A pixel mode convfilter does not filter (e.g. YCbCr, HSV)."""


class OutputError(ValueError):
    """An output that cannot be written: bad format, mode, directory, disk."""


@dataclass(frozen=True)
class Metadata:
    """What is carried from input to output: ICC profile, EXIF (no rotation), DPI."""

    icc_profile: bytes | None = None
    exif: bytes | None = None
    dpi: tuple[float, float] | None = None

    def save_options(self, fmt: str) -> dict:
        """The keywords for ``Image.save`` that ``fmt`` can hold."""
        keys = _METADATA_KEYS.get(fmt, set())
        options = {}
        for key in keys:
            value = getattr(self, key)
            if value:
                options[key] = value
        return options


@dataclass
class LoadedImage:
    """A decoded input, upright and in a filterable mode.

    ``frames`` has one image per frame (one for still images); ``notes``
    says what was done to make it filterable (palette expanded, EXIF
    rotation applied); ``frame_info`` holds durations and loop count.
    """

    frames: list[Image.Image]
    format: str | None
    source_mode: str
    metadata: Metadata
    notes: list[str] = field(default_factory=list)
    frame_info: dict = field(default_factory=dict)

    @property
    def mode(self) -> str:
        return self.frames[0].mode

    @property
    def size(self) -> tuple[int, int]:
        return self.frames[0].size


def _describe(source: str | os.PathLike | None) -> str:
    return "standard input" if source in (None, "-") else f"'{os.fsdecode(source)}'"


def _open_input(source: str | os.PathLike) -> BinaryIO:
    """Open a regular file for reading, refusing directories, FIFOs and devices."""
    name = _describe(source)
    try:
        info = os.stat(source)
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except PermissionError:
        raise ImageError(f"{name}: permission denied") from None
    except OSError as exc:
        raise ImageError(f"{name}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageError(f"{name} is a directory, not an image")
    if not stat.S_ISREG(info.st_mode):
        raise ImageError(f"{name} is not a regular file (a FIFO, socket or device)")
    try:
        return open(source, "rb")
    except PermissionError:
        raise ImageError(f"{name}: permission denied") from None
    except OSError as exc:
        raise ImageError(f"{name}: {exc.strerror or exc}") from None


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


def _decode(handle: BinaryIO, label: str, max_pixels: int, formats: tuple[str, ...]) -> LoadedImage:
    allowed = tuple(f.upper() for f in formats)
    saved_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # the limit is ours, checked below, with our message
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                image = Image.open(handle, formats=allowed)
            except Image.UnidentifiedImageError:
                raise ImageError(_unidentified_message(handle, label, allowed)) from None
            except Exception as exc:  # Pillow plugins raise many kinds on bad headers
                raise ImageError(f"{label}: cannot read image header: {_reason(exc)}") from None
            with image:
                return _decode_frames(image, label, max_pixels)
    finally:
        Image.MAX_IMAGE_PIXELS = saved_limit


def _unidentified_message(handle: BinaryIO, label: str, allowed: tuple[str, ...]) -> str:
    """Say whether the file is no image at all or one of a format not allowed."""
    try:
        handle.seek(0)
        with Image.open(handle) as probe:
            found = probe.format
    except Exception:
        found = None
    if found and found not in allowed:
        return (
            f"{label}: {found} images are not decoded by default "
            f"(allowed: {', '.join(allowed)}); add --allow-format {found} to read it"
        )
    return f"{label}: not an image, or not one Pillow can read"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _decode_frames(image: Image.Image, label: str, max_pixels: int) -> LoadedImage:
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"{label}: image has no pixels ({width}x{height})")
    if max_pixels and width * height > max_pixels:
        raise ImageTooLargeError(
            f"{label}: {width}x{height} is {width * height:,} pixels, more than the "
            f"limit of {max_pixels:,} (raise it with --max-pixels, 0 for no limit)"
        )
    source_mode = image.mode
    fmt = image.format
    n_frames = int(getattr(image, "n_frames", 1) or 1)
    orientation = _orientation(image)  # before _read_metadata drops the tag
    metadata = _read_metadata(image)
    frames: list[Image.Image] = []
    durations: list[int] = []
    target_mode: str | None = None
    notes: list[str] = []
    for index in range(n_frames):
        try:
            if index:
                image.seek(index)
            if image.size[0] * image.size[1] > max_pixels > 0:
                raise ImageTooLargeError(f"{label}: frame {index + 1} is larger than the pixel limit")
            image.load()
            frame = image.copy()
        except ImageError:
            raise
        except Exception as exc:
            where = f" (frame {index + 1} of {n_frames})" if n_frames > 1 else ""
            raise ImageError(f"{label}: cannot decode image{where}: {_reason(exc)}") from None
        if target_mode is None:
            target_mode = _filterable_mode(frame, label)
        if frame.mode != target_mode:
            if index == 0:
                notes.append(f"converted mode {frame.mode} to {target_mode} for filtering")
            frame = frame.convert(target_mode)
        if orientation in _ORIENTATION_TRANSPOSE:
            frame = frame.transpose(_ORIENTATION_TRANSPOSE[orientation])
        frames.append(frame)
        durations.append(int(image.info.get("duration", 0) or 0))
    if orientation in _ORIENTATION_TRANSPOSE:
        notes.append(f"applied EXIF orientation {orientation}; the output is stored upright")
    frame_info = {"duration": durations, "loop": image.info.get("loop", 0)}
    return LoadedImage(frames, fmt, source_mode, metadata, notes, frame_info)


def _filterable_mode(frame: Image.Image, label: str) -> str:
    mode = frame.mode
    if mode in FILTERABLE_MODES:
        return mode
    if mode in _CONVERTED_MODES:
        target = _CONVERTED_MODES[mode]
        if target is None:  # palette
            has_alpha = frame.has_transparency_data
            target = "RGBA" if has_alpha else "RGB"
        return target
    supported = ", ".join(list(FILTERABLE_MODES) + ["P", "1"])
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
        if len(exif):
            if _EXIF_ORIENTATION in exif:
                del exif[_EXIF_ORIENTATION]
            exif_bytes = exif.tobytes() if len(exif) else None
    except Exception:
        exif_bytes = None  # unreadable EXIF is dropped rather than failing the image
    dpi = image.info.get("dpi")
    if dpi is not None:
        try:
            dpi = (float(dpi[0]), float(dpi[1]))
        except (TypeError, ValueError, IndexError):
            dpi = None
    return Metadata(icc_profile=icc, exif=exif_bytes, dpi=dpi)


def to_array(image: Image.Image) -> np.ndarray:
    """Pixels as an H x W (one band) or H x W x C array in the mode's dtype."""
    if image.mode not in FILTERABLE_MODES:
        raise UnsupportedModeError(f"image mode {image.mode} cannot be filtered")
    return np.asarray(image)


def from_array(array: np.ndarray, mode: str) -> Image.Image:
    """An image of ``mode`` from an array shaped and typed as :func:`to_array` gives."""
    dtype = FILTERABLE_MODES[mode]
    array = np.ascontiguousarray(array, dtype=dtype)
    height, width = array.shape[:2]
    return Image.frombuffer(mode, (width, height), array, "raw", mode, 0, 1)


def output_format(path: str | os.PathLike | None, fmt: str | None, *, fallback: str | None = None) -> str:
    """The Pillow format name to write: ``fmt`` if given, else from the extension.

    ``fallback`` (the input's format) is used for standard output.

    >>> output_format("out.JPG", None)
    'JPEG'
    """
    Image.init()
    if fmt:
        name = fmt.upper()
        if name == "JPG":
            name = "JPEG"
        if name == "TIF":
            name = "TIFF"
        if name not in Image.SAVE:
            writable = ", ".join(sorted(Image.SAVE))
            raise OutputError(f"unknown output format {fmt!r} (Pillow writes: {writable})")
        return name
    if path is None or os.fspath(path) == "-":
        if fallback:
            return fallback
        raise OutputError("give --format to write to standard output")
    ext = Path(os.fspath(path)).suffix.lower()
    found = Image.registered_extensions().get(ext)
    if not ext or found is None or found not in Image.SAVE:
        raise OutputError(
            f"'{os.fspath(path)}': unknown output extension {ext or '(none)'!r}; "
            "use .png, .jpg, .tif, .webp, ... or give --format"
        )
    return found


def encode_image(
    frames: Sequence[Image.Image],
    stream: BinaryIO,
    *,
    fmt: str,
    metadata: Metadata | None = None,
    quality: int | None = None,
    frame_info: dict | None = None,
) -> None:
    """Encode ``frames`` to ``stream`` as ``fmt``, with the metadata it can hold.

    Raises
    ------
    OutputError
        When the format cannot store the mode or several frames.
    """
    options: dict = {}
    if metadata is not None:
        options.update(metadata.save_options(fmt))
    if quality is not None and fmt in _QUALITY_FORMATS:
        options["quality"] = quality
    first = frames[0]
    if len(frames) > 1:
        if fmt not in _MULTIFRAME_FORMATS:
            raise OutputError(
                f"{fmt} cannot hold {len(frames)} frames; write GIF, PNG, TIFF or WebP "
                "to keep every frame"
            )
        options["save_all"] = True
        options["append_images"] = list(frames[1:])
        info = frame_info or {}
        durations = info.get("duration")
        if fmt in {"GIF", "PNG", "WEBP"} and durations and any(durations):
            options["duration"] = durations
            options["loop"] = info.get("loop", 0) or 0
    try:
        first.save(stream, format=fmt, **options)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OutputError(
            f"{fmt} cannot store this image (mode {first.mode}): {_reason(exc)}; "
            "try PNG or TIFF"
        ) from None


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Write a file through ``write(stream)`` so that ``path`` is never partial.

    The data goes to a temporary file beside ``path`` (``.NAME.XXXX.part``),
    is flushed to disk and then renamed over ``path``. On any failure the
    temporary file is removed and ``path`` keeps its previous content (or
    stays absent). If ``path`` is a symbolic link, the link itself is
    replaced; its target is never written through. A replaced file keeps
    its permission bits; a new one gets the usual ``0o666 & ~umask``.

    Raises
    ------
    OutputError
        Missing or read-only directory, ``path`` is a directory, disk full
        and other write errors, each with one clear message.
    """
    target = Path(os.fspath(path))
    directory = target.parent if str(target.parent) else Path(".")
    label = f"'{os.fspath(path)}'"
    if target.is_dir() and not target.is_symlink():
        raise OutputError(f"{label} is a directory; give a file name")
    if not directory.is_dir():
        raise OutputError(f"cannot write {label}: directory '{directory}' does not exist")
    try:
        fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=directory)
    except PermissionError:
        raise OutputError(f"cannot write {label}: directory '{directory}' is not writable") from None
    except OSError as exc:
        raise OutputError(f"cannot write {label}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp_name, _permissions_for(target))
        os.replace(temp_name, target)
    except BaseException as exc:
        try:
            os.unlink(temp_name)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            if exc.errno == errno.ENOSPC:
                raise OutputError(f"cannot write {label}: no space left on device") from None
            raise OutputError(f"cannot write {label}: {exc.strerror or exc}") from None
        raise


def _permissions_for(target: Path) -> int:
    try:
        info = os.lstat(target)
        if stat.S_ISREG(info.st_mode):
            return stat.S_IMODE(info.st_mode)
    except OSError:
        pass
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def save_image(
    frames: Sequence[Image.Image],
    destination: str | os.PathLike | BinaryIO,
    *,
    fmt: str,
    metadata: Metadata | None = None,
    quality: int | None = None,
    frame_info: dict | None = None,
) -> int:
    """Encode and write ``frames``: atomically to a path, or to a binary stream.

    The image is encoded in memory first, so an encoder error never touches
    the destination. Returns the number of bytes written.
    """
    buffer = io.BytesIO()
    encode_image(frames, buffer, fmt=fmt, metadata=metadata, quality=quality, frame_info=frame_info)
    data = buffer.getbuffer()
    if isinstance(destination, (str, os.PathLike)):
        write_atomically(destination, lambda stream: stream.write(data))
    else:
        destination.write(data)
        destination.flush()
    return len(data)
