"""Write the generated test cards into ``sample_images/cards/``.

Small synthetic images that are hard on a filter: 0 next to 255, one-pixel
detail, full-range ramps, coloured pixels hidden under alpha 0, 16-bit and
32-bit float data. The output is deterministic (no random generator, no
timestamps), so running the script again changes no bytes.

Usage::

    python sample_images/make_cards.py [OUTPUT_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

CARDS_DIR = Path(__file__).resolve().parent / "cards"


def scramble(rows: int, cols: int, salt: int) -> np.ndarray:
    """Deterministic pseudo-random uint8 noise from an integer hash of (y, x)."""
    y, x = np.mgrid[0:rows, 0:cols].astype(np.uint32)
    h = (y * np.uint32(73856093)) ^ (x * np.uint32(19349663)) ^ np.uint32(salt * 83492791)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0x5BD1E995)
    h ^= h >> np.uint32(15)
    return (h & np.uint32(0xFF)).astype(np.uint8)


def disc(rows: int, cols: int, cy: float, cx: float, radius: float) -> np.ndarray:
    """Boolean mask of a filled circle (hard edge, no anti-aliasing)."""
    y, x = np.mgrid[0:rows, 0:cols]
    return (y - cy) ** 2 + (x - cx) ** 2 <= radius**2


def edges_card() -> Image.Image:
    """L, 96 x 64: white shapes on black, one-pixel lines, checkerboards."""
    a = np.zeros((64, 96), np.uint8)
    a[8:28, 8:36] = 255  # rectangle
    a[disc(64, 96, 44, 22, 12)] = 255  # filled circle
    a[4:60, 44] = 255  # one-pixel vertical line
    a[32, 40:92] = 255  # one-pixel horizontal line
    np.fill_diagonal(a[36:64, 50:78], 255)  # one-pixel diagonal
    y, x = np.mgrid[0:16, 0:24]
    a[4:20, 52:76] = np.where((y + x) % 2, 255, 0)  # 1-pixel checkerboard
    a[40:56, 80:92] = np.where((y[:16, :12] // 4 + x[:16, :12] // 4) % 2, 255, 0)  # 4-pixel
    a[0, :] = 255  # a white first row and last column against the black body
    a[:, -1] = 255
    return Image.fromarray(a)


def gradients_card() -> Image.Image:
    """RGB, 96 x 64: red ramps left to right, green top to bottom, blue along
    the diagonal; a strip of pure colour bars (0 and 255 only) at the bottom."""
    rows, cols = 64, 96
    y, x = np.mgrid[0:rows, 0:cols]
    rgb = np.zeros((rows, cols, 3), np.uint8)
    rgb[..., 0] = np.round(x * 255 / (cols - 1))
    rgb[..., 1] = np.round(y * 255 / (rows - 1))
    rgb[..., 2] = np.round((x + y) * 255 / (rows + cols - 2))
    bars = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (0, 255, 255),
            (255, 0, 255), (255, 255, 0), (255, 255, 255), (0, 0, 0)]  # fmt: skip
    width = cols // len(bars)
    for i, colour in enumerate(bars):
        rgb[52:, i * width : (i + 1) * width] = colour
    return Image.fromarray(rgb)


def transparent_card() -> Image.Image:
    """RGBA, 64 x 64: an opaque red disc and a half-transparent blue square on
    a fully transparent background whose hidden colours are noise."""
    rows = cols = 64
    rgba = np.zeros((rows, cols, 4), np.uint8)
    for channel in range(3):
        rgba[..., channel] = scramble(rows, cols, salt=channel + 1)  # alpha stays 0
    rgba[8:28, 36:58] = (0, 0, 255, 128)
    rgba[disc(rows, cols, 38, 26, 18)] = (255, 0, 0, 255)
    return Image.fromarray(rgba)


def gray16_card() -> Image.Image:
    """I;16, 96 x 64: a full-range ramp, alternating 0 / 65535 columns and
    values one step from either end."""
    rows, cols = 64, 96
    a = np.zeros((rows, cols), np.uint16)
    x = np.arange(cols)
    a[:24] = np.round(x * 65535 / (cols - 1)).astype(np.uint16)
    a[24:40] = np.where(x % 2, 65535, 0)
    a[40:52] = np.where((x // 8) % 2, 65534, 1)
    a[52:, : cols // 2] = 65535
    a[52:, cols // 2 :] = scramble(rows - 52, cols // 2, salt=7).astype(np.uint16) * 257
    return Image.fromarray(a)


def float_card() -> Image.Image:
    """F (32-bit float), 64 x 48: a ramp from -1 to 2, a block of 1e6 next to
    -1000, and tiny values; TIFF keeps them unclamped."""
    rows, cols = 48, 64
    a = np.zeros((rows, cols), np.float32)
    a[:, :] = np.linspace(-1.0, 2.0, cols, dtype=np.float32)
    a[16:32, 8:24] = 1e6
    a[16:32, 24:40] = -1000.0
    a[36:44, 44:60] = 1e-6
    a[0, :] = 0.5  # a constant first row
    return Image.fromarray(a)


CARDS = {
    "edges.png": edges_card,
    "gradients.png": gradients_card,
    "transparent.png": transparent_card,
    "gray16.png": gray16_card,
    "float32.tif": float_card,
}


def main(argv: list[str]) -> int:
    out_dir = Path(argv[1]) if len(argv) > 1 else CARDS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, make in CARDS.items():
        image = make()
        path = out_dir / name
        if path.suffix == ".png":
            image.save(path, optimize=True)
        else:
            image.save(path)  # uncompressed TIFF
        print(f"{path}  {image.mode} {image.width}x{image.height}  {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
