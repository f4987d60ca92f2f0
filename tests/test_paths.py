"""Awkward file names: spaces, unicode, leading dashes, newlines, undecodable bytes, long names."""

from __future__ import annotations

import os
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
