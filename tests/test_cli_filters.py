"""The filter specs and --anchor through the commands: apply, batch, kernels, gallery."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as ndi
from click.testing import CliRunner
from PIL import Image, ImageFilter

from convfilter import cli

SAMPLE = Path(__file__).resolve().parent.parent / "sample_images"


def run(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args], prog_name="convfilter")


@pytest.fixture
def photo(tmp_path) -> Path:
    with Image.open(SAMPLE / "chelsea.png") as image:
        path = tmp_path / "photo.png"
        image.convert("RGB").crop((100, 60, 228, 156)).save(path)
    return path


@pytest.mark.parametrize("spec, pillow", [
    ("median:3", ImageFilter.MedianFilter(3)),
    ("unsharp", ImageFilter.UnsharpMask()),
    ("gaussian_blur:2.5", ImageFilter.GaussianBlur(2.5)),
    ("box_blur:1,3", ImageFilter.BoxBlur((1, 3))),
    ("mode:5", ImageFilter.ModeFilter(5)),
    ("rank:5,20", ImageFilter.RankFilter(5, 20)),
])  # fmt: skip
def test_apply_writes_pillows_bytes_and_says_so(photo, tmp_path, spec, pillow):
    out = tmp_path / "out.png"
    result = run("apply", photo, out, "-k", spec, "--border", "keep", "--json", "--diff-pil")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["diff"]["whole"]["identical"] is True
    with Image.open(photo) as image, Image.open(out) as written:
        assert written.tobytes() == image.filter(pillow).tobytes()
    assert summary["kernels"][0]["linear"] is spec.startswith(("gaussian_blur", "box_blur"))


def test_a_chain_of_filters_and_kernels_is_pillows_chain(photo, tmp_path):
    out = tmp_path / "out.png"
    result = run("apply", photo, out, "-k", "median:3", "-k", "sharpen", "-k", "max:3", "--repeat", "2",
                 "--border", "keep", "--diff-pil")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert re.search(r"identical +yes +yes", result.output)
    with Image.open(photo) as image, Image.open(out) as written:
        expected = image
        for _ in range(2):
            for each in (ImageFilter.MedianFilter(3), ImageFilter.SHARPEN, ImageFilter.MaxFilter(3)):
                expected = expected.filter(each)
        assert written.tobytes() == expected.tobytes()


def test_channels_and_alpha_with_a_median(tmp_path):
    rng = np.random.default_rng(5)
    rgba = rng.integers(0, 256, (20, 24, 4), dtype=np.uint8)
    source = tmp_path / "in.png"
    Image.fromarray(rgba).save(source)
    out = tmp_path / "out.png"
    assert run("apply", source, out, "-k", "median:3").exit_code == 0
    written = np.asarray(Image.open(out))
    # not linear, so --alpha auto keeps alpha and filters colour alone
    np.testing.assert_array_equal(written[..., 3], rgba[..., 3])
    colour = np.asarray(Image.fromarray(rgba[..., :3]).filter(ImageFilter.MedianFilter(3)))
    np.testing.assert_array_equal(written[..., :3], colour)
    assert run("apply", source, out, "-k", "median:3", "--channels", "G").exit_code == 0
    written = np.asarray(Image.open(out))
    np.testing.assert_array_equal(written[..., [0, 2, 3]], rgba[..., [0, 2, 3]])
    np.testing.assert_array_equal(written[..., 1], ndi.median_filter(rgba[..., 1], 3, mode="nearest"))


@pytest.mark.parametrize("args, message, code", [
    (["-k", "median:3", "--scale", "2"], "median:3 is not a kernel (it has no matrix), so --scale cannot change it",
     1),
    (["-k", "mode:3", "--flip", "--anchor", "0,0"], "mode:3 is not a kernel (it has no matrix), so --flip, "
     "--anchor cannot change it", 1),
    (["-k", "median:4"], "median size N must be an odd whole number from 3 to 101", 1),
    (["-k", "sobel", "--diff-pil"], "Pillow has no filter like sobel", 1),
    (["-k", "median:3", "--alpha", "premultiply"], "--alpha premultiply weighs colour by alpha", 2),
    (["-k", "1 2; 3 4", "--anchor", "2,0"], "anchor column 2, row 0 is outside the 2x2 kernel", 1),
    (["-k", "1 2; 3 4", "--anchor", "1"], "'1' is not X,Y", 2),
])  # fmt: skip
def test_mistakes_are_one_line(photo, tmp_path, args, message, code):
    out = tmp_path / "out.png"
    result = run("apply", photo, out, *args)
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert not out.exists()


def test_anchor_on_the_command_line_is_scipys_origin(tmp_path):
    rng = np.random.default_rng(2)
    grey = rng.integers(0, 200, (15, 17), dtype=np.uint8)
    source, out = tmp_path / "in.png", tmp_path / "out.png"
    Image.fromarray(grey).save(source)
    matrix = np.array([[1, 2, 0, 1], [0, 1, 1, 0]], dtype=float)
    result = run("apply", source, out, "-k", "1 2 0 1; 0 1 1 0", "--scale", "6", "--anchor", "3,0",
                 "--border", "reflect")  # fmt: skip
    assert result.exit_code == 0, result.output
    # column 3, row 0: scipy's origin is (0 - 2 // 2, 3 - 4 // 2)
    sums = ndi.correlate(grey.astype(float), matrix / 6, mode="reflect", origin=(-1, 1))
    expected = np.clip(np.floor(sums + 0.5), 0, 255)
    assert np.abs(np.asarray(Image.open(out)).astype(int) - expected).max() <= 1  # float32 sums


def test_kernels_says_what_a_filter_is():
    result = run("kernels", "median:5")
    assert result.exit_code == 0
    assert result.output.splitlines()[0] == "median:5: non-linear filter, 5x5 window, Pillow ImageFilter.MedianFilter(5)"
    assert "no matrix" in result.output
    data = json.loads(run("kernels", "box_blur:1", "--json").output)
    assert data["linear"] is True
    np.testing.assert_allclose(data["weights"], np.full((3, 3), 1 / 9))
    data = json.loads(run("kernels", "unsharp", "--json").output)
    assert data == {"name": "unsharp:2,150,3", "shape": [13, 13], "linear": False,
                    "pillow": "ImageFilter.UnsharpMask(2, 150, 3)"}  # fmt: skip


def test_batch_takes_filters(tmp_path, photo):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        Image.open(photo).rotate(90 * i, expand=True).save(folder / f"p{i}.png")
    result = run("batch", folder, "-d", tmp_path / "out", "-k", "median:3", "-k", "unsharp", "--jobs", "2")
    assert result.exit_code == 0, result.output
    for i in range(3):
        with Image.open(folder / f"p{i}.png") as image, Image.open(tmp_path / "out" / f"p{i}.png") as written:
            expected = image.filter(ImageFilter.MedianFilter(3)).filter(ImageFilter.UnsharpMask())
            assert written.tobytes() == expected.tobytes()


def test_gallery_shows_filters(tmp_path, photo):
    sheet = tmp_path / "sheet.png"
    result = run("gallery", photo, "-o", sheet, "-k", "median", "-k", "sobel", "-k", "unsharp")
    assert result.exit_code == 0, result.output
    with Image.open(sheet) as written:
        assert written.width * written.height > 4 * 128 * 96  # the original and three tiles
