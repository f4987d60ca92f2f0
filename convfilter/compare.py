"""Comparing images: difference metrics, Pillow's reference result, the diff picture."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from .deep_colour import DeepImage
from .kernels import PRESETS, Kernel, KernelSpecError, parse_kernel, preset_key
from .neighbourhood import FILTER_SPECS
from .panels import finite_range, panel_sheet, shrunk, stretched

__all__ = [
    "CompareError",
    "DiffMetrics",
    "DiffReport",
    "diff_arrays",
    "compare_images",
    "compare_frames",
    "kernel_margin",
    "pillow_filter",
    "pillow_equivalent",
    "pillow_label",
    "pillow_reference",
    "heat_map",
    "heat_map_legend",
    "diff_picture",
    "PILLOW_FILTER_NAMES",
]


class CompareError(ValueError):
    """Two images that cannot be compared, or no Pillow equivalent to compare with."""


@dataclass(frozen=True)
class DiffMetrics:
    """How two equally shaped arrays differ, over ``samples`` values."""

    identical: bool
    samples: int
    differing: int
    max_abs: float
    mean_abs: float
    rmse: float
    psnr: float  # decibels; inf when identical

    def to_dict(self) -> dict:
        data = asdict(self)
        if not math.isfinite(self.psnr):
            data["psnr"] = None  # JSON has no infinity: identical, or unbounded difference
        for key in ("max_abs", "mean_abs", "rmse"):
            if not math.isfinite(data[key]):
                data[key] = None
        return data


@dataclass(frozen=True)
class DiffReport:
    """Metrics over the whole image and over its interior.

    The interior leaves out ``margin`` = (top, bottom, left, right) pixels,
    the band a kernel cannot fully cover; it is None when nothing is left.
    """

    whole: DiffMetrics
    interior: DiffMetrics | None
    margin: tuple[int, int, int, int]

    @property
    def identical(self) -> bool:
        return self.whole.identical

    def to_dict(self) -> dict:
        return {
            "identical": self.identical,
            "whole": self.whole.to_dict(),
            "interior": None if self.interior is None else self.interior.to_dict(),
            "margin": {"top": self.margin[0], "bottom": self.margin[1],
                       "left": self.margin[2], "right": self.margin[3]},
        }  # fmt: skip


def _peak(dtype: np.dtype, reference: np.ndarray) -> float:
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    if dtype == np.int32:
        return float(2**31 - 1)
    finite = np.abs(reference[np.isfinite(reference)])
    peak = float(finite.max()) if finite.size else 0.0
    return peak if peak > 0 else 1.0


def _abs_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``|a - b|`` as float64; equal values (NaN and NaN, inf and inf) give 0,
    a NaN against a number inf, an unbounded difference."""
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        nan_a, nan_b = np.isnan(a), np.isnan(b)
        diff[(a == b) | (nan_a & nan_b)] = 0.0
        diff[nan_a ^ nan_b] = np.inf
    return diff


def _metrics(a: np.ndarray, b: np.ndarray, peak: float) -> DiffMetrics:
    diff = _abs_difference(a, b)
    samples = int(diff.size)
    differing = int(np.count_nonzero(diff))
    if samples == 0:
        return DiffMetrics(True, 0, 0, 0.0, 0.0, 0.0, math.inf)
    mse = float(np.mean(diff * diff))
    rmse = math.sqrt(mse)
    if mse == 0:
        psnr = math.inf
    elif not math.isfinite(mse) or not math.isfinite(peak):
        psnr = -math.inf  # an unbounded difference (NaN against a number)
    else:
        psnr = 10 * math.log10(peak * peak / mse)
    return DiffMetrics(
        identical=differing == 0,
        samples=samples,
        differing=differing,
        max_abs=float(diff.max()),
        mean_abs=float(diff.mean()),
        rmse=rmse,
        psnr=psnr,
    )


def diff_arrays(
    a: np.ndarray, b: np.ndarray, *, margin: tuple[int, int, int, int] = (0, 0, 0, 0)
) -> DiffReport:
    """Compare two arrays of one shape, whole and inside ``margin``.

    >>> r = diff_arrays(np.array([[0, 10]], np.uint8), np.array([[0, 13]], np.uint8))
    >>> r.whole.differing, r.whole.max_abs
    (1, 3.0)
    """
    if a.shape != b.shape:
        raise CompareError(f"shapes differ: {a.shape} and {b.shape}")
    peak = _peak(a.dtype, a)
    whole = _metrics(a, b, peak)
    top, bottom, left, right = margin
    rows, cols = a.shape[:2]
    interior = None
    if rows > top + bottom and cols > left + right:
        window = (slice(top, rows - bottom), slice(left, cols - right))
        interior = _metrics(a[window], b[window], peak)
    return DiffReport(whole, interior, margin)


def compare_images(
    a: Image.Image, b: Image.Image, *, margin: tuple[int, int, int, int] = (0, 0, 0, 0)
) -> DiffReport:
    """Compare two Pillow images of the same size and mode."""
    if a.size != b.size:
        raise CompareError(
            f"sizes differ: {a.size[0]}x{a.size[1]} and {b.size[0]}x{b.size[1]}"
        )
    if a.mode != b.mode:
        raise CompareError(f"modes differ: {a.mode} and {b.mode}")
    return diff_arrays(np.asarray(a), np.asarray(b), margin=margin)


def compare_frames(first: Sequence[Image.Image], second: Sequence[Image.Image]) -> DiffReport:
    """Compare every frame of two images (an animation, a multi-page TIFF).

    The metrics cover all frames together. Raises :class:`CompareError` when
    the frame counts, sizes or modes differ.
    """
    if len(first) != len(second):
        raise CompareError(f"frame counts differ: {len(first)} and {len(second)}")
    for a, b in zip(first, second):
        if a.size != b.size:
            raise CompareError(f"sizes differ: {a.size[0]}x{a.size[1]} and {b.size[0]}x{b.size[1]}")
        if a.mode != b.mode:
            raise CompareError(f"modes differ: {a.mode} and {b.mode}")
    if len(first) == 1:
        return compare_images(first[0], second[0])
    stacked_a = np.concatenate([np.asarray(f) for f in first], axis=0)
    stacked_b = np.concatenate([np.asarray(f) for f in second], axis=0)
    return diff_arrays(stacked_a, stacked_b)


def kernel_margin(kernels: Sequence[Kernel], repeat: int = 1) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) pixels that a chain of kernels (or other
    filters) cannot fully cover."""
    reaches = [step.reach for step in kernels]
    return tuple(repeat * sum(reach[side] for reach in reaches) for side in range(4))  # type: ignore[return-value]


# ---------------------------------------------------------------------------
# Pillow's side
# ---------------------------------------------------------------------------

#: Pillow's kernel built-ins by preset key (``edge_enhance`` -> ``EDGE_ENHANCE``):
#: the presets that name one. --diff-pil also takes the parametric filters
#: in ``_PILLOW_PARAMETRIC``, written NAME:VALUE.
PILLOW_FILTER_NAMES: dict[str, str] = {
    key: preset.pillow_name for key, preset in PRESETS.items() if preset.pillow_name
}

def pillow_filter(name: str) -> ImageFilter.Filter:
    """A Pillow filter by convfilter's spec for it: ``edge_enhance``,
    ``gaussian_blur:2``, ``median:3``, ``unsharp:2,150,3``.

    Values are checked here, so a bad one fails before any image is read.

    Raises
    ------
    CompareError
        For a name Pillow has no filter for, or a value that filter cannot take.

    >>> pillow_filter("median:5").size
    5
    >>> pillow_filter("unsharp:1,50").percent
    50
    """
    head = preset_key(name.partition(":")[0])
    with_pillow = {key: spec.usage for key, spec in FILTER_SPECS.items() if spec.pillow}
    if head not in PILLOW_FILTER_NAMES and head not in with_pillow:
        known = sorted(PILLOW_FILTER_NAMES) + list(with_pillow.values())
        raise CompareError(f"unknown Pillow filter {name!r}; choose from {', '.join(known)}")
    try:
        step = parse_kernel(name)
    except KernelSpecError as exc:
        raise CompareError(str(exc)) from None
    return pillow_equivalent(step)


def pillow_equivalent(kernel: Kernel) -> ImageFilter.Filter:
    """Pillow's filter that does what ``kernel`` does with border ``keep``.

    A Pillow preset maps to its built-in; any other 3x3 or 5x5 kernel to an
    ``ImageFilter.Kernel`` with its rows reversed (Pillow applies kernels
    flipped vertically).

    Raises
    ------
    CompareError
        When Pillow has nothing equivalent (other sizes, non-square).
    """
    if not isinstance(kernel, Kernel):
        equivalent = kernel.pillow_filter()
        if equivalent is None:
            raise CompareError(f"Pillow has no filter like {kernel.name}; name one to compare with, "
                               "e.g. --diff-pil find_edges")  # fmt: skip
        return equivalent
    if kernel.pillow_name:
        return getattr(ImageFilter, kernel.pillow_name)
    if not kernel.centred:
        raise CompareError(f"Pillow's kernels are centred; {kernel.name} is anchored at row "
                           f"{kernel.anchor[0]}, column {kernel.anchor[1]}, so Pillow has no equivalent")  # fmt: skip
    if kernel.shape in ((3, 3), (5, 5)):
        return ImageFilter.Kernel(
            kernel.shape,
            kernel.matrix[::-1].ravel().tolist(),
            scale=kernel.scale,
            offset=kernel.offset,
        )
    h, w = kernel.shape
    raise CompareError(
        f"Pillow has no equivalent of kernel {kernel.name!r} ({w}x{h}: Pillow filters "
        "only 3x3 and 5x5 kernels); name a Pillow filter, e.g. --diff-pil edge_enhance"
    )


def pillow_label(kernel: Kernel) -> str:
    """How :func:`pillow_equivalent`'s filter for ``kernel`` is named to people.

    >>> pillow_label(Kernel(np.ones((3, 3)), pillow_name="SMOOTH")), pillow_label(Kernel(np.ones((5, 3))))
    ('ImageFilter.SMOOTH', 'ImageFilter.Kernel 3x5')
    """
    if not isinstance(kernel, Kernel):
        return kernel.pillow_label
    if kernel.pillow_name:
        return f"ImageFilter.{kernel.pillow_name}"
    h, w = kernel.shape
    return f"ImageFilter.Kernel {w}x{h}"


def pillow_reference(
    image: Image.Image,
    kernels: Sequence[Kernel],
    bands: Sequence[int],
    *,
    repeat: int = 1,
    filter_name: str | None = None,
) -> tuple[Image.Image, str]:
    """What Pillow makes of ``image``: the reference for ``--diff-pil``.

    With ``filter_name``, that Pillow filter applied once; otherwise Pillow's
    equivalent of each kernel, in order, the whole chain ``repeat`` times.
    Only the ``bands`` (indices) convfilter filters are replaced; the others
    are the input's. Returns the image and a description of what Pillow ran.

    Raises
    ------
    CompareError
        No Pillow equivalent, or a mode Pillow cannot filter.
    """
    if filter_name:
        filters = [pillow_filter(filter_name)]
        label = f"Pillow {filter_name}"
    else:
        filters = [pillow_equivalent(k) for k in kernels] * repeat
        label = "Pillow " + " then ".join(pillow_label(k) for k in kernels)
        if repeat > 1:
            label += f" (x{repeat})"
    names = image.getbands()
    if "A" in names:
        alpha = names.index("A")
        label += (" on every band, alpha included" if alpha in bands
                  else f" on {','.join(names[i] for i in bands)}, alpha as in the input")  # fmt: skip
    result = image
    try:
        for each in filters:
            result = result.filter(each)
    except (ValueError, OSError) as exc:
        raise CompareError(f"Pillow cannot filter mode {image.mode} images: {exc}") from None
    if len(names) > 1 and len(bands) < len(names):
        result = Image.merge(image.mode, [result.getchannel(i) if i in bands else image.getchannel(i)
                                          for i in range(len(names))])  # fmt: skip
    return result, label


# ---------------------------------------------------------------------------
# The diff picture
# ---------------------------------------------------------------------------

_LABEL_HEIGHT = 18
_GAP = 6
_MAX_PANEL_SIDE = 1024

#: Where on the colour ramp (0 black, 1 white) the smallest nonzero
#: difference starts, so that a difference of 1 is a clear red, not black.
_SMALLEST_VISIBLE = 0.2
#: Pixels that do not differ but lie this close (in panel pixels, a square
#: window) to one that does are drawn in the ring colour.
_RING_RADIUS = 3
_RING_COLOUR = (40, 110, 255)

_LEGEND_HEIGHT = 14
_SWATCH = 10
_RAMP_WIDTH = 100


def _preview(image: Image.Image) -> Image.Image:
    """An 8-bit RGB view of any filterable image, for people to look at:
    alpha left out, I;16, I and F stretched from their own finite range."""
    if isinstance(image, DeepImage):
        return image.to_8_bits().convert("RGB")
    if image.mode in ("I;16", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        return Image.fromarray(stretched(values, *finite_range(values))).convert("RGB")
    return image.convert("RGB")


def _ramp(t: np.ndarray) -> np.ndarray:
    """Colours for ``t`` in [0, 1]: black -> red -> yellow -> white, as uint8 RGB."""
    rgb = np.stack([np.clip(3 * t, 0, 1), np.clip(3 * t - 1, 0, 1), np.clip(3 * t - 2, 0, 1)], axis=-1)
    return (rgb * 255).round().astype(np.uint8)


def _block_max(values: np.ndarray, factor: int) -> np.ndarray:
    """Shrink by ``factor`` keeping each block's maximum, so one-pixel differences stay visible."""
    if factor <= 1:
        return values
    rows = -(-values.shape[0] // factor) * factor
    cols = -(-values.shape[1] // factor) * factor
    padded = np.zeros((rows, cols), values.dtype)
    padded[: values.shape[0], : values.shape[1]] = values
    return padded.reshape(rows // factor, factor, cols // factor, factor).max(axis=(1, 3))


def _near(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` grown by ``radius`` pixels in every direction (a square window)."""
    grown = mask.copy()
    for axis in (0, 1):
        source = grown.copy()
        target, shifted = np.moveaxis(grown, axis, 0), np.moveaxis(source, axis, 0)
        for step in range(1, radius + 1):
            target[step:] |= shifted[:-step]
            target[:-step] |= shifted[step:]
    return grown


def _heat_colours(diff: np.ndarray) -> np.ndarray:
    """RGB for a 2-D array of absolute differences (see :func:`heat_map`)."""
    differs = diff > 0
    finite = diff[np.isfinite(diff)]
    scale = float(finite.max()) if finite.size else 0.0
    t = np.zeros(diff.shape)
    if scale > 0:
        share = np.minimum(diff[differs] / scale, 1.0)  # an unbounded difference is 1
        t[differs] = _SMALLEST_VISIBLE + (1 - _SMALLEST_VISIBLE) * share
    else:
        t[differs] = 1.0  # only unbounded differences
    rgb = _ramp(t)
    rgb[_near(differs, _RING_RADIUS) & ~differs] = _RING_COLOUR
    return rgb


def heat_map(a: Image.Image, b: Image.Image, *, factor: int = 1) -> tuple[Image.Image, float]:
    """The heat map of ``|a - b|`` and the largest difference.

    Each pixel shows its largest difference over the bands, shrunk by
    ``factor`` keeping each block's largest. Black is no difference; any
    other difference is on a ramp from dark red (the smallest, however small)
    through yellow to white (the largest), so a difference of 1 still shows.
    Pixels that do not differ but lie within 3 pixels of one that does are
    blue: a ring around an isolated difference, a band along a thin line of
    them. A NaN against a number is an unbounded difference, drawn white.

    >>> a = Image.new("L", (9, 9))
    >>> b = a.copy()
    >>> b.putpixel((4, 4), 1)
    >>> picture, largest = heat_map(a, b)
    >>> largest, picture.getpixel((4, 4)), picture.getpixel((2, 4)), picture.getpixel((0, 4))
    (1.0, (255, 255, 255), (40, 110, 255), (0, 0, 0))
    """
    diff = _abs_difference(np.asarray(a), np.asarray(b))
    if diff.ndim == 3:
        diff = diff.max(axis=2)
    largest = float(diff.max()) if diff.size else 0.0
    return Image.fromarray(_heat_colours(_block_max(diff, factor))), largest


def heat_map_legend(max_abs: float) -> str:
    """The legend's text for a heat map whose largest difference is ``max_abs``.

    >>> heat_map_legend(37.0), heat_map_legend(0.25), heat_map_legend(0)
    ('max |diff| 37', 'max |diff| 0.25', 'identical')
    """
    if max_abs == 0:
        return "identical"
    if math.isfinite(max_abs) and float(max_abs).is_integer():
        return f"max |diff| {int(max_abs)}"
    return f"max |diff| {max_abs:.4g}"


def _legend(max_abs: float) -> Image.Image:
    """The colour scale under the heat map: 0, the ramp, the largest difference, the ring."""
    font = ImageFont.load_default()
    if max_abs == 0:
        parts: list[Image.Image | str] = [_framed(_ramp(np.zeros(_SWATCH))), heat_map_legend(max_abs)]
    else:
        scale = np.concatenate([np.zeros(_SWATCH), np.linspace(_SMALLEST_VISIBLE, 1.0, _RAMP_WIDTH)])
        ring = np.tile(np.array(_RING_COLOUR, np.uint8), (_SWATCH, 1))
        parts = ["0", _framed(_ramp(scale)), heat_map_legend(max_abs) + ",",
                 _framed(ring), f"within {_RING_RADIUS} px of a difference"]  # fmt: skip
    spacing = 4
    widths = [p.width if isinstance(p, Image.Image) else math.ceil(font.getlength(p)) for p in parts]
    legend = Image.new("RGB", (sum(widths) + spacing * (len(parts) - 1), _LEGEND_HEIGHT), "white")
    draw = ImageDraw.Draw(legend)
    x = 0
    for part, width in zip(parts, widths):
        if isinstance(part, Image.Image):
            legend.paste(part, (x, (_LEGEND_HEIGHT - part.height) // 2))
        else:
            draw.text((x, 0), part, fill="black", font=font)
        x += width + spacing
    return legend


def _framed(row: np.ndarray) -> Image.Image:
    """A row of RGB colours drawn as a bar ``_SWATCH`` high, with a grey frame."""
    bar = np.full((_SWATCH + 2, len(row) + 2, 3), 128, np.uint8)
    bar[1:-1, 1:-1] = row[np.newaxis]
    return Image.fromarray(bar)


def diff_picture(
    panels: Sequence[tuple[str, Image.Image]], a: Image.Image, b: Image.Image
) -> Image.Image:
    """Panels side by side, each labelled, then the :func:`heat_map` of ``|a - b|``.

    Under the heat map a legend gives its scale: black for 0, the ramp up
    to white for the largest difference (its value written beside it), the
    ring colour; or "identical". Images larger than 1024 pixels are shrunk,
    the heat map by block maximum so a single differing pixel still shows.
    """
    width, height = a.size
    factor = max(1, math.ceil(max(width, height) / _MAX_PANEL_SIDE))
    cell = (-(-width // factor), -(-height // factor))
    heat, largest = heat_map(a, b, factor=factor)
    box = Image.Resampling.BOX
    pictures = [(label, shrunk(_preview(image), a.size, cell, box)) for label, image in panels]
    pictures.append(("difference", heat))
    sheet = panel_sheet(pictures, cell, columns=len(pictures), footer=_legend(largest),
                        gap=_GAP, label_height=_LABEL_HEIGHT)  # fmt: skip
    return sheet.image
