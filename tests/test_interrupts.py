"""Signals that a finalizer swallows: interrupts.CtrlC and quiet_for, and `apply` using them."""

from __future__ import annotations

import os
import signal
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from convfilter import cli
from convfilter.interrupts import CtrlC, quiet_for


class SignalsInAFinalizer:
    """Sends ``signum`` to this process from ``__del__``: Python then runs the handler
    inside the finalizer, where its exception cannot be raised."""

    def __init__(self, signum: int) -> None:
        self.signum = signum

    def __del__(self) -> None:
        os.kill(os.getpid(), self.signum)
        self.sent = True  # a line after the call: the handler runs here, in the finalizer


@pytest.fixture
def unraisable(monkeypatch) -> list:
    """What reaches sys.unraisablehook (Python's "Exception ignored in ..." report)."""
    seen: list = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    return seen


def test_a_ctrl_c_lost_in_a_finalizer_is_raised_at_the_next_checkpoint(unraisable):
    reported = []
    with CtrlC() as ctrl_c:
        SignalsInAFinalizer(signal.SIGINT)  # dropped at once; the block goes on
        assert ctrl_c.pressed and unraisable == []
        with pytest.raises(KeyboardInterrupt):
            ctrl_c.watching(reported.append)(0.5)
    assert reported == []  # stopped before the progress callback
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert sys.unraisablehook == unraisable.append


def test_a_ctrl_c_anywhere_else_raises_at_once():
    with CtrlC() as ctrl_c:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # the handler runs between two lines here
                pass
        assert ctrl_c.pressed


def test_without_ctrl_c_the_progress_callback_is_called():
    reported = []
    with CtrlC() as ctrl_c:
        ctrl_c.watching(reported.append)(0.25)
        ctrl_c.watching(None)(0.5)
    assert reported == [0.25]


def test_other_unraisable_exceptions_are_still_reported(unraisable):
    class Broken:
        def __del__(self):
            raise ValueError("a bug in a finalizer")

    with CtrlC():
        Broken()
    hook = quiet_for(KeyboardInterrupt, unraisable.append)
    hook(type("Report", (), {"exc_value": KeyboardInterrupt()})())
    assert [type(u.exc_value) for u in unraisable] == [ValueError]


def test_apply_stops_on_a_ctrl_c_lost_in_a_finalizer_and_writes_nothing(tmp_path, monkeypatch, unraisable):
    from convfilter import pipeline

    real = pipeline.filter_file
    passed = []

    def filter_file(source, destination, settings, output, *, progress=None, **options):
        SignalsInAFinalizer(signal.SIGINT)
        if progress is not None:
            progress(0.5)  # the engine's first checkpoint
        passed.append(source)
        return real(source, destination, settings, output, progress=progress, **options)

    monkeypatch.setattr(pipeline, "filter_file", filter_file)
    source, out = tmp_path / "in.png", tmp_path / "out.png"
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(source)
    result = CliRunner().invoke(cli.main, ["apply", str(source), str(out), "-k", "blur"], prog_name="convfilter")
    assert result.exit_code == 130 and result.stderr.strip() == "convfilter: error: interrupted"
    assert passed == [] and unraisable == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


def test_outside_the_main_thread_nothing_is_routed():
    import threading

    seen = []

    def in_a_thread():
        with CtrlC():
            seen.append((signal.getsignal(signal.SIGINT), sys.unraisablehook))

    worker = threading.Thread(target=in_a_thread)
    worker.start()
    worker.join()
    assert seen == [(signal.default_int_handler, sys.unraisablehook)]
