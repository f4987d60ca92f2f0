"""convfilter.batch: input expansion, output names, pre-flight checks, workers, interruption, summary."""

from __future__ import annotations

import io
import multiprocessing
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from convfilter import batch
from convfilter.batch.run import _settle, _sweep_temporary_files
from convfilter.kernels import parse_kernel
from convfilter.options import FilterSettings, OutputSettings


def settings(*specs: str, **options) -> FilterSettings:
    return FilterSettings(kernels=tuple(parse_kernel(s) for s in specs), **options)


def picture(path: Path, rng: np.random.Generator, size=(24, 16), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    bands = len(mode) if mode != "L" else 1
    shape = (size[1], size[0], bands) if bands > 1 else (size[1], size[0])
    Image.fromarray(rng.integers(0, 256, shape).astype(np.uint8), mode).save(path)
    return path


def names(tasks) -> list[str]:
    return [os.path.relpath(t.output, t.output.split(os.sep)[0]) for t in tasks]


def temporary_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".part")]


@pytest.fixture
def tree(tmp_path: Path, rng) -> Path:
    """photos/ with images at two depths, a text file, a hidden image, a nested folder."""
    root = tmp_path / "photos"
    picture(root / "a.png", rng)
    picture(root / "b.JPG", rng)
    picture(root / "sub" / "c.png", rng)
    picture(root / "sub" / "deeper" / "d.tif", rng)
    picture(root / ".hidden.png", rng)
    (root / "notes.txt").write_text("not an image")
    (root / "sub" / "data.csv").write_text("1,2")
    return root


# --- templates and names --------------------------------------------------------------


def test_default_template_renders_stem_and_suffix():
    assert batch.NameTemplate("{stem}{suffix}").render(
        stem="cat", suffix=".png", name="cat.png", kernel="blur", index=3
    ) == "cat.png"


def test_every_placeholder_and_an_index_format():
    template = batch.NameTemplate("{index:04d}_{kernel}/{name}-{stem}{suffix}")
    assert template.render(stem="s", suffix=".webp", name="s.jpg", kernel="box-3", index=12) == (
        "0012_box-3/s.jpg-s.webp"
    )


@pytest.mark.parametrize("text", ["{size}", "{stem.__class__}", "{0}", "{}", "{stem[0]}"])
def test_unknown_placeholders_are_template_errors(text):
    with pytest.raises(batch.TemplateError, match="unknown placeholder"):
        batch.NameTemplate(text)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("../{stem}{suffix}", "'..'"),
        ("{stem}/../../x{suffix}", "'..'"),
        ("/tmp/{stem}{suffix}", "absolute"),
        ("{stem}{suffix}/", "ending in a separator"),
        ("{stem", "bad --name template"),
        ("{stem!r}", "takes no '!'"),
        ("", "empty"),
    ],
)
def test_templates_that_could_escape_or_are_malformed_are_refused(text, fragment):
    with pytest.raises(batch.TemplateError, match=fragment):
        batch.NameTemplate(text)


@pytest.mark.parametrize("text", ["{stem:d}", "{index:q}"])
def test_a_bad_format_spec_is_refused_before_any_file_is_read(text):
    with pytest.raises(batch.TemplateError, match="bad format"):
        batch.NameTemplate(text)


@pytest.mark.parametrize("value", ["a/b", "a\\b", "..", ".", "x\x00y", "new\nline"])
def test_placeholder_values_never_act_as_paths(value):
    rendered = batch.NameTemplate("{stem}").render(stem=value, suffix="", name="", kernel="", index=1)
    assert "/" not in rendered and "\\" not in rendered and rendered not in (".", "..")
    assert "\x00" not in rendered and "\n" not in rendered


def test_kernel_label_is_filesystem_safe():
    assert batch.kernel_label(["box:5"]) == "box-5"
    assert batch.kernel_label(["Gaussian:1.5,9", "sharpen"]) == "gaussian-1.5-9+sharpen"
    assert batch.kernel_label(["@kernels/edge.npy"]) == "edge"
    matrix = batch.kernel_label(["0 -1 0; -1 5 -1; 0 -1 0"])
    assert matrix.startswith("matrix-") and len(matrix) == len("matrix-") + 8
    assert batch.kernel_label(["0 -1 0; -1 5 -1; 0 -1 0"]) != batch.kernel_label(["1 2 1"])
    for label in (matrix, batch.kernel_label(["@../../etc/passwd"]), batch.kernel_label(["[[1,2],[3,4]]"])):
        assert "/" not in label and not label.startswith(".")


def test_format_suffix_follows_the_format_and_keeps_a_fitting_input_suffix():
    assert batch.format_suffix("jpeg") == ".jpg"
    assert batch.format_suffix("JPEG", ".jpeg") == ".jpeg"
    assert batch.format_suffix("webp", ".png") == ".webp"
    assert batch.format_suffix("tiff") == ".tif"


def test_image_extensions_follow_the_allowed_formats():
    default = batch.image_extensions()
    assert {".png", ".jpg", ".jpeg", ".tif", ".webp", ".gif"} <= default
    assert ".eps" not in default and ".txt" not in default
    assert ".eps" in batch.image_extensions(("PNG", "EPS"))


def test_the_default_extensions_load_only_their_own_plugins():
    """In a fresh Python: the same extensions as Pillow's full registry gives,
    without loading every plugin (some 35 ms of every batch's start)."""
    import subprocess
    import sys

    script = (
        "import sys; from PIL import Image; from convfilter import batch, images\n"
        "found = batch.image_extensions()\n"
        "print(sorted(m for m in sys.modules if m.startswith('PIL.') and m.endswith('ImagePlugin')))\n"
        "Image.init()\n"
        "print(found == {e for e, f in Image.registered_extensions().items() if f in images.DEFAULT_FORMATS})\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded, same = done.stdout.splitlines()
    assert same == "True"
    assert "PIL.PdfImagePlugin" not in loaded and "PIL.TiffImagePlugin" in loaded, loaded


# --- path lists ------------------------------------------------------------------------


def test_nul_separated_list_keeps_newlines_and_spaces_in_names():
    data = b"a b.png\0line\nbreak.png\0\0last.png"
    assert list(batch.read_path_list(io.BytesIO(data), null=True)) == [
        "a b.png", "line\nbreak.png", "last.png",
    ]  # fmt: skip


@pytest.mark.parametrize("chunk", [1, 3, 7, 1 << 16])
def test_newline_list_across_chunk_boundaries(chunk):
    data = b"one.png\r\ntwo.png\n\nthree.png\n"
    assert list(batch.read_path_list(io.BytesIO(data), chunk=chunk)) == ["one.png", "two.png", "three.png"]


def test_list_entries_that_are_not_utf8_survive_as_file_names(tmp_path, rng):
    raw = os.fsencode(str(tmp_path)) + b"/caf\xe9.png"
    picture(Path(os.fsdecode(raw)), rng)
    (path,) = batch.read_path_list(io.BytesIO(raw + b"\n"))
    assert os.path.exists(path)


# --- expansion -------------------------------------------------------------------------


def test_directory_without_recursion_takes_its_own_images(tree, tmp_path):
    plan = batch.plan_batch([str(tree)], tmp_path / "out")
    assert sorted(Path(t.input).name for t in plan.tasks) == ["a.png", "b.JPG"]
    assert [Path(o.input).name for o in plan.skipped] == ["notes.txt"]
    assert all(o.reason == "not an image file" for o in plan.skipped)


def test_recursive_walk_recreates_sub_folders(tree, tmp_path):
    out = tmp_path / "out"
    plan = batch.plan_batch([str(tree)], out, recursive=True)
    outputs = sorted(os.path.relpath(t.output, out) for t in plan.tasks)
    assert outputs == ["a.png", "b.JPG", os.path.join("sub", "c.png"), os.path.join("sub", "deeper", "d.tif")]
    assert sorted(Path(o.input).name for o in plan.skipped) == ["data.csv", "notes.txt"]


def test_hidden_files_are_left_out_of_walks(tree, tmp_path):
    plan = batch.plan_batch([str(tree)], tmp_path / "out", recursive=True)
    assert not any(".hidden" in t.input for t in plan.tasks)
    assert not any(".hidden" in o.input for o in plan.skipped)


def test_links_to_folders_are_not_walked_and_special_files_are_skipped(tree, tmp_path):
    (tree / "sub" / "loop").symlink_to(tree, target_is_directory=True)
    os.mkfifo(tree / "pipe.png")
    plan = batch.plan_batch([str(tree)], tmp_path / "out", recursive=True)
    assert len(plan.tasks) == 4
    assert [(Path(o.input).name, o.reason) for o in plan.skipped if o.reason != "not an image file"] == [
        ("pipe.png", "not a regular file"),
    ]  # fmt: skip


def test_glob_patterns_with_double_star(tree, tmp_path):
    out = tmp_path / "out"
    flat = batch.plan_batch([str(tree / "**" / "*.png")], out)
    assert sorted(Path(t.input).name for t in flat.tasks) == ["a.png", "c.png"]
    assert all(os.path.dirname(t.output) == str(out) for t in flat.tasks)
    nested = batch.plan_batch([str(tree / "**" / "*.png")], out, recursive=True)
    assert sorted(os.path.relpath(t.output, out) for t in nested.tasks) == [
        "a.png", os.path.join("sub", "c.png"),
    ]  # fmt: skip


def test_glob_matches_that_are_not_images_are_skipped_and_folders_walked(tree, tmp_path):
    plan = batch.plan_batch([str(tree / "*")], tmp_path / "out")
    # "sub" matches too and is walked like a named folder (its own images only).
    assert sorted(Path(t.input).name for t in plan.tasks) == ["a.png", "b.JPG", "c.png"]
    assert sorted(Path(o.input).name for o in plan.skipped) == ["data.csv", "notes.txt"]
    assert plan.failed == []


def test_a_named_file_is_tried_whatever_its_extension(tree, tmp_path):
    plan = batch.plan_batch([str(tree / "notes.txt")], tmp_path / "out", fmt="png")
    assert [Path(t.input).name for t in plan.tasks] == ["notes.txt"]
    summary = batch.run_batch(plan, settings("blur"))
    assert summary.processed == 0
    assert "not an image" in summary.failed[0].error


def test_missing_files_and_empty_patterns_fail_without_stopping_the_plan(tree, tmp_path):
    plan = batch.plan_batch([str(tree / "nope.png"), str(tree / "*.gif"), str(tree / "a.png")], tmp_path / "out")
    assert [Path(t.input).name for t in plan.tasks] == ["a.png"]
    assert {Path(o.input).name: o.error for o in plan.failed} == {
        "nope.png": "no such file or directory",
        "*.gif": "no files match this pattern",
    }


def test_a_file_named_twice_is_processed_once(tree, tmp_path, monkeypatch):
    monkeypatch.chdir(tree)
    plan = batch.plan_batch(["a.png", "./a.png", str(tree / "a.png"), "*.png"], tmp_path / "out")
    assert [t.input for t in plan.tasks] == ["a.png"]


def test_the_output_directory_is_not_walked(tree, tmp_path, rng):
    picture(tree / "out" / "old.png", rng)
    plan = batch.plan_batch([str(tree)], tree / "out", recursive=True)
    assert not any("old.png" in t.input for t in plan.tasks)


def test_a_pattern_matching_the_output_directory_does_not_walk_it(tree, rng):
    picture(tree / "out" / "old.png", rng)
    plan = batch.plan_batch([str(tree / "*")], tree / "out")
    assert "old.png" not in {Path(t.input).name for t in plan.tasks}


def test_path_list_entries_are_literal_and_named(tree, tmp_path):
    star = tree / "*.png"
    plan = batch.plan_batch([], tmp_path / "out", path_list=[str(tree / "a.png"), str(star)])
    assert [Path(t.input).name for t in plan.tasks] == ["a.png"]
    assert [Path(o.input).name for o in plan.failed] == ["*.png"]


def test_index_counts_inputs_in_order_from_one(tree, tmp_path):
    plan = batch.plan_batch([str(tree / "a.png"), str(tree / "b.JPG")], tmp_path / "out",
                            template="{index:02d}{suffix}")  # fmt: skip
    assert [(t.index, Path(t.output).name) for t in plan.tasks] == [(1, "01.png"), (2, "02.JPG")]


def test_format_changes_the_suffix(tree, tmp_path):
    plan = batch.plan_batch([str(tree)], tmp_path / "out", fmt="webp")
    assert sorted(Path(t.output).name for t in plan.tasks) == ["a.webp", "b.webp"]


def test_a_template_giving_no_image_extension_is_refused(tree, tmp_path):
    with pytest.raises(batch.TemplateError, match="no image extension"):
        batch.plan_batch([str(tree / "a.png")], tmp_path / "out", template="{stem}.xyz")
    assert not (tmp_path / "out").exists()


def test_an_input_suffix_pillow_cannot_write_fails_that_file(tmp_path, rng):
    picture(tmp_path / "in" / "shot.png", rng)
    (tmp_path / "in" / "shot.png").rename(tmp_path / "in" / "shot.xyz")
    plan = batch.plan_batch([str(tmp_path / "in" / "shot.xyz")], tmp_path / "out")
    assert plan.tasks == []
    assert "unknown output extension" in plan.failed[0].error


# --- pre-flight checks -----------------------------------------------------------------


def test_two_inputs_writing_one_output_are_refused_with_both_named(tree, tmp_path, rng):
    picture(tmp_path / "other" / "a.png", rng)
    with pytest.raises(batch.PlanError) as info:
        batch.plan_batch([str(tree), str(tmp_path / "other")], tmp_path / "out")
    message = str(info.value)
    assert "more than one input" in message
    assert str(tree / "a.png") in message and str(tmp_path / "other" / "a.png") in message


def test_a_constant_name_collides_and_the_listing_is_short(tmp_path, rng):
    for i in range(30):
        picture(tmp_path / "in" / f"p{i:02d}.png", rng, size=(2, 2))
    with pytest.raises(batch.PlanError, match="p04.png and 25 more$"):
        batch.plan_batch([str(tmp_path / "in")], tmp_path / "out", template="same.png")


def test_an_output_replacing_its_input_needs_in_place(tree):
    with pytest.raises(batch.PlanError, match="would replace its input"):
        batch.plan_batch([str(tree)], tree)
    plan = batch.plan_batch([str(tree)], tree, in_place=True)
    assert sorted(Path(t.output).name for t in plan.tasks) == ["a.png", "b.JPG"]


def test_an_output_replacing_another_input_is_refused_even_in_place(tmp_path, rng):
    picture(tmp_path / "x.png", rng)
    picture(tmp_path / "x-blur.png", rng)
    with pytest.raises(batch.PlanError, match="would replace input"):
        batch.plan_batch([str(tmp_path / "x.png"), str(tmp_path / "x-blur.png")], tmp_path,
                         template="{stem}-blur{suffix}", in_place=True)  # fmt: skip


def test_existing_outputs_are_listed_unless_overwrite_or_skip(tree, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"old")
    with pytest.raises(batch.PlanError, match="1 output exists already") as info:
        batch.plan_batch([str(tree)], out)
    assert str(out / "a.png") in str(info.value)
    assert len(batch.plan_batch([str(tree)], out, overwrite=True).tasks) == 2
    plan = batch.plan_batch([str(tree)], out, skip_existing=True)
    assert [Path(t.input).name for t in plan.tasks] == ["b.JPG"]
    assert [(Path(o.input).name, o.reason) for o in plan.skipped if o.output] == [("a.png", "output exists")]
    with pytest.raises(batch.BatchError, match="not both"):
        batch.plan_batch([str(tree)], out, overwrite=True, skip_existing=True)


def test_a_symlinked_sub_folder_cannot_lead_outside(tree, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "sub").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(batch.PlanError, match="outside"):
        batch.plan_batch([str(tree)], out, recursive=True)
    assert list(elsewhere.iterdir()) == []


def test_out_dir_that_is_a_file_is_refused(tree, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(batch.BatchError, match="not a directory"):
        batch.plan_batch([str(tree)], tmp_path / "file")


# --- running ---------------------------------------------------------------------------


@pytest.fixture
def many(tmp_path, rng) -> Path:
    root = tmp_path / "many"
    for i in range(8):
        picture(root / f"p{i}.png", rng, size=(40, 30), mode="RGBA" if i % 3 == 0 else "RGB")
    picture(root / "grey.png", rng, size=(33, 21), mode="L")
    return root


def read_tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_outputs_are_pillow_exact_and_byte_identical_whatever_the_jobs(many, tmp_path):
    filters = settings("edge_enhance", border="keep")
    results = {}
    for jobs in (1, 2, 3):
        plan = batch.plan_batch([str(many)], tmp_path / f"out{jobs}")
        summary = batch.run_batch(plan, filters, jobs=jobs)
        assert (summary.processed, summary.failed) == (9, [])
        results[jobs] = read_tree(tmp_path / f"out{jobs}")
    assert results[1] == results[2] == results[3]
    assert len(results[1]) == 9
    with Image.open(many / "grey.png") as source, Image.open(tmp_path / "out2" / "grey.png") as got:
        assert np.array_equal(np.asarray(got), np.asarray(source.filter(ImageFilter.EDGE_ENHANCE)))


@pytest.mark.parametrize("jobs", [1, 2])
def test_one_corrupt_file_fails_alone(many, tmp_path, jobs):
    (many / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    plan = batch.plan_batch([str(many)], tmp_path / "out")
    seen = []
    summary = batch.run_batch(plan, settings("blur"), jobs=jobs, on_outcome=seen.append)
    assert summary.processed == 9
    assert [Path(o.input).name for o in summary.failed] == ["broken.png"]
    assert summary.failed[0].error and "broken.png" not in summary.failed[0].error
    assert not (tmp_path / "out" / "broken.png").exists()
    assert sorted(o.status for o in seen) == ["failed"] + ["ok"] * 9
    assert "failed 1" in summary.to_text()
    assert temporary_files(tmp_path) == []


def test_fail_fast_stops_handing_out_files(many, tmp_path):
    (many / "a-broken.png").write_bytes(b"junk")
    plan = batch.plan_batch([str(many)], tmp_path / "out")
    summary = batch.run_batch(plan, settings("blur"), jobs=1, fail_fast=True)
    assert len(summary.failed) == 1 and summary.processed == 0
    assert summary.unfinished == 9 and summary.stopped_early
    assert "--fail-fast" in summary.to_text()


class KillsItsWorker:
    """A source path whose use kills the process that uses it (a crashing decoder)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __fspath__(self) -> str:
        os.kill(os.getpid(), signal.SIGKILL)
        return self.path


def test_a_worker_that_dies_fails_only_its_own_file(many, tmp_path):
    plan = batch.plan_batch([str(many)], tmp_path / "out")
    victim = plan.tasks[3]
    plan.tasks[3] = batch.Task(victim.index, victim.input, victim.output,
                               KillsItsWorker(victim.source), victim.destination)  # fmt: skip
    # What a worker killed in the middle of writing leaves beside its output.
    left_behind = Path(victim.destination).parent / f".{Path(victim.destination).name}.deadbeef.part"
    left_behind.parent.mkdir(parents=True)
    left_behind.write_bytes(b"half a PNG")
    summary = batch.run_batch(plan, settings("smooth"), jobs=2, workers="processes")
    assert not left_behind.exists()
    assert summary.processed == 8
    assert [o.input for o in summary.failed] == [victim.input]
    assert "SIGKILL" in summary.failed[0].error
    assert multiprocessing.active_children() == []


def test_a_signal_stops_an_in_process_run_cleanly(many, tmp_path):
    plan = batch.plan_batch([str(many)], tmp_path / "out")
    def interrupt(outcome):
        os.kill(os.getpid(), signal.SIGINT)

    summary = batch.run_batch(plan, settings("blur"), jobs=1, on_outcome=interrupt)
    assert summary.interrupted == "SIGINT"
    # The first file's report comes once the second is filtered (its output is
    # put in place meanwhile): one or two are done, and the rest are not started.
    assert summary.processed in (1, 2) and summary.processed + summary.unfinished == 9
    assert len(read_tree(tmp_path / "out")) == summary.processed
    assert temporary_files(tmp_path) == []
    assert f"interrupted by SIGINT; {summary.unfinished} not processed" in summary.to_text()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def filter_file_signalled_in_a_finalizer(signum: int, passed_checkpoint: list):
    """A stand-in for pipeline.filter_file: the signal lands in a finalizer, then the
    engine would reach a checkpoint, then the file would be written."""
    from test_interrupts import SignalsInAFinalizer  # tests/ is on sys.path under pytest

    from convfilter.pipeline import filter_file

    def fake(source, destination, settings, output, *, progress=None, **names):
        SignalsInAFinalizer(signum)  # dropped at once
        if progress is not None:
            progress(0.5)
        passed_checkpoint.append(source)
        return filter_file(source, destination, settings, output, progress=progress, **names)

    return fake


def test_a_signal_lost_in_a_finalizer_still_stops_the_file_at_its_checkpoint(many, tmp_path, monkeypatch):
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    passed = []
    stand_in = filter_file_signalled_in_a_finalizer(signal.SIGTERM, passed)
    monkeypatch.setattr("convfilter.batch.run.filter_file", stand_in)
    plan = batch.plan_batch([str(many)], tmp_path / "out")
    summary = batch.run_batch(plan, settings("blur"), jobs=1)
    assert unraisable == []  # Python's "Exception ignored in ... Traceback" report, silenced
    assert summary.interrupted == "SIGTERM" and passed == []
    assert summary.processed == 0 and summary.unfinished == 9
    assert not (tmp_path / "out").exists() or read_tree(tmp_path / "out") == {}
    assert sys.unraisablehook == unraisable.append  # put back


def test_other_unraisable_exceptions_still_reach_the_hook_during_a_batch(many, tmp_path, monkeypatch):
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)

    class Broken:
        def __del__(self):
            raise ValueError("a bug in a finalizer")

    plan = batch.plan_batch([str(many)], tmp_path / "out")
    summary = batch.run_batch(plan, settings("blur"), jobs=1, on_outcome=lambda outcome: Broken())
    assert summary.processed == 9
    assert [type(u.exc_value) for u in unraisable] == [ValueError] * 9


def test_a_worker_whose_sigterm_is_lost_in_a_finalizer_exits_at_its_checkpoint(many, tmp_path, monkeypatch, capfd):
    from convfilter.batch.run import _worker_main

    passed = []
    stand_in = filter_file_signalled_in_a_finalizer(signal.SIGTERM, passed)
    monkeypatch.setattr("convfilter.batch.run.filter_file", stand_in)
    plan = batch.plan_batch([str(many)], tmp_path / "out")
    context = multiprocessing.get_context("fork")  # the stand-in above reaches the worker
    parent, child = context.Pipe()
    worker = context.Process(target=_worker_main, args=(child, settings("blur"), OutputSettings()), daemon=True)
    worker.start()
    try:
        parent.send(plan.tasks[0])
        worker.join(30)
    finally:
        worker.kill()
    assert worker.exitcode == 128 + signal.SIGTERM
    assert not parent.poll()  # no outcome: the file was abandoned
    assert "Traceback" not in capfd.readouterr().err
    assert not (tmp_path / "out").exists() or read_tree(tmp_path / "out") == {}
    assert temporary_files(tmp_path) == []


def test_sigterm_ends_the_workers_and_leaves_no_temporary_file(many, tmp_path):
    plan = batch.plan_batch([str(many)], tmp_path / "out")
    sent = []

    def terminate(outcome):
        if not sent:
            sent.append(os.kill(os.getpid(), signal.SIGTERM))

    summary = batch.run_batch(plan, settings("gaussian:3"), jobs=2, workers="processes", on_outcome=terminate)
    assert summary.interrupted == "SIGTERM"
    assert 1 <= summary.processed < 9
    assert summary.processed + summary.unfinished == 9
    assert len(read_tree(tmp_path / "out")) == summary.processed
    assert temporary_files(tmp_path) == []
    assert multiprocessing.active_children() == []


def test_sweep_removes_only_the_temporary_files_of_the_given_outputs(tmp_path):
    # Only names write_atomically makes for a.png (8 hex digits) are its own.
    keep = [".other.png.abcd1234.part", "a.png", ".a.png.txt", ".a.png.zz_9.part"]
    swept = [".a.png.0123abcd.part"]
    for name in keep + swept:
        (tmp_path / name).write_bytes(b"x")
    task = batch.Task(1, "in.png", "a.png", str(tmp_path / "in.png"), str(tmp_path / "a.png"))
    _sweep_temporary_files([task])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)


def test_settling_after_a_stop_sweeps_and_counts_outputs_renamed_into_place(tmp_path):
    (tmp_path / "done.png").write_bytes(b"complete")  # renamed into place, never reported
    (tmp_path / "old.png").write_bytes(b"from before")  # existed before: not this batch's
    (tmp_path / ".half.png.1234abcd.part").write_bytes(b"partial")
    tasks = [
        batch.Task(1, "a.png", "done.png", "/in/a.png", str(tmp_path / "done.png")),
        batch.Task(2, "b.png", "old.png", "/in/b.png", str(tmp_path / "old.png"),
                   replaces=os.lstat(tmp_path / "old.png").st_ino),
        batch.Task(3, "c.png", "half.png", "/in/c.png", str(tmp_path / "half.png")),
    ]  # fmt: skip
    recorded = []
    _settle(tasks, recorded.append)
    assert [(o.input, o.status) for o in recorded] == [("a.png", "ok")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["done.png", "old.png"]


def test_summary_dict_and_rate():
    summary = batch.BatchSummary(planned=3, processed=2, seconds=0.5,
                                 failed=[batch.Outcome("x.png", "o/x.png", "failed", error="bad", index=3)])  # fmt: skip
    data = summary.to_dict()
    assert data["type"] == "summary" and data["images_per_second"] == 4.0
    assert data["failures"] == [{"input": "x.png", "error": "bad"}]
    assert "processed 2, skipped 0, failed 1 in 0.50 s (4.0 images/s)" in summary.to_text()


def test_outcome_json_fields():
    line = batch.Outcome("a.png", "o/a.png", "ok", milliseconds=12.34567, index=1).to_dict()
    assert {"input", "output", "status", "error", "milliseconds"} <= set(line)
    assert line["milliseconds"] == 12.346


def test_default_jobs_is_at_least_one():
    assert batch.default_jobs() >= 1


def test_run_batch_without_tasks_reports_what_was_skipped(tree, tmp_path):
    plan = batch.plan_batch([str(tree / "notes.txt"), str(tree / "*.csv")], tmp_path / "out", fmt="png")
    summary = batch.run_batch(plan, settings("blur"), OutputSettings(), jobs=4)
    assert summary.processed == 0 and len(summary.failed) == 2
    assert read_tree(tmp_path / "out") == {}


def test_input_that_links_to_an_output_is_never_overwritten(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    Image.new("L", (8, 8), 77).save(out / "a.png")
    before = (out / "a.png").read_bytes()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").symlink_to(out / "a.png")
    with pytest.raises(batch.PlanError, match="overwrite an input"):
        batch.plan_batch([str(tmp_path / "in")], str(out), overwrite=True)
    assert (out / "a.png").read_bytes() == before


def test_sweep_removes_only_this_outputs_temporary_files(tmp_path):
    names = [".i.keep.part", ".img.png.backup.part", ".other.png.deadbeef.part", ".img.png.0badf00d.part"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    target = str(tmp_path / "img.png")
    _sweep_temporary_files([batch.Task(1, "x", target, "/x", target)])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[:3])
