"""`convfilter kernels` and `convfilter diff`, through Click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageFilter

from convfilter import cli, compare

PILLOW_FILTERS = ["BLUR", "CONTOUR", "DETAIL", "EDGE_ENHANCE", "EDGE_ENHANCE_MORE", "EMBOSS",
                  "FIND_EDGES", "SHARPEN", "SMOOTH", "SMOOTH_MORE"]  # fmt: skip


def run(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args], prog_name="convfilter")


def save(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


# --- kernels ------------------------------------------------------------------------


def test_listing_names_every_pillow_filter_with_its_values():
    result = run("kernels", "--json")
    assert result.exit_code == 0
    listing = json.loads(result.output)
    rows = {row["pillow"]: row for row in listing if row["pillow"] and row["offset"] is not None}
    assert sorted(rows) == sorted(PILLOW_FILTERS)
    filters = {row["pillow"] for row in listing if row["pillow"] and row["offset"] is None}
    assert filters == {"BoxBlur", "GaussianBlur", "UnsharpMask", "MedianFilter", "MinFilter", "MaxFilter",
                       "RankFilter", "ModeFilter"}  # fmt: skip
    for name, row in rows.items():
        size, scale, offset, _ = getattr(ImageFilter, name).filterargs
        assert row["size"] == f"{size[1]}x{size[0]}"
        assert (row["scale"], row["offset"]) == (scale, offset)


def test_listing_as_text_has_every_column():
    result = run("kernels")
    header, *rows = result.output.splitlines()
    assert header.split()[:6] == ["name", "size", "scale", "offset", "linear", "pillow"]
    linear = {row.split()[0]: row.split()[4] for row in rows}
    assert {"edge_enhance", "sobel-x", "gaussian:SIGMA[,SIZE]", "box:N", "laplacian8", "log:SIGMA"} <= set(linear)
    assert linear["median:N"] == linear["sobel"] == linear["unsharp[:RADIUS,PERCENT,THRESHOLD]"] == "no"
    assert linear["box_blur:R[,RY]"] == linear["dog:SIGMA1,SIGMA2"] == linear["edge_enhance"] == "yes"


@pytest.mark.parametrize("name", PILLOW_FILTERS)
def test_spec_prints_pillow_kernel_rows_reversed(name):
    result = run("kernels", name.lower(), "--json")
    data = json.loads(result.output)
    size, scale, _, values = getattr(ImageFilter, name).filterargs
    pillow_rows = np.array(values, dtype=float).reshape(size[1], size[0])
    assert np.allclose(np.array(data["weights"]), pillow_rows[::-1] / scale)


def test_spec_text_output_with_options():
    result = run("kernels", "1 2 1", "--normalize")
    assert result.exit_code == 0
    assert result.output.splitlines()[-1].split() == ["0.25", "0.5", "0.25"]
    flipped = run("kernels", "1 2; 3 4", "--flip", "--scale", "2", "--offset", "5", "--json")
    data = json.loads(flipped.output)
    assert data["weights"] == [[2.0, 1.5], [1.0, 0.5]] and data["offset"] == 5


def test_bad_spec_is_one_error_line():
    result = run("kernels", "1 2; x 4")
    assert result.exit_code == 1
    assert result.stderr.strip() == "convfilter: error: 'x' is not a number (at row 2, column 1)"


# --- diff ---------------------------------------------------------------------------


@pytest.fixture
def pair(tmp_path):
    rng = np.random.default_rng(7)
    a = rng.integers(0, 256, (10, 12, 3)).astype(np.uint8)
    b = a.copy()
    b[2, 3, 1] += 5
    b[9, 11, 0] ^= 0xFF
    return save(tmp_path / "a.png", a), save(tmp_path / "b.png", b), a, b


def test_identical_images_exit_0(pair, tmp_path):
    a_path, _, a, _ = pair
    copy = save(tmp_path / "copy.png", a)
    result = run("diff", a_path, copy)
    assert result.exit_code == 0 and "identical" in result.output


def test_different_images_exit_1_with_metrics(pair):
    a_path, b_path, a, b = pair
    result = run("diff", a_path, b_path, "--json")
    assert result.exit_code == 1
    data = json.loads(result.output)
    difference = np.abs(a.astype(float) - b.astype(float))
    assert data["whole"]["differing"] == 2
    assert data["whole"]["max_abs"] == difference.max()
    assert data["whole"]["mean_abs"] == pytest.approx(difference.mean())
    mse = (difference**2).mean()
    assert data["whole"]["rmse"] == pytest.approx(np.sqrt(mse))
    assert data["whole"]["psnr"] == pytest.approx(10 * np.log10(255**2 / mse))


def test_diff_image_is_written(pair, tmp_path):
    a_path, b_path, _, _ = pair
    picture = tmp_path / "d.png"
    assert run("diff", a_path, b_path, "--diff-image", picture, "-q").exit_code == 1
    with Image.open(picture) as im:
        assert im.width >= 3 * 12


def test_diff_image_shows_a_lone_difference_of_one(tmp_path):
    a = np.full((20, 30, 3), 50, np.uint8)
    b = a.copy()
    b[5, 7, 2] += 1
    same, differ = tmp_path / "same.png", tmp_path / "differ.png"
    a_path, b_path = save(tmp_path / "a.png", a), save(tmp_path / "b.png", b)
    assert run("diff", a_path, save(tmp_path / "copy.png", a), "--diff-image", same, "-q").exit_code == 0
    assert run("diff", a_path, b_path, "--diff-image", differ, "-q").exit_code == 1
    ring = np.array(compare._RING_COLOUR, np.uint8)
    with Image.open(same) as identical, Image.open(differ) as different:
        ringed = np.all(np.asarray(different.convert("RGB")) == ring, axis=2).sum()
        assert ringed >= 7 * 7 - 1  # around the differing pixel (and a swatch in the legend)
        assert not np.all(np.asarray(identical.convert("RGB")) == ring, axis=2).any()


@pytest.mark.parametrize("problem", ["missing", "size", "mode"])
def test_errors_exit_2(pair, tmp_path, problem):
    a_path, _, a, _ = pair
    other = {
        "missing": tmp_path / "none.png",
        "size": save(tmp_path / "small.png", a[:5]),
        "mode": save(tmp_path / "gray.png", a[..., 0]),
    }[problem]
    result = run("diff", a_path, other)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convfilter: error: ")


def test_diff_compares_every_frame(tmp_path):
    frames = [Image.new("L", (6, 6), v) for v in (10, 20)]
    other = [Image.new("L", (6, 6), v) for v in (10, 21)]
    frames[0].save(tmp_path / "a.tif", save_all=True, append_images=frames[1:])
    other[0].save(tmp_path / "b.tif", save_all=True, append_images=other[1:])
    result = run("diff", tmp_path / "a.tif", tmp_path / "b.tif", "--json")
    assert result.exit_code == 1
    assert json.loads(result.output)["whole"]["differing"] == 36
    frames[0].save(tmp_path / "one.tif")
    assert run("diff", tmp_path / "a.tif", tmp_path / "one.tif").exit_code == 2


def test_diff_treats_nan_in_both_as_equal(tmp_path):
    values = np.array([[np.nan, 1.0], [2.0, 3.0]], np.float32)
    save(tmp_path / "n1.tif", values)
    save(tmp_path / "n2.tif", values.copy())
    assert run("diff", tmp_path / "n1.tif", tmp_path / "n2.tif").exit_code == 0
    changed = values.copy()
    changed[0, 0] = 5.0
    save(tmp_path / "n3.tif", changed)
    data = json.loads(run("diff", tmp_path / "n1.tif", tmp_path / "n3.tif", "--json").output)
    assert data["whole"]["differing"] == 1


def test_kernels_notes_a_matrix_that_changes_brightness():
    result = CliRunner().invoke(cli.main, ["kernels", "1 2 1; 2 4 2; 1 2 1"])
    assert result.exit_code == 0
    assert result.stderr.startswith("convfilter: note: ") and "--normalize" in result.stderr
    assert CliRunner().invoke(cli.main, ["kernels", "1 2 1; 2 4 2; 1 2 1", "--normalize"]).stderr == ""


def test_diff_prints_whole_16_bit_differences_as_integers(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(np.zeros((4, 4), np.uint16)).save(a)
    Image.fromarray(np.full((4, 4), 52325, np.uint16)).save(b)
    result = CliRunner().invoke(cli.main, ["diff", str(a), str(b)])
    assert result.exit_code == 1 and "52325" in result.stdout and "e+04" not in result.stdout
