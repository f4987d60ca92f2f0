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

import math
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from . import images
from .kernels import PRESETS, preset_key
from .pipeline import FilterSettings, OutputSettings, filter_image

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

#: The parametric presets shown by default, with a sensible parameter.
DEFAULT_PARAMETRIC: tuple[str, ...] = ("box:5", "gaussian:2")

LABEL_HEIGHT = 20
GAP = 8
_BACKGROUND = (255, 255, 255)
_TEXT = (0, 0, 0)


@dataclass(frozen=True)
class Tile:
    """One picture of the sheet: its label and where it is ``(left, top, right, bottom)``."""

    label: str
    box: tuple[int, int, int, int]


@dataclass
class ContactSheet:
    """The sheet and its tiles, in reading order (the original first)."""

    image: Image.Image
    tiles: list[Tile]


def default_specs() -> list[str]:
    """Every fixed preset, then :data:`DEFAULT_PARAMETRIC`."""
    return [preset.name for preset in PRESETS.values()] + list(DEFAULT_PARAMETRIC)


def gallery_specs(specs: Sequence[str]) -> list[str]:
    """The specs to show: :func:`default_specs` when none are given; a parametric
    preset named without parameters gets its default from :data:`DEFAULT_PARAMETRIC`.

    >>> gallery_specs(["sharpen", "Gaussian", "box:3"])
    ['sharpen', 'gaussian:2', 'box:3']
    """
    if not specs:
        return default_specs()
    defaults = {spec.split(":")[0]: spec for spec in DEFAULT_PARAMETRIC}
    return [defaults.get(preset_key(spec), spec) for spec in specs]


def tile_shape(size: tuple[int, int], tile_size: int) -> tuple[int, int]:
    """``size`` scaled down to fit a ``tile_size`` square, keeping its aspect ratio.

    >>> tile_shape((640, 480), 256), tile_shape((100, 50), 256)
    ((256, 192), (100, 50))
    """
    width, height = size
    factor = min(1.0, tile_size / max(width, height))
    return max(1, round(width * factor)), max(1, round(height * factor))


def _columns(count: int, columns: int | None) -> int:
    return max(1, min(count, columns or math.ceil(math.sqrt(count))))


def sheet_size(count: int, cell: tuple[int, int], columns: int | None = None) -> tuple[int, int]:
    """Pixel size of a sheet of ``count`` tiles of ``cell`` (width, height).

    Columns default to ``ceil(sqrt(count))``; each tile has a label strip of
    :data:`LABEL_HEIGHT` above it and :data:`GAP` pixels around it.
    """
    cols = _columns(count, columns)
    rows = math.ceil(count / cols)
    return cols * cell[0] + (cols + 1) * GAP, rows * (cell[1] + LABEL_HEIGHT) + (rows + 1) * GAP


def _viewable(image: Image.Image, value_range: tuple[float, float] | None) -> Image.Image:
    """An RGB picture of any filterable mode: alpha over white, wide modes scaled to 8 bits."""
    if isinstance(image, images.DeepImage):
        colour = _stretched(image.array[..., :3], value_range)
        if image.mode == "RGB;16":
            return Image.fromarray(colour)
        coverage = image.array[..., 3:] / 65535.0
        over_white = colour * coverage + np.array(_BACKGROUND) * (1.0 - coverage)
        return Image.fromarray(np.clip(np.floor(over_white + 0.5), 0, 255).astype(np.uint8))
    if image.mode in ("I;16", "I", "F"):
        low, high = value_range or (0.0, 1.0)
        values = np.asarray(image, dtype=np.float64)
        scaled = np.clip((values - low) * (255.0 / ((high - low) or 1.0)), 0, 255)
        return Image.fromarray(scaled.round().astype(np.uint8), "L").convert("RGB")
    if image.mode in ("LA", "RGBA"):
        backdrop = Image.new("RGBA", image.size, _BACKGROUND + (255,))
        return Image.alpha_composite(backdrop, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


def _stretched(values: np.ndarray, value_range: tuple[float, float] | None) -> np.ndarray:
    """``values`` scaled from ``value_range`` (default 0-65535) to 0-255, as uint8."""
    low, high = value_range or (0.0, 65535.0)
    scaled = np.clip((values.astype(np.float64) - low) * (255.0 / ((high - low) or 1.0)), 0, 255)
    return scaled.round().astype(np.uint8)


def _fit_label(draw: ImageDraw.ImageDraw, text: str, width: int) -> str:
    if draw.textlength(text) <= width:
        return text
    while text and draw.textlength(text + "...") > width:
        text = text[:-1]
    return text + "..."


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
    border ``valid`` result shows smaller. Wide modes (I;16, I, F) are shown
    scaled by the original's value range, so brightness compares across
    tiles.

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
        value_range = (float(values.min()), float(values.max()))
    cell = tile_shape(image.size, tile_size)
    factor = cell[0] / image.size[0]
    pictures = [("original", image)] + [(label, filter_image(image, s)) for label, s in entries]
    cols = _columns(len(pictures), columns)
    sheet = Image.new("RGB", sheet_size(len(pictures), cell, cols), _BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    tiles = []
    for i, (label, picture) in enumerate(pictures):
        row, col = divmod(i, cols)
        left = GAP + col * (cell[0] + GAP)
        top = GAP + row * (cell[1] + LABEL_HEIGHT + GAP)
        draw.text((left, top + 3), _fit_label(draw, label, cell[0]), fill=_TEXT)
        shown = _viewable(picture, value_range)
        if shown.size == image.size:
            size = cell
        else:
            size = (max(1, round(shown.size[0] * factor)), max(1, round(shown.size[1] * factor)))
        if size != shown.size:
            shown = shown.resize(size, Image.Resampling.LANCZOS)
        x = left + (cell[0] - size[0]) // 2
        y = top + LABEL_HEIGHT + (cell[1] - size[1]) // 2
        sheet.paste(shown, (x, y))
        tiles.append(Tile(label, (x, y, x + size[0], y + size[1])))
    return ContactSheet(sheet, tiles)


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
