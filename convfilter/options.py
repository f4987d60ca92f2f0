"""The option vocabulary: border modes, methods, alpha, compression, fill values
and the two settings values every command and library call is made of.

Shared by the library and the command line, whose choices are built from
the enums here. Imports neither NumPy nor Pillow, so ``convfilter --help``
stays quick. Every value is checked when it is made: a settings value that
exists is one the engine accepts.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

__all__ = [
    "SettingsError",
    "BorderMode",
    "Method",
    "AlphaMode",
    "Compression",
    "FillValue",
    "FilterSettings",
    "OutputSettings",
    "DEFAULT_FORMATS",
    "DEFAULT_MAX_PIXELS",
]


class SettingsError(ValueError):
    """A setting that cannot be used; ``option`` names the command-line option it
    comes from (``--cval``), when there is one."""

    def __init__(self, message: str, *, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


class _Choice(str, Enum):
    """A named choice that compares equal to its name (``BorderMode.WRAP == "wrap"``)."""

    description: str

    def __new__(cls, value: str, description: str = ""):
        member = str.__new__(cls, value)
        member._value_ = value
        member.description = description
        return member

    def __str__(self) -> str:
        return self.value

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Every choice's name, in the order ``--help`` lists them."""
        return tuple(member.value for member in cls)

    @classmethod
    def parse(cls, value: Any, option: str) -> _Choice:
        """The member named ``value`` (a member or its name, any case).

        Raises
        ------
        SettingsError
            For any other value; the message lists the choices.
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            try:
                return cls(value.strip().lower())
            except ValueError:
                pass
        what = option.lstrip("-")
        raise SettingsError(f"unknown {what} {value!r}; choose from {', '.join(cls.names())}", option=option)


class BorderMode(_Choice):
    """How pixels beyond the image's edge are made up, for the sides of
    ``a b c d`` (``k`` is the fill value ``cval``)."""

    NEAREST = ("nearest", "a a a | a b c d | d d d: the edge pixel repeated (SciPy's nearest)")
    REFLECT = ("reflect", "c b a | a b c d | d c b: mirrored, the edge pixel included (SciPy's reflect)")
    MIRROR = ("mirror", "d c b | a b c d | c b a: mirrored about the edge pixel (SciPy's mirror)")
    WRAP = ("wrap", "b c d | a b c d | a b c: the image repeated (SciPy's grid-wrap)")
    CONSTANT = ("constant", "k k k | a b c d | k k k: the fill value cval (SciPy's constant)")
    KEEP = ("keep", "no padding; edge pixels the kernel cannot cover keep their values (Pillow's rule; "
                    "Pillow's other filters follow their own)")
    VALID = ("valid", "no padding; the output shrinks by the kernel's size less one")


class Method(_Choice):
    """How the engine computes the sums."""

    AUTO = ("auto", "the fastest method that keeps the accuracy contract, by a cost model")
    DIRECT = ("direct", "one array operation per distinct weight, in Pillow's order")
    SEPARABLE = ("separable", "two 1-D passes, for kernels of rank 1")
    FFT = ("fft", "overlap-save FFT tiles, for large kernels")


class AlphaMode(_Choice):
    """What happens to an alpha band."""

    AUTO = ("auto", "premultiply images with transparent pixels for kernels that keep brightness, else keep")
    KEEP = ("keep", "alpha passes through unchanged; colour is filtered alone")
    FILTER = ("filter", "alpha is filtered like any other band")
    PREMULTIPLY = ("premultiply", "colour is filtered weighted by alpha, and alpha is filtered")


class Compression(_Choice):
    """TIFF compression for ``--compression``."""

    NONE = ("none", "no compression")
    LZW = ("lzw", "LZW")
    DEFLATE = ("deflate", "Adobe Deflate (zlib)")
    PACKBITS = ("packbits", "PackBits run lengths")


#: Formats decoded unless ``--allow-format`` widens the list. None of them
#: runs an external program (EPS/PostScript would start Ghostscript).
DEFAULT_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM", "TGA", "ICO")

#: The most pixels an image may have unless ``max_pixels`` says otherwise:
#: Pillow's own decompression-bomb threshold (``Image.MAX_IMAGE_PIXELS``).
DEFAULT_MAX_PIXELS: int = 89_478_485


_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str, option: str = "--memory") -> int:
    """A number of bytes from ``text``: ``1000000``, ``512M``, ``1.5GiB``
    (K, M, G, T are powers of 1024).

    >>> parse_size("64M"), parse_size("1.5g"), parse_size("2048")
    (67108864, 1610612736, 2048)
    """
    match = _SIZE.match(str(text))
    if not match:
        raise SettingsError(f"{text!r} is not a size: give bytes, or a number with K, M, G or T (512M, 2G)",
                            option=option)  # fmt: skip
    number, unit = float(match.group(1)), match.group(2).upper()
    size = int(number * 1024 ** " KMGT".index(unit or " "))
    if size < 1:
        raise SettingsError(f"{text!r} is not a size: it must be at least one byte", option=option)
    return size


@dataclass(frozen=True)
class FillValue:
    """The ``constant`` border's fill (``--cval``): one value for every band, or
    one per band, each in sample units or as a percentage of the type's range
    (``100%`` is 255 for 8 bits, 65535 for 16, 2**31 - 1 for mode I, 1.0 for
    float).

    >>> FillValue.parse("255,0,0").for_bands(255, 3)
    [255.0, 0.0, 0.0]
    >>> FillValue.parse("50%").for_bands(65535, 2)
    [32767.5, 32767.5]
    """

    values: tuple[float, ...] = (0.0,)
    percent: tuple[bool, ...] = (False,)

    @classmethod
    def parse(cls, text: str) -> FillValue:
        """Read ``V``, ``V%`` or comma-separated ones (``255,0,0``, ``100%,0,0``).

        Raises
        ------
        SettingsError
            An entry that is not a finite number, or a percentage outside 0-100.
        """
        values, percent = [], []
        for entry in str(text).split(","):
            entry = entry.strip()
            is_percent = entry.endswith("%")
            try:
                value = float(entry[:-1] if is_percent else entry)
            except ValueError:
                raise SettingsError(f"{entry!r} is not a number; give V, V% or one per band (255,0,0)",
                                    option="--cval") from None  # fmt: skip
            if not math.isfinite(value) or (is_percent and not 0 <= value <= 100):
                raise SettingsError(f"{entry!r} must be finite (a percentage 0-100%)", option="--cval")
            values.append(value)
            percent.append(is_percent)
        return cls(tuple(values), tuple(percent))

    @classmethod
    def of(cls, value: Any) -> FillValue:
        """A FillValue from a FillValue, a number, text as :meth:`parse` reads it,
        or a sequence of numbers (one per band)."""
        if isinstance(value, FillValue):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        entries = list(value) if isinstance(value, Sequence) else [value]
        if not entries:
            raise SettingsError("cval needs at least one value", option="--cval")
        return cls.parse(",".join(_number_text(v) for v in entries))

    def for_bands(self, full_scale: float, count: int, *, bands: str = "") -> list[float]:
        """One fill value per band, in sample units of a type whose range is
        ``0 .. full_scale`` (percentages are of ``full_scale``).

        Raises
        ------
        SettingsError
            Several values, but not one per band.
        """
        if len(self.values) not in (1, count):
            named = f" ({bands})" if bands else ""
            raise SettingsError(f"cval has {len(self.values)} values; give 1, or {count}: one per band{named}",
                                option="--cval")  # fmt: skip
        converted = [v * full_scale / 100 if pct else v for v, pct in zip(self.values, self.percent)]
        return converted * count if len(converted) == 1 else converted

    def __str__(self) -> str:
        return ",".join(f"{_number_text(v)}{'%' if p else ''}" for v, p in zip(self.values, self.percent))


def _number_text(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise SettingsError(f"cval must be a number, got {value!r}", option="--cval")
    number = float(value)
    return str(int(number)) if number.is_integer() and abs(number) < 2**53 else repr(number)


def _whole_number(value: Any, what: str, option: str, least: int) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise SettingsError(f"{what} must be a whole number, got {value!r}", option=option)
    number = int(value)
    if number < least:
        raise SettingsError(f"{what} must be at least {least}, got {number}", option=option)
    return number


def _bands(value: Any) -> tuple[str, ...] | None:
    """``channels`` as upper-case band names: from ``"R,G"`` or a sequence of names."""
    if value is None:
        return None
    names = re.split(r"[,\s]+", value) if isinstance(value, str) else list(value)
    if not all(isinstance(name, str) for name in names):
        raise SettingsError(f"channels must be band names such as 'R,G', got {value!r}", option="--channels")
    bands = tuple(name.strip().upper() for name in names if name.strip())
    if not bands:
        raise SettingsError("name at least one band, e.g. R,G", option="--channels")
    return bands


@dataclass(frozen=True)
class FilterSettings:
    """Everything that decides the pixels of a result, checked when made.

    ``kernels`` is a kernel or a sequence of them: :class:`~convfilter.Kernel`
    values, spec strings (``"gaussian:2"``) or matrices; they are applied in
    order, the whole chain ``repeat`` times. ``border``, ``method`` and
    ``alpha`` take the enums or their names; ``cval`` a number, a
    :class:`FillValue`, its text (``"50%"``, ``"255,0,0"``) or one number per
    band; ``channels`` band names (``"R,G"``). ``abs`` takes the absolute
    value before rounding. ``threads`` caps the engine's threads (None: one
    per CPU).

    Raises
    ------
    SettingsError
        For any value that is not one of the above.
    KernelSpecError
        For a kernel spec or matrix that is not a kernel.

    >>> FilterSettings("blur", border="REFLECT").border
    <BorderMode.REFLECT: 'reflect'>
    """

    kernels: Any
    repeat: int = 1
    border: BorderMode = BorderMode.NEAREST
    cval: FillValue = FillValue()
    abs: bool = False
    channels: tuple[str, ...] | None = None
    alpha: AlphaMode = AlphaMode.AUTO
    method: Method = Method.AUTO
    threads: int | None = None

    def __post_init__(self) -> None:
        from .kernels import as_kernel  # kernels need NumPy; the rest of this module does not

        given = self.kernels
        if isinstance(given, (str, bytes)) or not isinstance(given, Sequence) or _is_matrix(given):
            given = (given,)
        if not given:
            raise SettingsError("at least one kernel is needed", option="--kernel")
        set_ = object.__setattr__
        set_(self, "kernels", tuple(as_kernel(k) for k in given))
        set_(self, "repeat", _whole_number(self.repeat, "repeat", "--repeat", 1))
        set_(self, "border", BorderMode.parse(self.border, "--border"))
        set_(self, "cval", FillValue.of(self.cval))
        if not isinstance(self.abs, bool):
            raise SettingsError(f"abs must be True or False, got {self.abs!r}", option="--abs")
        set_(self, "channels", _bands(self.channels))
        set_(self, "alpha", AlphaMode.parse(self.alpha, "--alpha"))
        set_(self, "method", Method.parse(self.method, "--method"))
        if self.threads is not None:
            set_(self, "threads", _whole_number(self.threads, "threads", "--threads", 1))
        if self.alpha is AlphaMode.PREMULTIPLY:
            unweighted = [k.name for k in self.kernels if not getattr(k, "linear", True)]
            if unweighted:
                raise SettingsError(f"--alpha premultiply weighs colour by alpha, which needs a filter with "
                                    f"weights; {unweighted[0]} has none: give --alpha keep or filter",
                                    option="--alpha")  # fmt: skip

    @property
    def chain(self) -> list:
        """The kernels in the order they are applied, repeats included."""
        return list(self.kernels) * self.repeat

    def describe(self) -> str:
        """The chain in words: ``blur then sharpen (x2)``."""
        names = " then ".join(k.name for k in self.kernels)
        return f"{names} (x{self.repeat})" if self.repeat > 1 else names


def _is_matrix(value: Any) -> bool:
    """A list of numbers or of lists (one matrix), not a list of kernels."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return True
    return isinstance(value, (list, tuple)) and bool(value) and isinstance(value[0], (list, tuple, numbers.Real))


@dataclass(frozen=True)
class OutputSettings:
    """How results are written, checked when made.

    ``fmt`` is a Pillow format name (None: from the output's extension);
    ``quality`` (1-100), ``lossless`` and ``compression`` override the
    input's own encoding; ``strip_metadata`` writes no ICC profile, EXIF or
    DPI; ``depth`` 8 writes 8 bits per sample whatever the input's depth
    (None keeps it); ``background`` (an 8-bit RGB triple) flattens alpha
    onto that colour. ``max_pixels`` (0: no limit) and ``formats`` govern
    what is decoded.

    Raises
    ------
    SettingsError
        For any value outside those ranges.
    """

    fmt: str | None = None
    quality: int | None = None
    strip_metadata: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    formats: tuple[str, ...] = DEFAULT_FORMATS
    depth: int | None = None
    lossless: bool = False
    compression: Compression | None = None
    background: tuple[int, int, int] | None = field(default=None)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.quality is not None:
            quality = _whole_number(self.quality, "quality", "--quality", 1)
            if quality > 100:
                raise SettingsError(f"quality must be 1-100, got {quality}", option="--quality")
            set_(self, "quality", quality)
        if self.depth not in (None, 8):
            raise SettingsError(f"depth must be 8 (or None to keep the input's), got {self.depth!r}",
                                option="--depth")  # fmt: skip
        if self.compression is not None:
            set_(self, "compression", Compression.parse(self.compression, "--compression"))
        set_(self, "max_pixels", _whole_number(self.max_pixels, "max_pixels", "--max-pixels", 0))
        set_(self, "formats", tuple(dict.fromkeys(str(f).upper() for f in self.formats)))
        if self.background is not None:
            colour = tuple(self.background)
            if len(colour) != 3 or not all(isinstance(c, int) and 0 <= c <= 255 for c in colour):
                raise SettingsError(f"background must be three numbers 0-255, got {self.background!r}",
                                    option="--background")  # fmt: skip
            set_(self, "background", colour)
