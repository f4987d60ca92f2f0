"""16 bits per channel colour: RGB and RGBA images that Pillow has no mode for.

Pillow decodes a 16-bit RGB(A) PNG, TIFF or PPM to 8 bits per channel. Such
files are read and written here at full depth instead: PNG with imagecodecs
(libpng), TIFF with tifffile, PPM by hand (its raw format is a header and
big-endian samples). A :class:`DeepImage` stands in for a Pillow image in
the pipeline, with the pseudo-modes ``RGB;16`` and ``RGBA;16``.

imagecodecs and tifffile are imported only when such a file is met.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

__all__ = ["DEEP_MODES", "DeepImage", "PixelLimitError", "decode", "encode", "scale_to_8_bits", "FORMATS"]

#: Pseudo-mode -> number of channels.
DEEP_MODES: dict[str, int] = {"RGB;16": 3, "RGBA;16": 4}

#: Formats that hold each pseudo-mode.
FORMATS: dict[str, set[str]] = {"RGB;16": {"PNG", "TIFF", "PPM"}, "RGBA;16": {"PNG", "TIFF"}}

#: TIFF compressions tifffile writes, by the names Pillow gives them in ``info["compression"]``.
_TIFF_COMPRESSION = {
    "raw": None,
    "tiff_lzw": "lzw",
    "tiff_adobe_deflate": "adobe_deflate",
    "tiff_deflate": "deflate",
    "packbits": "packbits",
    "zstd": "zstd",
    "lzma": "lzma",
}

#: Compressions a TIFF predictor is defined for (it means nothing to the others).
_PREDICTED = {"lzw", "adobe_deflate", "deflate", "zstd", "lzma"}


@dataclass
class DeepImage:
    """An H x W x C uint16 array standing in for a Pillow image of 16-bit colour.

    ``info`` holds what the TIFF writer needs to keep the source's layout
    (``predictor``, ``planarconfig``, ``extrasamples``).
    """

    array: np.ndarray
    info: dict = field(default_factory=dict)

    @property
    def mode(self) -> str:
        return "RGBA;16" if self.array.shape[2] == 4 else "RGB;16"

    @property
    def size(self) -> tuple[int, int]:
        return (self.array.shape[1], self.array.shape[0])

    def __array__(self, dtype=None, copy=None):
        return self.array if dtype is None else self.array.astype(dtype)

    def to_8_bits(self):
        """The image as a Pillow RGB/RGBA image, samples scaled by 255/65535 and rounded."""
        from PIL import Image

        return Image.fromarray(scale_to_8_bits(self.array))


def scale_to_8_bits(array: np.ndarray) -> np.ndarray:
    """16-bit samples scaled by 255/65535 and rounded to uint8.

    >>> scale_to_8_bits(np.array([0, 128, 129, 65535], np.uint16)).tolist()
    [0, 0, 1, 255]
    """
    return ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


class PixelLimitError(ValueError):
    """The frames hold more pixels than the limit given to :func:`decode`."""

    def __init__(self, pixels: int, what: str) -> None:
        super().__init__(f"{pixels} pixels ({what})")
        self.pixels = pixels
        self.what = what


def decode(
    data: bytes, fmt: str, *, size: tuple[int, int], ppm_offset: int = 0, ppm_maxval: int = 65535,
    max_pixels: int = 0,
) -> tuple[list[DeepImage], list[str]]:
    """Every frame of a 16-bit colour PNG, TIFF or PPM file of ``size`` (width,
    height), at full depth, and notes on what was converted.

    16-bit grey with alpha becomes RGBA (grey in each colour band). A PPM
    whose maxval is below 65535 is rescaled to the full 16-bit range. TIFF
    pages are counted against ``max_pixels`` (0: no limit) from their headers.

    Raises
    ------
    PixelLimitError
        Over ``max_pixels``.
    ValueError
        The codec's refusal, or pages that are not all 16-bit colour; one line.
    """
    if fmt == "PNG":
        import imagecodecs

        array = imagecodecs.png_decode(data)
        if array.ndim == 3 and array.shape[2] == 2:
            grey, alpha = array[..., :1], array[..., 1:]
            note = ("16-bit grey with alpha is filtered and written as 16-bit RGBA "
                    "(no grey-alpha mode holds 16 bits)")
            return [DeepImage(_native(np.concatenate([grey, grey, grey, alpha], axis=2)))], [note]
        return [DeepImage(_native(array))], []
    if fmt == "TIFF":
        return _decode_tiff(data, max_pixels)
    if fmt == "PPM":
        width, height = size
        samples = np.frombuffer(data, ">u2", height * width * 3, ppm_offset).reshape(height, width, 3)
        if ppm_maxval == 65535:
            return [DeepImage(samples.astype(np.uint16))], []
        clipped = np.minimum(samples.astype(np.uint32), ppm_maxval)
        array = ((clipped * 65535 + ppm_maxval // 2) // ppm_maxval).astype(np.uint16)
        return [DeepImage(array)], [f"PPM samples of maxval {ppm_maxval} rescaled to 16 bits (maxval 65535)"]
    raise ValueError(f"16-bit colour {fmt} is not supported")


def _decode_tiff(data: bytes, max_pixels: int) -> tuple[list[DeepImage], list[str]]:
    import tifffile

    frames, notes = [], []
    with tifffile.TiffFile(io.BytesIO(data)) as tiff:
        pages = list(tiff.pages)
        total = 0
        for index, page in enumerate(pages):
            total += int(page.imagewidth) * int(page.imagelength)
            if max_pixels and total > max_pixels:
                raise PixelLimitError(total, f"pages 1 to {index + 1} of {len(pages)}")
            if page.bitspersample != 16 or page.photometric != 2 or page.samplesperpixel not in (3, 4):
                raise ValueError(
                    f"page {index + 1} is not 16-bit RGB(A) like page 1; TIFFs that mix such pages "
                    "with others are not supported"
                )
        for page in pages:
            array = page.asarray()
            if page.planarconfig == 2 and array.ndim == 3 and array.shape[0] in (3, 4):
                array = np.moveaxis(array, 0, -1)
            info = {"predictor": int(page.predictor), "planarconfig": int(page.planarconfig),
                    "extrasamples": tuple(int(e) for e in page.extrasamples)}  # fmt: skip
            array = _native(array)
            if array.shape[2] == 4 and info["extrasamples"] == (_ASSOCIATED_ALPHA,):
                array = _unassociated(array)
                info["extrasamples"] = (_UNASSOCIATED_ALPHA,)
                if not notes:
                    notes.append("associated (premultiplied) alpha converted to unassociated alpha, "
                                 "as convfilter filters and writes it")  # fmt: skip
            frames.append(DeepImage(array, info))
    return frames, notes


#: TIFF ExtraSamples values.
_ASSOCIATED_ALPHA, _UNASSOCIATED_ALPHA = 1, 2


def _unassociated(array: np.ndarray) -> np.ndarray:
    """RGBA whose colour was premultiplied by alpha, with colour divided back (rounded)."""
    alpha = array[..., 3:].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        colour = np.where(alpha > 0, array[..., :3] * 65535.0 / alpha, 0.0)
    result = array.copy()
    result[..., :3] = np.clip(np.floor(colour + 0.5), 0, 65535).astype(np.uint16)
    return result


def _native(array: np.ndarray) -> np.ndarray:
    if array.dtype != np.uint16 or array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"unexpected 16-bit colour layout {array.shape} {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.dtype(np.uint16).newbyteorder("="))


def encode(
    frames: list[DeepImage],
    stream: BinaryIO,
    *,
    fmt: str,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    dpi: tuple[float, float] | None = None,
    compression: str | None = None,
) -> list[str]:
    """Write 16-bit colour ``frames`` to ``stream`` as PNG, TIFF or PPM.

    ``compression`` is Pillow's name for a TIFF compression (``"tiff_lzw"``).
    Returns notes on what could not be kept (metadata a format holds no
    place for is the caller's to name).

    Raises
    ------
    ValueError
        A format that cannot hold the frames.
    """
    if fmt not in FORMATS[frames[0].mode]:
        raise ValueError(f"{fmt} cannot hold 16-bit colour")
    if fmt == "TIFF":
        return _encode_tiff(frames, stream, icc_profile=icc_profile, exif=exif, dpi=dpi,
                            compression=compression)  # fmt: skip
    if len(frames) > 1:
        raise ValueError(f"{fmt} cannot hold {len(frames)} frames of 16-bit colour; write TIFF")
    if fmt == "PNG":
        import imagecodecs

        png = imagecodecs.png_encode(frames[0].array)
        stream.write(_with_png_chunks(png, icc_profile=icc_profile, exif=exif, dpi=dpi))
        return []
    height, width = frames[0].array.shape[:2]
    stream.write(b"P6\n%d %d\n65535\n" % (width, height))
    stream.write(frames[0].array.astype(">u2").tobytes())
    return []


def _encode_tiff(frames, stream, *, icc_profile, exif, dpi, compression) -> list[str]:
    import tifffile

    notes = []
    codec = _TIFF_COMPRESSION.get(compression or "raw", None)
    if compression and compression not in _TIFF_COMPRESSION:
        notes.append(f"TIFF compression {compression} cannot hold 16-bit colour exactly; written with deflate")
        codec = "adobe_deflate"
    if exif and _has_exif_beyond_a_description(exif):
        notes.append("EXIF is not written into 16-bit colour TIFF files")
    with tifffile.TiffWriter(stream) as writer:
        for frame in frames:
            info = frame.info
            options: dict = {"photometric": "rgb"}
            if codec:
                options["compression"] = codec
                if info.get("predictor", 1) > 1 and codec in _PREDICTED:
                    options["predictor"] = info["predictor"]
            if info.get("planarconfig") == 2:
                options["planarconfig"] = "separate"
            if frame.array.shape[2] == 4:
                options["extrasamples"] = info.get("extrasamples") or (2,)  # 2: unassociated alpha
            if icc_profile:
                options["iccprofile"] = icc_profile
            if dpi:
                options["resolution"] = dpi
                options["resolutionunit"] = "INCH"
            array = frame.array
            if options.get("planarconfig") == "separate":
                array = np.moveaxis(array, -1, 0)
            writer.write(array, **options)
    return notes


def _has_exif_beyond_a_description(exif: bytes) -> bool:
    """Whether ``exif`` holds more than an ImageDescription (which tifffile writes itself)."""
    from PIL import Image

    tags = Image.Exif()
    try:
        tags.load(exif)
    except Exception:  # noqa: BLE001 - unreadable EXIF counts as EXIF
        return True
    return bool(set(tags) - {270})


def _with_png_chunks(png: bytes, *, icc_profile, exif, dpi) -> bytes:
    """``png`` with iCCP, pHYs and eXIf chunks inserted after its IHDR."""
    chunks = b""
    if icc_profile:
        chunks += _png_chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(icc_profile))
    if dpi:
        per_metre = [round(value / 0.0254) for value in dpi]
        chunks += _png_chunk(b"pHYs", struct.pack(">IIB", per_metre[0], per_metre[1], 1))
    if exif:
        chunks += _png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\0\0") else exif)
    if not chunks:
        return png
    end_of_ihdr = 8 + 8 + 13 + 4  # signature, length + type, IHDR data, CRC
    return png[:end_of_ihdr] + chunks + png[end_of_ihdr:]


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
