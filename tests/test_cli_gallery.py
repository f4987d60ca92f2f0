"""`convfilter gallery`: the contact sheet's size, tiles, pictures and labels."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageFilter

from convfilter import cli, gallery
from convfilter.kernels import PRESETS, parse_kernel

GAP, LABEL = 8, 20  # the layout promised by gallery.py, restated independently


def run(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args], prog_name="convfilter")


@pytest.fixture
def photo(tmp_path, rng) -> Path:
    """120 x 90 with structure (a gradient plus noise), so filters change it visibly."""
    x = np.linspace(0, 200, 120)[None, :, None]
    noise = rng.integers(0, 50, (90, 120, 3))
    path = tmp_path / "photo.png"
    Image.fromarray((x + noise).astype(np.uint8)).save(path)
    return path


def cell_origin(index: int, columns: int, cell: tuple[int, int]) -> tuple[int, int]:
    row, col = divmod(index, columns)
    return GAP + col * (cell[0] + GAP), GAP + row * (cell[1] + LABEL + GAP) + LABEL


def tile(sheet: Image.Image, index: int, columns: int, cell: tuple[int, int]) -> np.ndarray:
    x, y = cell_origin(index, columns, cell)
    return np.asarray(sheet.crop((x, y, x + cell[0], y + cell[1])))


def test_default_sheet_has_the_original_and_every_preset(photo, tmp_path):
    sheet_path = tmp_path / "sheet.png"
    result = run("gallery", photo, "-o", sheet_path, "--tile-size", "64")
    assert result.exit_code == 0, result.output + result.stderr
    count = 1 + len(PRESETS) + 7  # original, fixed presets, box:5, gaussian:2 and five filters
    assert f"{count} tiles" in result.output
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    cell = (64, 48)
    with Image.open(sheet_path) as sheet:
        assert sheet.size == (columns * 64 + (columns + 1) * GAP, rows * (48 + LABEL) + (rows + 1) * GAP)
        sheet = sheet.convert("RGB")
        pictures = [tile(sheet, i, columns, cell) for i in range(count)]
    # Every tile holds a picture; identity (a preset) repeats the original, no other two agree.
    assert all(p.std() > 5 for p in pictures)
    identity = 1 + list(PRESETS).index("identity")
    assert np.array_equal(pictures[identity], pictures[0])
    assert len({p.tobytes() for p in pictures}) == count - 1


def test_tiles_are_pillow_filters_scaled_down(photo, tmp_path):
    sheet_path = tmp_path / "sheet.png"
    result = run("gallery", photo, "-o", sheet_path, "-k", "blur", "-k", "edge_enhance", "-k", "emboss",
                 "--border", "keep", "--tile-size", "60")  # fmt: skip
    assert result.exit_code == 0, result.output
    cell = (60, 45)
    with Image.open(photo) as original, Image.open(sheet_path) as sheet:
        assert sheet.size == (2 * 60 + 3 * GAP, 2 * (45 + LABEL) + 3 * GAP)
        expected = [original] + [original.filter(f) for f in
                                 (ImageFilter.BLUR, ImageFilter.EDGE_ENHANCE, ImageFilter.EMBOSS)]  # fmt: skip
        for i, picture in enumerate(expected):
            want = np.asarray(picture.convert("RGB").resize(cell, Image.Resampling.LANCZOS))
            assert np.array_equal(tile(sheet, i, 2, cell), want), f"tile {i}"


def test_bare_parametric_presets_get_a_sensible_parameter(photo, tmp_path):
    result = run("gallery", photo, "-o", tmp_path / "sheet.png", "-k", "box", "-k", "gaussian")
    assert result.exit_code == 0, result.stderr
    assert "3 tiles" in result.output
    assert gallery.gallery_specs(["box", "GAUSSIAN", "box:3"]) == ["box:5", "gaussian:2", "box:3"]
    assert gallery.gallery_specs(["Median", "unsharp", "dog", "rank"]) == ["median:5", "unsharp:2,150,3",
                                                                          "dog:1,1.6", "rank:3,2"]  # fmt: skip
    for spec in gallery.default_specs() + gallery.gallery_specs(list(gallery._BARE_SPEC_DEFAULTS)):
        parse_kernel(spec)  # every default is a spec that parses
    assert gallery.gallery_specs([]) == gallery.default_specs()


def test_each_tile_has_a_label(photo, tmp_path):
    sheet_path = tmp_path / "sheet.png"
    assert run("gallery", photo, "-o", sheet_path, "-k", "sharpen", "-k", "smooth", "--tile-size", "64").exit_code == 0
    with Image.open(sheet_path) as sheet:
        grey = np.asarray(sheet.convert("L"))
    for i in range(3):
        x, y = cell_origin(i, 2, (64, 48))
        strip = grey[y - LABEL : y, x : x + 64]
        assert (strip < 128).any(), f"tile {i} has no label"
    assert (grey[:GAP] == 255).all()  # the margin stays blank


def test_columns_and_small_images_are_not_enlarged(tmp_path, rng):
    small = tmp_path / "small.png"
    Image.fromarray(rng.integers(0, 256, (10, 16)).astype(np.uint8), "L").save(small)
    sheet_path = tmp_path / "sheet.png"
    result = run("gallery", small, "-o", sheet_path, "-k", "box:3", "-k", "blur", "--columns", "3")
    assert result.exit_code == 0, result.output
    with Image.open(sheet_path) as sheet:
        assert sheet.size == (3 * 16 + 4 * GAP, 10 + LABEL + 2 * GAP)


def test_wide_modes_and_alpha_are_shown(tmp_path, rng):
    for name, image in {
        "deep.png": Image.fromarray(rng.integers(0, 65536, (30, 40)).astype(np.uint16)),
        "alpha.png": Image.fromarray(rng.integers(0, 256, (30, 40, 4)).astype(np.uint8), "RGBA"),
    }.items():
        image.save(tmp_path / name)
        out = tmp_path / f"sheet-{name}"
        result = run("gallery", tmp_path / name, "-o", out, "-k", "gaussian:1")
        assert result.exit_code == 0, result.output + result.stderr
        with Image.open(out) as sheet:
            assert sheet.mode == "RGB" and sheet.size == (2 * 40 + 3 * GAP, 30 + LABEL + 2 * GAP)


def test_library_tiles_and_layout(rng):
    image = Image.fromarray(rng.integers(0, 256, (50, 100, 3)).astype(np.uint8))
    entries = [("box:3", gallery_settings("box:3")), ("valid", gallery_settings("box:9", border="valid"))]
    sheet = gallery.contact_sheet(image, entries, tile_size=50)
    assert [t.label for t in sheet.tiles] == ["original", "box:3", "valid"]
    assert sheet.image.size == gallery.sheet_size(3, (50, 25))
    left, top, right, bottom = sheet.tiles[2].box
    assert (right - left, bottom - top) == (46, 21)  # 92 x 42 at half size, centred


def gallery_settings(spec: str, **options):
    from convfilter.kernels import parse_kernel
    from convfilter.options import FilterSettings

    return FilterSettings(kernels=(parse_kernel(spec),), **options)


def test_errors_are_one_line_and_nothing_is_written(photo, tmp_path):
    for args, fragment in [
        (("-k", "nosuch"), "unknown kernel preset"),
        (("-o", tmp_path / "sheet.xyz"), "unknown output extension"),
        (("--tile-size", "2"), "--tile-size"),
    ]:
        options = list(args) if "-o" in args else ["-o", tmp_path / "sheet.png", *args]
        result = run("gallery", photo, *options)
        assert result.exit_code in (1, 2), result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("convfilter: error:") and fragment in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]
    missing = run("gallery", tmp_path / "nope.png", "-o", tmp_path / "s.png")
    assert missing.exit_code == 1 and not (tmp_path / "s.png").exists()


def test_16_bit_colour_is_shown_stretched_to_its_range(tmp_path, rng):
    import imagecodecs

    dim = rng.integers(0, 4096, (40, 60, 3)).astype(np.uint16)  # a 12-bit scan in 16-bit samples
    source, sheet = tmp_path / "dim.png", tmp_path / "sheet.png"
    source.write_bytes(imagecodecs.png_encode(dim))
    assert run("gallery", source, "-o", sheet, "-k", "identity", "--tile-size", "60").exit_code == 0
    tile = np.asarray(Image.open(sheet).convert("L"), np.float64)
    assert tile.max() >= 250  # the brightest sample shows white, not 4096 / 65535 of it


def test_gallery_refuses_standard_output_without_naming_a_missing_option(photo, tmp_path):
    result = run("gallery", photo, "-o", "-", "-k", "blur")
    assert result.exit_code == 1 and "give a file name" in result.stderr and "--format" not in result.stderr


def test_float_image_with_nan_is_stretched_from_its_finite_range(rng):
    values = rng.random((30, 40)).astype(np.float32) * 10 + 5
    values[3, 4], values[5, 6] = np.nan, np.inf
    sheet = gallery.contact_sheet(Image.fromarray(values), [], tile_size=40)
    left, top, right, bottom = sheet.tiles[0].box
    shown = np.asarray(sheet.image.convert("L"))[top:bottom, left:right].astype(np.float64)
    finite = np.isfinite(values)
    low, high = float(values[finite].min()), float(values[finite].max())
    expected = np.round((np.where(finite, values, low) - low) * 255 / (high - low))
    expected[5, 6] = 255  # +inf shows as the brightest
    assert np.array_equal(shown, expected)
