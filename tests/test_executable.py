"""The installed `convfilter` executable and `python -m convfilter`, in subprocesses."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

import convfilter

SAMPLES = Path(__file__).resolve().parent.parent / "sample_images"
EXECUTABLE = shutil.which("convfilter", path=os.path.dirname(sys.executable)) or shutil.which("convfilter")

pytestmark = pytest.mark.skipif(EXECUTABLE is None, reason="convfilter is not installed (pip install -e .)")


def convfilter_run(*args, stdin: bytes | None = None):
    return subprocess.run([EXECUTABLE, *map(str, args)], input=stdin, capture_output=True, timeout=120)


def test_version_and_help():
    version = convfilter_run("--version")
    assert version.returncode == 0 and convfilter.__version__ in version.stdout.decode()
    helped = convfilter_run("--help")
    assert helped.returncode == 0 and b"apply" in helped.stdout


def test_python_dash_m_works():
    result = subprocess.run([sys.executable, "-m", "convfilter", "kernels"], capture_output=True, timeout=120)
    assert result.returncode == 0 and b"edge_enhance" in result.stdout


def test_main_job_on_a_sample_photo(tmp_path):
    out = tmp_path / "out.png"
    result = convfilter_run("apply", SAMPLES / "coffee.png", out, "-k", "edge_enhance",
                            "--border", "keep", "--diff-pil")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert b"identical          yes" in result.stdout
    expected = np.asarray(Image.open(SAMPLES / "coffee.png").filter(ImageFilter.EDGE_ENHANCE))
    with Image.open(out) as im:
        assert np.array_equal(np.asarray(im), expected)


def test_pipe_through_stdin_and_stdout():
    data = (SAMPLES / "rocket.jpg").read_bytes()
    result = convfilter_run("apply", "-", "-", "-k", "sharpen", "--format", "png", stdin=data)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"\x89PNG")


def test_errors_are_one_line_without_traceback(tmp_path):
    result = convfilter_run("apply", tmp_path / "missing.png", tmp_path / "o.png", "-k", "blur")
    assert result.returncode == 1
    assert result.stderr.decode().strip().count("\n") == 0
    assert result.stderr.startswith(b"convfilter: error: ")
    usage = convfilter_run("apply", "--nope")
    assert usage.returncode == 2 and b"Traceback" not in usage.stderr


def test_leading_dash_names_after_double_dash(tmp_path):
    source = tmp_path / "-in.png"
    shutil.copy(SAMPLES / "chelsea.png", source)
    result = subprocess.run(
        [EXECUTABLE, "apply", "-k", "blur", "--", "-in.png", "-out.png"],
        cwd=tmp_path, capture_output=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "-out.png").exists()


def test_help_does_not_import_numpy_or_pillow():
    code = "import sys; from convfilter.cli import main; print('numpy' in sys.modules, 'PIL' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False"]


APPLY_THEN_LIST_PLUGINS = """
import sys
from convfilter.cli import main
try:
    main(["apply", *sys.argv[1:], "-q"], prog_name="convfilter")
except SystemExit as exit:
    assert not exit.code, exit.code
print(sorted(m.split(".")[1] for m in sys.modules if m.startswith("PIL.") and m.endswith("ImagePlugin")))
"""


def test_a_jpeg_to_png_apply_loads_only_the_plugins_it_uses(tmp_path):
    # Pillow has dozens of format plugins, about 40 ms to load them all; a photo
    # in a common format needs Pillow's common few (what Image.open loads first).
    from PIL import Image

    Image.new("RGB", (40, 30), "teal").save(tmp_path / "in.jpg")
    out = subprocess.run([sys.executable, "-c", APPLY_THEN_LIST_PLUGINS, str(tmp_path / "in.jpg"),
                          str(tmp_path / "out.png"), "-k", "blur"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    loaded = ast.literal_eval(out.stdout)  # the list of names printed above
    assert "JpegImagePlugin" in loaded and "PngImagePlugin" in loaded
    assert len(loaded) <= 6 and "PdfImagePlugin" not in loaded, loaded
    with Image.open(tmp_path / "out.png") as written:
        assert written.size == (40, 30)


APPLY_THEN_LIST_MODULES = """
import sys
from convfilter.cli import main
try:
    main(["apply", *sys.argv[1:], "-q"], prog_name="convfilter")
except SystemExit as exit:
    assert not exit.code, exit.code
print(sorted(sys.modules))
"""


def test_apply_imports_nothing_it_does_not_use(tmp_path):
    # Each of these took 15 to 25 ms to import; numpy.ma comes with np.unique.
    from PIL import Image

    Image.new("RGB", (40, 30), "teal").save(tmp_path / "in.jpg")
    out = subprocess.run([sys.executable, "-c", APPLY_THEN_LIST_MODULES, str(tmp_path / "in.jpg"),
                          str(tmp_path / "out.jpg"), "-k", "edge_enhance"], capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    loaded = set(ast.literal_eval(out.stdout))
    unused = {"numpy.ma", "scipy", "multiprocessing", "convfilter.batch", "convfilter.compare", "convfilter.gallery",
              "convfilter.streaming", "convfilter.chunked", "dask"}  # fmt: skip
    assert not loaded & unused, loaded & unused


# --- ending the process (cli.run) ----------------------------------------------------


def test_json_to_stdout_arrives_whole_before_the_process_ends(tmp_path):
    # The program ends without Python's teardown once its streams are flushed.
    result = convfilter_run("apply", SAMPLES / "coffee.png", tmp_path / "out.png", "-k", "blur", "--json")
    assert result.returncode == 0, result.stderr
    import json

    summary = json.loads(result.stdout)
    with Image.open(SAMPLES / "coffee.png") as source:
        assert summary["output"] == str(tmp_path / "out.png") and (summary["width"], summary["height"]) == source.size


@pytest.mark.parametrize(("args", "code"), [(["kernels"], 0), (["apply", "missing.png", "o.png", "-k", "blur"], 1),
                                            (["apply", "--nope"], 2), (["diff"], 2)])  # fmt: skip
def test_python_dash_m_keeps_every_exit_status(args, code, tmp_path):
    result = subprocess.run([sys.executable, "-m", "convfilter", *args], cwd=tmp_path, capture_output=True,
                            timeout=120)  # fmt: skip
    assert result.returncode == code, result.stderr


class _Ended(Exception):
    """Raised by the stand-in for os._exit."""


@pytest.fixture
def ended(monkeypatch) -> list:
    """The codes cli.run passed to os._exit (which is replaced, so pytest lives on)."""
    from convfilter import cli

    codes = []

    def end(code):
        codes.append(code)
        raise _Ended

    monkeypatch.setattr(cli.os, "_exit", end)
    for name in cli._EXIT_WORK:  # as in a fresh `convfilter apply`, which imports none of them
        monkeypatch.delitem(sys.modules, name, raising=False)
    # Nor has a fresh process the threads earlier tests left, such as the
    # pool Dask keeps for its threaded scheduler.
    earlier = set(threading.enumerate()) - {threading.main_thread()}
    every = threading.enumerate
    monkeypatch.setattr(threading, "enumerate", lambda: [thread for thread in every() if thread not in earlier])
    return codes


@pytest.mark.parametrize(("args", "code"), [(["kernels"], 0), (["apply", "missing.png", "o.png", "-k", "blur"], 1),
                                            (["apply", "--nope"], 2)])  # fmt: skip
def test_run_ends_the_process_at_once_with_the_commands_status(args, code, ended, monkeypatch, tmp_path):
    from convfilter import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["convfilter", *args])
    with pytest.raises(_Ended):
        cli.run()
    assert ended == [code]


def test_run_exits_the_ordinary_way_while_a_thread_still_works(ended, monkeypatch):
    from convfilter import cli

    release = threading.Event()
    worker = threading.Thread(target=release.wait)
    worker.start()
    try:
        monkeypatch.setattr(sys, "argv", ["convfilter", "kernels"])
        with pytest.raises(SystemExit) as stop:
            cli.run()
        assert stop.value.code == 0 and ended == []
    finally:
        release.set()
        worker.join()


@pytest.mark.parametrize("module", ["multiprocessing", "distributed"])
def test_run_exits_the_ordinary_way_after_a_module_with_exit_work(module, ended, monkeypatch):
    from convfilter import cli

    monkeypatch.setitem(sys.modules, module, sys)  # any module object marks it imported
    monkeypatch.setattr(sys, "argv", ["convfilter", "kernels"])
    with pytest.raises(SystemExit) as stop:
        cli.run()
    assert stop.value.code == 0 and ended == []


def test_ctrl_c_while_the_command_loads_is_one_line(monkeypatch, capsys):
    import builtins

    from convfilter import __main__ as program

    load = builtins.__import__

    def interrupted(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 1 and name == "cli":  # `from .cli import run`, as Ctrl-C lands in it
            raise KeyboardInterrupt
        return load(name, globals, locals, fromlist, level)

    monkeypatch.setattr(builtins, "__import__", interrupted)
    with pytest.raises(SystemExit) as stop:
        program.main()
    assert stop.value.code == 130
    assert capsys.readouterr().err == "convfilter: error: interrupted\n"
