"""Filters that are not one matrix: Pillow's blurs, unsharp mask and rank
filters, the mode filter, and gradient magnitude.

Each is a step of a filter chain as a :class:`~convfilter.kernels.Kernel`
is: :func:`convfilter.kernels.parse_kernel` makes them from specs such as
``median:3`` or ``gaussian_blur:2``, and the pipeline calls
:meth:`NeighbourhoodFilter.apply` where it would sum a kernel. Border
``keep`` means Pillow's own edge rule for the filters Pillow has (the edge
pixel repeated in every pass; for the mode filter, a window cut at the edge);
for gradient magnitude, as for kernels, the pixels the 3x3 window cannot
cover keep their values.

``box_blur`` and ``gaussian_blur`` are linear: they have a matrix
(:meth:`NeighbourhoodFilter.matrix_kernel`), but are computed in Pillow's
passes, rounding after each. The others are not linear and have no matrix.

This module imports NumPy; the filters' own modules load when first applied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .options import BorderMode

__all__ = [
    "NeighbourhoodFilter",
    "BoxBlur",
    "GaussianBlur",
    "UnsharpMask",
    "RankFilter",
    "ModeFilter",
    "GradientMagnitude",
    "FilterSpec",
    "FILTER_SPECS",
    "MAX_BLUR_RADIUS",
    "MAX_RANK_SIZE",
]

#: Largest blur radius accepted: far beyond any image, and below about
#: 2.1e9, where Pillow's box sizes overflow.
MAX_BLUR_RADIUS = 1e9

#: Largest window side of the median, rank and mode filters: their work
#: grows with the window's area, and a 101x101 median of a 12 MP photo
#: already takes minutes. (min and max, whose work does not grow with the
#: area, go to the largest kernel side.)
MAX_RANK_SIZE = 101


@dataclass(frozen=True)
class NeighbourhoodFilter:
    """A filter step computed from each pixel's neighbourhood, but not one matrix.

    Subclasses say how far they reach, what Pillow calls them and how they
    compute; :meth:`apply` takes what ``filter_array`` takes.
    """

    @property
    def name(self) -> str:
        """The spec that makes this filter, e.g. ``median:3``."""
        raise NotImplementedError

    @property
    def description(self) -> str:
        return FILTER_SPECS[self.name.partition(":")[0]].description

    #: True for a filter with a matrix (box_blur, gaussian_blur).
    linear = False

    @property
    def keeps_brightness(self) -> bool:
        """True when a constant image comes out unchanged (the weights sum to 1)."""
        return self.linear

    @property
    def reach(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right): how many pixels beyond each side the result depends on."""
        raise NotImplementedError

    @property
    def shape(self) -> tuple[int, int]:
        """``(h, w)`` of the window, as a kernel's shape."""
        top, bottom, left, right = self.reach
        return top + bottom + 1, left + right + 1

    @property
    def anchor(self) -> tuple[int, int]:
        """Where the output pixel sits in the window, as a kernel's anchor."""
        return self.reach[0], self.reach[2]

    def pillow_filter(self):
        """Pillow's ``ImageFilter`` that computes this filter, or None."""
        return None

    @property
    def pillow_label(self) -> str:
        """How Pillow's equivalent is named to people, e.g. ``ImageFilter.MedianFilter(3)``."""
        return "none"

    def matrix_kernel(self):
        """The filter as a :class:`~convfilter.kernels.Kernel` (linear filters only), else None."""
        return None

    def apply(
        self,
        array: np.ndarray,
        *,
        border: str | BorderMode = BorderMode.NEAREST,
        cval: float = 0.0,
        threads: int | None = None,
        progress: Callable[[int, int], object] | None = None,
    ) -> np.ndarray:
        """Filter every channel of an H x W or H x W x C array; same dtype, same
        shape except border ``valid``."""
        raise NotImplementedError


def _number_text(value: float) -> str:
    """``value`` as short as it can be written and read back the same: 2, 2.7, 1.0000001192092896."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def _radius_text(radius: tuple[float, float]) -> str:
    x, y = radius
    return _number_text(x) if x == y else f"{_number_text(x)},{_number_text(y)}"


def _pillow_radius(radius: tuple[float, float]):
    x, y = radius
    return x if x == y else (x, y)


@dataclass(frozen=True)
class BoxBlur(NeighbourhoodFilter):
    """Pillow's ``BoxBlur``: the mean of a (2r+1)-wide box per axis, fractional
    radii weighing the two outermost pixels by the fraction."""

    radius: tuple[float, float]
    linear = True

    @property
    def name(self) -> str:
        return f"box_blur:{_radius_text(self.radius)}"

    @property
    def reach(self) -> tuple[int, int, int, int]:
        from .blurs import box_reach

        # Pillow's far tap can weigh 0 for a radius just above a whole number,
        # or more than 0 for a whole radius; the pass reads both ways.
        x, y = (max(box_reach(r), math.ceil(r)) if r else 0 for r in self.radius)
        return y, y, x, x

    def pillow_filter(self):
        from PIL import ImageFilter

        return ImageFilter.BoxBlur(_pillow_radius(self.radius))

    @property
    def pillow_label(self) -> str:
        return f"ImageFilter.BoxBlur({_pillow_radius(self.radius)})"

    def matrix_kernel(self):
        from .kernels import Kernel

        column, row = (_box_weights(r, reach) for r, reach in zip(self.radius[::-1], self.reach[::2]))
        return Kernel(np.outer(column, row), name=self.name, factors=(column, row))

    def apply(self, array, *, border=BorderMode.NEAREST, cval=0.0, threads=None, progress=None):
        from .blurs import box_blur

        return box_blur(array, self.radius, border=border, cval=cval, threads=threads, progress=progress)


def _box_weights(radius: float, reach: int) -> np.ndarray:
    """One box pass's exact weights, ``2 * reach + 1`` taps."""
    weights = np.zeros(2 * reach + 1)
    inner = int(radius)
    weights[reach - inner : reach + inner + 1] = 1.0
    if reach > inner:
        weights[[reach - inner - 1, reach + inner + 1]] = radius - inner
    return weights / (2 * radius + 1)


@dataclass(frozen=True)
class GaussianBlur(NeighbourhoodFilter):
    """Pillow's ``GaussianBlur``: three box passes per axis whose combined
    spread is that of a Gaussian of standard deviation ``radius`` (an
    approximation; ``gaussian:SIGMA`` is the true Gaussian kernel)."""

    radius: tuple[float, float]
    linear = True

    @property
    def name(self) -> str:
        return f"gaussian_blur:{_radius_text(self.radius)}"

    @property
    def box_radius(self) -> tuple[float, float]:
        """The radius of each of the three box passes, per axis (x, y)."""
        from .blurs import gaussian_box_radius

        return tuple(gaussian_box_radius(r) if r else 0.0 for r in self.radius)

    @property
    def reach(self) -> tuple[int, int, int, int]:
        top, _, left, _ = BoxBlur(self.box_radius).reach
        return 3 * top, 3 * top, 3 * left, 3 * left

    def pillow_filter(self):
        from PIL import ImageFilter

        return ImageFilter.GaussianBlur(_pillow_radius(self.radius))

    @property
    def pillow_label(self) -> str:
        return f"ImageFilter.GaussianBlur({_pillow_radius(self.radius)})"

    def matrix_kernel(self):
        from .kernels import Kernel

        box = BoxBlur(self.box_radius).matrix_kernel()
        column, row = (np.convolve(np.convolve(f, f), f) for f in box.factors)
        return Kernel(np.outer(column, row), name=self.name, factors=(column, row))

    def apply(self, array, *, border=BorderMode.NEAREST, cval=0.0, threads=None, progress=None):
        from .blurs import gaussian_blur

        return gaussian_blur(array, self.radius, border=border, cval=cval, threads=threads, progress=progress)


@dataclass(frozen=True)
class UnsharpMask(NeighbourhoodFilter):
    """Pillow's ``UnsharpMask``: where a sample differs from its Gaussian blur
    (``gaussian_blur:RADIUS``) by more than ``threshold``, that difference
    times ``percent`` / 100 is added to it."""

    radius: float = 2.0
    percent: int = 150
    threshold: int = 3

    @property
    def name(self) -> str:
        return f"unsharp:{_number_text(self.radius)},{self.percent},{self.threshold}"

    @property
    def reach(self) -> tuple[int, int, int, int]:
        return GaussianBlur((self.radius, self.radius)).reach

    def pillow_filter(self):
        from PIL import ImageFilter

        return ImageFilter.UnsharpMask(self.radius, self.percent, self.threshold)

    @property
    def pillow_label(self) -> str:
        return f"ImageFilter.UnsharpMask({self.radius:g}, {self.percent}, {self.threshold})"

    def apply(self, array, *, border=BorderMode.NEAREST, cval=0.0, threads=None, progress=None):
        from .blurs import unsharp_mask

        return unsharp_mask(array, self.radius, self.percent, self.threshold, border=border, cval=cval,
                            threads=threads, progress=progress)  # fmt: skip


#: The rank filters' names, by the rank they pick in an N x N window.
_RANK_NAMES = {"min": "MinFilter", "median": "MedianFilter", "max": "MaxFilter", "rank": "RankFilter"}


@dataclass(frozen=True)
class RankFilter(NeighbourhoodFilter):
    """The ``rank``-th smallest sample (0-based) of the size x size window:
    Pillow's ``RankFilter``, and its ``MinFilter``, ``MedianFilter`` and
    ``MaxFilter`` (``kind``)."""

    size: int
    rank: int
    kind: str = "rank"

    @property
    def name(self) -> str:
        return f"rank:{self.size},{self.rank}" if self.kind == "rank" else f"{self.kind}:{self.size}"

    @property
    def reach(self) -> tuple[int, int, int, int]:
        half = self.size // 2
        return half, half, half, half

    def pillow_filter(self):
        from PIL import ImageFilter

        if self.kind == "rank":
            return ImageFilter.RankFilter(self.size, self.rank)
        return getattr(ImageFilter, _RANK_NAMES[self.kind])(self.size)

    @property
    def pillow_label(self) -> str:
        arguments = f"{self.size}, {self.rank}" if self.kind == "rank" else f"{self.size}"
        return f"ImageFilter.{_RANK_NAMES[self.kind]}({arguments})"

    def apply(self, array, *, border=BorderMode.NEAREST, cval=0.0, threads=None, progress=None):
        from .ranks import rank_filter

        return rank_filter(array, self.size, self.rank, border=border, cval=cval, threads=threads,
                           progress=progress)  # fmt: skip


@dataclass(frozen=True)
class ModeFilter(NeighbourhoodFilter):
    """Pillow's ``ModeFilter``: the most frequent sample of the size x size
    window (the smallest of equally frequent ones), where it occurs more than
    twice; else the pixel's own."""

    size: int

    @property
    def name(self) -> str:
        return f"mode:{self.size}"

    @property
    def reach(self) -> tuple[int, int, int, int]:
        half = self.size // 2
        return half, half, half, half

    def pillow_filter(self):
        from PIL import ImageFilter

        return ImageFilter.ModeFilter(self.size)

    @property
    def pillow_label(self) -> str:
        return f"ImageFilter.ModeFilter({self.size})"

    def apply(self, array, *, border=BorderMode.NEAREST, cval=0.0, threads=None, progress=None):
        from .ranks import mode_filter

        return mode_filter(array, self.size, border=border, cval=cval, threads=threads, progress=progress)


@dataclass(frozen=True)
class GradientMagnitude(NeighbourhoodFilter):
    """``sqrt(gx**2 + gy**2)`` of the ``NAME-x`` and ``NAME-y`` presets' sums
    (``operator`` sobel, scharr or prewitt), rounded to the image's type."""

    operator: str

    @property
    def name(self) -> str:
        return self.operator

    @property
    def description(self) -> str:
        return FILTER_SPECS[self.operator].description

    @property
    def reach(self) -> tuple[int, int, int, int]:
        return 1, 1, 1, 1

    def apply(self, array, *, border=BorderMode.NEAREST, cval=0.0, threads=None, progress=None):
        from . import engine
        from .kernels import PRESETS

        border = BorderMode.parse(border, "--border")
        array = np.asarray(array)
        engine.check_dtype(array.dtype)
        summed = BorderMode.VALID if border is BorderMode.KEEP else border
        if summed is BorderMode.VALID and min(array.shape[:2]) < 3:
            if border is BorderMode.KEEP:
                return array.copy()
            raise engine.FilterError(f"border valid needs an image of 3x3 or more for {self.name}, "
                                     f"not {array.shape[1]}x{array.shape[0]}")  # fmt: skip
        gx, gy = (engine.correlate(array, PRESETS[f"{self.operator}_{axis}"].kernel(), border=summed, cval=cval,
                                   threads=threads)
                  for axis in "xy")  # fmt: skip
        magnitude = np.hypot(gx.astype(np.float64), gy.astype(np.float64))
        if progress is not None:
            progress(1, 1)
        values = (magnitude.astype(array.dtype) if array.dtype.kind == "f"
                  else engine.round_to_dtype(magnitude + 0.5, array.dtype))  # fmt: skip
        if border is not BorderMode.KEEP:
            return values
        result = array.copy()
        result[1:-1, 1:-1] = values
        return result


# ---------------------------------------------------------------------------
# Specs
# ---------------------------------------------------------------------------


def _radius_pair(values: list[str], name: str) -> tuple[float, float]:
    radii = [_blur_radius(v, name) for v in values]
    return (radii[0], radii[-1])


def _blur_radius(token: str, name: str) -> float:
    from .kernels import KernelSpecError

    try:
        radius = float(token)
    except ValueError:
        radius = -1.0
    if not 0 <= radius <= MAX_BLUR_RADIUS:  # NaN fails too
        raise KernelSpecError(f"{name} radius must be a number from 0 to {MAX_BLUR_RADIUS:g} "
                              f"(0.5, 2, ...), got {token!r}")  # fmt: skip
    return radius


def _window(token: str, name: str, largest: int) -> int:
    from .kernels import KernelSpecError

    try:
        size = float(token)
    except ValueError:
        size = 0.0
    if not (3 <= size <= largest and size.is_integer() and size % 2 == 1):
        raise KernelSpecError(f"{name} size N must be an odd whole number from 3 to {largest} "
                              f"(3, 5, 7, ...: a window centred on the pixel), got {token!r}")  # fmt: skip
    return int(size)


def _box_blur(values: list[str]) -> NeighbourhoodFilter:
    return BoxBlur(_radius_pair(values, "box_blur"))


def _gaussian_blur(values: list[str]) -> NeighbourhoodFilter:
    return GaussianBlur(_radius_pair(values, "gaussian_blur"))


def _unsharp(values: list[str]) -> NeighbourhoodFilter:
    from .kernels import KernelSpecError, spec_number

    defaults = ["2", "150", "3"]
    values = values + defaults[len(values):]
    radius = _blur_radius(values[0], "unsharp")
    numbers = []
    for token, what in zip(values[1:], ("PERCENT", "THRESHOLD")):
        number = spec_number(token, f"unsharp {what}")
        if not number.is_integer() or not 0 <= number <= 2**31 - 1:
            raise KernelSpecError(f"unsharp {what} must be a whole number, 0 or more, got {token!r}")
        numbers.append(int(number))
    return UnsharpMask(radius, *numbers)


def _rank_kind(kind: str) -> Callable[[list[str]], NeighbourhoodFilter]:
    def parse(values: list[str]) -> NeighbourhoodFilter:
        from .kernels import MAX_KERNEL_SIDE, KernelSpecError, spec_number

        largest = MAX_RANK_SIZE if kind in ("median", "rank") else MAX_KERNEL_SIDE - 1
        size = _window(values[0], kind, largest)
        rank = {"min": 0, "median": size * size // 2, "max": size * size - 1}.get(kind)
        if kind == "rank":
            number = spec_number(values[1], "rank RANK")
            if not (number.is_integer() and 0 <= number < size * size):
                raise KernelSpecError(f"rank RANK must be a whole number from 0 (the smallest) to "
                                      f"{size * size - 1} (the largest of {size}x{size}), got {values[1]!r}")  # fmt: skip
            rank = int(number)
        return RankFilter(size, rank, kind)

    return parse


def _mode(values: list[str]) -> NeighbourhoodFilter:
    return ModeFilter(_window(values[0], "mode", MAX_RANK_SIZE))


def _gradient(operator: str) -> Callable[[list[str]], NeighbourhoodFilter]:
    return lambda values: GradientMagnitude(operator)


@dataclass(frozen=True)
class FilterSpec:
    """One row of the filter table: how a filter is written and what it is."""

    usage: str
    description: str
    parameters: tuple[int, int]  # fewest and most values after the colon
    parse: Callable[[list[str]], NeighbourhoodFilter]
    linear: bool = False
    pillow: str | None = None  # the ImageFilter class


#: The filter specs by name.
FILTER_SPECS: dict[str, FilterSpec] = {
    "box_blur": FilterSpec("box_blur:R[,RY]", "Pillow BoxBlur: mean of a (2R+1)-wide box; RY for the vertical",
                           (1, 2), _box_blur, True, "BoxBlur"),
    "gaussian_blur": FilterSpec("gaussian_blur:R[,RY]", "Pillow GaussianBlur: three box blurs approximating a "
                                "Gaussian of standard deviation R", (1, 2), _gaussian_blur, True, "GaussianBlur"),
    "unsharp": FilterSpec("unsharp[:RADIUS,PERCENT,THRESHOLD]", "Pillow UnsharpMask (defaults 2,150,3): adds "
                          "PERCENT % of the difference from gaussian_blur:RADIUS where it exceeds THRESHOLD",
                          (0, 3), _unsharp, False, "UnsharpMask"),
    "median": FilterSpec("median:N", "Pillow MedianFilter: the median of the N x N window (N odd)", (1, 1),
                         _rank_kind("median"), False, "MedianFilter"),
    "min": FilterSpec("min:N", "Pillow MinFilter: the smallest sample of the N x N window", (1, 1),
                      _rank_kind("min"), False, "MinFilter"),
    "max": FilterSpec("max:N", "Pillow MaxFilter: the largest sample of the N x N window", (1, 1),
                      _rank_kind("max"), False, "MaxFilter"),
    "rank": FilterSpec("rank:N,RANK", "Pillow RankFilter: the RANK-th smallest (from 0) of the N x N window",
                       (2, 2), _rank_kind("rank"), False, "RankFilter"),
    "mode": FilterSpec("mode:N", "Pillow ModeFilter: the most frequent sample of the N x N window if it occurs "
                       "3 times or more, else the pixel", (1, 1), _mode, False, "ModeFilter"),
    "sobel": FilterSpec("sobel", "gradient magnitude sqrt(gx^2 + gy^2) of sobel-x and sobel-y", (0, 0),
                        _gradient("sobel")),
    "scharr": FilterSpec("scharr", "gradient magnitude sqrt(gx^2 + gy^2) of scharr-x and scharr-y", (0, 0),
                         _gradient("scharr")),
    "prewitt": FilterSpec("prewitt", "gradient magnitude sqrt(gx^2 + gy^2) of prewitt-x and prewitt-y", (0, 0),
                          _gradient("prewitt")),
}  # fmt: skip


def parse_filter(key: str, params: str | None) -> NeighbourhoodFilter:
    """The filter ``key`` (a :data:`FILTER_SPECS` name) with the text after its colon.

    Raises
    ------
    KernelSpecError
        Parameters missing, extra, or out of range.
    """
    from .kernels import KernelSpecError

    spec = FILTER_SPECS[key]
    usage, (least, most) = spec.usage, spec.parameters
    values = [] if params is None else [v.strip() for v in params.split(",")]
    if params is not None and (not params.strip() or not all(values)):
        raise KernelSpecError(f"bad parameters {params!r}; expected {usage}")
    if not least <= len(values) <= most:
        if most == 0:
            raise KernelSpecError(f"{key} takes no parameters (the gradient along x is {key}-x)")
        raise KernelSpecError(f"{key} needs {'parameters' if not values else 'other parameters'}: {usage}")
    return spec.parse(values)
