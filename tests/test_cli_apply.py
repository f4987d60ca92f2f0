"""`convfilter apply`: every option, every bad input, through Click's CliRunner."""

from __future__ import annotations

import io
import json
import os
import socket
import stat
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageCms, ImageFilter
from scipy import ndimage

from convfilter import cli, options

SAMPLES = Path(__file__).resolve().parent.parent / "sample_images"


def run(*args: str, input: bytes | None = None):
    return CliRunner().invoke(cli.main, [str(a) for a in args], input=input, prog_name="convfilter")


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def assert_one_error(result, *fragments: str, code: int = 1) -> None:
    assert result.exit_code == code, (result.exit_code, result.output, result.stderr)
    lines = error_lines(result)
    assert len(lines) == 1, lines
    assert lines[0].startswith("convfilter: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.output + result.stderr


def no_leftovers(directory: Path) -> None:
    assert not [p.name for p in directory.iterdir() if p.name.endswith(".part")]


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    """A 160 x 120 crop of a real photograph, as PNG."""
    path = tmp_path / "photo.png"
    Image.open(SAMPLES / "coffee.png").convert("RGB").crop((200, 100, 360, 220)).save(path)
    return path


def gray(tmp_path: Path, array: np.ndarray, name: str = "gray.png") -> Path:
    path = tmp_path / name
    Image.fromarray(array.astype(np.uint8), "L").save(path)
    return path


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im).copy()


# --- the main path and Pillow parity -------------------------------------------------


def test_apply_edge_enhance_keep_is_pillow_and_report_says_identical(photo, tmp_path):
    out = tmp_path / "out.png"
    result = run("apply", photo, out, "-k", "edge_enhance", "--border", "keep", "--diff-pil")
    assert result.exit_code == 0, result.stderr
    expected = np.asarray(Image.open(photo).filter(ImageFilter.EDGE_ENHANCE))
    assert np.array_equal(pixels(out), expected)
    assert "Pillow ImageFilter.EDGE_ENHANCE" in result.output
    assert "identical          yes" in result.output
    no_leftovers(tmp_path)


def test_default_border_differs_from_pillow_only_at_the_edge(photo, tmp_path):
    result = run("apply", photo, tmp_path / "o.png", "-k", "edge_enhance", "--diff-pil", "--json")
    data = json.loads(result.output)
    assert data["diff"]["whole"]["identical"] is False
    assert data["diff"]["interior"]["identical"] is True
    assert data["diff"]["margin"] == {"top": 1, "bottom": 1, "left": 1, "right": 1}


def test_fail_on_diff_sets_exit_code_only_when_different(photo, tmp_path):
    differs = run("apply", photo, tmp_path / "a.png", "-k", "smooth", "--diff-pil", "--fail-on-diff")
    same = run("apply", photo, tmp_path / "b.png", "-k", "smooth", "--border", "keep", "--diff-pil",
               "--fail-on-diff")  # fmt: skip
    assert differs.exit_code == 1 and (tmp_path / "a.png").exists()
    assert same.exit_code == 0


def test_diff_pil_with_a_named_filter_and_without_an_equivalent(photo, tmp_path):
    named = run("apply", photo, tmp_path / "a.png", "-k", "gaussian:2", "--diff-pil=gaussian_blur:2", "--json")
    assert named.exit_code == 0, named.stderr
    assert json.loads(named.output)["reference"] == "Pillow gaussian_blur:2"
    missing = run("apply", photo, tmp_path / "b.png", "-k", "gaussian:2", "--diff-pil")
    assert_one_error(missing, "no equivalent")
    assert not (tmp_path / "b.png").exists()


def test_diff_pil_builds_imagefilter_kernel_for_inline_3x3(photo, tmp_path):
    matrix = "1 2 3; 4 -5 6; -7 8 9"
    out = tmp_path / "o.png"
    result = run("apply", photo, out, "-k", matrix, "--scale", "7", "--offset", "10",
                 "--border", "keep", "--diff-pil", "--json")  # fmt: skip
    assert json.loads(result.output)["diff"]["identical"] is True
    # Pillow flips kernels vertically: our rows reversed give Pillow's kernel.
    pil = ImageFilter.Kernel((3, 3), [-7, 8, 9, 4, -5, 6, 1, 2, 3], scale=7, offset=10)
    assert np.array_equal(pixels(out), np.asarray(Image.open(photo).filter(pil)))


def test_diff_image_has_four_panels(photo, tmp_path):
    picture = tmp_path / "diff.png"
    result = run("apply", photo, tmp_path / "o.png", "-k", "sharpen", "--diff-image", picture)
    assert result.exit_code == 0, result.stderr
    with Image.open(picture) as im:
        assert im.width >= 4 * 160 and im.height >= 120


# --- kernel options -----------------------------------------------------------------


def test_chain_and_repeat_equal_successive_runs(photo, tmp_path):
    step1, step2 = tmp_path / "s1.png", tmp_path / "s2.png"
    run("apply", photo, step1, "-k", "box:3")
    run("apply", step1, step2, "-k", "sharpen")
    chained = tmp_path / "chain.png"
    assert run("apply", photo, chained, "-k", "box:3", "-k", "sharpen").exit_code == 0
    assert np.array_equal(pixels(chained), pixels(step2))
    twice, once_more = tmp_path / "twice.png", tmp_path / "again.png"
    run("apply", photo, twice, "-k", "blur", "--repeat", "2")
    run("apply", tmp_path / "s1.png", once_more, "-k", "blur")  # unrelated input: must differ
    by_hand = tmp_path / "hand.png"
    run("apply", photo, tmp_path / "b1.png", "-k", "blur")
    run("apply", tmp_path / "b1.png", by_hand, "-k", "blur")
    assert np.array_equal(pixels(twice), pixels(by_hand))
    assert not np.array_equal(pixels(twice), pixels(once_more))


def test_scale_offset_match_pillow_kernel(photo, tmp_path):
    out = tmp_path / "o.png"
    run("apply", photo, out, "-k", "1 2 1; 2 4 2; 1 2 1", "--scale", "20", "--offset", "-3",
        "--border", "keep")  # fmt: skip
    pil = ImageFilter.Kernel((3, 3), [1, 2, 1, 2, 4, 2, 1, 2, 1], scale=20, offset=-3)
    assert np.array_equal(pixels(out), np.asarray(Image.open(photo).filter(pil)))


def test_normalize_divides_by_the_sum(photo, tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    run("apply", photo, a, "-k", "1 2 1; 2 4 2; 1 2 1", "--normalize")
    run("apply", photo, b, "-k", "1 2 1; 2 4 2; 1 2 1", "--scale", "16")
    assert np.array_equal(pixels(a), pixels(b))


def test_normalize_zero_sum_kernel_is_an_error(photo, tmp_path):
    result = run("apply", photo, tmp_path / "o.png", "-k", "sobel-x", "--normalize")
    assert_one_error(result, "sum to zero")
    assert not (tmp_path / "o.png").exists()


def test_flip_is_true_convolution(tmp_path, rng):
    source = gray(tmp_path, rng.integers(0, 256, (20, 30)))
    flipped, mirrored = tmp_path / "f.png", tmp_path / "m.png"
    run("apply", source, flipped, "-k", "1 0 0; 0 0 0; 0 0 2", "--flip")
    run("apply", source, mirrored, "-k", "2 0 0; 0 0 0; 0 0 1")
    assert np.array_equal(pixels(flipped), pixels(mirrored))


@pytest.mark.parametrize(
    "border, scipy_mode",
    [("nearest", "nearest"), ("reflect", "reflect"), ("mirror", "mirror"),
     ("wrap", "grid-wrap"), ("constant", "constant")],
)  # fmt: skip
def test_border_modes_match_scipy(tmp_path, rng, border, scipy_mode):
    array = rng.integers(0, 256, (17, 23)).astype(np.uint8)
    source = gray(tmp_path, array)
    out = tmp_path / "o.png"
    # Power-of-two scale, integer weights: every sum is exact, so rounding is too.
    result = run("apply", source, out, "-k", "1 2 1; 2 4 2; 1 2 3", "--scale", "16",
                 "--border", border, "--cval", "200")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    kernel = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 3]]) / 16
    expected = ndimage.correlate(array.astype(np.float64), kernel, mode=scipy_mode, cval=200)
    assert np.array_equal(pixels(out), np.clip(np.floor(expected + 0.5), 0, 255))


def test_valid_border_shrinks_and_too_small_is_an_error(tmp_path, rng):
    source = gray(tmp_path, rng.integers(0, 256, (10, 12)))
    out = tmp_path / "o.png"
    assert run("apply", source, out, "-k", "box:5", "--border", "valid").exit_code == 0
    with Image.open(out) as im:
        assert im.size == (8, 6)
    tiny = gray(tmp_path, rng.integers(0, 256, (3, 3)), "tiny.png")
    assert_one_error(run("apply", tiny, tmp_path / "t.png", "-k", "box:5", "--border", "valid"), "valid")
    assert not (tmp_path / "t.png").exists()


def test_abs_shows_edges_of_both_signs(tmp_path):
    array = np.zeros((8, 12), np.uint8)
    array[:, 4:8] = 200  # a bright vertical bar: a rising and a falling edge
    source = gray(tmp_path, array)
    plain, absolute = tmp_path / "p.png", tmp_path / "a.png"
    run("apply", source, plain, "-k", "sobel-x")
    run("apply", source, absolute, "-k", "sobel-x", "--abs")
    row_plain, row_abs = pixels(plain)[4], pixels(absolute)[4]
    assert row_plain[3] == 255 and row_plain[8] == 0  # the falling edge clips to black
    assert row_abs[3] == row_abs[8] == 255
    assert row_abs[4] == row_abs[7] == 255 and row_abs[0] == row_abs[5] == 0


def test_channels_filters_only_the_named_bands(photo, tmp_path):
    out = tmp_path / "o.png"
    assert run("apply", photo, out, "-k", "emboss", "--channels", "r,G", "--border", "keep").exit_code == 0
    original = np.asarray(Image.open(photo))
    pillow = np.asarray(Image.open(photo).filter(ImageFilter.EMBOSS))
    got = pixels(out)
    assert np.array_equal(got[..., :2], pillow[..., :2])
    assert np.array_equal(got[..., 2], original[..., 2])


def test_channels_unknown_band_is_an_error(photo, tmp_path):
    assert_one_error(run("apply", photo, tmp_path / "o.png", "-k", "blur", "--channels", "Q"), "no band 'Q'")


def rgba_card(tmp_path: Path) -> Path:
    """An opaque red square on a fully transparent *black* background."""
    array = np.zeros((24, 24, 4), np.uint8)
    array[8:16, 8:16] = (255, 0, 0, 255)
    path = tmp_path / "card.png"
    Image.fromarray(array, "RGBA").save(path)
    return path


def test_alpha_keep_and_filter(tmp_path):
    card = rgba_card(tmp_path)
    keep, filt = tmp_path / "k.png", tmp_path / "f.png"
    run("apply", card, keep, "-k", "blur", "--border", "keep", "--alpha", "keep")
    run("apply", card, filt, "-k", "blur", "--border", "keep", "--alpha", "filter")
    source = Image.open(card)
    pillow = np.asarray(source.filter(ImageFilter.BLUR))
    assert np.array_equal(pixels(filt), pillow)  # Pillow filters alpha too
    kept = pixels(keep)
    assert np.array_equal(kept[..., 3], np.asarray(source)[..., 3])
    assert np.array_equal(kept[..., :3], pillow[..., :3])


def test_alpha_premultiply_does_not_bleed_dark_fringes(tmp_path):
    card = rgba_card(tmp_path)
    premultiplied, plain = tmp_path / "p.png", tmp_path / "f.png"
    assert run("apply", card, premultiplied, "-k", "box:3", "--alpha", "premultiply").exit_code == 0
    run("apply", card, plain, "-k", "box:3", "--alpha", "filter")
    pre, naive = pixels(premultiplied), pixels(plain)
    fringe = (pre[..., 3] > 0) & (pre[..., 3] < 255)
    assert fringe.sum() > 0
    assert np.all(pre[fringe][:, 0] == 255) and np.all(pre[fringe][:, 1:3] == 0)
    assert np.all(naive[fringe][:, 0] < 255)  # the black background darkened the edge
    assert np.array_equal(pre[..., 3], naive[..., 3])


def test_alpha_auto_premultiplies_a_transparent_image_and_says_so(tmp_path):
    card = rgba_card(tmp_path)
    auto, premultiplied = tmp_path / "a.png", tmp_path / "p.png"
    result = run("apply", card, auto, "-k", "box:3")
    assert result.exit_code == 0 and "weighted by alpha" in result.output
    run("apply", card, premultiplied, "-k", "box:3", "--alpha", "premultiply")
    assert np.array_equal(pixels(auto), pixels(premultiplied))
    red = pixels(auto)[..., 3] > 0
    assert np.all(pixels(auto)[red][:, 0] == 255)  # no dark fringe: (153, 0, 0) before


def test_alpha_auto_on_an_opaque_image_is_keep(tmp_path, rng):
    path = tmp_path / "opaque.png"
    array = rng.integers(0, 256, (12, 14, 4)).astype(np.uint8)
    array[..., 3] = 255
    Image.fromarray(array).save(path)
    auto, keep = tmp_path / "a.png", tmp_path / "k.png"
    assert "weighted by alpha" not in run("apply", path, auto, "-k", "sharpen").output
    run("apply", path, keep, "-k", "sharpen", "--alpha", "keep")
    assert auto.read_bytes() == keep.read_bytes()


def test_alpha_auto_keeps_alpha_alone_for_edge_kernels(tmp_path):
    card = rgba_card(tmp_path)
    auto, keep = tmp_path / "a.png", tmp_path / "k.png"
    run("apply", card, auto, "-k", "sobel-x", "--abs")
    run("apply", card, keep, "-k", "sobel-x", "--abs", "--alpha", "keep")
    assert np.array_equal(pixels(auto), pixels(keep))


def test_diff_pil_says_it_cannot_compare_premultiplied_alpha(tmp_path):
    card = rgba_card(tmp_path)
    assert_one_error(run("apply", card, tmp_path / "o.png", "-k", "blur", "--diff-pil"),
                     "no premultiplied alpha", "--alpha keep")  # fmt: skip
    assert_one_error(run("apply", card, tmp_path / "o.png", "-k", "blur", "--diff-pil", "--alpha", "premultiply"),
                     "no premultiplied alpha")  # fmt: skip
    assert not (tmp_path / "o.png").exists()
    assert run("apply", card, tmp_path / "o.png", "-k", "blur", "--diff-pil", "--alpha", "keep").exit_code == 0


def test_alpha_premultiply_needs_alpha(photo, tmp_path):
    assert_one_error(run("apply", photo, tmp_path / "o.png", "-k", "blur", "--alpha", "premultiply"),
                     "needs an image with alpha")  # fmt: skip


@pytest.mark.parametrize("method", ["direct", "auto"])
def test_method_and_threads_do_not_change_pillow_presets(photo, tmp_path, method):
    out = tmp_path / "o.png"
    assert run("apply", photo, out, "-k", "smooth_more", "--border", "keep", "--method", method,
               "--threads", "1").exit_code == 0  # fmt: skip
    assert np.array_equal(pixels(out), np.asarray(Image.open(photo).filter(ImageFilter.SMOOTH_MORE)))


# --- formats, streams, reports ------------------------------------------------------


def test_stdin_to_stdout_keeps_the_input_format(photo):
    data = photo.read_bytes()
    result = run("apply", "-", "-", "-k", "blur", "--border", "keep", input=data)
    assert result.exit_code == 0, result.stderr
    with Image.open(io.BytesIO(result.stdout_bytes)) as im:
        assert im.format == "PNG"
        assert np.array_equal(np.asarray(im), np.asarray(Image.open(photo).filter(ImageFilter.BLUR)))
    assert "->" in result.stderr  # the report goes to stderr when stdout holds the image


def test_stdout_with_format_and_json_on_stderr(photo):
    result = run("apply", "-", "-", "-k", "blur", "--format", "jpeg", "--json", input=photo.read_bytes())
    assert result.exit_code == 0, result.stderr
    with Image.open(io.BytesIO(result.stdout_bytes)) as im:
        assert im.format == "JPEG"
    assert json.loads(result.stderr)["format"] == "JPEG"


def test_format_option_overrides_extension(photo, tmp_path):
    out = tmp_path / "out.png"
    run("apply", photo, out, "-k", "blur", "--format", "tiff")
    with Image.open(out) as im:
        assert im.format == "TIFF"


def test_quality_changes_jpeg_size(photo, tmp_path):
    low, high = tmp_path / "low.jpg", tmp_path / "high.jpg"
    run("apply", photo, low, "-k", "sharpen", "--quality", "10")
    run("apply", photo, high, "-k", "sharpen", "--quality", "95")
    assert low.stat().st_size < high.stat().st_size


def test_json_summary(photo, tmp_path):
    result = run("apply", photo, tmp_path / "o.png", "-k", "detail", "-k", "box:3", "--json")
    data = json.loads(result.output)
    assert data["command"] == "apply"
    assert [k["name"] for k in data["kernels"]] == ["detail", "box:3"]
    assert data["width"] == 160 and data["height"] == 120 and data["mode"] == "RGB"
    assert {"load", "filter", "save", "total"} <= set(data["timings_ms"])


def test_quiet_prints_nothing(photo, tmp_path):
    result = run("apply", photo, tmp_path / "o.png", "-k", "blur", "-q")
    assert result.exit_code == 0 and result.output == "" and result.stderr == ""


def test_debug_lets_the_exception_through(tmp_path):
    result = run("apply", tmp_path / "missing.png", tmp_path / "o.png", "-k", "blur", "--debug")
    assert result.exit_code != 0 and isinstance(result.exception, ValueError)


# --- modes and metadata -------------------------------------------------------------


@pytest.mark.parametrize(
    "mode, suffix",
    [("L", ".png"), ("LA", ".png"), ("RGB", ".png"), ("RGBA", ".png"), ("CMYK", ".tif"),
     ("I;16", ".png"), ("I", ".tif"), ("F", ".tif")],
)  # fmt: skip
def test_each_mode_round_trips(tmp_path, rng, mode, suffix):
    bands = len(Image.new(mode, (1, 1)).getbands())
    if mode == "I;16":
        array = rng.integers(0, 65536, (16, 20)).astype(np.uint16)
        source_image = Image.fromarray(array)
    elif mode == "I":
        source_image = Image.fromarray(rng.integers(0, 100000, (16, 20)).astype(np.int32))
    elif mode == "F":
        source_image = Image.fromarray(rng.normal(0, 1000, (16, 20)).astype(np.float32))
    else:
        shape = (16, 20, bands) if bands > 1 else (16, 20)
        raw = rng.integers(0, 256, shape).astype(np.uint8)
        source_image = Image.frombytes(mode, (20, 16), raw.tobytes())
    assert source_image.mode == mode
    source = tmp_path / f"in{suffix}"
    source_image.save(source)
    out = tmp_path / f"out{suffix}"
    result = run("apply", source, out, "-k", "edge_enhance", "--border", "keep", "--alpha", "filter")
    assert result.exit_code == 0, result.stderr
    with Image.open(out) as written:
        assert written.mode == mode
        got = np.asarray(written)
    if mode == "F":
        values = np.asarray(source_image, dtype=np.float64)
        weights = np.array([[-1, -1, -1], [-1, 10, -1], [-1, -1, -1]]) / 2
        expected = ndimage.correlate(values, weights)[1:-1, 1:-1]
        assert np.allclose(got[1:-1, 1:-1], expected, rtol=1e-5, atol=1e-2)
        assert got.min() < 0  # float results are not clamped
    elif mode == "I;16" and int(Image.__version__.split(".")[0]) < 13:
        pytest.skip("Pillow before 13 filters I;16 with its older code; parity is with Pillow 13+")
    else:
        pillow = np.asarray(Image.open(source).filter(ImageFilter.EDGE_ENHANCE))
        assert np.array_equal(got, pillow)


def test_palette_and_bilevel_are_converted_with_a_note(tmp_path, rng):
    palette = tmp_path / "p.png"
    Image.fromarray(rng.integers(0, 256, (10, 10, 3)).astype(np.uint8)).convert("P").save(palette)
    bilevel = tmp_path / "b.png"
    Image.fromarray(rng.integers(0, 2, (10, 10)).astype(bool)).save(bilevel)
    for path, target in ((palette, "RGB"), (bilevel, "L")):
        result = run("apply", path, tmp_path / "o.png", "-k", "blur", "--json")
        data = json.loads(result.output)
        assert data["mode"] == target
        assert any(f"to {target}" in note for note in data["notes"])


def test_unsupported_mode_is_an_error_naming_it(tmp_path):
    source = tmp_path / "lab.tif"
    Image.new("LAB", (8, 8)).save(source)
    result = run("apply", source, tmp_path / "o.tif", "-k", "blur")
    assert_one_error(result, "LAB")
    assert not (tmp_path / "o.tif").exists()


def test_exif_orientation_is_applied_and_not_written(tmp_path):
    upright = np.zeros((20, 30), np.uint8)
    upright[:, 15:] = 255  # a vertical edge as the viewer sees it
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # 30 x 20 on disk
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to view"
    exif[0x010F] = "TestCam"  # Make: must survive
    source = tmp_path / "rotated.png"
    stored.save(source, exif=exif.tobytes())
    with Image.open(source) as probe:
        assert probe.size == (20, 30)
    out = tmp_path / "o.png"
    assert run("apply", source, out, "-k", "sobel-x", "--abs").exit_code == 0
    with Image.open(out) as written:
        assert written.size == (30, 20)
        assert 0x0112 not in written.getexif()
        assert written.getexif()[0x010F] == "TestCam"
        edges = np.asarray(written)
    assert edges[:, 14:16].min() == 255  # sobel-x sees the vertical edge
    assert edges[:, :13].max() == 0 and edges[:, 17:].max() == 0


def test_icc_profile_and_dpi_kept_and_stripped(photo, tmp_path):
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    source = tmp_path / "icc.png"
    Image.open(photo).save(source, icc_profile=profile, dpi=(300, 300))
    kept, stripped = tmp_path / "kept.jpg", tmp_path / "stripped.jpg"
    run("apply", source, kept, "-k", "blur")
    run("apply", source, stripped, "-k", "blur", "--strip-metadata")
    with Image.open(kept) as im:
        assert im.info.get("icc_profile") == profile
        assert tuple(round(v) for v in im.info["dpi"]) == (300, 300)
    with Image.open(stripped) as im:
        assert not im.info.get("icc_profile")


def test_every_gif_frame_is_filtered(tmp_path, rng):
    frames = [Image.fromarray(rng.integers(0, 256, (12, 12)).astype(np.uint8)).convert("P") for _ in range(3)]
    source = tmp_path / "anim.gif"
    frames[0].save(source, save_all=True, append_images=frames[1:], duration=[50, 60, 70], loop=0)
    out = tmp_path / "out.gif"
    result = run("apply", source, out, "-k", "blur", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.output)["frames"] == 3
    with Image.open(out) as im:
        assert im.n_frames == 3
    refused = run("apply", source, tmp_path / "out.jpg", "-k", "blur")
    assert_one_error(refused, "3 frames")
    assert not (tmp_path / "out.jpg").exists()


def test_max_pixels_refuses_before_decoding(photo, tmp_path):
    result = run("apply", photo, tmp_path / "o.png", "-k", "blur", "--max-pixels", "1000")
    assert_one_error(result, "19,200 pixels", "--max-pixels")
    assert not (tmp_path / "o.png").exists()
    assert run("apply", photo, tmp_path / "o.png", "-k", "blur", "--max-pixels", "0").exit_code == 0


# --- safety: bad inputs and outputs ------------------------------------------------


def test_missing_input(tmp_path):
    assert_one_error(run("apply", tmp_path / "nope.png", tmp_path / "o.png", "-k", "blur"), "nope.png", "no such file")
    assert not (tmp_path / "o.png").exists()


def test_directory_input(tmp_path):
    (tmp_path / "dir.png").mkdir()
    assert_one_error(run("apply", tmp_path / "dir.png", tmp_path / "o.png", "-k", "blur"), "is a directory")


def test_not_an_image(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("hello, not a picture\n")
    assert_one_error(run("apply", text, tmp_path / "o.png", "-k", "blur"), "notes.png", "not an image")
    assert not (tmp_path / "o.png").exists()


def test_truncated_image(photo, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(photo.read_bytes()[:2000])
    assert_one_error(run("apply", broken, tmp_path / "o.png", "-k", "blur"), "broken.png")
    assert not (tmp_path / "o.png").exists()
    no_leftovers(tmp_path)


def test_bad_kernel_spec_fails_before_reading(tmp_path):
    result = run("apply", tmp_path / "missing.png", tmp_path / "o.png", "-k", "1 2; 3")
    assert_one_error(result, "row 2 has 1 value, row 1 has 2")


def test_unknown_output_extension(photo, tmp_path):
    assert_one_error(run("apply", photo, tmp_path / "o.xyz", "-k", "blur"), "unknown output extension")
    assert not (tmp_path / "o.xyz").exists()


def test_missing_output_directory(photo, tmp_path):
    assert_one_error(run("apply", photo, tmp_path / "no" / "o.png", "-k", "blur"), "does not exist")


def test_mode_the_format_cannot_store(tmp_path):
    card = rgba_card(tmp_path)
    assert_one_error(run("apply", card, tmp_path / "o.jpg", "-k", "blur"), "JPEG cannot store")
    assert not (tmp_path / "o.jpg").exists()
    no_leftovers(tmp_path)


def test_failure_leaves_previous_output_intact(tmp_path):
    card = rgba_card(tmp_path)
    out = tmp_path / "o.jpg"
    out.write_bytes(b"previous")
    run("apply", card, out, "-k", "blur")
    assert out.read_bytes() == b"previous"


def test_in_place_replaces_atomically_and_input_untouched_otherwise(photo, tmp_path):
    before = photo.read_bytes()
    run("apply", photo, tmp_path / "o.png", "-k", "blur")
    assert photo.read_bytes() == before
    expected = np.asarray(Image.open(photo).filter(ImageFilter.BLUR))
    assert run("apply", photo, photo, "-k", "blur", "--border", "keep").exit_code == 0
    assert np.array_equal(pixels(photo), expected)
    no_leftovers(tmp_path)


@pytest.mark.parametrize(
    "args, fragment",
    [(["--border", "sideways"], "--border"), (["--repeat", "0"], "--repeat"),
     (["--quality", "101"], "--quality"), (["--bogus"], "--bogus")],
)  # fmt: skip
def test_usage_errors_exit_2_with_one_line(photo, tmp_path, args, fragment):
    result = run("apply", photo, tmp_path / "o.png", "-k", "blur", *args)
    assert_one_error(result, fragment, code=2)


def test_no_kernel_is_a_usage_error(photo, tmp_path):
    assert_one_error(run("apply", photo, tmp_path / "o.png"), "-k", code=2)


def test_impossible_comparisons_are_refused_before_any_work(photo, tmp_path):
    out, picture = tmp_path / "o.png", tmp_path / "d.png"
    for args, fragment in [(["-k", "gaussian:2", "--diff-pil"], "no equivalent"),
                           (["-k", "blur", "--border", "valid", "--diff-pil"], "valid"),
                           (["-k", "blur", "--diff-image", tmp_path / "no" / "d.png"], "does not exist")]:  # fmt: skip
        assert_one_error(run("apply", photo, out, *args), fragment)
    assert_one_error(run("apply", photo, tmp_path / "nodir" / "x.png", "-k", "blur", "--diff-image", picture),
                     "does not exist")  # fmt: skip
    assert not out.exists() and not picture.exists()


def test_fail_on_diff_alone_compares(photo, tmp_path):
    assert run("apply", photo, tmp_path / "o.png", "-k", "sharpen", "--fail-on-diff").exit_code == 1


def test_channels_accept_spaces(photo, tmp_path):
    assert run("apply", photo, tmp_path / "o.png", "-k", "blur", "--channels", "R G").exit_code == 0


def test_premultiply_needs_a_colour_band(tmp_path):
    card = rgba_card(tmp_path)
    result = run("apply", card, tmp_path / "o.png", "-k", "box:3", "--alpha", "premultiply", "--channels", "A")
    assert_one_error(result, "colour band")


# --- special files as outputs: written into, never replaced ------------------------------


def test_a_character_device_output_is_written_into_and_kept(photo, tmp_path):
    node = tmp_path / "mynull"
    try:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # the kernel's null device
    except PermissionError:
        pytest.skip("creating a device node needs root")
    before = os.lstat(node)
    result = run("apply", photo, node, "-k", "blur", "--format", "png")
    assert result.exit_code == 0, result.output + result.stderr
    after = os.lstat(node)
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev and after.st_ino == before.st_ino
    no_leftovers(tmp_path)


def test_a_fifo_output_is_written_into_and_its_reader_gets_the_image(photo, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    result = run("apply", photo, fifo, "-k", "blur", "--format", "png")
    reader.join(timeout=30)
    assert result.exit_code == 0, result.output + result.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert run("apply", photo, tmp_path / "file.png", "-k", "blur").exit_code == 0
    assert received == [(tmp_path / "file.png").read_bytes()]
    no_leftovers(tmp_path)


def test_a_socket_output_is_refused_and_kept(photo, tmp_path):
    path = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        result = run("apply", photo, path, "-k", "blur", "--format", "png")
        assert_one_error(result, "is a socket")
        assert stat.S_ISSOCK(os.lstat(path).st_mode)


# --- 16-bit colour -----------------------------------------------------------------------


def deep_png(path: Path, samples: np.ndarray) -> Path:
    import imagecodecs

    path.write_bytes(imagecodecs.png_encode(samples))
    return path


def test_depth_8_scales_16_bit_colour_and_says_so(tmp_path, rng):
    samples = rng.integers(0, 65536, (5, 7, 3)).astype(np.uint16)
    samples[0, 0] = (0, 128, 65535)  # 128 * 255 / 65535 = 0.498: rounds to 0
    source = deep_png(tmp_path / "deep.png", samples)
    result = run("apply", source, tmp_path / "out.png", "-k", "identity", "--depth", "8", "--json")
    assert result.exit_code == 0, result.output + result.stderr
    expected = np.floor(samples.astype(np.float64) * 255 / 65535 + 0.5).astype(np.uint8)
    with Image.open(tmp_path / "out.png") as out:
        assert out.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(out), expected)
    assert any("--depth 8" in note for note in json.loads(result.output)["notes"])


def test_16_bit_colour_is_filtered_at_16_bits(tmp_path, rng):
    import imagecodecs

    samples = rng.integers(0, 65536, (12, 10, 4)).astype(np.uint16)
    source = deep_png(tmp_path / "deep.png", samples)
    result = run("apply", source, tmp_path / "out.png", "-k", "box:3", "--border", "reflect", "--alpha", "filter")
    assert result.exit_code == 0, result.output + result.stderr
    got = imagecodecs.png_decode((tmp_path / "out.png").read_bytes())
    exact = ndimage.correlate(samples.astype(np.float64), np.ones((3, 3, 1)) / 9, mode="reflect")
    assert got.dtype == np.uint16 and np.abs(got - exact).max() <= 0.5 + 1e-6


def test_premultiplied_16_bit_colour_of_an_opaque_image_equals_keep(tmp_path, rng):
    import imagecodecs

    samples = rng.integers(0, 65536, (9, 8, 4)).astype(np.uint16)
    samples[..., 3] = 65535
    source = deep_png(tmp_path / "deep.png", samples)
    for alpha in ("keep", "premultiply"):
        assert run("apply", source, tmp_path / f"{alpha}.png", "-k", "blur", "--alpha", alpha).exit_code == 0
    keep, premultiplied = (imagecodecs.png_decode((tmp_path / f"{a}.png").read_bytes()) for a in ("keep", "premultiply"))
    assert np.abs(keep.astype(int) - premultiplied).max() <= 1


# --- first contact ------------------------------------------------------------------------


def test_no_command_prints_the_help_and_exits_2():
    result = run()
    assert result.exit_code == 2
    assert result.stderr == CliRunner().invoke(cli.main, ["--help"], prog_name="convfilter").output
    assert "\\n" not in result.stderr and "Commands:" in result.stderr and "apply" in result.stderr


def test_a_directory_output_points_to_batch(photo, tmp_path):
    for name in (str(tmp_path) + "/", str(tmp_path)):
        assert_one_error(run("apply", photo, name, "-k", "blur"), "is a directory", "convfilter batch", "-d")


def test_image_data_is_not_written_to_a_terminal(photo, tmp_path, monkeypatch):
    import pty
    import subprocess
    import sys

    controller, terminal = pty.openpty()
    script = "import sys; from convfilter.cli import main; sys.argv[0] = 'convfilter'; main()"
    child = subprocess.run([sys.executable, "-c", script, "apply", str(photo), "-", "-k", "blur", "--format", "png"],
                           stdout=terminal, stderr=subprocess.PIPE, timeout=60)  # fmt: skip
    os.close(terminal)
    os.close(controller)
    assert child.returncode == 1
    lines = child.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convfilter: error: image data is not written to a terminal")


def test_a_kernel_that_brightens_gets_a_note_suggesting_normalize(photo, tmp_path):
    result = run("apply", photo, tmp_path / "o.png", "-k", "1 2 1; 2 4 2; 1 2 1")
    assert result.exit_code == 0
    notes = [line for line in result.stderr.splitlines() if line.startswith("convfilter: note:")]
    assert len(notes) == 1 and "16" in notes[0] and "--normalize" in notes[0]
    for quiet in (["-k", "1 2 1; 2 4 2; 1 2 1", "--normalize"], ["-k", "sobel-x"], ["-k", "1 2 1", "-q"]):
        assert run("apply", photo, tmp_path / "o.png", *quiet).stderr == ""


@pytest.mark.parametrize("suffix", [".jpg", ".bmp", ".ppm"])
def test_alpha_into_a_format_without_it_needs_a_background(tmp_path, suffix):
    card = rgba_card(tmp_path)
    assert_one_error(run("apply", card, tmp_path / f"o{suffix}", "-k", "identity"), "--background COLOR")
    assert not (tmp_path / f"o{suffix}").exists()


def test_background_flattens_onto_the_colour(tmp_path, rng):
    path = tmp_path / "la.png"
    grey_alpha = rng.integers(0, 256, (6, 7, 2)).astype(np.uint8)
    Image.fromarray(grey_alpha, "LA").save(path)
    card = rgba_card(tmp_path)
    for source, background, backdrop in ((card, "#ff8000", (255, 128, 0)), (path, "white", (255,))):
        out = tmp_path / f"{source.stem}.bmp"
        result = run("apply", source, out, "-k", "identity", "--background", background, "--json")
        assert result.exit_code == 0, result.output + result.stderr
        assert any("--background" in note for note in json.loads(result.stdout)["notes"])
        src = pixels(source).astype(np.float64)
        a = src[..., -1:] / 255
        expected = np.floor(src[..., :-1] * a + np.array(backdrop) * (1 - a) + 0.5).astype(np.uint8)
        got = pixels(out)
        assert np.array_equal(got.reshape(expected.shape), expected)


def test_a_bad_background_colour_is_a_usage_error(photo, tmp_path):
    assert_one_error(run("apply", photo, tmp_path / "o.jpg", "-k", "blur", "--background", "nocolour"),
                     "--background", code=2)  # fmt: skip


# --- --cval per band and as a percentage ---------------------------------------------------


KERNEL_16THS = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 3]]) / 16


@pytest.mark.parametrize(("cval", "per_band"), [("255,0,40", (255, 0, 40)), ("100%", (255, 255, 255)),
                                                 ("50%,0,10%", (127.5, 0, 25.5))])  # fmt: skip
def test_cval_per_band_and_percent_match_scipy(tmp_path, rng, cval, per_band):
    array = rng.integers(0, 256, (13, 11, 3)).astype(np.uint8)
    source = tmp_path / "rgb.png"
    Image.fromarray(array).save(source)
    out = tmp_path / "o.png"
    result = run("apply", source, out, "-k", "1 2 1; 2 4 2; 1 2 3", "--scale", "16", "--border", "constant",
                 "--cval", cval)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    for band, fill in enumerate(per_band):
        expected = ndimage.correlate(array[..., band].astype(np.float64), KERNEL_16THS, mode="constant", cval=fill)
        assert np.abs(pixels(out)[..., band] - np.clip(np.floor(expected + 0.5), 0, 255)).max() <= 1


def test_cval_percent_is_of_the_16_bit_range(tmp_path):
    source = tmp_path / "grey16.png"
    Image.fromarray(np.full((6, 6), 1000, np.uint16)).save(source)
    out = tmp_path / "o.png"
    assert run("apply", source, out, "-k", "box:3", "--border", "constant", "--cval", "100%").exit_code == 0
    corner = (4 * 1000 + 5 * 65535) / 9  # 4 of 9 taps inside the image
    assert abs(int(pixels(out)[0, 0]) - corner) <= 1


@pytest.mark.parametrize(("cval", "fragment"), [("1,2", "one per band (R,G,B)"), ("x", "not a number"),
                                                 ("120%", "0-100%"), ("nan", "finite")])  # fmt: skip
def test_bad_cvals_are_refused(photo, tmp_path, cval, fragment):
    result = run("apply", photo, tmp_path / "o.png", "-k", "blur", "--border", "constant", "--cval", cval)
    assert_one_error(result, fragment, code=1 if cval == "1,2" else 2)
    assert not (tmp_path / "o.png").exists()


def test_hints_name_only_options_the_command_has(photo, tmp_path):
    message = "use .png, .jpg, .tif, .webp, ..."
    diff_image = run("apply", photo, tmp_path / "o.png", "-k", "blur", "--diff-image", tmp_path / "d.xyz")
    assert_one_error(diff_image, message)
    assert "--format" not in diff_image.stderr
    gallery = run("gallery", photo, "-o", tmp_path / "g.xyz", "-k", "blur")
    assert_one_error(gallery, message)
    assert "--format" not in gallery.stderr
    diff = run("diff", photo, photo, "--diff-image", tmp_path / "d.xyz")
    assert_one_error(diff, message, code=2)
    assert "--format" not in diff.stderr
    assert_one_error(run("apply", photo, tmp_path / "o.xyz", "-k", "blur"), message, "--format")


# --- long work: progress ---------------------------------------------------------------------


def test_filtering_reports_progress_up_to_the_whole(tmp_path, rng):
    import threading as threads

    from convfilter import pipeline
    from convfilter.kernels import parse_kernel

    source = tmp_path / "anim.gif"
    frames = [Image.fromarray(rng.integers(0, 256, (40, 50, 3)).astype(np.uint8)).quantize(64) for _ in range(2)]
    frames[0].save(source, save_all=True, append_images=frames[1:], duration=50)
    seen: list[tuple[float, bool]] = []
    settings = options.FilterSettings(kernels=(parse_kernel("blur"), parse_kernel("sharpen")))
    pipeline.filter_file(source, tmp_path / "o.gif", settings,
                          progress=lambda f: seen.append((f, threads.current_thread() is threads.main_thread())))
    fractions = [f for f, _ in seen]
    assert fractions[-1] == pytest.approx(1.0) and all(0 <= f <= 1 for f in fractions)
    assert any(0.4 < f < 0.6 for f in fractions)  # the second frame's half comes after the first's
    assert all(on_main for _, on_main in seen)


def test_the_progress_line_shows_after_two_seconds_and_is_cleared():
    stream = io.StringIO()
    progress = cli._FilterProgress(stream)
    now = [100.0]
    progress._clock = lambda: now[0]
    progress.started = 100.0
    progress(0.3)
    assert stream.getvalue() == ""
    now[0] = 102.5
    progress(0.45)
    assert stream.getvalue() == "\rconvfilter: filtering  45% (2 s)"
    progress.close()
    assert stream.getvalue().endswith("\r")


def test_ctrl_c_stops_a_long_filter_within_a_second_and_writes_nothing(tmp_path):
    import shutil
    import signal
    import subprocess
    import sys
    import time

    executable = shutil.which("convfilter", path=os.path.dirname(sys.executable))
    source, out = tmp_path / "big.png", tmp_path / "out.png"
    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(0, 256, (2000, 3000, 3), dtype=np.uint8)).save(source, compress_level=1)
    np.save(tmp_path / "k.npy", rng.random((101, 101)))
    child = subprocess.Popen([executable, "apply", str(source), str(out), "-k", f"@{tmp_path / 'k.npy'}",
                              "--normalize", "--method", "fft"], stderr=subprocess.PIPE)  # fmt: skip
    time.sleep(2.0)  # past decoding, into the filter
    assert child.poll() is None, "the filter finished before the signal; make the work bigger"
    sent = time.monotonic()
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=30)
    assert time.monotonic() - sent < 1.0
    assert child.returncode == 130
    assert stderr.decode().strip() == "convfilter: error: interrupted"
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_the_comparison_says_which_alpha_it_assumes(tmp_path):
    card = rgba_card(tmp_path)
    for alpha, said in (("keep", "on R,G,B, alpha as in the input"), ("filter", "on every band, alpha included")):
        result = run("apply", card, tmp_path / "o.png", "-k", "blur", "--diff-pil", "--alpha", alpha, "--json")
        assert said in json.loads(result.stdout)["reference"], result.stdout


def test_a_link_to_an_open_descriptor_is_written_through_and_kept(photo, tmp_path):
    read_end, write_end = os.pipe()
    link = tmp_path / "stdout"
    link.symlink_to(f"/proc/self/fd/{write_end}")
    received: list[bytes] = []

    def drain() -> None:
        with os.fdopen(read_end, "rb") as stream:
            received.append(stream.read())

    reader = threading.Thread(target=drain)
    reader.start()
    result = run("apply", photo, link, "-k", "blur", "--format", "png")
    os.close(write_end)
    reader.join(timeout=30)
    assert result.exit_code == 0, result.output + result.stderr
    assert link.is_symlink() and os.readlink(link) == f"/proc/self/fd/{write_end}"
    assert run("apply", photo, tmp_path / "file.png", "-k", "blur").exit_code == 0
    assert received == [(tmp_path / "file.png").read_bytes()]


def test_alpha_auto_keeps_alpha_alone_for_kernels_that_change_brightness(tmp_path):
    card = rgba_card(tmp_path)
    auto, keep = tmp_path / "a.png", tmp_path / "k.png"
    run("apply", card, auto, "-k", "1 2 1")
    run("apply", card, keep, "-k", "1 2 1", "--alpha", "keep")
    assert np.array_equal(pixels(auto), pixels(keep))


def test_premultiply_with_abs_keeps_both_edges_visible(tmp_path):
    card = rgba_card(tmp_path)
    out = tmp_path / "o.png"
    assert run("apply", card, out, "-k", "sobel-x", "--abs", "--alpha", "premultiply").exit_code == 0
    alpha = pixels(out)[..., 3].astype(int)
    assert np.array_equal(alpha, alpha[:, ::-1])  # the card is symmetric left to right
    assert alpha.max() > 0


def test_a_format_that_cannot_hold_depth_or_alpha_says_both_at_once(tmp_path):
    import imagecodecs

    source = tmp_path / "rgba16.png"
    source.write_bytes(imagecodecs.png_encode(np.full((3, 4, 4), 30000, np.uint16)))
    assert_one_error(run("apply", source, tmp_path / "o.jpg", "-k", "blur"), "--depth 8", "--background")


def test_a_kernel_starting_with_a_minus_gets_a_hint(tmp_path):
    result = run("kernels", "-1 0 1")
    assert_one_error(result, "'--'", code=2)
    assert run("kernels", "--", "-1 0 1").exit_code == 0


def test_json_carries_the_brightness_note_and_stderr_stays_clean(photo, tmp_path):
    result = run("apply", photo, tmp_path / "o.png", "-k", "1 2 1", "--json")
    assert result.stderr == ""
    assert any("--normalize" in note for note in json.loads(result.stdout)["notes"])


# --- memory -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_photo_is_held_once_while_it_is_filtered(fmt, tmp_path, rng, peak_of_apply):
    """Decoded into an array, filtered in place, written from there: about one
    image's memory (Pillow keeps RGB at 4 bytes a pixel), not the two or three
    that copies between Pillow and NumPy would hold."""
    width, height = 3000, 2000
    photo = Image.open(SAMPLES / "coffee.png").convert("RGB").resize((width, height))
    noise = rng.integers(-8, 9, (height, width, 3))
    photo = Image.fromarray(np.clip(np.asarray(photo) + noise, 0, 255).astype(np.uint8))
    big, small = tmp_path / f"big.{fmt.lower()}", tmp_path / f"small.{fmt.lower()}"
    photo.save(big, format=fmt)
    photo.resize((30, 20)).save(small, format=fmt)
    image_bytes = width * height * 4
    baseline = peak_of_apply(small, tmp_path / f"small-out.{fmt.lower()}", "-k", "edge_enhance", "-q")
    peak = peak_of_apply(big, tmp_path / f"out.{fmt.lower()}", "-k", "edge_enhance", "--border", "keep", "-q",
                         "--threads", "1")
    assert peak - baseline < 1.45 * image_bytes, ((peak - baseline) >> 20, image_bytes >> 20)
    with Image.open(big) as source:
        expected = np.asarray(source.filter(ImageFilter.EDGE_ENHANCE))
    if fmt == "PNG":
        np.testing.assert_array_equal(pixels(tmp_path / "out.png"), expected)


# --- reading the input ahead ----------------------------------------------------------


@pytest.fixture
def read_aheads(monkeypatch) -> list:
    """Every ReadAhead the command starts, as it starts them."""
    from convfilter import loading

    started = []

    class Recorded(loading.ReadAhead):
        def __init__(self, path, **options):
            started.append((os.fspath(path), options))
            super().__init__(path, **options)

    monkeypatch.setattr(loading, "ReadAhead", Recorded)
    return started


def test_the_input_is_read_ahead_with_the_commands_limits(photo, tmp_path, read_aheads):
    out = tmp_path / "out.png"
    result = run("apply", photo, out, "-k", "edge_enhance", "--border", "keep", "--max-pixels", "20000",
                 "--allow-format", "PCX")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert read_aheads == [(str(photo), {"max_pixels": 20000, "formats": options.DEFAULT_FORMATS + ("PCX",)})]
    with Image.open(photo) as image:
        expected = np.asarray(image.filter(ImageFilter.EDGE_ENHANCE))
    np.testing.assert_array_equal(pixels(out), expected)


@pytest.mark.parametrize("how", ["standard input", "TIFF", "--stream"])
def test_no_read_ahead_where_the_input_may_be_streamed_or_is_a_pipe(how, photo, tmp_path, read_aheads):
    if how == "TIFF":
        source = tmp_path / "in.tif"
        Image.open(photo).save(source)
        result = run("apply", source, tmp_path / "out.tif", "-k", "blur")
    elif how == "--stream":
        source = tmp_path / "in.tif"
        Image.open(photo).save(source)
        result = run("apply", source, tmp_path / "out.tif", "-k", "blur", "--stream")
    else:
        result = run("apply", "-", tmp_path / "out.png", "-k", "blur", input=photo.read_bytes())
    assert result.exit_code == 0, result.output
    assert read_aheads == []


def test_a_bad_kernel_is_reported_though_the_input_is_missing_too(tmp_path, read_aheads):
    # The read-ahead's failure is kept for when the pixels are needed; they never are.
    result = run("apply", tmp_path / "missing.png", tmp_path / "out.png", "-k", "no_such_preset")
    assert_one_error(result, "no_such_preset")
    assert len(read_aheads) == 1


def test_an_unwritable_output_is_reported_before_a_broken_input(tmp_path, read_aheads):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    result = run("apply", broken, tmp_path / "out.xyz", "-k", "blur")
    assert_one_error(result, "xyz")
    assert len(read_aheads) == 1
    result = run("apply", broken, tmp_path / "out.png", "-k", "blur")
    assert_one_error(result, "broken.png")
    assert not (tmp_path / "out.png").exists()


def test_the_command_asks_openblas_for_one_thread_unless_told(monkeypatch, photo, tmp_path):
    # The engine runs its own threads; BLAS threads beside them would oversubscribe the cores.
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    assert run("apply", photo, tmp_path / "a.png", "-k", "blur").exit_code == 0
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    assert run("apply", photo, tmp_path / "b.png", "-k", "blur").exit_code == 0
    assert os.environ["OPENBLAS_NUM_THREADS"] == "3"
