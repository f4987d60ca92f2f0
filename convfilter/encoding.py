"""How the input was encoded, and how the output is: the re-encoding policy.

Without options, an output in the input's format is encoded as the input
was: a JPEG keeps its quantization tables, chroma subsampling, progressive
scan and comment; a lossless WebP stays lossless; a TIFF keeps its
compression; animations keep per-frame durations, loop count and disposal
(where Pillow's writers show the frames faithfully with it). ``--quality``,
``--lossless`` and ``--compression`` override.
A change of format uses the defaults in :data:`FORMAT_DEFAULTS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from .options import Compression, OutputSettings

__all__ = [
    "COMPRESSIONS",
    "FORMAT_DEFAULTS",
    "TIFF_PREDICTOR_TAG",
    "SourceEncoding",
    "SaveOptions",
    "webp_is_lossless",
    "save_options",
]

#: Pillow's name for each ``--compression``.
COMPRESSIONS: dict[Compression, str] = {
    Compression.NONE: "raw",
    Compression.LZW: "tiff_lzw",
    Compression.DEFLATE: "tiff_adobe_deflate",
    Compression.PACKBITS: "packbits",
}

#: The TIFF tag of the predictor, read from an input and written to an output.
TIFF_PREDICTOR_TAG = 317

#: Lossless TIFF compressions (zstd and LZMA where Pillow's libtiff has them).
_LOSSLESS_TIFF = {"raw", "tiff_lzw", "tiff_adobe_deflate", "tiff_deflate", "packbits", "zstd", "lzma"}

#: What an output gets when its format differs from the input's (or with no input format).
FORMAT_DEFAULTS: dict[str, dict] = {
    "JPEG": {"quality": 90},
    "WEBP": {"quality": 90},
    "TIFF": {"compression": "raw"},
}

#: Pillow's default quality for lossy WebP, used when a lossy WebP is re-encoded
#: (WebP files do not record the quality they were made with).
_WEBP_REENCODE_QUALITY = 80


@dataclass(frozen=True)
class SourceEncoding:
    """What the input's file says about its encoding (None or empty: unknown).

    ``durations`` and ``disposal`` have one entry per frame; ``loop`` is None
    for an animation that plays once (a GIF without a loop count).
    """

    format: str | None = None
    jpeg_qtables: tuple | None = None
    jpeg_subsampling: int | None = None
    jpeg_progressive: bool = False
    comment: bytes | None = None
    webp_lossless: bool | None = None
    tiff_compression: str | None = None
    tiff_predictor: int = 1
    durations: tuple[int, ...] = ()
    loop: int | None = 0
    disposal: tuple[int, ...] | None = None
    default_image: bool = False


def webp_is_lossless(data: bytes) -> bool | None:
    """True when a WebP file's image data is lossless (VP8L), False when lossy
    (VP8), None when neither is found. Animation frames are looked into.

    >>> webp_is_lossless(b"RIFF\\x0c\\0\\0\\0WEBPVP8L\\0\\0\\0\\0")
    True
    """
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    position = 12
    while position + 8 <= len(data):
        kind = data[position : position + 4]
        size = int.from_bytes(data[position + 4 : position + 8], "little")
        if kind == b"VP8L":
            return True
        if kind == b"VP8 ":
            return False
        if kind == b"ANMF":  # a frame: 16 bytes of frame header, then its own chunks
            position += 8 + 16
            continue
        position += 8 + size + (size & 1)
    return None


@dataclass
class SaveOptions:
    """Pillow ``save`` keywords, and notes on what the user should know."""

    options: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def save_options(
    fmt: str,
    source: SourceEncoding,
    overrides: OutputSettings,
    *,
    mode: str,
    alphas: Sequence | None = None,
    comment: bool = True,
) -> SaveOptions:
    """The ``Image.save`` keywords that write ``fmt`` as the policy says.

    ``mode`` is the output's mode; ``alphas`` (one alpha array per frame, or
    None) tells whether a GIF's disposal still displays its frames as they
    are when a pixel grows more transparent from one frame to the next.
    ``comment`` False leaves the input's comment out (``--strip-metadata``).
    """
    result = SaveOptions()
    same = source.format == fmt or (source.format == "MPO" and fmt == "JPEG")
    if fmt == "JPEG":
        _jpeg(result, source if same else SourceEncoding(), overrides)
    elif fmt == "WEBP":
        _webp(result, source if same else SourceEncoding(), overrides)
    elif fmt == "TIFF":
        _tiff(result, source if same else SourceEncoding(), overrides, mode)
    if overrides.lossless and fmt != "WEBP":
        result.notes.append(f"--lossless applies to WebP only; {fmt} written as usual")
    if overrides.compression and fmt != "TIFF":
        result.notes.append(f"--compression applies to TIFF only; {fmt} written as usual")
    if source.comment and comment and same and fmt in ("JPEG", "GIF"):
        result.options["comment"] = source.comment
    elif source.comment and comment:
        result.notes.append(f"the input's comment is not written ({fmt} output)")
    if overrides.quality is not None and fmt not in ("JPEG", "WEBP") and "quality" not in result.options:
        result.notes.append(
            f"--quality applies to JPEG and WebP (and JPEG-compressed TIFF); {fmt} written as usual"
        )
    if len(source.durations) > 1 and fmt in ("GIF", "PNG", "WEBP"):
        timing = SourceEncoding(durations=source.durations, loop=source.loop)
        _animation(result, fmt, source if same else timing, alphas)
        if fmt == "PNG" and same and source.default_image:
            result.options["default_image"] = True
    return result


def _jpeg(result: SaveOptions, source: SourceEncoding, overrides: OutputSettings) -> None:
    options = result.options
    if overrides.quality is not None:
        options["quality"] = overrides.quality
    elif source.jpeg_qtables:
        options["qtables"] = [list(table) for table in source.jpeg_qtables]
    else:
        options.update(FORMAT_DEFAULTS["JPEG"])
    if source.jpeg_subsampling is not None and source.jpeg_subsampling >= 0:
        options["subsampling"] = source.jpeg_subsampling
    if source.jpeg_progressive:
        options["progressive"] = True


def _webp(result: SaveOptions, source: SourceEncoding, overrides: OutputSettings) -> None:
    options = result.options
    if overrides.lossless or (overrides.quality is None and source.webp_lossless):
        options["lossless"] = True
        options["exact"] = True  # keep the colour of fully transparent pixels
        if overrides.quality is not None:
            options["quality"] = overrides.quality  # for lossless WebP: the effort spent
    elif overrides.quality is not None:
        options["quality"] = overrides.quality
    elif source.webp_lossless is False:
        options["quality"] = _WEBP_REENCODE_QUALITY
        result.notes.append(
            f"lossy WebP re-encoded at quality {_WEBP_REENCODE_QUALITY} (WebP files do not "
            "record their quality; set it with --quality, or --lossless)"
        )
    else:
        options.update(FORMAT_DEFAULTS["WEBP"])


#: TIFF compressions a predictor applies to.
_PREDICTED_TIFF = {"tiff_lzw", "tiff_adobe_deflate", "tiff_deflate", "zstd", "lzma"}


def _tiff(result: SaveOptions, source: SourceEncoding, overrides: OutputSettings, mode: str) -> None:
    _tiff_compression(result, source, overrides, mode)
    if source.tiff_predictor > 1 and result.options.get("compression") in _PREDICTED_TIFF:
        result.options["predictor"] = source.tiff_predictor  # images.encode_image writes it as a tag


def _tiff_compression(
    result: SaveOptions, source: SourceEncoding, overrides: OutputSettings, mode: str
) -> None:
    if overrides.compression is not None:
        result.options["compression"] = COMPRESSIONS[overrides.compression]
        return
    kept = source.tiff_compression
    if kept is None:
        result.options.update(FORMAT_DEFAULTS["TIFF"])
    elif kept == "jpeg" and mode in ("L", "RGB"):
        result.options["compression"] = kept
        result.options["quality"] = overrides.quality or FORMAT_DEFAULTS["JPEG"]["quality"]
        if overrides.quality is None:
            result.notes.append(
                f"JPEG-compressed TIFF re-encoded at quality {result.options['quality']} (the file does not "
                "record its quality; set it with --quality)"
            )
    elif kept in _LOSSLESS_TIFF:
        result.options["compression"] = kept
    else:
        result.options["compression"] = "tiff_lzw"
        result.notes.append(
            f"TIFF compression {kept} cannot hold mode {mode} images; written with LZW (lossless)"
        )


def _animation(result: SaveOptions, fmt: str, source: SourceEncoding, alphas: Sequence | None) -> None:
    options = result.options
    count = len(source.durations)
    if any(source.durations):
        options["duration"] = list(source.durations)
    if source.loop is not None:
        options["loop"] = source.loop
    elif fmt != "GIF":  # a GIF without a loop count plays once; WebP and APNG say so with 1
        options["loop"] = 1
    if fmt == "GIF":
        disposal = list(source.disposal or [0] * count)
        if not _gif_disposal_displays_faithfully(disposal, alphas):
            disposal = [2] * len(disposal)
            result.notes.append(
                "GIF frames written with disposal 2 (restore to background) so that they "
                "display as in the input"
            )
        options["disposal"] = disposal
    if fmt == "PNG":
        # The frames are stored composited, so each one replaces its area (blend
        # "source"); blending "over" would composite semi-transparent pixels twice.
        options["disposal"] = list(source.disposal or [0] * count)
        options["blend"] = [0] * count


def _gif_disposal_displays_faithfully(disposal: list[int], alphas: Sequence | None) -> bool:
    """Whether composited frames written with ``disposal`` show as they are.

    Pillow's GIF writer crops each frame to what changed since the frame
    before, which is right when every frame is cleared (disposal 2), or when
    none is and no pixel grows more transparent from one frame to the next.
    """
    if all(value == 2 for value in disposal):
        return True
    if not all(value in (0, 1) for value in disposal):
        return False
    if alphas is None:
        return True
    return not any((later < earlier).any() for earlier, later in zip(alphas, alphas[1:]))
