"""Awkward file names: spaces, unicode, leading dashes, newlines, undecodable bytes, long names."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from convfilter import cli

EXECUTABLE = Path(sys.executable).with_name("convfilter")

NAMES = [
    "with space.png",
    "  leading and trailing spaces  .png",
    "café déjà vu.png",
    "写真 📷.png",
    "-starts-with-dash.png",
    "--looks-like-an-option.png",
    "line\nbreak.png",
    "tab\there.png",
    "quote'and\"double.png",
    "back\\slash.png",
    "semi;colon $dollar `tick` *star?.png",
    "ends-with-dot.png.",
    "x" * 240 + ".png",
]


def run(*args, input: bytes | None = None):
    return CliRunner().invoke(cli.main, [os.fspath(a) for a in args], input=input, prog_name="convfilter")


def picture(path: Path) -> bytes:
    gradient = np.add.outer(np.arange(12), np.arange(16)).astype(np.uint8) * 10
    Image.fromarray(gradient).save(path, format="PNG")
    return path.read_bytes()


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize("name", NAMES, ids=lambda n: repr(n[:30]))
def test_apply_reads_and_writes_awkward_names(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = Path(name)
    original = picture(source)
    output = "out " + name if not name.startswith("-") else "-out" + name
    if output.endswith("."):
        output += "png"
    output = output[-250:] if len(output.encode()) > 250 else output
    result = run("apply", "-k", "blur", "--format", "png", "--", name, output)
    assert result.exit_code == 0, result.stderr
    assert source.read_bytes() == original
    with Image.open(output) as written:
        assert written.size == (16, 12)
    assert [p for p in os.listdir(".") if p.endswith(".part")] == []


@pytest.mark.parametrize("name", NAMES, ids=lambda n: repr(n[:30]))
def test_errors_about_awkward_names_stay_on_one_line(name, tmp_path):
    missing = tmp_path / ("missing " + name)
    result = run("apply", "-k", "blur", "--", missing, tmp_path / "o.png")
    assert result.exit_code == 1
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith("convfilter: error: ")
    assert "no such file" in lines[0]
    assert cli.one_line(str(missing)) in lines[0]
    assert not (tmp_path / "o.png").exists()


def test_a_dash_name_needs_double_dash_or_dot_slash(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    picture(Path("-k.png"))
    as_option = run("apply", "-k.png", "o.png", "-k", "blur")  # '-k' takes '.png' as its spec
    assert as_option.exit_code == 2
    assert run("apply", "-k", "blur", "--", "-k.png", "o1.png").exit_code == 0
    assert run("apply", "./-k.png", "o2.png", "-k", "blur").exit_code == 0
    assert Path("o1.png").read_bytes() == Path("o2.png").read_bytes()


def test_a_file_named_dash_is_not_standard_input(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    picture(Path("-"))
    result = run("apply", "./-", "./-.png", "-k", "blur")
    assert result.exit_code == 0, result.stderr
    assert Path("-.png").exists()
    from_stdin = run("apply", "-", "o.png", "-k", "blur", input=Path("-").read_bytes())
    assert from_stdin.exit_code == 0 and Path("o.png").read_bytes() == Path("-.png").read_bytes()


def test_input_and_output_may_be_the_same_awkward_name(tmp_path):
    path = tmp_path / "same\nname é.png"
    before = picture(path)
    assert run("apply", path, path, "-k", "blur").exit_code == 0
    assert path.read_bytes() != before
    assert sorted(os.listdir(tmp_path)) == [path.name]


def test_undecodable_bytes_in_names_through_the_executable(tmp_path):
    """Names that are not UTF-8 reach the file system unchanged (Python's surrogateescape)."""
    directory = os.fsencode(tmp_path)
    source = os.path.join(directory, b"caf\xe9 \xff.png")
    output = os.path.join(directory, b"out \xfe\n.png")
    picture(Path(os.fsdecode(source)))
    done = subprocess.run([os.fsencode(EXECUTABLE), b"apply", source, output, b"-k", b"blur", b"-q"],
                          capture_output=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert os.path.exists(output)
    missing = subprocess.run([os.fsencode(EXECUTABLE), b"apply", source + b"\n\xffgone", output, b"-k", b"blur"],
                             capture_output=True, timeout=60)  # fmt: skip
    assert missing.returncode == 1
    lines = missing.stderr.decode("utf-8", "replace").splitlines()
    assert len(lines) == 1 and lines[0].startswith("convfilter: error: ") and "gone" in lines[0]


# --- batch ------------------------------------------------------------------------------

BATCH_NAMES = [n for n in NAMES if not n.endswith(".") and len(n) < 200]


def _batch_lines(result) -> list[dict]:
    import json

    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.parametrize("how", ["directory", "arguments", "nul-list", "nul-list-on-stdin"])
def test_batch_handles_awkward_names(how, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = Path("in")
    source.mkdir()
    originals = {name: picture(source / name) for name in BATCH_NAMES}
    args = ["batch", "-d", "out", "-k", "blur", "--json"]
    stdin = None
    if how == "directory":
        args += ["in"]
    elif how == "arguments":
        args += ["--", *[str(source / name) for name in BATCH_NAMES]]
    else:
        listing = b"".join(os.fsencode(source / name) + b"\0" for name in BATCH_NAMES)
        if how == "nul-list":
            Path("list").write_bytes(listing)
            args += ["--from-file", "list", "-0"]
        else:
            args += ["--from-file", "-", "-0"]
            stdin = listing
    result = run(*args, input=stdin)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    lines = _batch_lines(result)
    assert lines[-1]["processed"] == len(BATCH_NAMES) and lines[-1]["failed"] == 0
    # Output names keep everything but separators and control characters, which become '_'.
    expected = {name: re.sub(r"[\\/\x00-\x1f\x7f]", "_", name) for name in BATCH_NAMES}
    assert sorted(os.listdir("out")) == sorted(expected.values())
    for name, output in expected.items():
        with Image.open(Path("out") / output) as written:
            assert written.size == (16, 12)
        assert (source / name).read_bytes() == originals[name]


def test_batch_failure_lines_escape_newlines_in_names(tmp_path):
    broken = tmp_path / "bad\nname.png"
    broken.write_bytes(b"not an image")
    result = run("batch", broken, "-d", tmp_path / "out", "-k", "blur")
    assert result.exit_code == 1
    failed_lines = [line for line in result.stderr.splitlines() if "bad" in line]
    assert len(failed_lines) == 1 and "bad\\nname.png" in failed_lines[0], result.stderr


@pytest.mark.parametrize(
    "template",
    ["{stem}{suffix}", "{name}", "x-{stem}-{kernel}{suffix}", "{index:04d}-{stem}{suffix}", "sub/{stem}{suffix}"],
)
def test_batch_templates_with_awkward_stems_stay_inside_the_output_directory(template, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("in").mkdir()
    for name in ["..x.png", "a\\..\\b.png", "-dash.png", "new\nline.png", "é é.png"]:
        picture(Path("in") / name)
    result = run("batch", "-d", "out", "-k", "blur", "--name", template, "--", "in/..x.png", "in/a\\..\\b.png",
                 "in/-dash.png", "in/new\nline.png", "in/é é.png")  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    written = [p for p in Path("out").rglob("*") if p.is_file()]
    assert len(written) == 5
    for path in written:
        resolved = path.resolve()
        assert str(resolved).startswith(str((tmp_path / "out").resolve()) + os.sep)
        assert "\n" not in path.name and "\\" not in path.name
    assert sorted(os.listdir(tmp_path)) == ["in", "out"]


def test_batch_output_on_a_planted_symlink_replaces_the_link(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("in").mkdir()
    picture(Path("in") / "a.png")
    Path("out").mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"never written through")
    (Path("out") / "a.png").symlink_to(victim)
    result = run("batch", "in", "-d", "out", "-k", "blur", "--overwrite")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert victim.read_bytes() == b"never written through"
    assert not (Path("out") / "a.png").is_symlink()
    with Image.open(Path("out") / "a.png") as written:
        assert written.size == (16, 12)


def test_a_template_making_absurdly_long_names_is_refused_up_front(tmp_path):
    import resource

    picture(tmp_path / "a.png")

    def limit_memory():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    done = subprocess.run([str(EXECUTABLE), "batch", str(tmp_path / "a.png"), "-d", str(tmp_path / "out"),
                           "-k", "blur", "--name", "{index:>300000000}{suffix}"],
                          capture_output=True, text=True, timeout=60, preexec_fn=limit_memory,
                          env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))  # fmt: skip
    assert done.returncode == 2 and "--name" in done.stderr, done.stderr
