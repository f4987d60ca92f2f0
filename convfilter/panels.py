"""Labelled pictures in a grid on a white sheet: the gallery's contact sheet
and the diff picture are both drawn by :func:`panel_sheet`.

Every cell is ``cell`` pixels with a label strip above it and a gap around
it; a picture smaller than its cell is centred in it.

>>> sheet_size(22, (256, 192))
(1328, 1108)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "GAP",
    "LABEL_HEIGHT",
    "BACKGROUND",
    "Tile",
    "Sheet",
    "column_count",
    "sheet_size",
    "shrunk",
    "finite_range",
    "stretched",
    "fit_label",
    "panel_sheet",
]

#: Default pixels between cells and around the sheet.
GAP = 8
#: Default height of the label strip above each cell.
LABEL_HEIGHT = 20
BACKGROUND = (255, 255, 255)
_TEXT = (0, 0, 0)
#: Pixels from the top of a label strip to the top of its text.
_LABEL_INSET = 3


@dataclass(frozen=True)
class Tile:
    """One picture of the sheet: its label and where it is ``(left, top, right, bottom)``."""

    label: str
    box: tuple[int, int, int, int]


@dataclass
class Sheet:
    """The sheet and its tiles, in reading order."""

    image: Image.Image
    tiles: list[Tile]


def column_count(count: int, columns: int | None = None) -> int:
    """``columns`` for ``count`` pictures, by default ``ceil(sqrt(count))``; never more than ``count``."""
    return max(1, min(count, columns or math.ceil(math.sqrt(count))))


def sheet_size(
    count: int,
    cell: tuple[int, int],
    columns: int | None = None,
    *,
    gap: int = GAP,
    label_height: int = LABEL_HEIGHT,
) -> tuple[int, int]:
    """Pixel size (width, height) of a sheet of ``count`` cells of ``cell`` (width, height)."""
    cols = column_count(count, columns)
    rows = math.ceil(count / cols)
    return cols * cell[0] + (cols + 1) * gap, rows * (cell[1] + label_height) + (rows + 1) * gap


def shrunk(
    picture: Image.Image,
    source: tuple[int, int],
    cell: tuple[int, int],
    resample: Image.Resampling = Image.Resampling.LANCZOS,
) -> Image.Image:
    """``picture`` scaled as ``source`` is scaled to ``cell``.

    A picture of size ``source`` becomes exactly ``cell``; any other size is
    scaled by ``cell[0] / source[0]``, rounded, at least 1 pixel.

    >>> shrunk(Image.new("L", (92, 42)), (100, 50), (50, 25)).size
    (46, 21)
    """
    if picture.size == source:
        size = cell
    else:
        factor = cell[0] / source[0]
        size = (max(1, round(picture.width * factor)), max(1, round(picture.height * factor)))
    return picture if size == picture.size else picture.resize(size, resample)


def finite_range(values: np.ndarray) -> tuple[float, float]:
    """The smallest and largest finite value of ``values``; (0, 0) when none is finite."""
    finite = values[np.isfinite(values)]
    return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)


def stretched(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """``values`` mapped from ``low``..``high`` to 0..255, clipped and rounded, as uint8.

    NaN counts as ``low``. When ``low == high`` everything at ``low`` is 0.

    >>> stretched(np.array([-5.0, 0.0, 40.0, 100.0, np.nan, np.inf]), 0, 100).tolist()
    [0, 0, 102, 255, 0, 255]
    """
    values = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=low, posinf=high, neginf=low)
    scaled = np.clip((values - low) * (255.0 / ((high - low) or 1.0)), 0, 255)
    return scaled.round().astype(np.uint8)


def fit_label(draw: ImageDraw.ImageDraw, text: str, width: int) -> str:
    """``text``, cut short and ending in ``...`` when wider than ``width`` pixels."""
    if draw.textlength(text) <= width:
        return text
    while text and draw.textlength(text + "...") > width:
        text = text[:-1]
    return text + "..."


def panel_sheet(
    pictures: Sequence[tuple[str, Image.Image]],
    cell: tuple[int, int],
    *,
    columns: int | None = None,
    footer: Image.Image | None = None,
    gap: int = GAP,
    label_height: int = LABEL_HEIGHT,
) -> Sheet:
    """``(label, picture)`` pairs in a grid of ``cell``-sized cells, in reading order.

    Each picture must fit its cell (see :func:`shrunk`) and is centred in
    it, its label above, cut short to the cell's width. ``footer``, when
    given, goes under the last cell, the sheet growing to hold it.

    Raises
    ------
    ValueError
        When a picture is larger than ``cell``.
    """
    for label, picture in pictures:
        if picture.width > cell[0] or picture.height > cell[1]:
            raise ValueError(f"picture {label!r} is {picture.width}x{picture.height}, larger than its cell")
    cols = column_count(len(pictures), columns)
    width, height = sheet_size(len(pictures), cell, cols, gap=gap, label_height=label_height)
    footer_at = (gap + ((len(pictures) - 1) % cols) * (cell[0] + gap), height)
    if footer is not None:
        width = max(width, footer_at[0] + footer.width + gap)
        height += footer.height + gap
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    if footer is not None:
        sheet.paste(footer, footer_at)
    draw = ImageDraw.Draw(sheet)
    tiles = []
    for i, (label, picture) in enumerate(pictures):
        row, col = divmod(i, cols)
        left = gap + col * (cell[0] + gap)
        top = gap + row * (cell[1] + label_height + gap)
        draw.text((left, top + _LABEL_INSET), fit_label(draw, label, cell[0]), fill=_TEXT)
        x = left + (cell[0] - picture.width) // 2
        y = top + label_height + (cell[1] - picture.height) // 2
        sheet.paste(picture, (x, y))
        tiles.append(Tile(label, (x, y, x + picture.width, y + picture.height)))
    return Sheet(sheet, tiles)
