"""Kernels: the immutable kernel value, the preset table and the spec parser.

Convention: a kernel is applied by cross-correlation, as written. Row 0 of
the matrix weighs the row above the pixel, column 0 the column to its left.
The anchor (the tap that lands on the output pixel) is ``(h // 2, w // 2)``
unless the kernel names another, so a 2x2 kernel covers the pixel, its left
neighbour and the two above them (the same placement as
``scipy.ndimage.correlate``). ``Kernel.flipped()`` rotates the matrix 180
degrees, turning correlation into true convolution; the anchor moves with
its tap, so a flipped 4x4 kernel is ``scipy.ndimage.convolve``'s placement.

Specs of filters that are not one matrix (``median:3``, ``unsharp``) parse
to :mod:`convfilter.neighbourhood` filters, which are chained like kernels.

This module imports nothing but NumPy and the standard library (and, for
those filter specs, its sibling modules).
"""

from __future__ import annotations

import difflib
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import os_reason

if TYPE_CHECKING:
    from .neighbourhood import NeighbourhoodFilter

__all__ = [
    "Kernel",
    "KernelSpecError",
    "Preset",
    "PRESETS",
    "PARAMETRIC_PRESETS",
    "parse_kernel",
    "prepare_kernel",
    "brightness_hint",
    "preset_key",
    "box_kernel",
    "gaussian_kernel",
    "log_kernel",
    "dog_kernel",
]

#: Largest accepted side of any kernel; far beyond any useful filter, it keeps
#: a typo such as ``box:30000`` from allocating gigabytes.
MAX_KERNEL_SIDE = 1024


class KernelSpecError(ValueError):
    """A kernel spec, matrix or kernel option that cannot be used.

    The message names the problem and where it is, e.g.
    ``row 2 has 2 values, row 1 has 3``.
    """


@dataclass(frozen=True, eq=False)
class Kernel:
    """A correlation kernel: effective weights are ``matrix / scale``.

    Parameters
    ----------
    matrix : array_like
        2-D weights, any shape h x w with h, w >= 1; stored as a read-only
        float64 array.
    scale : float
        Divisor applied to every weight; finite and non-zero.
    offset : float
        Added to each result after scaling (before rounding).
    name : str
        What to call the kernel in reports.
    pillow_name : str or None
        Name of the equivalent Pillow ``ImageFilter`` built-in, if any.
    factors : tuple of two 1-D arrays or None
        ``(column, row)`` with ``outer(column, row) == matrix`` when the
        kernel is known to be separable.
    matrix_spec : str or None
        The inline matrix or ``@PATH`` spec the kernel was read from (set
        by :func:`parse_kernel`); None for presets and kernels made in code.
    scale_given : bool
        True when ``--scale`` or ``--normalize`` set the scale (set by
        :func:`prepare_kernel`).
    anchor : (row, column) or None
        The tap applied to the output pixel; None means ``(h // 2, w // 2)``.

    Raises
    ------
    KernelSpecError
        If the matrix is empty, not 2-D, too large or not finite, if scale
        or offset is not finite, or scale is zero, or the anchor is not a
        tap of the matrix.

    Examples
    --------
    >>> k = Kernel([[1, 2, 1]], scale=4)
    >>> k.shape, k.anchor, k.weights.tolist()
    ((1, 3), (0, 1), [[0.25, 0.5, 0.25]])
    """

    matrix: np.ndarray
    scale: float = 1.0
    offset: float = 0.0
    name: str = "custom"
    description: str = ""
    pillow_name: str | None = None
    factors: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    matrix_spec: str | None = None
    scale_given: bool = False
    anchor: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        try:
            matrix = np.array(self.matrix, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise KernelSpecError(f"kernel matrix is not numeric: {exc}") from None
        if matrix.ndim == 1 and matrix.size:
            matrix = matrix[np.newaxis, :]
        if matrix.ndim != 2:
            raise KernelSpecError(f"kernel matrix must be 2-D, got {matrix.ndim}-D")
        if matrix.size == 0:
            raise KernelSpecError("kernel matrix is empty")
        if max(matrix.shape) > MAX_KERNEL_SIDE:
            raise KernelSpecError(
                f"kernel is {matrix.shape[0]}x{matrix.shape[1]}; "
                f"the largest side allowed is {MAX_KERNEL_SIDE}"
            )
        if not np.all(np.isfinite(matrix)):
            raise KernelSpecError("kernel matrix contains NaN or infinity")
        scale = _finite_float(self.scale, "scale")
        if scale == 0:
            raise KernelSpecError("scale must not be zero")
        offset = _finite_float(self.offset, "offset")
        matrix.setflags(write=False)
        object.__setattr__(self, "matrix", matrix)
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "offset", offset)
        h, w = matrix.shape
        anchor = (h // 2, w // 2) if self.anchor is None else self.anchor
        try:
            ay, ax = (int(a) for a in anchor)
        except (TypeError, ValueError):
            raise KernelSpecError(f"anchor must be (row, column), got {anchor!r}") from None
        if not (0 <= ay < h and 0 <= ax < w) or (ay, ax) != tuple(anchor):
            raise KernelSpecError(
                f"anchor column {anchor[-1]}, row {anchor[0]} is outside the {w}x{h} kernel "
                f"(columns 0 to {w - 1}, rows 0 to {h - 1})"
            )
        object.__setattr__(self, "anchor", (ay, ax))
        if self.factors is not None:
            column, row = (np.array(f, dtype=np.float64).ravel() for f in self.factors)
            column.setflags(write=False)
            row.setflags(write=False)
            object.__setattr__(self, "factors", (column, row))

    @property
    def shape(self) -> tuple[int, int]:
        """``(h, w)`` of the matrix."""
        return self.matrix.shape  # type: ignore[return-value]

    @property
    def reach(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right): how many pixels beyond each side the sums use."""
        h, w = self.shape
        ay, ax = self.anchor
        return ay, h - 1 - ay, ax, w - 1 - ax

    @property
    def centred(self) -> bool:
        """True when the anchor is the default ``(h // 2, w // 2)``."""
        h, w = self.shape
        return self.anchor == (h // 2, w // 2)

    @property
    def weights(self) -> np.ndarray:
        """Effective float64 weights, ``matrix / scale``."""
        return self.matrix / self.scale

    @property
    def weights_float32(self) -> np.ndarray:
        """Effective weights as Pillow computes them: float32(matrix) / float32(scale)."""
        return self.matrix.astype(np.float32) / np.float32(self.scale)

    def replace(self, **changes) -> Kernel:
        """A copy with the given fields changed (validated again)."""
        values = {
            "matrix": self.matrix,
            "scale": self.scale,
            "offset": self.offset,
            "name": self.name,
            "description": self.description,
            "pillow_name": self.pillow_name,
            "factors": self.factors,
            "matrix_spec": self.matrix_spec,
            "scale_given": self.scale_given,
            "anchor": self.anchor,
        }
        if "matrix" in changes and "factors" not in changes:
            values["factors"] = None
        if "matrix" in changes and "anchor" not in changes:
            values["anchor"] = None
        values.update(changes)
        return Kernel(**values)

    def flipped(self) -> Kernel:
        """The kernel rotated 180 degrees: correlating with it is true convolution.

        The anchor stays on its tap, so the output pixel stays where it was:
        a flipped 4x4 kernel is anchored at row 1, column 1.
        """
        factors = None
        if self.factors is not None:
            factors = (self.factors[0][::-1], self.factors[1][::-1])
        h, w = self.shape
        ay, ax = self.anchor
        return self.replace(
            matrix=self.matrix[::-1, ::-1], factors=factors, pillow_name=None, anchor=(h - 1 - ay, w - 1 - ax)
        )

    def normalized(self) -> Kernel:
        """The kernel with scale set to the sum of its matrix.

        Raises
        ------
        KernelSpecError
            If the weights sum to zero (an edge detector): dividing by zero
            is meaningless, so this is refused rather than silently skipped.
        """
        total = float(self.matrix.sum())
        if abs(total) <= 1e-12 * max(1.0, float(np.abs(self.matrix).sum())):
            raise KernelSpecError(
                f"cannot normalize kernel {self.name!r}: its weights sum to zero "
                "(an edge or derivative kernel); leave out --normalize or give --scale"
            )
        same = total == self.scale
        return self.replace(scale=total, pillow_name=self.pillow_name if same else None)

    def is_integer(self) -> bool:
        """True when every matrix entry is a whole number."""
        return bool(np.all(self.matrix == np.round(self.matrix)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Kernel):
            return NotImplemented
        return (
            self.shape == other.shape
            and bool(np.array_equal(self.matrix, other.matrix))
            and self.scale == other.scale
            and self.offset == other.offset
            and self.anchor == other.anchor
        )

    def __hash__(self) -> int:
        return hash((self.shape, self.matrix.tobytes(), self.scale, self.offset, self.anchor))


def _finite_float(value: object, what: str) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise KernelSpecError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise KernelSpecError(f"{what} must be finite, got {value!r}")
    return number


# ---------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Preset:
    """One row of the preset table.

    ``grid`` is written in convfilter's orientation (cross-correlation).
    Pillow's built-ins are stored with their rows reversed from
    ``ImageFilter``'s tuples, because Pillow applies row 0 to the row below
    the pixel; stored this way they reproduce Pillow's output exactly.
    """

    name: str
    grid: tuple[tuple[float, ...], ...]
    scale: float
    offset: float
    description: str
    pillow_name: str | None = None
    factors: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    def kernel(self) -> Kernel:
        """The preset as a :class:`Kernel`."""
        return Kernel(
            self.grid,
            scale=self.scale,
            offset=self.offset,
            name=self.name,
            description=self.description,
            pillow_name=self.pillow_name,
            factors=self.factors,
        )


# fmt: off
_PRESET_LIST = (
    # Pillow's ten built-in kernel filters (ImageFilter), rows in correlation order.
    Preset("blur", (
        (1, 1, 1, 1, 1),
        (1, 0, 0, 0, 1),
        (1, 0, 0, 0, 1),
        (1, 0, 0, 0, 1),
        (1, 1, 1, 1, 1),
    ), 16, 0, "Pillow BLUR: mean of the 5x5 ring around the pixel", "BLUR"),
    Preset("contour", (
        (-1, -1, -1),
        (-1,  8, -1),
        (-1, -1, -1),
    ), 1, 255, "Pillow CONTOUR: dark outlines on white", "CONTOUR"),
    Preset("detail", (
        ( 0, -1,  0),
        (-1, 10, -1),
        ( 0, -1,  0),
    ), 6, 0, "Pillow DETAIL: mild 4-neighbour sharpening", "DETAIL"),
    Preset("edge_enhance", (
        (-1, -1, -1),
        (-1, 10, -1),
        (-1, -1, -1),
    ), 2, 0, "Pillow EDGE_ENHANCE: boosts edges, keeps the picture", "EDGE_ENHANCE"),
    Preset("edge_enhance_more", (
        (-1, -1, -1),
        (-1,  9, -1),
        (-1, -1, -1),
    ), 1, 0, "Pillow EDGE_ENHANCE_MORE: strong edge boost", "EDGE_ENHANCE_MORE"),
    Preset("emboss", (
        ( 0,  0,  0),
        ( 0,  1,  0),
        (-1,  0,  0),
    ), 1, 128, "Pillow EMBOSS: relief lit from the lower left, grey 128 base", "EMBOSS"),
    Preset("find_edges", (
        (-1, -1, -1),
        (-1,  8, -1),
        (-1, -1, -1),
    ), 1, 0, "Pillow FIND_EDGES: 8-neighbour Laplacian, bright edges on black", "FIND_EDGES"),
    Preset("sharpen", (
        (-2, -2, -2),
        (-2, 32, -2),
        (-2, -2, -2),
    ), 16, 0, "Pillow SHARPEN: unsharp-style 3x3 sharpening", "SHARPEN"),
    Preset("smooth", (
        (1, 1, 1),
        (1, 5, 1),
        (1, 1, 1),
    ), 13, 0, "Pillow SMOOTH: light 3x3 smoothing", "SMOOTH"),
    Preset("smooth_more", (
        (1, 1,  1, 1, 1),
        (1, 5,  5, 5, 1),
        (1, 5, 44, 5, 1),
        (1, 5,  5, 5, 1),
        (1, 1,  1, 1, 1),
    ), 100, 0, "Pillow SMOOTH_MORE: stronger 5x5 smoothing", "SMOOTH_MORE"),
    # convfilter's own.
    Preset("identity", (
        (0, 0, 0),
        (0, 1, 0),
        (0, 0, 0),
    ), 1, 0, "returns the image unchanged", None, ((0, 1, 0), (0, 1, 0))),
    Preset("laplacian", (
        (0,  1, 0),
        (1, -4, 1),
        (0,  1, 0),
    ), 1, 0, "4-neighbour Laplacian (second derivative); use --abs or --offset to see it"),
    Preset("laplacian8", (
        (1,  1, 1),
        (1, -8, 1),
        (1,  1, 1),
    ), 1, 0, "8-neighbour Laplacian; use --abs or --offset to see it"),
    Preset("sobel-x", (
        (-1, 0, 1),
        (-2, 0, 2),
        (-1, 0, 1),
    ), 1, 0, "Sobel horizontal gradient (right minus left); vertical edges",
       None, ((1, 2, 1), (-1, 0, 1))),
    Preset("sobel-y", (
        (-1, -2, -1),
        ( 0,  0,  0),
        ( 1,  2,  1),
    ), 1, 0, "Sobel vertical gradient (below minus above); horizontal edges",
       None, ((-1, 0, 1), (1, 2, 1))),
    Preset("prewitt-x", (
        (-1, 0, 1),
        (-1, 0, 1),
        (-1, 0, 1),
    ), 1, 0, "Prewitt horizontal gradient (right minus left)",
       None, ((1, 1, 1), (-1, 0, 1))),
    Preset("prewitt-y", (
        (-1, -1, -1),
        ( 0,  0,  0),
        ( 1,  1,  1),
    ), 1, 0, "Prewitt vertical gradient (below minus above)",
       None, ((-1, 0, 1), (1, 1, 1))),
    Preset("scharr-x", (
        ( -3, 0,  3),
        (-10, 0, 10),
        ( -3, 0,  3),
    ), 1, 0, "Scharr horizontal gradient, more rotation-invariant than Sobel",
       None, ((3, 10, 3), (-1, 0, 1))),
    Preset("scharr-y", (
        (-3, -10, -3),
        ( 0,   0,  0),
        ( 3,  10,  3),
    ), 1, 0, "Scharr vertical gradient, more rotation-invariant than Sobel",
       None, ((-1, 0, 1), (3, 10, 3))),
)
# fmt: on


def preset_key(name: str) -> str:
    """Lookup key of a preset name: case-insensitive, ``-`` and ``_`` alike.

    >>> preset_key("EDGE-Enhance") == preset_key("edge_enhance")
    True
    """
    return name.strip().lower().replace("-", "_")


#: Fixed presets by lookup key.
PRESETS: dict[str, Preset] = {preset_key(p.name): p for p in _PRESET_LIST}

#: Presets that take parameters after a colon: name -> (usage, description).
PARAMETRIC_PRESETS: dict[str, tuple[str, str]] = {
    "box": ("box:N", "N x N mean (box blur), normalised"),
    "gaussian": (
        "gaussian:SIGMA[,SIZE]",
        "Gaussian blur; SIZE odd, default 2*ceil(3*SIGMA)+1; normalised, separable",
    ),
    "log": (
        "log:SIGMA",
        "Laplacian of Gaussian, as scipy.ndimage.gaussian_laplace (reach 4*SIGMA); signed: "
        "use --abs or --offset",
    ),
    "dog": (
        "dog:SIGMA1,SIGMA2",
        "difference of Gaussians gaussian_filter(SIGMA1) - gaussian_filter(SIGMA2), as SciPy's "
        "(reach 4*SIGMA); signed",
    ),
}


def box_kernel(size: int) -> Kernel:
    """An N x N mean filter (matrix of ones, scale N*N)."""
    _check_side(size, "box size")
    ones = np.ones(size)
    return Kernel(
        np.ones((size, size)),
        scale=size * size,
        name=f"box:{size}",
        description=PARAMETRIC_PRESETS["box"][1],
        factors=(ones, ones),
    )


def gaussian_kernel(sigma: float, size: int | None = None) -> Kernel:
    """A normalised Gaussian, ``size`` x ``size`` (odd), built from its 1-D factor.

    >>> k = gaussian_kernel(1.0)
    >>> k.shape, round(float(k.weights.sum()), 12)
    ((7, 7), 1.0)
    """
    sigma = float(sigma)
    if not math.isfinite(sigma) or sigma <= 0:
        raise KernelSpecError(f"gaussian SIGMA must be a positive number, got {sigma!r}")
    if size is None:
        reach = 3 * sigma  # may overflow to infinity for a huge SIGMA
        if reach > MAX_KERNEL_SIDE:
            raise KernelSpecError(
                f"gaussian SIGMA {sigma:g} needs a kernel wider than "
                f"{MAX_KERNEL_SIDE}, the largest side allowed"
            )
        size = 2 * math.ceil(reach) + 1
        if size > MAX_KERNEL_SIDE:
            raise KernelSpecError(
                f"gaussian SIGMA {sigma:g} needs a {size}x{size} kernel; "
                f"the largest side allowed is {MAX_KERNEL_SIDE}"
            )
    _check_side(size, "gaussian SIZE")
    if size % 2 == 0:
        raise KernelSpecError(f"gaussian SIZE must be odd, got {size}")
    x = np.arange(size) - (size - 1) / 2
    with np.errstate(over="ignore"):
        # A tiny SIGMA overflows (x / sigma) ** 2 to infinity: exp(-inf) is
        # exactly the 0 wanted, so the overflow is not worth a warning.
        g = np.exp(-0.5 * (x / sigma) ** 2)
    g /= g.sum()
    return Kernel(
        np.outer(g, g),
        name=f"gaussian:{sigma:g},{size}",
        description=PARAMETRIC_PRESETS["gaussian"][1],
        factors=(g, g),
    )


def _sampled_gaussian(sigma: float, reach: int) -> tuple[np.ndarray, np.ndarray]:
    """SciPy's sampled Gaussian on ``-reach .. reach``: the normalised weights
    and their second derivative, ``g * (x**2 - sigma**2) / sigma**4``."""
    x = np.arange(-reach, reach + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    g /= g.sum()
    return g, g * (x * x - sigma * sigma) / sigma**4


def _scipy_reach(sigma: float, what: str) -> int:
    """``int(4 * sigma + 0.5)``, SciPy's default reach; refused beyond the largest kernel."""
    if not math.isfinite(sigma) or sigma <= 0:
        raise KernelSpecError(f"{what} must be a positive number, got {sigma!r}")
    if 4.0 * sigma + 0.5 >= MAX_KERNEL_SIDE // 2 + 1:
        raise KernelSpecError(f"{what} {sigma:g} needs a kernel wider than {MAX_KERNEL_SIDE}, "
                              "the largest side allowed")  # fmt: skip
    return int(4.0 * sigma + 0.5)


def log_kernel(sigma: float) -> Kernel:
    """The Laplacian of Gaussian that ``scipy.ndimage.gaussian_laplace(a, sigma)`` applies.

    >>> k = log_kernel(1.0)
    >>> k.shape, abs(float(k.weights.sum())) < 0.01
    ((9, 9), True)
    """
    reach = _scipy_reach(float(sigma), "log SIGMA")
    g, second = _sampled_gaussian(float(sigma), reach)
    return Kernel(np.outer(second, g) + np.outer(g, second), name=f"log:{float(sigma):g}",
                  description=PARAMETRIC_PRESETS["log"][1])  # fmt: skip


def dog_kernel(sigma1: float, sigma2: float) -> Kernel:
    """``gaussian_filter(a, sigma1) - gaussian_filter(a, sigma2)`` as one kernel
    (SciPy's sampled Gaussians, each reaching ``int(4 * sigma + 0.5)``)."""
    sigmas = [float(sigma1), float(sigma2)]
    reaches = [_scipy_reach(s, f"dog SIGMA{i}") for i, s in enumerate(sigmas, 1)]
    reach = max(reaches)
    matrix = np.zeros((2 * reach + 1, 2 * reach + 1))
    for sign, sigma, own in zip((1.0, -1.0), sigmas, reaches):
        g, _ = _sampled_gaussian(sigma, own)
        inset = reach - own
        matrix[inset : inset + 2 * own + 1, inset : inset + 2 * own + 1] += sign * np.outer(g, g)
    return Kernel(matrix, name=f"dog:{sigmas[0]:g},{sigmas[1]:g}", description=PARAMETRIC_PRESETS["dog"][1])


def _check_side(size: int, what: str) -> None:
    if not 1 <= size <= MAX_KERNEL_SIDE:
        raise KernelSpecError(f"{what} must be between 1 and {MAX_KERNEL_SIDE}, got {size}")


# ---------------------------------------------------------------------------
# The spec parser
# ---------------------------------------------------------------------------

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_NON_FINITE = re.compile(r"^[+-]?(?:nan|inf|infinity)$", re.IGNORECASE)


def parse_kernel(
    spec: str,
    *,
    scale: float | None = None,
    offset: float | None = None,
    normalize: bool = False,
    flip: bool = False,
    anchor: tuple[int, int] | None = None,
) -> Kernel | NeighbourhoodFilter:
    """Turn a kernel spec into a :class:`Kernel`, then apply the kernel options
    as :func:`prepare_kernel` does (``--scale``, ``--offset``, ``--normalize``,
    ``--flip``, ``--anchor``).

    Accepted forms:

    * a preset name, ``edge_enhance``, ``Sobel-X``, with parameters after a
      colon where the preset takes them: ``box:5``, ``gaussian:2``,
      ``gaussian:1.5,9``;
    * an inline matrix, rows separated by ``;`` or newlines and entries by
      commas and/or spaces: ``"-1 -1 -1; -1 10 -1; -1 -1 -1"``; or nested
      lists: ``[[0,1,2],[3,4,5]]``. Entries are integers, decimals, exponents
      or fractions (``1/9``);
    * ``@PATH``: a text file in the matrix format (``#`` starts a comment),
      or a ``.npy`` file holding a 2-D numeric array (loaded without pickle);
    * a filter that is not one matrix (:data:`neighbourhood.FILTER_SPECS`):
      ``median:3``, ``unsharp:2,150,3``, ``box_blur:1.5``, ``sobel``; these
      give a :class:`~convfilter.neighbourhood.NeighbourhoodFilter`.

    A matrix has scale 1 and offset 0: nothing is normalised silently.

    Raises
    ------
    KernelSpecError
        For every spec that is not a kernel; never any other exception.

    Examples
    --------
    >>> parse_kernel("1 2; 3 4").matrix.tolist()
    [[1.0, 2.0], [3.0, 4.0]]
    >>> parse_kernel("EDGE-ENHANCE").name
    'edge_enhance'
    >>> parse_kernel("1 2 1; 2 4 2; 1 2 1", normalize=True).scale
    16.0
    """
    kernel = _parse_spec(spec)
    if scale is None and offset is None and not normalize and not flip and anchor is None:
        return kernel
    return prepare_kernel(kernel, scale=scale, offset=offset, normalize=normalize, flip=flip, anchor=anchor)


def as_kernel(kernel: Kernel | str | object) -> Kernel | NeighbourhoodFilter:
    """A :class:`Kernel` from a Kernel (returned as it is), a spec string
    (:func:`parse_kernel`) or a 2-D matrix (nested lists or an array); a
    :class:`~convfilter.neighbourhood.NeighbourhoodFilter` is returned as it is.

    Raises
    ------
    KernelSpecError
        For anything that is not a kernel.

    >>> as_kernel([[1, 2, 1]]).name
    'matrix 1x3'
    """
    if isinstance(kernel, Kernel):
        return kernel
    if isinstance(kernel, str):
        return parse_kernel(kernel)
    from .neighbourhood import NeighbourhoodFilter  # here: a plain kernel needs none of it

    if isinstance(kernel, NeighbourhoodFilter):
        return kernel
    if isinstance(kernel, (bytes, dict, set)) or kernel is None or isinstance(kernel, (int, float, bool)):
        raise KernelSpecError(
            f"a kernel is a Kernel, a spec string or a 2-D matrix, not {type(kernel).__name__}"
        )
    matrix = Kernel(kernel).matrix
    return Kernel(matrix, name=f"matrix {matrix.shape[0]}x{matrix.shape[1]}")


def _parse_spec(spec: str) -> Kernel:
    if not isinstance(spec, str):
        raise KernelSpecError(f"kernel spec must be text, got {type(spec).__name__}")
    text = spec.strip()
    if not text:
        raise KernelSpecError("kernel spec is empty")
    if text.startswith("@"):
        return _parse_file(text[1:])
    head, _, params = text.partition(":")
    if _NAME.match(head.strip()) and not _NON_FINITE.match(head.strip()):
        return _parse_preset(head.strip(), params if ":" in text else None)
    matrix = parse_matrix(text)
    return Kernel(matrix, name=f"matrix {matrix.shape[0]}x{matrix.shape[1]}", matrix_spec=text)


def prepare_kernel(
    kernel: Kernel | NeighbourhoodFilter,
    *,
    scale: float | None = None,
    offset: float | None = None,
    normalize: bool = False,
    flip: bool = False,
    anchor: tuple[int, int] | None = None,
) -> Kernel | NeighbourhoodFilter:
    """Apply the command-line kernel options, in this order: scale, offset,
    normalize, anchor (``(row, column)`` of the tap on the output pixel),
    flip (the anchor moves with its tap). A kernel whose scale, offset or
    anchor changed no longer has a Pillow equivalent; a flipped symmetric
    one keeps it. A linear filter given any option becomes its matrix
    (``box_blur:1`` with ``--scale 2``); other filters refuse them.

    Raises
    ------
    KernelSpecError
        ``scale`` together with ``normalize``, a zero or non-finite scale,
        normalizing a kernel whose weights sum to zero, an anchor outside
        the matrix, or any option on a filter that has no matrix.

    >>> prepare_kernel(parse_kernel("1 2 1"), normalize=True).weights.tolist()
    [[0.25, 0.5, 0.25]]
    """
    if scale is not None and normalize:
        raise KernelSpecError("give either --scale or --normalize, not both")
    if not isinstance(kernel, Kernel):
        given = [name for name, value in (("--scale", scale), ("--offset", offset), ("--normalize", normalize),
                                          ("--flip", flip), ("--anchor", anchor)) if value not in (None, False)]  # fmt: skip
        if not given:
            return kernel
        if not kernel.linear:
            raise KernelSpecError(f"{kernel.name} is not a kernel (it has no matrix), so {', '.join(given)} "
                                  "cannot change it")  # fmt: skip
        kernel = kernel.matrix_kernel()
    changes: dict = {}
    if scale is not None:
        changes["scale"] = scale
    if offset is not None:
        changes["offset"] = offset
    if any(_finite_float(v, k) != getattr(kernel, k) for k, v in changes.items()):
        changes["pillow_name"] = None
    if scale is not None:
        changes["scale_given"] = True
    if changes:
        kernel = kernel.replace(**changes)
    if normalize:
        kernel = kernel.normalized().replace(scale_given=True)
    if anchor is not None and tuple(anchor) != kernel.anchor:
        kernel = kernel.replace(anchor=tuple(anchor), pillow_name=None)
    if flip:
        symmetric = bool(np.array_equal(kernel.matrix, kernel.matrix[::-1, ::-1]))
        pillow_name = kernel.pillow_name if symmetric else None
        kernel = kernel.flipped().replace(pillow_name=pillow_name)
    return kernel


def brightness_hint(kernel: Kernel) -> str | None:
    """A note for a matrix kernel that changes the image's brightness, or None.

    Only an inline or ``@PATH`` kernel whose scale was not given (no
    ``--scale``, no ``--normalize``) can get the note, and only when its
    weights sum to neither 1 (brightness kept) nor 0 (an edge kernel, on
    purpose). Presets and kernels made in code get None: their scale is
    part of them.

    >>> print(brightness_hint(parse_kernel("1 2 1; 2 4 2; 1 2 1")))
    the weights of '1 2 1; 2 4 2; 1 2 1' sum to 16, so the image gets 16 times brighter; add --normalize to divide by 16 (or --scale S)
    >>> brightness_hint(parse_kernel("0 -1 0; -1 5 -1; 0 -1 0")) is None
    True
    """
    if not isinstance(kernel, Kernel) or kernel.matrix_spec is None or kernel.scale_given:
        return None
    total = float(kernel.weights.sum())
    # Rounding in the sum grows with the size of the weights. The base of 1,
    # as in normalized(), makes every sum it refuses as zero count as zero
    # here, so the note never suggests a --normalize that fails.
    tolerance = 1e-9 * max(1.0, float(np.abs(kernel.weights).sum()))
    if abs(total) <= tolerance or abs(total - 1.0) <= tolerance:
        return None
    if total > 1:
        effect = f"the image gets {_significant(total)} times brighter"
    elif total > 0:
        effect = f"the image gets darker ({_significant(total)} times as bright)"
    else:
        strength = f" ({_significant(-total)} times as strong)"
        if abs(total + 1.0) <= tolerance:
            strength = ""
        effect = f"the image comes out inverted{strength} and clipped to black below 0"
    spec = kernel.matrix_spec
    if not spec.startswith("@"):
        spec = _excerpt(spec, 0)  # a long matrix, not a long path, is cut
    return (
        f"the weights of {spec!r} sum to {_significant(total)}, "
        f"so {effect}; add --normalize to divide by "
        f"{_significant(float(kernel.matrix.sum()))} (or --scale S)"
    )


def _significant(value: float) -> str:
    """``value`` to 6 significant digits, or more where 6 would show 1 or 0."""
    text = f"{value:.6g}"
    return f"{value:.15g}" if float(text) in (-1.0, 0.0, 1.0) else text


def _excerpt(text: str, at: int) -> str:
    """``text`` cut to 30 characters either side of index ``at``, cuts marked '...'."""
    start, end = max(0, at - 30), min(len(text), at + 30)
    return ("..." if start else "") + text[start:end] + ("..." if end < len(text) else "")


def _parse_preset(name: str, params: str | None) -> Kernel:
    key = preset_key(name)
    if key in PRESETS:
        if params is not None:
            raise KernelSpecError(f"preset {PRESETS[key].name!r} takes no parameters")
        return PRESETS[key].kernel()
    if key == "box":
        values = _preset_params(params, "box:N", 1, 1)
        return box_kernel(spec_whole_number(values[0], "box N"))
    if key == "gaussian":
        values = _preset_params(params, "gaussian:SIGMA[,SIZE]", 1, 2)
        sigma = spec_number(values[0], "gaussian SIGMA")
        size = spec_whole_number(values[1], "gaussian SIZE") if len(values) == 2 else None
        return gaussian_kernel(sigma, size)
    if key == "log":
        values = _preset_params(params, "log:SIGMA", 1, 1)
        return log_kernel(spec_number(values[0], "log SIGMA"))
    if key == "dog":
        values = _preset_params(params, "dog:SIGMA1,SIGMA2", 2, 2)
        return dog_kernel(*(spec_number(v, f"dog SIGMA{i}") for i, v in enumerate(values, 1)))
    from .neighbourhood import FILTER_SPECS, parse_filter

    if key in FILTER_SPECS:
        return parse_filter(key, params)
    choices = [p.name for p in _PRESET_LIST] + list(PARAMETRIC_PRESETS) + list(FILTER_SPECS)
    close = difflib.get_close_matches(
        key, [preset_key(c) for c in choices], n=3, cutoff=0.6
    )
    by_key = {preset_key(c): c for c in choices}
    hint = f"; did you mean {', '.join(by_key[c] for c in close)}?" if close else ""
    raise KernelSpecError(
        f"unknown kernel preset {name!r}{hint} (`convfilter kernels` lists them all)"
    )


def _preset_params(params: str | None, usage: str, least: int, most: int) -> list[str]:
    if params is None or not params.strip():
        raise KernelSpecError(f"preset needs parameters: {usage}")
    values = [v.strip() for v in params.split(",")]
    if not least <= len(values) <= most or not all(values):
        raise KernelSpecError(f"bad parameters {params!r}; expected {usage}")
    return values


def spec_number(token: str, what: str) -> float:
    if _NON_FINITE.match(token):
        raise KernelSpecError(f"{what} must be finite, got {token!r}")
    if not _NUMBER.match(token):
        raise KernelSpecError(f"{what} must be a number, got {token!r}")
    value = float(token)
    if not math.isfinite(value):
        raise KernelSpecError(f"{what} must be finite, got {token!r}")
    return value


def spec_whole_number(token: str, what: str) -> int:
    if not re.fullmatch(r"\+?\d+", token):
        raise KernelSpecError(f"{what} must be a positive whole number, got {token!r}")
    value = int(token)
    if value < 1:
        raise KernelSpecError(f"{what} must be a positive whole number, got {token!r}")
    return value


#: Between two rows: ``;``, a newline, or ``;`` ending a line (one separator).
_ROW_SEPARATOR = re.compile(r"(;[ \t]*\n|[;\n])")
#: Between two entries: a comma with any spaces around it, or spaces alone.
_ENTRY_SEPARATOR = re.compile(r"(\s*,\s*|\s+)")
#: One row of the nested-list form; the group is its contents.
_NESTED_ROW = re.compile(r"\[([^\[\]]*)\]")


def parse_matrix(text: str) -> np.ndarray:
    """Parse matrix text (rows by ``;`` or newline, or nested lists) to float64.

    Raises
    ------
    KernelSpecError
        For an empty entry or row (``1,,2``, ``1,``, ``1 2;;3 4``), ragged
        rows, tokens that are not numbers, NaN or infinity, division by
        zero in a fraction, or an empty matrix.

    >>> parse_matrix("[[1, 1/2], [0, -3e1]]").tolist()
    [[1.0, 0.5], [0.0, -30.0]]
    """
    # A line holding only a comment is no row at all, not an empty one.
    lines = [
        line.split("#", 1)[0]
        for line in text.splitlines()
        if not line.lstrip().startswith("#")
    ]
    body = "\n".join(lines).strip()
    rows = _split_nested_lists(body) if body.startswith("[") else _split_rows(body)
    if not rows:
        raise KernelSpecError("kernel matrix is empty")
    values: list[list[float]] = []
    for r, row in enumerate(rows, start=1):
        values.append(_parse_row(row, r))
        if len(values[-1]) != len(values[0]):
            raise KernelSpecError(
                f"row {r} has {_count(len(values[-1]))}, row 1 has {len(values[0])}"
            )
        if len(values[-1]) > MAX_KERNEL_SIDE or r > MAX_KERNEL_SIDE:
            raise KernelSpecError(f"kernel matrix is larger than {MAX_KERNEL_SIDE} on a side")
    return np.array(values, dtype=np.float64)


def _count(n: int) -> str:
    return f"{n} value" if n == 1 else f"{n} values"


def _split_rows(body: str) -> list[str]:
    """The rows of ``;``/newline matrix text (stripped of outer whitespace).

    One ``;`` after the last row is allowed; any other empty row (``;;``,
    a leading ``;``, a blank line between rows) is an error.
    """
    pieces = _ROW_SEPARATOR.split(body)  # row, separator, row, ..., row
    rows, separators = pieces[0::2], pieces[1::2]
    if not any(row.strip() for row in rows):
        return []
    if not rows[-1].strip():
        rows.pop()  # the trailing ';' of "1 2; 3 4;"
    offset = 0
    # Every empty row left is followed by a separator: the last row is not
    # empty, or was emptied by a ';' that is itself followed by the one popped.
    for r, (row, separator) in enumerate(zip(rows, separators + [""]), start=1):
        if not row.strip():
            fix = "remove the extra ';'" if ";" in separator else "remove the blank line"
            raise KernelSpecError(
                f"row {r} is empty in {_excerpt(body, offset)!r}: {fix} or write the row's numbers"
            )
        offset += len(row) + len(separator)
    return rows


def _split_nested_lists(body: str) -> list[str]:
    """``[[a, b], [c, d]]`` -> ``["a, b", "c, d"]``; ``[a, b]`` -> one row.

    Rows are separated by spaces and at most one comma; a comma before the
    first row, after the last or a second one between two rows is an empty
    row, and so is ``[]``.
    """
    if not body.endswith("]"):
        raise KernelSpecError("nested-list matrix must end with ']'")
    inner = body[1:-1]
    if "[" not in inner and "]" not in inner:
        return [inner] if inner.strip() else []
    pieces = _NESTED_ROW.split(inner)  # gap, row, gap, ..., row, gap
    gaps, rows = pieces[0::2], pieces[1::2]
    if not rows or any(gap.strip(" \t\r\n,") for gap in gaps):
        raise KernelSpecError(
            "nested-list matrix must look like [[1, 2], [3, 4]] (one level of rows)"
        )
    offset = 1  # past the outer '['
    for r, (gap, row) in enumerate(zip(gaps, rows + [None]), start=1):
        commas_allowed = 0 if r in (1, len(gaps)) else 1
        if gap.count(",") > commas_allowed:
            raise KernelSpecError(
                f"row {r} is empty in {_excerpt(body, offset + gap.rfind(','))!r}: "
                "remove the extra comma or write the row's numbers"
            )
        offset += len(gap)
        if row is not None and not row.strip():
            raise KernelSpecError(
                f"row {r} is empty in {_excerpt(body, offset)!r}: "
                "remove the '[]' or write the row's numbers"
            )
        offset += len(row or "") + 2
    return rows


def _parse_row(row: str, r: int) -> list[float]:
    """The numbers of row ``r``; an empty entry (``1,,2``, ``,1``, ``1,``) is an error."""
    text = row.strip()
    pieces = _ENTRY_SEPARATOR.split(text)  # entry, separator, entry, ..., entry
    values = []
    offset = 0
    for c, (entry, separator) in enumerate(zip(pieces[0::2], pieces[1::2] + [""]), start=1):
        if not entry:
            raise KernelSpecError(
                f"empty entry at row {r}, column {c} of {_excerpt(text, offset)!r}: "
                "remove the extra comma or write a number"
            )
        values.append(_parse_entry(entry, r, c))
        offset += len(entry) + len(separator)
    return values


def _parse_entry(token: str, row: int, col: int) -> float:
    where = f"row {row}, column {col}"
    if _NON_FINITE.match(token):
        raise KernelSpecError(f"NaN or infinity is not allowed ({token!r} at {where})")
    parts = token.split("/")
    if len(parts) > 2 or not all(_NUMBER.match(p) for p in parts):
        raise KernelSpecError(f"{token!r} is not a number (at {where})")
    value = float(parts[0])
    if len(parts) == 2:
        denominator = float(parts[1])
        if denominator == 0:
            raise KernelSpecError(f"division by zero in {token!r} (at {where})")
        value /= denominator
    if not math.isfinite(value):
        raise KernelSpecError(f"{token!r} is not finite (at {where})")
    return value


def _parse_file(path_text: str) -> Kernel:
    if not path_text.strip():
        raise KernelSpecError("'@' must be followed by a file path")
    path = Path(path_text)
    try:
        if path.suffix.lower() == ".npy":
            with _open_regular(path) as fh:
                _check_npy_header(fh, path)
                array = np.load(fh, allow_pickle=False)
            matrix = _npy_matrix(array, path)
        else:
            with _open_regular(path) as fh:
                raw = fh.read(16 * 1024 * 1024 + 1)
            if len(raw) > 16 * 1024 * 1024:
                raise KernelSpecError(f"kernel file {str(path)!r} is too large")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise KernelSpecError(
                    f"kernel file {str(path)!r} is not UTF-8 text (or a .npy file)"
                ) from None
            try:
                matrix = parse_matrix(text)
            except KernelSpecError as exc:
                raise KernelSpecError(f"in kernel file {str(path)!r}: {exc}") from None
    except KernelSpecError:
        raise
    except OSError as exc:
        raise KernelSpecError(f"kernel file {str(path)!r}: {os_reason(exc)}") from None
    except (ValueError, EOFError) as exc:
        raise KernelSpecError(f"cannot read kernel file {str(path)!r}: {exc}") from None
    return Kernel(matrix, name=f"@{path.name}", matrix_spec=f"@{path_text}")


def _open_regular(path: Path):
    """Open a kernel file for reading without blocking on a FIFO; refuse non-files."""
    fh = open(path, "rb", opener=lambda name, flags: os.open(name, flags | os.O_NONBLOCK))
    try:
        mode = os.fstat(fh.fileno()).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(mode):
            raise KernelSpecError(f"kernel file {str(path)!r} is not a regular file")
        os.set_blocking(fh.fileno(), True)
        return fh
    except BaseException:
        fh.close()
        raise


def _check_npy_header(fh, path: Path) -> None:
    """Refuse a .npy whose header claims more than a kernel can be, before reading it."""
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, _ = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, _, _ = np.lib.format.read_array_header_2_0(fh)
    except ValueError as exc:
        raise KernelSpecError(f"kernel file {str(path)!r} is not a valid .npy file: {exc}") from None
    if any(int(n) > MAX_KERNEL_SIDE for n in shape):
        raise KernelSpecError(
            f"kernel file {str(path)!r} holds a {'x'.join(map(str, shape))} array; "
            f"the largest side allowed is {MAX_KERNEL_SIDE}"
        )
    fh.seek(0)


def _npy_matrix(array: np.ndarray, path: Path) -> np.ndarray:
    if array.dtype.kind not in "biuf":
        raise KernelSpecError(
            f"kernel file {str(path)!r} holds {array.dtype} data, not numbers"
        )
    if array.ndim == 1:
        array = array[np.newaxis, :]
    if array.ndim != 2:
        raise KernelSpecError(
            f"kernel file {str(path)!r} holds a {array.ndim}-D array; a kernel is 2-D"
        )
    if array.size == 0:
        raise KernelSpecError(f"kernel file {str(path)!r} holds an empty array")
    matrix = array.astype(np.float64)
    if not np.all(np.isfinite(matrix)):
        raise KernelSpecError(f"kernel file {str(path)!r} contains NaN or infinity")
    return matrix
