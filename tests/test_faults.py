"""Faults while writing: disk full, I/O errors, SIGKILL, read-only and odd output paths, broken pipes.

What each test shows:

* disk full or an I/O error at any step (write, fsync, rename): exit 1, one
  line saying so, no temporary file, the previous output intact;
* SIGKILL while the output is being written: the final path holds the old
  file or nothing, never part of an image (the ``.NAME.*.part`` temporary
  file may stay behind; nothing can remove it after SIGKILL);
* read-only directory, an output that is a directory, a symlink (replaced
  as a link; its target is never written), standard output closed or full.
"""

from __future__ import annotations

import errno
import io
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from convfilter import cli, images

EXECUTABLE = Path(sys.executable).with_name("convfilter")
IS_ROOT = os.geteuid() == 0


def run(*args):
    return CliRunner().invoke(cli.main, [os.fspath(a) for a in args], prog_name="convfilter")


def assert_one_error(result, *fragments: str) -> str:
    assert result.exit_code == 1, (result.exit_code, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("convfilter: error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.output
    return lines[0]


def part_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part"))


def noise(path: Path, size: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return noise(tmp_path / "in.png", 64)


# --- disk full and I/O errors, simulated ------------------------------------------------


class FailingFile(io.RawIOBase):
    """A file object that takes ``budget`` bytes, then fails with ``error``."""

    def __init__(self, real, budget: int, error: OSError) -> None:
        self.real, self.budget, self.error = real, budget, error

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        data = bytes(data)
        if len(data) > self.budget:
            self.real.write(data[: self.budget])
            self.budget = 0
            raise self.error
        self.budget -= len(data)
        return self.real.write(data)

    def flush(self) -> None:
        self.real.flush()

    def fileno(self) -> int:
        return self.real.fileno()

    def close(self) -> None:
        if not self.closed:
            super().close()
            self.real.close()


@pytest.mark.parametrize(
    ("error", "message"),
    [(OSError(errno.ENOSPC, "No space left on device"), "no space left on device"),
     (OSError(errno.EIO, "Input/output error"), "Input/output error"),
     (OSError(errno.EDQUOT, "Disk quota exceeded"), "Disk quota exceeded")],
)  # fmt: skip
@pytest.mark.parametrize("previous", [None, b"the previous output"])
def test_a_write_failing_midway(error, message, previous, source, tmp_path, monkeypatch):
    output = tmp_path / "out.png"
    if previous is not None:
        output.write_bytes(previous)
    real_fdopen = os.fdopen

    def failing_fdopen(fd, *args, **kwargs):
        return FailingFile(real_fdopen(fd, *args, **kwargs), budget=500, error=error)

    monkeypatch.setattr(images.os, "fdopen", failing_fdopen)
    line = assert_one_error(run("apply", source, output, "-k", "blur"), f"cannot write '{output}'", message)
    monkeypatch.undo()
    assert "internal error" not in line
    assert part_files(tmp_path) == []
    assert (output.read_bytes() if output.exists() else None) == previous


@pytest.mark.parametrize("step", ["fsync", "replace", "chmod"])
def test_a_failure_after_the_data_is_written(step, source, tmp_path, monkeypatch):
    output = tmp_path / "out.png"
    output.write_bytes(b"old")  # so that chmod is used too (permissions are kept)

    def fail(*args, **kwargs):
        raise OSError(errno.ENOSPC if step == "fsync" else errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(images.os, step, fail)
    assert_one_error(run("apply", source, output, "-k", "blur"), f"cannot write '{output}'")
    monkeypatch.undo()
    assert part_files(tmp_path) == [] and output.read_bytes() == b"old"


# --- disk full for real: a 64 kB tmpfs --------------------------------------------------


def _mount(*args: str) -> bool:
    done = subprocess.run(["mount", *args], capture_output=True)
    return done.returncode == 0


@pytest.fixture
def tiny_filesystem(tmp_path: Path):
    if not IS_ROOT:
        pytest.skip("mounting a tmpfs needs root")
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)):
        pytest.skip("cannot mount a tmpfs here (no privilege in this container)")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_a_really_full_disk(tiny_filesystem, tmp_path):
    big = noise(tmp_path / "big.png", 300)  # about 270 kB as PNG: cannot fit in 64 kB
    output = tiny_filesystem / "out.png"
    output.write_bytes(b"previous")
    assert_one_error(run("apply", big, output, "-k", "blur"), "no space left on device", str(output))
    assert output.read_bytes() == b"previous"
    assert part_files(tiny_filesystem) == []
    small = tiny_filesystem / "small.png"  # and the space is free again: a small output fits
    assert run("apply", noise(tmp_path / "s.png", 16), small, "-k", "blur").exit_code == 0
    with Image.open(small) as written:
        assert written.size == (16, 16)


# --- SIGKILL in the middle of writing ---------------------------------------------------


def _slow_apply(source: str, output: str, ready) -> None:
    """In a child process: run apply, writing the output in small slow pieces."""

    encode = images.encode_image

    def slow_encode(frames, stream, **options):
        encoded = io.BytesIO()
        notes = encode(frames, encoded, **options)
        view = encoded.getbuffer()
        for start in range(0, len(view), 4096):
            stream.write(view[start : start + 4096])
            stream.flush()
            if start >= len(view) // 2:
                ready.set()  # half the image is on disk: kill now
                time.sleep(0.05)
        return notes

    images.encode_image = slow_encode
    cli.main(["apply", source, output, "-k", "blur"], standalone_mode=False)


@pytest.mark.parametrize("previous", [False, True])
def test_sigkill_while_writing_never_leaves_a_partial_image(previous, tmp_path):
    source = noise(tmp_path / "in.png", 200)
    output = tmp_path / "out.png"
    if previous:
        noise(output, 10, seed=5)
    before = output.read_bytes() if previous else None
    # spawn, not fork: forking the test process, which has run threads, can
    # crash the child on newer Pythons.
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    child = context.Process(target=_slow_apply, args=(str(source), str(output), ready))
    child.start()
    try:
        assert ready.wait(30), "the child never started writing"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.join(30)
    assert child.exitcode == -signal.SIGKILL
    assert (output.read_bytes() if output.exists() else None) == before
    leftovers = part_files(tmp_path)
    assert len(leftovers) == 1 and leftovers[0].startswith(".out.png.")  # documented: may remain


def test_sigkill_of_the_executable_during_a_large_write(tmp_path):
    """The real thing: poll for the temporary file, SIGKILL the moment it appears."""
    source = noise(tmp_path / "in.bmp", 2000)  # 12 MB of BMP out: the write takes a while
    output = tmp_path / "out.bmp"
    caught_midway = False
    for _attempt in range(3):
        process = subprocess.Popen([str(EXECUTABLE), "apply", str(source), str(output), "-k", "blur", "-q"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            if part_files(tmp_path):
                process.send_signal(signal.SIGKILL)
                break
        process.wait(30)
        if process.returncode == -signal.SIGKILL:
            caught_midway = not output.exists()
            if output.exists():  # killed after the rename: then the image is whole
                with Image.open(output) as done:
                    done.load()
            else:
                break
        for leftover in part_files(tmp_path):
            (tmp_path / leftover).unlink()
        output.unlink(missing_ok=True)
    if not caught_midway:
        pytest.skip("the write finished before the kill three times (a very fast disk)")
    assert not output.exists()


# --- where the output goes --------------------------------------------------------------


@pytest.fixture
def read_only_directory(tmp_path: Path):
    directory = tmp_path / "ro"
    directory.mkdir()
    (directory / "existing.png").write_bytes(b"old")
    if IS_ROOT:
        if not (_mount("--bind", str(directory), str(directory))
                and _mount("-o", "remount,ro,bind", str(directory))):  # fmt: skip
            subprocess.run(["umount", str(directory)], capture_output=True)
            pytest.skip("root ignores permissions and a read-only bind mount is not possible here")
        try:
            yield directory
        finally:
            subprocess.run(["umount", str(directory)], check=True)
    else:
        directory.chmod(0o555)
        try:
            yield directory
        finally:
            directory.chmod(0o755)


@pytest.mark.parametrize("name", ["new.png", "existing.png"])
def test_read_only_output_directory(name, read_only_directory, source):
    output = read_only_directory / name
    line = assert_one_error(run("apply", source, output, "-k", "blur"), f"cannot write '{output}'")
    assert "Read-only file system" in line or "is not writable" in line
    assert sorted(p.name for p in read_only_directory.iterdir()) == ["existing.png"]
    assert (read_only_directory / "existing.png").read_bytes() == b"old"


@pytest.mark.parametrize("extra", [[], ["--format", "png"]])
def test_output_that_is_a_directory(extra, source, tmp_path):
    target = tmp_path / "folder.png"
    target.mkdir()
    (target / "inside.txt").write_text("untouched")
    assert_one_error(run("apply", source, target, "-k", "blur", *extra), f"'{target}' is a directory")
    assert [p.name for p in target.iterdir()] == ["inside.txt"]
    assert part_files(tmp_path) == []


@pytest.mark.parametrize("kind", ["file", "dangling", "directory"])
def test_output_on_a_symlink_replaces_the_link_not_its_target(kind, source, tmp_path):
    target = tmp_path / "target"
    if kind == "file":
        target.write_bytes(b"precious")
    elif kind == "directory":
        target.mkdir()
    link = tmp_path / "out.png"
    link.symlink_to(target)
    result = run("apply", source, link, "-k", "blur")
    assert result.exit_code == 0, result.stderr
    assert not link.is_symlink()
    with Image.open(link) as written:
        assert written.size == (64, 64)
    if kind == "file":
        assert target.read_bytes() == b"precious"
    elif kind == "directory":
        assert target.is_dir() and list(target.iterdir()) == []
    else:
        assert not target.exists()


def test_output_through_a_symlinked_directory_is_fine(source, tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real)
    assert run("apply", source, tmp_path / "alias" / "o.png", "-k", "blur").exit_code == 0
    assert (real / "o.png").is_file()


def test_standard_output_full_or_closed(source, tmp_path):
    full = subprocess.run(f"'{EXECUTABLE}' apply '{source}' - -k blur --format png > /dev/full",
                          shell=True, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert full.returncode == 1
    assert full.stderr.strip() == "convfilter: error: cannot write to standard output: no space left on device"
    big = noise(tmp_path / "big.png", 600)  # more than a pipe holds
    closed = subprocess.run(f"'{EXECUTABLE}' apply '{big}' - -k blur --format png -q | head -c 1 > /dev/null; "
                            "exit ${PIPESTATUS[0]}", shell=True, executable="/bin/bash",
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert closed.returncode == 1
    assert closed.stderr.strip() == "convfilter: error: cannot write to standard output: Broken pipe"


def test_a_short_write_to_a_stream_is_completed():
    class Stingy(io.BytesIO):
        def write(self, data):  # takes at most 7 bytes a call, like a write cut short by a signal
            return super().write(bytes(data)[:7])

    stream, whole = Stingy(), io.BytesIO()
    images.save_image([Image.new("L", (5, 5), 3)], stream, fmt="PNG")
    images.save_image([Image.new("L", (5, 5), 3)], whole, fmt="PNG")
    assert stream.getvalue() == whole.getvalue()
    assert Image.open(io.BytesIO(stream.getvalue())).getpixel((2, 2)) == 3


# --- signals during a batch of good and hostile files ----------------------------------


def _mixed_batch(root: Path) -> list[Path]:
    """Slow good images with hostile files between them (named explicitly, in order)."""
    from test_hostile_files import hostile_cases, materialise  # tests/ is on sys.path under pytest

    hostile = [c for fmt in ("PNG", "GIF", "TIFF") for c in hostile_cases(fmt)
               if c.kind in ("bomb", "zero bytes", "fifo", "text") or c.detail in ("at 7", "at 33")]  # fmt: skip
    rng = np.random.default_rng(11)
    base = rng.integers(0, 256, (160, 200, 3)).astype(np.uint8)
    paths = []
    for index in range(48):
        good = root / f"good{index:02d}.png"
        Image.fromarray(np.roll(base, index, axis=1)).save(good, compress_level=0)
        paths.append(good)
        if index % 2 == 0 and hostile:
            paths.append(materialise(hostile.pop(), root, index))
    return paths


@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_a_batch_of_hostile_files_cleanly(signum, jobs, tmp_path):
    import hashlib
    import json

    root = tmp_path / "in"
    root.mkdir()
    paths = _mixed_batch(root)
    digests = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths if p.is_file()}
    listing = tmp_path / "list"
    listing.write_bytes(b"".join(os.fsencode(p) + b"\0" for p in paths))
    out = tmp_path / "out"
    process = subprocess.Popen(
        [str(EXECUTABLE), "batch", "--from-file", str(listing), "-0", "-d", str(out), "-k", "box:21",
         "--method", "direct", "--repeat", "2", "-j", str(jobs), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (out.exists() and sum(p.suffix == ".png" for p in out.iterdir()) >= 3):
        assert process.poll() is None and time.monotonic() < deadline, "the batch never got going"
        time.sleep(0.02)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == {signal.SIGTERM: 143, signal.SIGINT: 130}[signum], stderr
    assert b"Traceback" not in stderr
    lines = [json.loads(line) for line in stdout.decode().splitlines()]
    summary = lines[-1]
    assert summary["interrupted"] == signal.Signals(signum).name and summary["unfinished"] > 0
    ok = {Path(line["output"]).name for line in lines if line.get("status") == "ok"}
    failed = [line for line in lines if line.get("status") == "failed"]
    assert all(line["error"] and "internal error" not in line["error"] for line in failed)
    written = {p.name for p in out.iterdir()}
    assert not [name for name in written if name.endswith(".part")]
    assert written == ok  # every output on disk was reported finished, and is complete:
    for name in written:
        with Image.open(out / name) as image:
            image.load()
    for path, before in digests.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == before
