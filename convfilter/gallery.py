"""A contact sheet for choosing a kernel: one image through many kernels, side by side.

Each tile is the whole image filtered at full resolution by one kernel
spec, then scaled down (never up) to fit a square of ``tile_size`` pixels,
with the spec written above it; the original comes first.

Example
-------
>>> sheet_size(22, (256, 192), columns=None)
(1328, 1108)
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from PIL import Image

from . import images
from .kernels import PRESETS, preset_key
from .options import FilterSettings, OutputSettings
from .panels import BACKGROUND, Tile, finite_range, panel_sheet, sheet_size, shrunk, stretched
from .panels import Sheet as ContactSheet
from .pipeline import filter_image

__all__ = [
    "DEFAULT_TILE_SIZE",
    "DEFAULT_PARAMETRIC",
    "Tile",
    "ContactSheet",
    "default_specs",
    "gallery_specs",
    "tile_shape",
    "sheet_size",
    "contact_sheet",
    "write_gallery",
]

DEFAULT_TILE_SIZE = 256

#: The parametric presets and filters shown by default, with a sensible parameter.
DEFAULT_PARAMETRIC: tuple[str, ...] = ("box:5", "gaussian:2", "gaussian_blur:2", "unsharp:2,150,3", "median:5",
                                       "mode:5", "sobel")  # fmt: skip

#: The parameter a spec named bare on the command line gets.
_BARE_SPEC_DEFAULTS: dict[str, str] = {
    **{spec.split(":")[0]: spec for spec in DEFAULT_PARAMETRIC if ":" in spec},
    "log": "log:2", "dog": "dog:1,1.6", "box_blur": "box_blur:2", "min": "min:3", "max": "max:3", "rank": "rank:3,2",
}  # fmt: skip


def default_specs() -> list[str]:
    """Every fixed preset, then :data:`DEFAULT_PARAMETRIC`."""
    return [preset.name for preset in PRESETS.values()] + list(DEFAULT_PARAMETRIC)


def gallery_specs(specs: Sequence[str]) -> list[str]:
    """The specs to show: :func:`default_specs` when none are given; a parametric
    preset or filter named without parameters gets a sensible one.

    >>> gallery_specs(["sharpen", "Gaussian", "box:3", "median"])
    ['sharpen', 'gaussian:2', 'box:3', 'median:5']
    """
    if not specs:
        return default_specs()
    return [_BARE_SPEC_DEFAULTS.get(preset_key(spec), spec) for spec in specs]


def tile_shape(size: tuple[int, int], tile_size: int) -> tuple[int, int]:
    """``size`` scaled down to fit a ``tile_size`` square, keeping its aspect ratio.

    >>> tile_shape((640, 480), 256), tile_shape((100, 50), 256)
    ((256, 192), (100, 50))
    """
    width, height = size
    factor = min(1.0, tile_size / max(width, height))
    return max(1, round(width * factor)), max(1, round(height * factor))


def _viewable(image: Image.Image, value_range: tuple[float, float] | None) -> Image.Image:
    """An RGB picture of any filterable mode: alpha over white, wide modes
    stretched from ``value_range`` (16-bit colour by default from 0-65535)."""
    if isinstance(image, images.DeepImage):
        colour = stretched(image.array[..., :3], *(value_range or (0.0, 65535.0)))
        if image.mode == "RGB;16":
            return Image.fromarray(colour)
        coverage = image.array[..., 3:] / 65535.0
        over_white = colour * coverage + np.array(BACKGROUND) * (1.0 - coverage)
        return Image.fromarray(np.clip(np.floor(over_white + 0.5), 0, 255).astype(np.uint8))
    if image.mode in ("I;16", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        return Image.fromarray(stretched(values, *(value_range or (0.0, 1.0))), "L").convert("RGB")
    if image.mode in ("LA", "RGBA"):
        backdrop = Image.new("RGBA", image.size, BACKGROUND + (255,))
        return Image.alpha_composite(backdrop, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


def contact_sheet(
    image: Image.Image,
    entries: Sequence[tuple[str, FilterSettings]],
    *,
    tile_size: int = DEFAULT_TILE_SIZE,
    columns: int | None = None,
) -> ContactSheet:
    """The original and ``image`` filtered by each ``(label, settings)``, as one RGB picture.

    Filtering is at full resolution; each result is then scaled down by the
    same factor as the original (LANCZOS) and centred in its cell, so a
    border ``valid`` result shows smaller. Wide modes (I;16, I, F, 16-bit
    colour) are shown stretched from the original's finite value range, so
    brightness compares across tiles.

    Raises
    ------
    pipeline.SettingsError, engine.FilterError
        When a kernel cannot be applied to this image.
    """
    if tile_size < 1:
        raise ValueError(f"tile size must be at least 1, got {tile_size}")
    value_range = None
    if image.mode in ("I;16", "I", "F", "RGB;16", "RGBA;16"):
        values = np.asarray(image, dtype=np.float64)
        if image.mode == "RGBA;16":
            values = values[..., :3]
        value_range = finite_range(values)
    cell = tile_shape(image.size, tile_size)
    pictures = [("original", image)] + [(label, filter_image(image, s)) for label, s in entries]
    shown = [(label, shrunk(_viewable(p, value_range), image.size, cell)) for label, p in pictures]
    return panel_sheet(shown, cell, columns=columns)


def write_gallery(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    entries: Sequence[tuple[str, FilterSettings]],
    *,
    tile_size: int = DEFAULT_TILE_SIZE,
    columns: int | None = None,
    output: OutputSettings = OutputSettings(),
) -> ContactSheet:
    """Load ``source`` (its first frame), build the sheet, write it atomically to ``destination``.

    The format follows ``destination``'s extension unless ``output.fmt`` is set.

    Raises
    ------
    images.ImageError, images.OutputError
        Unreadable input, unknown output extension, unwritable output.
    """
    fmt = images.output_format(destination, output.fmt, format_option=None)
    loaded = images.load_image(source, max_pixels=output.max_pixels, formats=output.formats)
    sheet = contact_sheet(loaded.frames[0], entries, tile_size=tile_size, columns=columns)
    options = {"quality": output.quality} if output.quality and fmt in ("JPEG", "WEBP") else None
    images.save_image([sheet.image], destination, fmt=fmt, options=options)
    return sheet
