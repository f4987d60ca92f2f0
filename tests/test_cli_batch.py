"""`convfilter batch`: inputs, names, safety rules, parallel runs, reports, interruption."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageFilter

from convfilter import cli
from convfilter.batch.run import THREADS_UP_TO_FILES

EXECUTABLE = shutil.which("convfilter", path=os.path.dirname(sys.executable)) or shutil.which("convfilter")


def run(*args, input: bytes | None = None):
    return CliRunner().invoke(cli.main, [str(a) for a in args], input=input, prog_name="convfilter")


def picture(path: Path, rng, size=(20, 14), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], len(mode))
    Image.fromarray(rng.integers(0, 256, shape).astype(np.uint8), mode).save(path)
    return path


def files(root: Path) -> dict[str, bytes]:
    if not root.exists():
        return {}
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def one_error(result, code: int, *fragments: str) -> str:
    assert result.exit_code == code, (result.exit_code, result.output, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("convfilter: error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def photos(tmp_path, rng) -> Path:
    root = tmp_path / "photos"
    picture(root / "a.png", rng)
    picture(root / "b.jpg", rng, mode="L")
    picture(root / "2024" / "c.png", rng, mode="RGBA")
    picture(root / "2024" / "may" / "d.png", rng)
    (root / "README.txt").write_text("not an image")
    (root / "2024" / "thumbs.db").write_bytes(b"\0\1")
    return root


# --- inputs ----------------------------------------------------------------------------


def test_a_directory_gives_its_images_and_counts_the_other_files(photos, tmp_path):
    out = tmp_path / "out"
    result = run("batch", photos, "-d", out, "-k", "blur")
    assert result.exit_code == 0, result.output + result.stderr
    assert sorted(files(out)) == ["a.png", "b.jpg"]
    assert "processed 2, skipped 1 (1 not an image file), failed 0" in result.output
    assert result.stderr == ""


def test_recursive_recreates_the_folders(photos, tmp_path):
    out = tmp_path / "out"
    result = run("batch", photos, "-r", "-d", out, "-k", "blur")
    assert result.exit_code == 0, result.output
    assert sorted(files(out)) == ["2024/c.png", "2024/may/d.png", "a.png", "b.jpg"]
    assert "skipped 2" in result.output


def test_quoted_glob_and_double_star_are_expanded_by_convfilter(photos, tmp_path):
    out = tmp_path / "out"
    result = run("batch", f"{photos}/**/*.png", "-d", out, "-k", "smooth", "--border", "keep")
    assert result.exit_code == 0, result.output
    assert sorted(files(out)) == ["a.png", "c.png", "d.png"]
    with Image.open(photos / "2024" / "may" / "d.png") as source, Image.open(out / "d.png") as got:
        assert np.array_equal(np.asarray(got), np.asarray(source.filter(ImageFilter.SMOOTH)))
    nested = run("batch", f"{photos}/*/**/*.png", "-r", "-d", tmp_path / "nested", "-k", "blur")
    assert sorted(files(tmp_path / "nested")) == ["2024/c.png", "2024/may/d.png"], nested.output


def test_a_pattern_matching_nothing_is_a_failure_not_a_crash(photos, tmp_path):
    result = run("batch", f"{photos}/*.gif", photos / "a.png", "-d", tmp_path / "out", "-k", "blur")
    assert result.exit_code == 1
    assert sorted(files(tmp_path / "out")) == ["a.png"]
    assert f"{photos}/*.gif: no files match this pattern" in result.output


def test_from_file_with_nul_separators(photos, tmp_path):
    odd = picture(photos / "new\nline.png", np.random.default_rng(1))
    listing = tmp_path / "list"
    listing.write_bytes(b"\0".join(os.fsencode(p) for p in (photos / "a.png", odd)) + b"\0")
    out = tmp_path / "out"
    result = run("batch", "--from-file", listing, "-0", "-d", out, "-k", "blur")
    assert result.exit_code == 0, result.output + result.stderr
    # Control characters never reach an output name.
    assert sorted(files(out)) == ["a.png", "new_line.png"]


def test_from_file_on_stdin_one_a_line_together_with_arguments(photos, tmp_path):
    out = tmp_path / "out"
    stdin = f"{photos / 'b.jpg'}\n{photos / '2024' / 'c.png'}\n".encode()
    result = run("batch", photos / "a.png", "--from-file", "-", "-d", out, "-k", "blur", input=stdin)
    assert result.exit_code == 0, result.output + result.stderr
    assert sorted(files(out)) == ["a.png", "b.jpg", "c.png"]


def test_an_explicitly_named_non_image_is_an_error_for_that_file(photos, tmp_path):
    out = tmp_path / "out"
    result = run("batch", photos / "a.png", photos / "README.txt", "-d", out, "-k", "blur", "--format", "png")
    assert result.exit_code == 1
    assert sorted(files(out)) == ["a.png"]
    assert f"{photos / 'README.txt'}: " in result.output and "not an image" in result.output


def test_no_inputs_is_a_usage_error(tmp_path):
    one_error(run("batch", "-d", tmp_path / "out", "-k", "blur"), 2, "give at least one input")


def test_a_missing_list_file_is_an_error(tmp_path):
    one_error(run("batch", "--from-file", tmp_path / "nope", "-d", tmp_path / "out", "-k", "blur"), 1,
              "--from-file")  # fmt: skip


# --- names -----------------------------------------------------------------------------


def test_name_template_with_kernel_index_and_format(photos, tmp_path):
    out = tmp_path / "out"
    result = run("batch", photos / "a.png", photos / "b.jpg", "-d", out, "-k", "gaussian:1", "-k", "sharpen",
                 "--name", "{index:03d}-{stem}-{kernel}{suffix}", "--format", "webp")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(files(out)) == ["001-a-gaussian-1+sharpen.webp", "002-b-gaussian-1+sharpen.webp"]
    with Image.open(out / "001-a-gaussian-1+sharpen.webp") as im:
        assert im.format == "WEBP"


def test_name_may_make_sub_folders(photos, tmp_path):
    out = tmp_path / "out"
    result = run("batch", photos, "-d", out, "-k", "emboss", "--name", "{kernel}/{name}")
    assert result.exit_code == 0
    assert sorted(files(out)) == ["emboss/a.png", "emboss/b.jpg"]


@pytest.mark.parametrize(
    "template", ["../{stem}{suffix}", "{stem}/../../{name}", "/tmp/{name}", "..", "{stem}/"]
)
def test_templates_cannot_leave_the_output_directory(photos, tmp_path, template):
    result = run("batch", photos, "-d", tmp_path / "out", "-k", "blur", "--name", template)
    one_error(result, 2, "--name")
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]


def test_unknown_placeholder_is_a_usage_error(photos, tmp_path):
    one_error(run("batch", photos, "-d", tmp_path / "out", "-k", "blur", "--name", "{width}{suffix}"), 2,
              "unknown placeholder {width}")  # fmt: skip


def test_placeholder_values_are_sanitised(tmp_path, rng):
    odd = picture(tmp_path / "in" / "back\\slash.png", rng)
    out = tmp_path / "out"
    result = run("batch", odd, "-d", out, "-k", "blur", "--name", "x-{stem}{suffix}")
    assert result.exit_code == 0, result.output
    assert sorted(files(out)) == ["x-back_slash.png"]


def test_a_symlink_inside_out_dir_cannot_take_outputs_elsewhere(photos, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (out / "2024").symlink_to(outside)
    one_error(run("batch", photos, "-r", "-d", out, "-k", "blur"), 1, "outside")
    assert files(outside) == {} and files(out) == {}


# --- safety rules: nothing is written when refused ------------------------------------------


def test_two_inputs_with_one_output_are_refused_and_listed(photos, tmp_path, rng):
    picture(tmp_path / "more" / "a.png", rng)
    out = tmp_path / "out"
    line = one_error(run("batch", photos, tmp_path / "more", "-d", out, "-k", "blur"), 1, "more than one input")
    assert str(photos / "a.png") in line and str(tmp_path / "more" / "a.png") in line
    assert not out.exists()


def test_refusing_to_overwrite_an_input_unless_in_place(photos, rng):
    before = files(photos)
    one_error(run("batch", photos, "-d", photos, "-k", "blur"), 1, "would replace its input", "--in-place")
    assert files(photos) == before
    result = run("batch", photos, "-d", photos, "-k", "blur", "--in-place")
    assert result.exit_code == 0, result.output
    after = files(photos)
    assert after["a.png"] != before["a.png"] and after["README.txt"] == before["README.txt"]
    assert sorted(after) == sorted(before)


def test_existing_outputs_are_refused_and_listed(photos, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.jpg").write_bytes(b"keep me")
    line = one_error(run("batch", photos, "-d", out, "-k", "blur"), 1, "1 output exists already", "--overwrite",
                     "--skip-existing")  # fmt: skip
    assert str(out / "b.jpg") in line
    assert files(out) == {"b.jpg": b"keep me"}


def test_skip_existing_leaves_them_and_counts_them(photos, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.jpg").write_bytes(b"keep me")
    result = run("batch", photos, "-d", out, "-k", "blur", "--skip-existing", "--json")
    assert result.exit_code == 0, result.output
    assert files(out)["b.jpg"] == b"keep me" and "a.png" in files(out)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    skipped = [(line["input"], line["reason"]) for line in lines if line.get("status") == "skipped"]
    assert sorted(skipped) == [(str(photos / "README.txt"), "not an image file"),
                               (str(photos / "b.jpg"), "output exists")]  # fmt: skip
    assert lines[-1]["skipped"] == 2  # README.txt and b.jpg


def test_overwrite_replaces_them(photos, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.jpg").write_bytes(b"old")
    result = run("batch", photos, "-d", out, "-k", "blur", "--overwrite")
    assert result.exit_code == 0
    with Image.open(out / "b.jpg") as im:
        assert im.format == "JPEG"


def test_overwrite_and_skip_existing_together_is_a_usage_error(photos, tmp_path):
    one_error(run("batch", photos, "-d", tmp_path / "o", "-k", "blur", "--overwrite", "--skip-existing"), 2,
              "not both")  # fmt: skip


def test_bad_kernel_fails_before_anything_is_read(photos, tmp_path):
    one_error(run("batch", photos, "-d", tmp_path / "out", "-k", "blurr"), 1, "did you mean")
    assert not (tmp_path / "out").exists()


# --- failures, jobs, reports --------------------------------------------------------------


def test_one_corrupt_file_among_good_ones(photos, tmp_path):
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    out = tmp_path / "out"
    result = run("batch", photos, "-r", "-d", out, "-k", "blur", "-j", "2")
    assert result.exit_code == 1
    assert sorted(files(out)) == ["2024/c.png", "2024/may/d.png", "a.png", "b.jpg"]
    assert "processed 4, skipped 2 (2 not an image file), failed 1" in result.output
    failures = result.stderr.splitlines()
    assert len(failures) == 1 and failures[0].startswith(f"convfilter: error: {photos / 'broken.png'}: ")
    assert "broken.png" not in result.stdout
    assert not any(p.name.endswith(".part") for p in out.rglob("*"))


def test_fail_fast(photos, tmp_path):
    (photos / "0-broken.png").write_bytes(b"junk")
    result = run("batch", photos, "-d", tmp_path / "out", "-k", "blur", "-j", "1", "--fail-fast")
    assert result.exit_code == 1
    assert "stopped after the first failure" in result.output and "processed 0" in result.output
    assert files(tmp_path / "out") == {}


def test_jobs_1_and_jobs_2_write_byte_identical_outputs(tmp_path, rng):
    for i in range(10):
        picture(tmp_path / "in" / f"p{i}.png", rng, size=(37, 29), mode=("RGB", "L", "RGBA")[i % 3])
    picture(tmp_path / "in" / "q.jpg", rng, size=(40, 40))
    trees = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"out{jobs}"
        result = run("batch", tmp_path / "in", "-d", out, "-k", "gaussian:1.5", "-k", "edge_enhance",
                     "--border", "reflect", "--jobs", jobs)  # fmt: skip
        assert result.exit_code == 0, result.output
        trees[jobs] = files(out)
    assert len(trees["1"]) == 11 and trees["1"] == trees["2"]


def test_json_lines(photos, tmp_path):
    (photos / "broken.png").write_bytes(b"junk")
    result = run("batch", photos, "-d", tmp_path / "out", "-k", "blur", "--json", "-j", "2")
    assert result.exit_code == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    per_file, summary = lines[:-1], lines[-1]
    assert all({"input", "output", "status", "error", "milliseconds"} <= set(line) for line in per_file)
    by_status = {}
    for line in per_file:
        by_status.setdefault(line["status"], []).append(Path(line["input"]).name)
    assert sorted(by_status["ok"]) == ["a.png", "b.jpg"]
    assert by_status["failed"] == ["broken.png"] and by_status["skipped"] == ["README.txt"]
    ok = [line for line in per_file if line["status"] == "ok"]
    assert all(line["error"] is None and line["milliseconds"] > 0 for line in ok)
    assert summary["type"] == "summary"
    assert (summary["processed"], summary["skipped"], summary["failed"]) == (2, 1, 1)
    assert summary["failures"][0]["input"] == str(photos / "broken.png")
    assert summary["images_per_second"] > 0


def test_progress_bar_only_when_asked_or_on_a_terminal(photos, tmp_path):
    quiet = run("batch", photos, "-d", tmp_path / "a", "-k", "blur")
    assert quiet.stderr == ""
    shown = run("batch", photos, "-d", tmp_path / "b", "-k", "blur", "--progress")
    assert "2/2 100%" in shown.stderr and "img/s" in shown.stderr
    assert "processed 2" in shown.output
    hidden = run("batch", photos, "-d", tmp_path / "c", "-k", "blur", "--no-progress")
    assert hidden.stderr == ""


def test_progress_reports_failures_as_they_happen(photos, tmp_path):
    (photos / "broken.png").write_bytes(b"junk")
    result = run("batch", photos, "-d", tmp_path / "out", "-k", "blur", "--progress")
    assert f"convfilter: error: {photos / 'broken.png'}: " in result.stderr


def test_filter_and_output_options_reach_every_file(photos, tmp_path):
    out = tmp_path / "out"
    result = run("batch", photos / "a.png", "-d", out, "-k", "sobel-x", "--abs", "--channels", "R",
                 "--border", "constant", "--cval", "9", "--format", "tiff", "--strip-metadata")  # fmt: skip
    assert result.exit_code == 0, result.output
    with Image.open(photos / "a.png") as source, Image.open(out / "a.tif") as got:
        a, b = np.asarray(source), np.asarray(got)
    assert np.array_equal(a[..., 1:], b[..., 1:]) and not np.array_equal(a[..., 0], b[..., 0])


def test_scheduler_without_dask_says_what_to_install(photos, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    one_error(run("batch", photos, "-d", tmp_path / "out", "-k", "blur", "--scheduler", "local"), 1,
              "pip install 'convfilter[dask]'")  # fmt: skip
    assert not (tmp_path / "out").exists()


# --- interruption of the installed executable ------------------------------------------------


def make_slow_batch(tmp_path: Path, count: int = 120) -> Path:
    rng = np.random.default_rng(7)
    base = rng.integers(0, 256, (160, 200, 3)).astype(np.uint8)
    root = tmp_path / "in"
    root.mkdir()
    for i in range(count):
        Image.fromarray(np.roll(base, i, axis=1)).save(root / f"p{i:03d}.png", compress_level=0)
    return root


@pytest.mark.skipif(EXECUTABLE is None, reason="convfilter is not installed (pip install -e .)")
@pytest.mark.parametrize(
    "signum, whole_group, code",
    [(signal.SIGINT, True, 130), (signal.SIGINT, False, 130), (signal.SIGTERM, False, 143)],
    ids=["ctrl-c-to-the-process-group", "sigint-to-convfilter", "sigterm-to-convfilter"],
)
@pytest.mark.parametrize("count", [THREADS_UP_TO_FILES + 20, 60], ids=["processes", "threads"])
def test_a_signal_mid_run_stops_cleanly(tmp_path, signum, whole_group, code, count):
    # A long batch runs in worker processes, a shorter one on threads.
    root = make_slow_batch(tmp_path, count)
    on_threads = count <= THREADS_UP_TO_FILES
    out = tmp_path / "out"
    process = subprocess.Popen(
        [EXECUTABLE, "batch", str(root), "-d", str(out), "-k", "box:21", "--method", "direct",
         "--repeat", "2", "-j", "2", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (out.exists() and any(p.suffix == ".png" for p in out.iterdir())):
        assert process.poll() is None and time.monotonic() < deadline, "the batch never got going"
        time.sleep(0.05)
    if on_threads and shutil.which("pgrep"):  # threads: no worker process
        assert subprocess.run(["pgrep", "-s", str(process.pid)], capture_output=True, text=True).stdout.split() == [
            str(process.pid)]  # fmt: skip
    if whole_group:  # what a terminal's Ctrl-C does: the workers get SIGINT too
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    lines = [json.loads(line) for line in stdout.decode().splitlines()]
    summary = lines[-1]
    assert summary["interrupted"] == signal.Signals(signum).name
    assert 0 < summary["processed"] < count and summary["unfinished"] == count - summary["processed"]
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(Path(line["output"]).name for line in lines[:-1] if line["status"] == "ok")
    assert not any(name.endswith(".part") for name in written)
    for name in written:
        with Image.open(out / name) as im:
            im.load()  # complete files only
    assert b"Traceback" not in stderr
    assert_session_ends(process.pid)


def assert_session_ends(session: int, timeout: float = 10.0) -> None:
    """No process of the batch's session outlives it for long (multiprocessing's
    forkserver and resource tracker leave a moment after their parent)."""
    if shutil.which("pgrep") is None:
        return
    deadline = time.monotonic() + timeout
    while subprocess.run(["pgrep", "-s", str(session)], capture_output=True).stdout:
        assert time.monotonic() < deadline, "processes of the batch were left running"
        time.sleep(0.1)


@pytest.mark.skipif(EXECUTABLE is None, reason="convfilter is not installed (pip install -e .)")
def test_interrupted_summary_in_words(tmp_path):
    root = make_slow_batch(tmp_path, count=60)
    out = tmp_path / "out"
    process = subprocess.Popen([EXECUTABLE, "batch", str(root), "-d", str(out), "-k", "box:21",
                                "--method", "direct", "--repeat", "2", "-j", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 60
    while not (out.exists() and any(p.suffix == ".png" for p in out.iterdir())):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    text = stdout.decode()
    assert "interrupted by SIGINT;" in text and "not processed" in text and "processed " in text
    assert not any(p.name.endswith(".part") for p in out.iterdir())


def test_a_folder_named_like_one_output_fails_only_that_file(tmp_path, rng):
    for name in ("a", "b", "c"):
        picture(tmp_path / "in" / f"{name}.png", rng)
    (tmp_path / "out" / "a.png").mkdir(parents=True)
    result = run("batch", tmp_path / "in", "-d", tmp_path / "out", "-k", "blur", "--json", "--overwrite")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    status = {Path(line["input"]).name: line["status"] for line in lines if line["type"] == "file"}
    assert status == {"a.png": "failed", "b.png": "ok", "c.png": "ok"}, result.output
    assert (tmp_path / "out" / "b.png").is_file() and (tmp_path / "out" / "a.png").is_dir()


def sixteen_bit_png(path: Path, rng) -> np.ndarray:
    import imagecodecs

    samples = rng.integers(0, 65536, (6, 9, 3)).astype(np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(imagecodecs.png_encode(samples))
    return samples


def test_in_place_keeps_16_bit_colour(tmp_path, rng):
    import imagecodecs

    samples = sixteen_bit_png(tmp_path / "photos" / "deep.png", rng)
    result = run("batch", tmp_path / "photos", "-d", tmp_path / "photos", "--in-place", "-k", "identity")
    assert result.exit_code == 0, result.output + result.stderr
    np.testing.assert_array_equal(imagecodecs.png_decode((tmp_path / "photos" / "deep.png").read_bytes()), samples)


def test_notes_reach_the_text_summary_and_the_json_lines(tmp_path, rng):
    sixteen_bit_png(tmp_path / "in" / "deep.png", rng)
    picture(tmp_path / "in" / "plain.png", rng)
    args = ["batch", tmp_path / "in", "-k", "identity", "--format", "jpeg", "--depth", "8"]
    text = run(*args, "-d", tmp_path / "text")
    assert text.exit_code == 0, text.output + text.stderr
    noted = [line for line in text.output.splitlines() if "--depth 8" in line]
    assert len(noted) == 1 and "deep.png" in noted[0], text.output
    lines = [json.loads(line) for line in run(*args, "-d", tmp_path / "json", "--json").stdout.splitlines()]
    notes = {Path(line["input"]).name: line["notes"] for line in lines if line["type"] == "file"}
    assert any("--depth 8" in note for note in notes["deep.png"]) and notes["plain.png"] == []
    assert lines[-1]["noted"] == 1


def test_16_bit_colour_into_jpeg_without_depth_fails_that_file(tmp_path, rng):
    sixteen_bit_png(tmp_path / "in" / "deep.png", rng)
    result = run("batch", tmp_path / "in", "-d", tmp_path / "out", "-k", "identity", "--format", "jpeg", "--json")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.exit_code == 1
    assert lines[0]["status"] == "failed" and "--depth 8" in lines[0]["error"]
    assert not (tmp_path / "out" / "deep.jpg").exists()


def test_quiet_leaves_only_the_error_lines_on_stderr(photos, tmp_path):
    (photos / "broken.png").write_bytes(b"junk")
    for extra in ([], ["--json"]):
        result = run("batch", photos, "-d", tmp_path / f"out{len(extra)}", "-k", "blur", "-q", *extra)
        assert result.exit_code == 1 and result.stdout == ""
        assert result.stderr.splitlines() == [f"convfilter: error: {photos / 'broken.png'}: not an image, "
                                              "or not in an allowed format (PNG, JPEG, GIF, BMP, TIFF, WEBP, "
                                              "PPM, TGA, ICO)"]


def test_json_keeps_stdout_machine_readable_and_errors_on_stderr(photos, tmp_path):
    (photos / "broken.png").write_bytes(b"junk")
    result = run("batch", photos, "-d", tmp_path / "out", "-k", "blur", "--json")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["type"] for line in lines].count("summary") == 1
    assert result.stderr.startswith(f"convfilter: error: {photos / 'broken.png'}: ")


def test_dry_run_lists_the_plan_and_writes_nothing(photos, tmp_path):
    out = tmp_path / "out"
    result = run("batch", photos, "-r", "-d", out, "-k", "blur", "--dry-run")
    assert result.exit_code == 0, result.output + result.stderr
    assert f"{photos / 'a.png'} -> {out / 'a.png'}" in result.output
    assert f"{photos / '2024' / 'c.png'} -> {out / '2024' / 'c.png'}" in result.output
    assert "skipped (not an image file)" in result.output and "nothing written" in result.output
    assert not out.exists()
    lines = [json.loads(line) for line in run("batch", photos, "-r", "-d", out, "-k", "blur", "--dry-run",
                                              "--json").output.splitlines()]
    assert sorted(line["status"] for line in lines) == ["planned"] * 4 + ["skipped"] * 2
    assert not out.exists()


def test_a_name_without_a_suffix_is_refused_before_the_batch(photos, tmp_path):
    result = run("batch", photos, "-d", tmp_path / "out", "-k", "blur", "--name", "{stem}")
    one_error(result, 2, "--name", "{suffix}")
    assert not (tmp_path / "out").exists()
    assert run("batch", photos, "-d", tmp_path / "out2", "-k", "blur", "--name", "{stem}",
               "--format", "png").exit_code == 0


def test_overwrite_with_skip_existing_is_a_batch_error_in_the_library(photos, tmp_path):
    from convfilter import batch

    with pytest.raises(batch.BatchError) as raised:
        batch.plan_batch([str(photos)], tmp_path / "out", kernel_specs=["blur"], overwrite=True,
                         skip_existing=True)  # fmt: skip
    assert not isinstance(raised.value, batch.TemplateError)


def test_a_malformed_scheduler_address_is_a_usage_error_with_or_without_dask(photos, tmp_path, monkeypatch):
    from convfilter import batch

    def no_dask(address="local"):
        raise batch.BatchError("the Dask extra is not installed")

    monkeypatch.setattr(batch, "require_dask", no_dask)
    one_error(run("batch", photos, "-d", tmp_path / "out", "-k", "blur", "--scheduler", "foo"), 2, "--scheduler")
    one_error(run("batch", photos, "-d", tmp_path / "out", "-k", "blur", "--scheduler", "local"), 1, "Dask")
