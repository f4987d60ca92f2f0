"""`convfilter batch` on threads: which workers run a batch, the engine's share of the CPUs,
byte-identical outputs, and stopping on SIGINT/SIGTERM with nothing left behind."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from convfilter import batch, cli
from convfilter.batch import run as batch_run
from convfilter.kernels import parse_kernel
from convfilter.options import FilterSettings

EXECUTABLE = shutil.which("convfilter", path=os.path.dirname(sys.executable)) or shutil.which("convfilter")


def settings(*specs: str, **options) -> FilterSettings:
    return FilterSettings(kernels=tuple(parse_kernel(s) for s in specs), **options)


def picture(path: Path, rng: np.random.Generator, size=(24, 16), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], len(mode))
    Image.fromarray(rng.integers(0, 256, shape).astype(np.uint8), mode).save(path, compress_level=0)
    return path


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def batch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("convfilter-batch")]


def assert_complete_outputs(out: Path, ok_outputs: set[str]) -> None:
    """The files in ``out`` are exactly the reported ones, each a complete image."""
    written = {p.name for p in out.iterdir()} if out.exists() else set()
    assert written == ok_outputs
    for name in written:
        with Image.open(out / name) as image:
            image.load()


# --- which workers --------------------------------------------------------------------------


def tasks_of(root: Path) -> list[batch.Task]:
    return batch.plan_batch([str(root)], root.parent / "out").tasks


@pytest.fixture
def control():
    return batch_run._Control(batch.BatchSummary(planned=0), fail_fast=False)


def test_a_batch_runs_on_threads_unless_asked_for_processes(tmp_path, rng, control):
    for i in range(3):
        picture(tmp_path / "in" / f"p{i}.png", rng)
    with open(tmp_path / "in" / "big.png", "wb") as big:  # a sparse file of 1 GB: its size does not matter
        big.truncate(1 << 30)
    few = tasks_of(tmp_path / "in")
    assert isinstance(batch_run._executor(None, 2, "auto", few, control), batch_run._ThreadExecutor)
    assert isinstance(batch_run._executor(None, 2, "processes", few, control), batch_run._PoolExecutor)
    assert isinstance(batch_run._executor(None, 1, "auto", few, control), batch_run._InlineExecutor)
    # One job's worth of tasks runs here, whatever --jobs says.
    assert isinstance(batch_run._executor(None, 4, "auto", few[:1], control), batch_run._InlineExecutor)


def test_a_long_batch_runs_in_processes(tmp_path, rng, control):
    picture(tmp_path / "in" / "p.png", rng)
    task = tasks_of(tmp_path / "in")[0]
    many = [task] * batch_run.THREADS_UP_TO_FILES
    assert isinstance(batch_run._executor(None, 2, "auto", many, control), batch_run._ThreadExecutor)
    assert isinstance(batch_run._executor(None, 2, "auto", many + [task], control), batch_run._PoolExecutor)
    assert isinstance(batch_run._executor(None, 2, "threads", many + [task], control), batch_run._ThreadExecutor)


def test_an_unknown_kind_of_worker_is_refused(tmp_path, rng):
    picture(tmp_path / "in" / "p.png", rng)
    plan = batch.plan_batch([str(tmp_path / "in")], tmp_path / "out")
    with pytest.raises(ValueError, match="auto, threads, processes"):
        batch.run_batch(plan, settings("blur"), jobs=2, workers="fibres")
    assert not (tmp_path / "out").exists()


# --- the CPUs shared out ---------------------------------------------------------------------


@pytest.mark.parametrize("cpus, jobs, threads", [(2, 2, 1), (8, 2, 4), (8, 3, 2), (2, 5, 1), (1, 2, 1)])
def test_each_files_engine_gets_a_share_of_the_cpus(monkeypatch, cpus, jobs, threads):
    monkeypatch.setattr(batch_run, "default_jobs", lambda: cpus)
    shared = batch_run._share_of_cpus(settings("blur"), jobs)
    assert shared.threads == threads
    assert jobs * shared.threads <= max(cpus, jobs)  # never more than one thread per CPU, once each job has one


def test_jobs_threads_take_every_file_and_hold_at_most_jobs_at_once(tmp_path, rng, monkeypatch):
    for i in range(12):
        picture(tmp_path / "in" / f"p{i:02d}.png", rng)
    lock, busy, most, workers = threading.Lock(), [0], [0], set()
    real = batch_run.filter_file

    def counting(*args, **kwargs):
        with lock:
            busy[0] += 1
            most[0] = max(most[0], busy[0])
            workers.add(threading.current_thread())
        try:
            return real(*args, **kwargs)
        finally:
            with lock:
                busy[0] -= 1

    monkeypatch.setattr(batch_run, "filter_file", counting)
    plan = batch.plan_batch([str(tmp_path / "in")], tmp_path / "out")
    summary = batch.run_batch(plan, settings("box:5"), jobs=2, workers="threads")
    assert summary.processed == 12 and len(files(tmp_path / "out")) == 12
    assert most[0] <= 2  # files queued ahead of the threads hold no image
    # The same two threads for the whole run (one may take every file on a busy machine).
    assert 1 <= len(workers) <= 2 and threading.main_thread() not in workers
    assert batch_threads() == []


@pytest.mark.parametrize("jobs", [1, 2])
def test_outputs_are_put_in_place_by_another_thread_and_reported_once_there(tmp_path, rng, monkeypatch, jobs):
    for i in range(8):
        picture(tmp_path / "in" / f"p{i}.png", rng)
    synced_on, real_fsync = set(), os.fsync

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".part"):  # an output (not a directory)
            synced_on.add(threading.current_thread().name)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    out = tmp_path / "out"
    in_place_when_reported = []
    plan = batch.plan_batch([str(tmp_path / "in")], out)
    summary = batch.run_batch(plan, settings("box:3"), jobs=jobs, workers="threads",
                              on_outcome=lambda o: in_place_when_reported.append((out / o.output).is_file()))
    assert summary.processed == 8 and in_place_when_reported == [True] * 8
    assert synced_on == {"convfilter-batch-commit"}
    serial = batch.run_batch(batch.plan_batch([str(tmp_path / "in")], tmp_path / "serial"), settings("box:3"),
                             jobs=2, workers="processes")  # fmt: skip
    assert serial.processed == 8 and files(out) == files(tmp_path / "serial")


@pytest.mark.parametrize("jobs", [1, 2])
def test_an_output_the_disk_refuses_fails_its_file_only(tmp_path, rng, monkeypatch, jobs):
    for i in range(6):
        picture(tmp_path / "in" / f"p{i}.png", rng)
    real_fsync = os.fsync

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").split("/")[-1].startswith(".p3.png."):
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    out = tmp_path / "out"
    summary = batch.run_batch(batch.plan_batch([str(tmp_path / "in")], out), settings("box:3"), jobs=jobs,
                              workers="threads")  # fmt: skip
    assert summary.processed == 5
    [failed] = summary.failed
    assert Path(failed.output).name == "p3.png" and failed.error.endswith("p3.png': Input/output error")
    assert sorted(files(out)) == ["p0.png", "p1.png", "p2.png", "p4.png", "p5.png"]  # and no temporary file


def test_threads_given_by_the_user_are_kept(monkeypatch):
    monkeypatch.setattr(batch_run, "default_jobs", lambda: 8)
    assert batch_run._share_of_cpus(settings("blur", threads=3), 2).threads == 3


def test_the_engine_of_each_thread_runs_on_its_share(tmp_path, rng, monkeypatch):
    for i in range(4):
        picture(tmp_path / "in" / f"p{i}.png", rng)
    seen = []
    real = batch_run.filter_file

    def recording(source, destination, settings, *args, **kwargs):
        seen.append(settings.threads)
        return real(source, destination, settings, *args, **kwargs)

    monkeypatch.setattr(batch_run, "default_jobs", lambda: 6)
    monkeypatch.setattr(batch_run, "filter_file", recording)
    plan = batch.plan_batch([str(tmp_path / "in")], tmp_path / "out")
    summary = batch.run_batch(plan, settings("blur"), jobs=2, workers="threads")
    assert summary.processed == 4
    assert seen == [3] * 4


def test_worker_processes_get_the_same_share(monkeypatch):
    monkeypatch.setattr(batch_run, "default_jobs", lambda: 6)
    pool = batch_run._PoolExecutor(3)
    try:
        pool.start(settings("blur"), batch_run.OutputSettings())
        assert pool._settings.threads == 2
    finally:
        pool.cancel()


# --- byte-identical outputs -------------------------------------------------------------------


@pytest.fixture
def mixed(tmp_path, rng) -> Path:
    """Small images of every common mode, and one large enough for the engine to use threads."""
    root = tmp_path / "in"
    for i in range(9):
        picture(root / f"p{i}.png", rng, size=(37 + i, 29), mode=("RGB", "L", "RGBA")[i % 3])
    picture(root / "q.jpg", rng, size=(40, 40))
    picture(root / "wide.png", rng, size=(900, 700))
    return root


#: With ``direct``, the wide image's gaussian is long enough for the engine to use its threads.
CHAIN = ("gaussian:1.5", "edge_enhance")


def test_outputs_are_byte_identical_for_every_jobs_threads_and_workers(mixed, tmp_path):
    runs = {
        "-j 1": {"jobs": 1},
        "-j 2 threads": {"jobs": 2, "workers": "threads"},
        "-j 2 --threads 1": {"jobs": 2, "workers": "threads", "threads": 1},
        "-j 2 --threads 2": {"jobs": 2, "workers": "threads", "threads": 2},
        "-j 3 processes": {"jobs": 3, "workers": "processes"},
    }
    trees = {}
    for name, options in runs.items():
        out = tmp_path / name.replace(" ", "_")
        filters = settings(*CHAIN, border="reflect", method="direct", threads=options.pop("threads", None))
        plan = batch.plan_batch([str(mixed)], out)
        summary = batch.run_batch(plan, filters, **options)
        assert (summary.processed, summary.failed) == (11, []), name
        trees[name] = files(out)
    reference = trees.pop("-j 1")
    assert len(reference) == 11
    for name, tree in trees.items():
        assert tree == reference, name


def run_cli(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args], prog_name="convfilter")


def test_the_command_writes_byte_identical_outputs_for_every_jobs_and_threads(mixed, tmp_path):
    trees = {}
    for options in (["-j", "1"], ["-j", "2"], ["-j", "2", "--threads", "1"]):
        out = tmp_path / "out" / "_".join(options)
        result = run_cli("batch", mixed, "-d", out, "-k", CHAIN[0], "-k", CHAIN[1], "--border", "reflect",
                         "--method", "direct", *options)  # fmt: skip
        assert result.exit_code == 0, result.output
        trees[" ".join(options)] = files(out)
    assert len(trees["-j 1"]) == 11
    assert trees["-j 1"] == trees["-j 2"] == trees["-j 2 --threads 1"]


# --- stopping -------------------------------------------------------------------------------------


@pytest.fixture
def slow(tmp_path) -> Path:
    """Twelve images that take a while with box:21 (direct, twice)."""
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (160, 200, 3)).astype(np.uint8)
    root = tmp_path / "slow"
    root.mkdir()
    for i in range(12):
        Image.fromarray(np.roll(base, i, axis=1)).save(root / f"p{i:02d}.png", compress_level=0)
    return root


SLOW = {"method": "direct", "repeat": 2}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_a_threaded_batch_and_leaves_only_complete_outputs(slow, tmp_path, signum):
    plan = batch.plan_batch([str(slow)], tmp_path / "out")
    before = set(threading.enumerate())
    seen = []

    def stop_after_the_first(outcome):
        if not seen:
            os.kill(os.getpid(), signum)
        seen.append(outcome)

    summary = batch.run_batch(plan, settings("box:21", **SLOW), jobs=2, workers="threads",
                              on_outcome=stop_after_the_first)  # fmt: skip
    assert summary.interrupted == signal.Signals(signum).name
    assert 1 <= summary.processed < 12 and summary.processed + summary.unfinished == 12
    assert [o.status for o in seen] == ["ok"] * summary.processed
    assert_complete_outputs(tmp_path / "out", {Path(o.output).name for o in seen})
    assert set(threading.enumerate()) <= before  # no thread of the batch is left
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_file_in_progress_is_abandoned_not_finished(tmp_path, rng):
    """A signal cuts a long file short at the engine's next checkpoint: it is not written,
    and the engine's own threads have ended too when the batch returns."""
    picture(tmp_path / "in" / "a-small.png", rng, size=(20, 20))
    picture(tmp_path / "in" / "b-huge.png", rng, size=(1200, 900))
    plan = batch.plan_batch([str(tmp_path / "in")], tmp_path / "out")
    before = set(threading.enumerate())
    small_done, signalled = threading.Event(), threading.Event()
    real = batch_run.filter_file

    def signalling(source, destination, settings, *args, progress=None, **kwargs):
        if "small" in os.fspath(source):
            result = real(source, destination, settings, *args, progress=progress, **kwargs)
            small_done.set()
            return result

        def first_progress(fraction):  # the huge file is in the engine: stop the batch now
            if not signalled.is_set():
                small_done.wait(30)
                signalled.set()
                os.kill(os.getpid(), signal.SIGINT)
            progress(fraction)

        return real(source, destination, settings, *args, progress=first_progress, **kwargs)

    filters = settings("box:31", method="direct", repeat=4, threads=2)  # a long job, on engine threads
    seen = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(batch_run, "filter_file", signalling)
        summary = batch.run_batch(plan, filters, jobs=2, workers="threads", on_outcome=seen.append)
    assert signalled.is_set()
    assert summary.interrupted == "SIGINT"
    assert [(o.input, o.status) for o in seen] == [(plan.tasks[0].input, "ok")]
    assert summary.unfinished == 1
    assert_complete_outputs(tmp_path / "out", {"a-small.png"})
    assert set(threading.enumerate()) <= before


def test_fail_fast_lets_files_in_progress_finish(slow, tmp_path):
    # Taken in order: p00.png has been started (taken from the queue) before its
    # neighbour, which is broken, can fail.
    (slow / "p00a-broken.png").write_bytes(b"junk")
    plan = batch.plan_batch([str(slow)], tmp_path / "out")
    summary = batch.run_batch(plan, settings("box:21", **SLOW), jobs=2, workers="threads", fail_fast=True)
    assert len(summary.failed) == 1 and summary.stopped_early
    assert summary.processed == 1  # the file started beside the broken one, completed
    assert_complete_outputs(tmp_path / "out", {"p00.png"})
