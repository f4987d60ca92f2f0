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

__all__ = ["DEEP_MODES", "DeepImage", "decode", "encode", "FORMATS"]

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
    "tiff_zstd": "zstd",
    "tiff_lzma": "lzma",
}


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

        wide = self.array.astype(np.uint32)
        return Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8))


def decode(data: bytes, fmt: str, *, ppm_offset: int = 0, ppm_maxval: int = 65535) -> list[DeepImage]:
    """Every frame of a 16-bit colour PNG, TIFF or PPM file, at full depth.

    A PPM whose maxval is below 65535 is rescaled to the full 16-bit range.

    Raises
    ------
    ValueError
        The codec's refusal, one line.
    """
    if fmt == "PNG":
        import imagecodecs

        return [DeepImage(_native(imagecodecs.png_decode(data)))]
    if fmt == "TIFF":
        import tifffile

        frames = []
        with tifffile.TiffFile(io.BytesIO(data)) as tiff:
            for page in tiff.pages:
                array = page.asarray()
                if page.planarconfig == 2 and array.ndim == 3 and array.shape[0] in (3, 4):
                    array = np.moveaxis(array, 0, -1)
                info = {"predictor": int(page.predictor), "planarconfig": int(page.planarconfig),
                        "extrasamples": tuple(int(e) for e in page.extrasamples)}  # fmt: skip
                frames.append(DeepImage(_native(array), info))
        return frames
    if fmt == "PPM":
        height, width = _ppm_size(data)
        count = height * width * 3
        samples = np.frombuffer(data, ">u2", count, ppm_offset).reshape(height, width, 3)
        array = samples.astype(np.uint16)
        if ppm_maxval != 65535:
            array = ((array.astype(np.uint32) * 65535 + ppm_maxval // 2) // ppm_maxval).astype(np.uint16)
        return [DeepImage(array)]
    raise ValueError(f"16-bit colour {fmt} is not supported")


def _native(array: np.ndarray) -> np.ndarray:
    if array.dtype != np.uint16 or array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"unexpected 16-bit colour layout {array.shape} {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.dtype(np.uint16).newbyteorder("="))


def _ppm_size(data: bytes) -> tuple[int, int]:
    """(height, width) from a PPM header (tokens after the magic number)."""
    tokens: list[bytes] = []
    for line in data[2:512].split(b"\n"):
        tokens += line.split(b"#")[0].split()
        if len(tokens) >= 3:
            break
    width, height = int(tokens[0]), int(tokens[1])
    return height, width


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
    Returns notes on what could not be kept.

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
    return ["PPM holds no ICC profile, EXIF or DPI"] if (icc_profile or exif or dpi) else []


def _encode_tiff(frames, stream, *, icc_profile, exif, dpi, compression) -> list[str]:
    import tifffile

    notes = []
    codec = _TIFF_COMPRESSION.get(compression or "raw", None)
    if compression and compression not in _TIFF_COMPRESSION:
        notes.append(f"TIFF compression {compression} cannot hold 16-bit colour exactly; written with deflate")
        codec = "adobe_deflate"
    if exif:
        notes.append("EXIF is not written into 16-bit colour TIFF files")
    with tifffile.TiffWriter(stream) as writer:
        for frame in frames:
            info = frame.info
            options: dict = {"photometric": "rgb"}
            if codec:
                options["compression"] = codec
                if info.get("predictor", 1) > 1:
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
