"""Comparing images: difference metrics, Pillow's reference result, the diff picture."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .deep_colour import DeepImage
from .kernels import Kernel, preset_key

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


def _metrics(a: np.ndarray, b: np.ndarray, peak: float) -> DiffMetrics:
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    if diff.dtype.kind == "f" and a.dtype.kind == "f":
        # NaN in both is the same value; NaN in one only is an unbounded difference.
        nan_a, nan_b = np.isnan(a), np.isnan(b)
        diff[nan_a & nan_b] = 0.0
        diff[nan_a ^ nan_b] = np.inf
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
    """(top, bottom, left, right) pixels that a chain of kernels cannot fully cover."""
    top = bottom = left = right = 0
    for kernel in kernels:
        h, w = kernel.shape
        ay, ax = kernel.anchor
        top += ay
        bottom += h - 1 - ay
        left += ax
        right += w - 1 - ax
    return top * repeat, bottom * repeat, left * repeat, right * repeat


# ---------------------------------------------------------------------------
# Pillow's side
# ---------------------------------------------------------------------------

#: Pillow filters --diff-pil accepts by name: the ten kernel built-ins, and
#: parametric ones written NAME:VALUE.
PILLOW_FILTER_NAMES: dict[str, str] = {
    "blur": "BLUR", "contour": "CONTOUR", "detail": "DETAIL",
    "edge_enhance": "EDGE_ENHANCE", "edge_enhance_more": "EDGE_ENHANCE_MORE",
    "emboss": "EMBOSS", "find_edges": "FIND_EDGES", "sharpen": "SHARPEN",
    "smooth": "SMOOTH", "smooth_more": "SMOOTH_MORE",
}  # fmt: skip
_PILLOW_PARAMETRIC = {
    "gaussian_blur": ("GaussianBlur", float),
    "box_blur": ("BoxBlur", float),
    "median": ("MedianFilter", int),
}


def pillow_filter(name: str) -> ImageFilter.Filter:
    """A Pillow filter by name: ``edge_enhance``, ``gaussian_blur:2``, ``median:3``.

    Raises
    ------
    CompareError
        For a name Pillow has no filter for.
    """
    head, _, value = name.partition(":")
    key = preset_key(head)
    if key in PILLOW_FILTER_NAMES and not value:
        return getattr(ImageFilter, PILLOW_FILTER_NAMES[key])
    if key in _PILLOW_PARAMETRIC and value:
        class_name, kind = _PILLOW_PARAMETRIC[key]
        try:
            parameter = kind(value)
        except ValueError:
            raise CompareError(f"bad value {value!r} for Pillow filter {head}") from None
        return getattr(ImageFilter, class_name)(parameter)
    known = sorted(PILLOW_FILTER_NAMES) + [f"{k}:VALUE" for k in _PILLOW_PARAMETRIC]
    raise CompareError(f"unknown Pillow filter {name!r}; choose from {', '.join(known)}")


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
    if kernel.pillow_name:
        return getattr(ImageFilter, kernel.pillow_name)
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


# ---------------------------------------------------------------------------
# The diff picture
# ---------------------------------------------------------------------------

_LABEL_HEIGHT = 18
_GAP = 6
_MAX_PANEL_SIDE = 1024


def _preview(image: Image.Image) -> Image.Image:
    """An 8-bit RGB view of any filterable image, for people to look at."""
    if isinstance(image, DeepImage):
        return image.to_8_bits().convert("RGB")
    if image.mode in ("I;16", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        span = high - low or 1.0
        scaled = ((values - low) * (255.0 / span)).round().astype(np.uint8)
        return Image.fromarray(scaled).convert("RGB")
    return image.convert("RGB")


def _heat_map(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float]:
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    if diff.ndim == 3:
        diff = diff.max(axis=2)
    largest = float(diff.max()) if diff.size else 0.0
    return diff, largest


def _colour(diff: np.ndarray, largest: float) -> np.ndarray:
    """Black -> red -> yellow -> white, the largest difference white."""
    t = diff / largest if largest > 0 else np.zeros_like(diff)
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


def diff_picture(
    panels: Sequence[tuple[str, Image.Image]], a: Image.Image, b: Image.Image
) -> Image.Image:
    """Panels side by side, each labelled, then a heat map of ``|a - b|``.

    The heat map is amplified so the largest difference is white (its
    value is in the label); images larger than 1024 pixels are shrunk,
    the heat map by block maximum so a single differing pixel still shows.
    """
    width, height = a.size
    factor = max(1, math.ceil(max(width, height) / _MAX_PANEL_SIDE))
    size = (-(-width // factor), -(-height // factor))
    diff, largest = _heat_map(np.asarray(a), np.asarray(b))
    heat = Image.fromarray(_colour(_block_max(diff, factor), largest))
    if largest == 0:
        heat_label = "difference: none"
    else:
        heat_label = f"difference: max {largest:g}"
    views = [(label, _preview(image).resize(size, Image.Resampling.BOX)) for label, image in panels]
    views.append((heat_label, heat.resize(size, Image.Resampling.NEAREST)))
    sheet = Image.new(
        "RGB",
        (len(views) * size[0] + (len(views) + 1) * _GAP, size[1] + _LABEL_HEIGHT + 2 * _GAP),
        "white",
    )
    draw = ImageDraw.Draw(sheet)
    for i, (label, view) in enumerate(views):
        x = _GAP + i * (size[0] + _GAP)
        draw.text((x, _GAP), label, fill="black")
        sheet.paste(view, (x, _GAP + _LABEL_HEIGHT))
    return sheet
