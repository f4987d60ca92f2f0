"""pipeline.py: filtering Pillow images (bands, alpha, chains) and one-file jobs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from convfilter import pipeline
from convfilter.kernels import parse_kernel
from convfilter.options import FilterSettings, OutputSettings, SettingsError


def settings(*specs, **options):
    return FilterSettings(kernels=tuple(parse_kernel(s) for s in specs), **options)


@pytest.fixture
def rgba(rng):
    return Image.fromarray(rng.integers(0, 256, (15, 18, 4)).astype(np.uint8), "RGBA")


def test_filter_image_all_bands_with_alpha_filter_is_pillow(rgba):
    got = pipeline.filter_image(rgba, settings("detail", border="keep", alpha="filter"))
    assert np.array_equal(np.asarray(got), np.asarray(rgba.filter(ImageFilter.DETAIL)))


def test_single_band_images(rng):
    image = Image.fromarray(rng.integers(0, 256, (9, 11)).astype(np.uint8))
    got = pipeline.filter_image(image, settings("contour", border="keep"))
    assert got.mode == "L"
    assert np.array_equal(np.asarray(got), np.asarray(image.filter(ImageFilter.CONTOUR)))


def test_valid_border_crops_pass_through_bands(rgba):
    got = pipeline.filter_image(rgba, settings("box:3", "2 1", border="valid", alpha="keep"))
    # box:3 takes 1 each side; a 1x2 kernel (anchor column 1) takes 1 on the left.
    assert got.size == (18 - 2 - 1, 15 - 2)
    assert np.array_equal(np.asarray(got)[..., 3], np.asarray(rgba)[1:-1, 2:-1, 3])


def test_settings_validation():
    with pytest.raises(SettingsError):
        FilterSettings(kernels=())
    with pytest.raises(SettingsError):
        settings("blur", repeat=0)
    with pytest.raises(SettingsError):
        settings("blur", alpha="sometimes")


def test_filter_file_reports_and_writes(tmp_path, rng):
    source = tmp_path / "in.png"
    Image.fromarray(rng.integers(0, 256, (20, 20, 3)).astype(np.uint8)).save(source)
    out = tmp_path / "out.webp"
    result = pipeline.filter_file(source, out, settings("sharpen", border="keep"), diff_pil=True)
    assert result.format == "WEBP" and result.diff.identical and out.exists()
    assert result.to_dict()["diff"]["identical"] is True


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "I;16", "F"])
def test_large_images_convert_to_arrays_exactly(rng, mode):
    # Wide enough that to_array copies in strips (a few MB at a time).
    base = Image.fromarray(rng.integers(0, 256, (300, 5000, 3)).astype(np.uint8))
    image = base.convert(mode) if mode != "I;16" else Image.fromarray(
        rng.integers(0, 65536, (300, 5000)).astype(np.uint16))
    from convfilter import images

    assert np.array_equal(images.to_array(image), np.asarray(image))


def test_filter_file_compares_with_the_input_it_let_go_of(tmp_path, rng):
    source = tmp_path / "in.png"
    Image.fromarray(rng.integers(0, 256, (40, 30)).astype(np.uint8)).save(source)
    result = pipeline.filter_file(source, tmp_path / "o.png", settings("smooth", border="keep"),
                                   diff_pil=True, diff_image=tmp_path / "d.png")  # fmt: skip
    assert result.diff.identical and result.mode == "L" and (tmp_path / "d.png").exists()


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "BMP", "WEBP", "PPM"])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_a_file_filtered_in_place_is_written_as_pillow_filters_it(fmt, mode, tmp_path, rng):
    # FIND_EDGES leaves 0 in the fourth byte Pillow keeps beside each RGB pixel
    # (as Pillow's own filter does); no writer may take it for a sample.
    source = tmp_path / "in.png"
    picture = Image.fromarray(rng.integers(0, 256, (61, 47, 3), dtype=np.uint8)).convert(mode)
    picture.save(source)
    out = tmp_path / f"out.{fmt.lower()}"
    options = OutputSettings(lossless=True) if fmt == "WEBP" else OutputSettings()
    pipeline.filter_file(source, out, FilterSettings("find_edges", border="keep"), options)
    with Image.open(out) as written:
        got = np.asarray(written.convert(mode))
    np.testing.assert_array_equal(got, np.asarray(picture.filter(ImageFilter.FIND_EDGES)))
